/* WaveSpeed spend page: quoted cost per day over 7/30/90 days, stacked by DAG or by model (Chart.js),
 * with the top DAGs and models. GETs /wavespeed/api/spend?days=N. */
"use strict";

(function () {
  const { el, usdNode, formatUsd, airflowLink, dagPath } = window.WS;

  const RANGES = [7, 30, 90];
  const DEFAULT_DAYS = 30;
  const STACKS = 8; // the biggest series get their own colour, the rest is "other"
  const OTHER = "other";
  const PALETTE = ["#017cee", "#14b8a6", "#f59e0b", "#8b5cf6", "#ef4444", "#22c55e", "#ec4899", "#0ea5e9"];
  const OTHER_COLOUR = "#a3a3a3";

  const state = { days: DEFAULT_DAYS, split: "dag", data: null, chart: null, loading: 0 };

  function initialDays() {
    const days = Number(new URLSearchParams(window.location.search).get("days"));
    return RANGES.includes(days) ? days : DEFAULT_DAYS;
  }

  /** Datasets for a stacked bar per day: the top STACKS keys by total, the rest summed as "other". */
  function buildDatasets(perDay, field) {
    const totals = new Map();
    for (const day of perDay) {
      for (const [key, usd] of Object.entries(day[field] || {})) totals.set(key, (totals.get(key) || 0) + usd);
    }
    const ranked = Array.from(totals.entries())
      .filter(([, usd]) => usd > 0)
      .sort((a, b) => b[1] - a[1])
      .map(([key]) => key);
    const top = ranked.slice(0, STACKS);
    const hasOther = ranked.length > STACKS;
    const datasets = top.map((key, i) => ({
      label: key,
      data: perDay.map((day) => (day[field] || {})[key] || 0),
      backgroundColor: PALETTE[i % PALETTE.length],
      stack: "usd",
    }));
    if (hasOther) {
      const topSet = new Set(top);
      datasets.push({
        label: OTHER,
        data: perDay.map((day) =>
          Object.entries(day[field] || {})
            .filter(([key]) => !topSet.has(key))
            .reduce((sum, [, usd]) => sum + usd, 0),
        ),
        backgroundColor: OTHER_COLOUR,
        stack: "usd",
      });
    }
    return datasets;
  }

  function drawChart(canvas) {
    const perDay = state.data.per_day || [];
    const labels = perDay.map((day) => day.day);
    const datasets = buildDatasets(perDay, state.split === "model" ? "by_model" : "by_dag");
    if (state.chart) state.chart.destroy();
    state.chart = new window.Chart(canvas, {
      type: "bar",
      data: { labels, datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: {
            stacked: true,
            grid: { display: false },
            ticks: { maxRotation: 0, autoSkipPadding: 12, callback: (_v, i) => labels[i].slice(5) },
          },
          y: {
            stacked: true,
            beginAtZero: true,
            ticks: { callback: (value) => "$" + formatUsd(value) },
          },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } },
          tooltip: {
            filter: (item) => item.raw > 0,
            callbacks: {
              label: (item) => " " + item.dataset.label + ": $" + formatUsd(item.raw),
              footer: (items) => {
                const day = perDay[items.length ? items[0].dataIndex : 0];
                return day ? "Total: $" + formatUsd(day.total_usd) : "";
              },
            },
          },
        },
      },
    });
  }

  function topTable(testid, caption, rows, keyHeader, keyCell, total) {
    const body = rows.length
      ? rows.map((row) =>
          el("tr", null, [
            el("td", { class: "ws-key" }, [keyCell(row)]),
            el("td", { class: "ws-num", text: row.predictions ?? "" }),
            el("td", { class: "ws-num" }, [usdNode(row.usd)]),
            el("td", { class: "ws-num ws-muted", text: total > 0 ? Math.round((row.usd / total) * 100) + "%" : "" }),
          ]),
        )
      : [el("tr", null, [el("td", { colspan: "4", class: "ws-muted", text: "No spend in this range." })])];
    return el("table", { class: "ws-table", "data-testid": testid }, [
      el("caption", { text: caption }),
      el("thead", null, [
        el("tr", null, [
          el("th", { scope: "col", text: keyHeader }),
          el("th", { scope: "col", class: "ws-num", text: "Predictions" }),
          el("th", { scope: "col", class: "ws-num", text: "Quoted" }),
          el("th", { scope: "col", class: "ws-num", text: "Share" }),
        ]),
      ]),
      el("tbody", null, body),
    ]);
  }

  function segmented(label, options, current, onPick) {
    return el(
      "div",
      { class: "ws-segmented", role: "group", "aria-label": label },
      options.map(([value, text, testid]) =>
        el("button", {
          type: "button",
          "data-testid": testid,
          "data-value": String(value),
          "aria-pressed": String(value === current),
          text,
          on: { click: () => onPick(value) },
        }),
      ),
    );
  }

  function render(root) {
    const data = state.data;
    const total = Number(data.total_usd) || 0;
    const fragment = document.createDocumentFragment();
    fragment.append(
      el("header", { class: "ws-page-head ws-page-head--row" }, [
        el("h1", { text: "WaveSpeed spend" }),
        el("div", { class: "ws-controls" }, [
          segmented(
            "Range",
            RANGES.map((days) => [days, days + " days", "ws-range-" + days]),
            state.days,
            (days) => load(root, days),
          ),
          segmented(
            "Split by",
            [
              ["dag", "By DAG", "ws-split-dag"],
              ["model", "By model", "ws-split-model"],
            ],
            state.split,
            (split) => {
              state.split = split;
              render(root);
            },
          ),
        ]),
      ]),
      el("section", { class: "ws-totals", "aria-label": "Totals" }, [
        el("div", { class: "ws-stat" }, [
          el("span", { class: "ws-stat-value" }, [usdNode(total, { "data-testid": "ws-spend-total" })]),
          el("span", { class: "ws-stat-label", text: "quoted in the last " + data.days + " days" }),
        ]),
        el("div", { class: "ws-stat" }, [
          el("span", { class: "ws-stat-value", text: data.predictions ?? 0 }),
          el("span", { class: "ws-stat-label", text: "predictions" }),
        ]),
        el("div", { class: "ws-stat" }, [
          el("span", { class: "ws-stat-value ws-stat-value--text", text: (data.since || "") + " → " + (data.until || "") }),
          el("span", { class: "ws-stat-label", text: "UTC days, by submission" }),
        ]),
      ]),
    );
    const canvas = el("canvas", {
      "data-testid": "ws-spend-chart",
      role: "img",
      "aria-label": "Quoted cost per day, stacked by " + (state.split === "model" ? "model" : "DAG"),
    });
    fragment.append(
      el("section", { class: "ws-panel" }, [
        el("h2", { text: "Quoted cost per day, by " + (state.split === "model" ? "model" : "DAG") }),
        total > 0 ? null : el("p", { class: "ws-muted", text: "No WaveSpeed spend in the last " + data.days + " days." }),
        el("div", { class: "ws-chart" }, [canvas]),
      ]),
      el("div", { class: "ws-tables" }, [
        topTable("ws-top-dags", "Top DAGs", data.top_dags || [], "DAG", (row) => airflowLink(dagPath(row.dag_id), row.dag_id), total),
        topTable(
          "ws-top-models",
          "Top models",
          data.top_models || [],
          "Model",
          (row) => el("span", { class: "ws-model", text: row.model }),
          total,
        ),
      ]),
      el("p", { class: "ws-muted ws-footnote", text: "Quotes recorded when each prediction was submitted, counted once per prediction; only DAGs you may read." }),
    );
    root.replaceChildren(fragment);
    drawChart(canvas);
    window.WS.markReady();
  }

  async function load(root, days) {
    const ticket = ++state.loading;
    delete document.body.dataset.ready;
    root.setAttribute("aria-busy", "true");
    try {
      const data = await window.WS.fetchJson("/wavespeed/api/spend", { days });
      if (ticket !== state.loading) return; // a newer range was picked meanwhile
      state.days = days;
      state.data = data;
      const url = new URL(window.location.href);
      url.searchParams.set("days", String(days));
      window.history.replaceState(null, "", url);
      render(root);
    } catch (err) {
      if (ticket !== state.loading) return;
      if (state.chart) state.chart.destroy();
      state.chart = null;
      window.WS.showLoadError(root, err);
    } finally {
      if (ticket === state.loading) root.removeAttribute("aria-busy");
    }
  }

  const root = document.querySelector('[data-testid="ws-spend"]');
  if (!window.Chart) {
    window.WS.showLoadError(root, new window.WS.LoadError(0, "Chart.js did not load (vendor/chart.umd.min.js)."));
    return;
  }
  load(root, initialDays());
})();
