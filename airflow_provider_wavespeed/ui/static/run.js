/* WaveSpeed tab of a DAG run / task instance: what each WaveSpeed task made, what it cost, why it failed.
 * Reads dag_id, run_id, task_id, map_index from the page's query string and GETs /wavespeed/api/runs. */
"use strict";

(function () {
  const { el, usdNode, formatUsd, formatCount, safeHref, airflowLink, dagPath } = window.WS;

  // Media elements beyond this many get their src only when scrolled near, so a run of hundreds of
  // mapped videos does not open hundreds of requests (and media players) at load.
  const EAGER_MEDIA = 24;
  let mediaCount = 0;
  const lazyMedia =
    "IntersectionObserver" in window
      ? new IntersectionObserver(
          (entries, observer) => {
            for (const entry of entries) {
              if (!entry.isIntersecting) continue;
              entry.target.src = entry.target.dataset.src;
              observer.unobserve(entry.target);
            }
          },
          { rootMargin: "800px 0px" },
        )
      : null;

  function setMediaSource(node, url) {
    mediaCount += 1;
    if (mediaCount <= EAGER_MEDIA || !lazyMedia) {
      node.src = url;
    } else {
      node.dataset.src = url;
      lazyMedia.observe(node);
    }
    return node;
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return null;
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return (Math.round(seconds * 10) / 10).toFixed(1) + " s";
    const minutes = Math.floor(seconds / 60);
    const rest = Math.round(seconds - minutes * 60);
    if (minutes < 60) return minutes + " m " + String(rest).padStart(2, "0") + " s";
    return Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0") + " m";
  }

  function runTime(task) {
    const record = task.record || {};
    if (typeof record.inference_ms === "number") {
      return { text: formatDuration(record.inference_ms / 1000), title: "the prediction's inference time" };
    }
    if (typeof task.duration === "number") {
      return { text: formatDuration(task.duration), title: "the task instance's duration" };
    }
    return null;
  }

  function taskPath(dagId, runId, task) {
    let path = dagPath(dagId) + "/runs/" + encodeURIComponent(runId) + "/tasks/" + encodeURIComponent(task.task_id);
    if (task.map_index >= 0) path += "/mapped/" + task.map_index;
    return path;
  }

  function preview(item) {
    const href = safeHref(item.url);
    if (!href) return null;
    const name = item.name || "output " + item.n;
    if (item.kind === "image") {
      return el("a", { class: "ws-preview ws-preview--image", href, target: "_blank", rel: "noopener", title: name }, [
        el("img", { src: href, alt: name, loading: "lazy", decoding: "async", "data-testid": "ws-preview" }),
      ]);
    }
    if (item.kind === "video" || item.kind === "audio") {
      const media = el(item.kind, { controls: true, preload: "metadata", "data-testid": "ws-preview", title: name });
      setMediaSource(media, href);
      return el("figure", { class: "ws-preview ws-preview--" + item.kind }, [
        media,
        el("figcaption", null, [el("a", { href, target: "_blank", rel: "noopener", text: name })]),
      ]);
    }
    return el("a", { class: "ws-preview ws-preview--file", href, download: name, text: "⤓ " + name });
  }

  function metaRow(label, value, title) {
    if (value === null || value === undefined || value === "") return null;
    return el("div", { class: "ws-meta-row", title: title || null }, [el("dt", { text: label }), el("dd", null, [value])]);
  }

  function predictionNode(record) {
    if (!record.prediction_id) return null;
    const href = safeHref(record.console_url);
    const id = el("code", { text: record.prediction_id });
    if (!href) return id;
    return el("a", { href, target: "_blank", rel: "noopener", title: "Open in the WaveSpeed console" }, [id, " ↗"]);
  }

  function budgetText(total, max, items) {
    let text = "quoted $" + formatUsd(total);
    if (typeof max === "number") text += " of budget $" + formatUsd(max);
    if (typeof items === "number") text += " for " + formatCount(items, "item");
    return text;
  }

  function isFailed(task) {
    return task.state === "failed" || task.state === "upstream_failed";
  }

  function taskCard(task, dagId, runId) {
    const record = task.record || {};
    const state = task.state || "none";
    const mapped = task.map_index >= 0;
    const time = runTime(task);

    const header = el("header", { class: "ws-card-head" }, [
      el("h3", null, [
        airflowLink(taskPath(dagId, runId, task), mapped ? "[" + task.map_index + "]" : task.task_id, {
          title: "Open this task instance in Airflow",
        }),
      ]),
      el("span", { class: "ws-state ws-state--" + state.replace(/[^a-z_]/g, ""), text: state.replace(/_/g, " ") }),
      task.try_number > 1 ? el("span", { class: "ws-muted", text: "try " + task.try_number }) : null,
    ]);

    const meta = el("dl", { class: "ws-meta" }, [
      metaRow("Model", record.model ? el("span", { class: "ws-model", text: record.model }) : null),
      metaRow("Prediction", predictionNode(record)),
      metaRow("Status", record.status && record.status !== "completed" ? record.status : null),
      metaRow("Quoted", typeof record.cost_usd === "number" ? usdNode(record.cost_usd) : null),
      metaRow("Run time", time ? time.text : null, time ? time.title : null),
      metaRow(
        "Budget",
        typeof record.budget_total_usd === "number"
          ? budgetText(record.budget_total_usd, record.budget_max_usd, record.budget_items)
          : null,
      ),
      record.cancelled ? metaRow("Cancelled", "prediction deleted when the task was stopped") : null,
    ]);

    const previews = (task.media || []).map(preview).filter(Boolean);
    let error = null;
    if (record.error) {
      error = el("p", { class: "ws-error", "data-testid": "ws-error", text: record.error });
    } else if (isFailed(task)) {
      error = el("p", {
        class: "ws-error ws-error--unknown",
        "data-testid": "ws-error",
        text: "The task " + state.replace(/_/g, " ") + " before it recorded an error: see its log.",
      });
    }

    return el(
      "article",
      {
        class: "ws-card" + (isFailed(task) ? " ws-card--failed" : ""),
        "data-testid": "ws-task",
        "data-task-id": task.task_id,
        "data-map-index": String(task.map_index),
        "data-state": state,
      },
      [
        header,
        meta.childElementCount ? meta : el("p", { class: "ws-muted", text: "Nothing recorded yet." }),
        previews.length ? el("div", { class: "ws-previews" }, previews) : null,
        error,
      ],
    );
  }

  function groupByTask(tasks) {
    const groups = new Map();
    for (const task of tasks) {
      if (!groups.has(task.task_id)) groups.set(task.task_id, []);
      groups.get(task.task_id).push(task);
    }
    for (const list of groups.values()) list.sort((a, b) => a.map_index - b.map_index);
    return groups;
  }

  function groupSummary(list) {
    const quotes = new Map();
    let failed = 0;
    for (const task of list) {
      const record = task.record || {};
      if (typeof record.cost_usd === "number") quotes.set(record.prediction_id || task.map_index, record.cost_usd);
      if (isFailed(task)) failed += 1;
    }
    const quoted = Array.from(quotes.values()).reduce((a, b) => a + b, 0);
    const mapped = list.some((task) => task.map_index >= 0);
    const parts = [mapped ? formatCount(list.length, "mapped instance") : "task"];
    if (failed) parts.push(failed + " failed");
    if (quotes.size) parts.push("$" + formatUsd(quoted) + " quoted");
    return parts.join(" · ");
  }

  function totalsBar(data) {
    const totals = data.totals || {};
    const items = [
      el("div", { class: "ws-stat" }, [
        el("span", { class: "ws-stat-value", text: totals.task_instances ?? 0 }),
        el("span", { class: "ws-stat-label", text: "task instances" }),
      ]),
      el("div", { class: "ws-stat" }, [
        el("span", { class: "ws-stat-value", text: totals.predictions ?? 0 }),
        el("span", { class: "ws-stat-label", text: "predictions" }),
      ]),
      el("div", { class: "ws-stat" }, [
        el("span", { class: "ws-stat-value" }, [
          usdNode(totals.quoted_cost_usd, { "data-testid": "ws-total-cost" }),
        ]),
        el("span", { class: "ws-stat-label", text: "quoted cost" }),
      ]),
      el("div", { class: "ws-stat" + (totals.failed ? " ws-stat--failed" : "") }, [
        el("span", { class: "ws-stat-value", text: totals.failed ?? 0 }),
        el("span", { class: "ws-stat-label", text: "failed" }),
      ]),
    ];
    const budget = data.budget;
    if (budget) {
      items.push(
        el("div", { class: "ws-stat ws-stat--budget", "data-testid": "ws-budget" }, [
          el("span", { class: "ws-stat-value ws-stat-value--text", text: budgetText(budget.total_usd, budget.max_usd, budget.items) }),
          el("span", { class: "ws-stat-label", text: "batch budget" + (budget.task_id ? " (" + budget.task_id + ")" : "") }),
        ]),
      );
    }
    return el("section", { class: "ws-totals", "aria-label": "Totals" }, items);
  }

  function filterBar(main, failedCount) {
    if (!failedCount) return null;
    const input = el("input", {
      type: "checkbox",
      on: { change: (ev) => main.toggleAttribute("data-failed-only", ev.target.checked) },
    });
    return el("label", { class: "ws-filter" }, [input, " Show only failed (" + failedCount + ")"]);
  }

  function render(main, data, params) {
    const dagId = data.dag_id || params.dag_id;
    const runId = data.run_id || params.run_id;
    const tasks = Array.isArray(data.tasks) ? data.tasks : [];
    const failedCount = tasks.filter(isFailed).length;

    const fragment = document.createDocumentFragment();
    fragment.append(
      el("header", { class: "ws-page-head" }, [
        el("h1", { text: "WaveSpeed" }),
        el("p", { class: "ws-muted ws-crumbs" }, [
          airflowLink(dagPath(dagId), dagId),
          " / ",
          airflowLink(dagPath(dagId) + "/runs/" + encodeURIComponent(runId), runId),
          params.task_id ? " / " + params.task_id + (params.map_index !== null && params.map_index >= 0 ? " [" + params.map_index + "]" : "") : null,
        ]),
      ]),
      totalsBar(data),
    );
    const filter = filterBar(main, failedCount);
    if (filter) fragment.append(filter);

    if (!tasks.length) {
      fragment.append(
        el("p", { class: "ws-empty", text: "No WaveSpeed task instances in this " + (params.task_id ? "task." : "run.") }),
      );
    }
    for (const [taskId, list] of groupByTask(tasks)) {
      const grid = el("div", { class: "ws-grid" });
      for (const task of list) grid.append(taskCard(task, dagId, runId));
      fragment.append(
        el("section", { class: "ws-group", "data-testid": "ws-group", "data-task-id": taskId }, [
          el("h2", null, [
            el("span", { class: "ws-task-id", text: taskId }),
            el("span", { class: "ws-muted ws-group-meta", text: groupSummary(list) }),
          ]),
          grid,
        ]),
      );
    }
    main.replaceChildren(fragment);
    if (params.task_id) document.title = "WaveSpeed · " + params.task_id;
  }

  function readParams() {
    const query = new URLSearchParams(window.location.search);
    const mapIndex = query.get("map_index");
    return {
      dag_id: query.get("dag_id") || "",
      run_id: query.get("run_id") || "",
      task_id: query.get("task_id") || "",
      map_index: mapIndex === null || mapIndex === "" ? null : Number(mapIndex),
    };
  }

  async function main() {
    const root = document.querySelector('[data-testid="ws-run"]');
    const params = readParams();
    if (!params.dag_id || !params.run_id) {
      window.WS.showLoadError(root, new window.WS.LoadError(400, "This page needs dag_id and run_id in its URL."));
      return;
    }
    const query = { dag_id: params.dag_id, run_id: params.run_id, task_id: params.task_id };
    if (params.task_id && params.map_index !== null && !Number.isNaN(params.map_index)) query.map_index = params.map_index;
    try {
      const data = await window.WS.fetchJson("/wavespeed/api/runs", query);
      render(root, data, params);
      window.WS.markReady();
    } catch (err) {
      window.WS.showLoadError(root, err);
    }
  }

  main();
})();
