/* WaveSpeed UI plugin: helpers shared by the run page (run.js) and the spend page (spend.js).
 * Plain browser JavaScript, no build step. Data is only ever put in the DOM through textContent and
 * attributes, never innerHTML. */
"use strict";

window.WS = (function () {
  /** Build an element. attrs: plain attributes, except `text` (textContent), `dataset` and `on` (listeners). */
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "text") node.textContent = String(value);
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    if (children) {
      for (const child of children) {
        if (child === null || child === undefined || child === false) continue;
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  const usdFormat = new Intl.NumberFormat("en-US", {
    minimumFractionDigits: 2,
    maximumFractionDigits: 4,
    useGrouping: false,
  });

  /** "0.1234": 2 to 4 decimals, no currency sign and no grouping, so a test can parse it back. */
  function formatUsd(value) {
    return usdFormat.format(Number(value) || 0);
  }

  /** A cost as `$<span data-usd=..>0.12</span>`; attrs go on the span (e.g. data-testid). */
  function usdNode(value, attrs) {
    const amount = Number(value) || 0;
    return el("span", { class: "ws-usd" }, [
      "$",
      el("span", Object.assign({ "data-usd": String(amount) }, attrs || {}), [formatUsd(amount)]),
    ]);
  }

  function formatCount(n, singular, plural) {
    const count = Number(n) || 0;
    return count + " " + (count === 1 ? singular : plural || singular + "s");
  }

  /** Only http(s) links from data become hrefs (no javascript: or data: URLs). */
  function safeHref(url) {
    if (typeof url !== "string" || url === "") return null;
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (_err) {
      return null;
    }
  }

  /** A link that navigates the Airflow UI around our iframe. */
  function airflowLink(path, text, attrs) {
    return el("a", Object.assign({ href: path, target: "_top" }, attrs || {}), [text]);
  }

  function dagPath(dagId) {
    return "/dags/" + encodeURIComponent(dagId);
  }

  class LoadError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const STATUS_HINTS = {
    401: "Log in to Airflow again",
    403: "You may not read this DAG",
    404: "Not found",
  };

  /** GET a same-origin JSON API; throws LoadError with the HTTP status and the server's detail. */
  async function fetchJson(path, params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
    }
    const url = path + (query.toString() ? "?" + query.toString() : "");
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (err) {
      throw new LoadError(0, "Network error: " + (err && err.message ? err.message : String(err)));
    }
    if (!response.ok) {
      let detail = "";
      try {
        const body = await response.json();
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
      } catch (_err) {
        detail = response.statusText || "";
      }
      const hint = STATUS_HINTS[response.status];
      const message = [hint, detail].filter(Boolean).join(": ");
      throw new LoadError(response.status, message || "Request failed");
    }
    return response.json();
  }

  /** Replace the page's content with the load error box and mark the page as settled. */
  function showLoadError(container, err) {
    const status = err && err.status ? "HTTP " + err.status : "Error";
    const box = el("div", { class: "ws-load-error", role: "alert", "data-testid": "ws-load-error" }, [
      el("strong", { text: status }),
      " ",
      el("span", { text: err && err.message ? err.message : String(err) }),
    ]);
    container.replaceChildren(box);
    document.body.dataset.ready = "error";
  }

  function markReady() {
    // The mark lets a benchmark read the time to rendered data (performance.getEntriesByName("ws-ready")).
    if (window.performance && performance.mark) performance.mark("ws-ready");
    document.body.dataset.ready = "1";
  }

  return {
    el,
    formatUsd,
    usdNode,
    formatCount,
    safeHref,
    airflowLink,
    dagPath,
    fetchJson,
    showLoadError,
    markReady,
    LoadError,
  };
})();
