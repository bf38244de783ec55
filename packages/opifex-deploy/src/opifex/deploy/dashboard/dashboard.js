// opifex dashboard: polls the JSON endpoints next to this page and renders them.
// Plain JavaScript, no dependencies; everything from the server is inserted as text, never as
// HTML. Plots are inline SVG drawn here.
(function () {
  "use strict";

  const POLL_MS = Math.max(50, Number(document.body.dataset.pollMs) || 2000);
  const RESULTS_EVERY = 5; // polls between two reads of the results files
  const MAX_PLOTTED = 2000; // points drawn per run (evenly thinned beyond)
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLOURS = ["#1f6feb", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#0a7ea4", "#d4398c"];
  const PLOT = { width: 620, height: 220, left: 64, right: 14, top: 10, bottom: 30 };

  const runs = new Map(); // id -> {points: [[step, value]], next, card, colour}
  let tickCount = 0;
  let logScale = false;

  // ------------------------------------------------------------------ helpers

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, String(value));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "number") {
      if (Number.isInteger(value) && Math.abs(value) < 1e9) return String(value);
      return Number(value.toPrecision(4)).toString();
    }
    return String(value);
  }

  function toNumber(value) {
    if (typeof value === "number") return value;
    if (value === "NaN") return NaN;
    if (value === "Infinity") return Infinity;
    if (value === "-Infinity") return -Infinity;
    return NaN;
  }

  function clip(text) {
    return text.length > 160 ? text.slice(0, 159) + "…" : text;
  }

  async function getJSON(path) {
    const answer = await fetch(path, { cache: "no-store" });
    if (!answer.ok) throw new Error(path + " answered " + answer.status);
    return answer.json();
  }

  function setStatus(text, isError) {
    const status = document.getElementById("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  // generic rendering of unknown JSON (canary statistics)
  const isRecord = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

  function grid(records, index) {
    const columns = index ? [""] : [];
    for (const row of records) for (const key of Object.keys(row)) {
      if (!columns.includes(key)) columns.push(key);
    }
    const table = el("table", { class: "grid" },
      el("thead", null, el("tr", null, ...columns.map((c) => el("th", null, c)))));
    const body = el("tbody");
    for (const row of records.slice(0, 20)) {
      body.append(el("tr", null, ...columns.map((c) => el("td", null,
        isRecord(row[c]) || Array.isArray(row[c]) ? clip(JSON.stringify(row[c])) : fmt(row[c])))));
    }
    table.append(body);
    return table;
  }

  function renderValue(value, depth) {
    if (Array.isArray(value)) {
      if (value.length === 0) return document.createTextNode("none");
      if (value.every(isRecord)) return grid(value, false);
      return document.createTextNode(value.map(fmt).join(", "));
    }
    if (isRecord(value)) {
      const entries = Object.entries(value);
      if (entries.length && entries.every(([, v]) => isRecord(v))) { // e.g. statistics by version
        return grid(entries.map(([key, row]) => ({ "": key, ...row })), true);
      }
      if (depth > 3) return document.createTextNode(clip(JSON.stringify(value)));
      const table = el("table", { class: "kv" });
      for (const [key, item] of Object.entries(value)) {
        table.append(el("tr", null, el("th", null, key), el("td", null, renderValue(item, depth + 1))));
      }
      return table;
    }
    return document.createTextNode(fmt(value));
  }

  // ------------------------------------------------------------------ solvers and canary

  function renderSolvers(data) {
    const body = document.querySelector("#solvers-table tbody");
    const rows = [];
    const served = new Map((data.served || []).map((s) => [s.name, s]));
    const registry = data.registry;
    const listed = new Set();
    document.getElementById("registry-root").textContent =
      registry ? "registry: " + registry.root + (registry.error ? " (" + registry.error + ")" : "")
        : "no registry attached";
    for (const solver of (registry && registry.solvers) || []) {
      if (solver.error) {
        rows.push(el("tr", { "data-name": solver.name },
          el("td", null, solver.name), el("td", { colspan: 5 }, el("span", { class: "badge bad" }, "error"), solver.error)));
        continue;
      }
      for (const version of solver.versions) {
        const channels = Object.entries(solver.channels || {})
          .filter(([, v]) => v === version.version).map(([channel]) => channel);
        const live = served.get(solver.name);
        const isServed = live && live.version === version.version;
        if (isServed) listed.add(solver.name);
        rows.push(solverRow(solver.name, version.version, channels, isServed ? live : null,
          version.published, version.sha256));
      }
    }
    for (const [name, live] of served) {
      if (!listed.has(name)) rows.push(solverRow(name, live.version, [], live, null, live.sha256));
    }
    body.replaceChildren(...rows);
    document.getElementById("solvers-empty").hidden = rows.length > 0;

    const canary = document.getElementById("canary");
    if (data.canary === null || data.canary === undefined) {
      canary.replaceChildren(el("p", { class: "muted" }, "No canary system attached."));
    } else {
      const systems = Array.isArray(data.canary) ? data.canary : [data.canary];
      canary.replaceChildren(...systems.map((system) => el("div", { class: "canary-system" },
        renderValue(system, 0))));
    }

    const events = [];
    for (const solver of (registry && registry.solvers) || []) events.push(...(solver.events || []));
    events.sort((a, b) => String(b.time).localeCompare(String(a.time)));
    document.getElementById("events").replaceChildren(...events.slice(0, 10).map((e) =>
      el("li", null, fmt(e.time) + "  " + fmt(e.action) + " " + fmt(e.name) +
        (e.version !== undefined ? " " + fmt(e.version) : "") +
        (e.channel ? " (" + e.channel + ")" : ""))));
  }

  function solverRow(name, version, channels, live, published, sha256) {
    const channelCell = el("td", { class: "channels" });
    if (channels.length === 0) channelCell.append("—");
    for (const channel of channels) channelCell.append(el("span", { class: "badge " + channel }, channel));
    let servedCell = "—";
    if (live) {
      servedCell = el("span", { class: "badge " + (live.ready ? "ok" : (live.error ? "bad" : "")) },
        live.ready ? "ready" : (live.error ? "failed" : "warming up"));
    }
    return el("tr", { "data-name": name, "data-version": version, "data-channel": channels.join(" ") },
      el("td", null, name), el("td", null, version), channelCell, el("td", null, servedCell),
      el("td", null, fmt(published)), el("td", { class: "mono" }, sha256 ? String(sha256).slice(0, 12) : "—"));
  }

  // ------------------------------------------------------------------ results

  function renderResults(results) {
    const container = document.getElementById("results");
    document.getElementById("results-empty").hidden = results.length > 0;
    const open = new Set([...container.querySelectorAll("details[open]")].map((d) => d.dataset.file));
    const items = results.map((result, index) => {
      const summary = el("summary", null,
        el("span", { class: "name" }, result.name), "  ·  ",
        el("span", { class: "date" }, fmt(result.date)), "  ·  ",
        el("span", { class: "device" }, fmt(result.device)), "  ",
        el("span", { class: "muted" }, "(" + result.file + ")"));
      const details = el("details", { class: "result", "data-file": result.file }, summary);
      if (open.has(result.file) || (open.size === 0 && index === 0 && container.childElementCount === 0)) {
        details.open = true;
      }
      if (result.error) details.append(el("p", { class: "error" }, result.error));
      if (result.entries && result.entries.length) {
        const kv = el("table", { class: "kv" });
        for (const entry of result.entries) kv.append(el("tr", null, el("th", null, entry.key), el("td", null, entry.summary)));
        details.append(kv);
      }
      if (result.table) {
        const table = result.table;
        const grid = el("table", { class: "grid rows" },
          el("caption", { class: "muted" }, table.key + (table.num_rows > table.rows.length ?
            " (first " + table.rows.length + " of " + table.num_rows + " rows)" : "")),
          el("thead", null, el("tr", null, ...table.columns.map((c) => el("th", null, c)))));
        const body = el("tbody");
        for (const row of table.rows) body.append(el("tr", null, ...row.map((cell) => el("td", null, cell))));
        grid.append(body);
        details.append(grid);
      }
      return details;
    });
    container.replaceChildren(...items);
  }

  // ------------------------------------------------------------------ live runs

  function runCard(id, colour) {
    const card = el("div", { class: "run", "data-run": id },
      el("h3", null, id), el("p", { class: "muted run-info" }, ""));
    card.append(svg("svg", {
      viewBox: "0 0 " + PLOT.width + " " + PLOT.height, role: "img", "aria-label": "run " + id,
    }));
    return card;
  }

  function drawRun(run, id) {
    const finite = run.points.filter(([, v]) => Number.isFinite(v) && (!logScale || v > 0));
    const useLog = logScale && finite.length > 0;
    const plotted = finite.length > MAX_PLOTTED
      ? finite.filter((_, i) => i % Math.ceil(finite.length / MAX_PLOTTED) === 0 || i === finite.length - 1)
      : finite;
    const ys = plotted.map(([, v]) => (useLog ? Math.log10(v) : v));
    const xs = plotted.map(([s]) => s);
    let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
    let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= 1; y1 += 1; } else { const pad = 0.05 * (y1 - y0); y0 -= pad; y1 += pad; }
    const w = PLOT.width - PLOT.left - PLOT.right;
    const h = PLOT.height - PLOT.top - PLOT.bottom;
    const px = (x) => PLOT.left + ((x - x0) / (x1 - x0)) * w;
    const py = (y) => PLOT.top + (1 - (y - y0) / (y1 - y0)) * h;

    const plot = run.card.querySelector("svg");
    const parts = [];
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      parts.push(svg("line", { class: "gridline", x1: PLOT.left, x2: PLOT.width - PLOT.right, y1: py(y), y2: py(y) }));
      parts.push(svg("text", { class: "tick", x: PLOT.left - 6, y: py(y) + 4, "text-anchor": "end" },
        fmt(useLog ? Math.pow(10, y) : y)));
    }
    for (let i = 0; i <= 4; i++) {
      const x = x0 + ((x1 - x0) * i) / 4;
      parts.push(svg("text", { class: "tick", x: px(x), y: PLOT.height - 10, "text-anchor": "middle" }, fmt(x)));
    }
    parts.push(svg("line", { class: "axis", x1: PLOT.left, x2: PLOT.left, y1: PLOT.top, y2: PLOT.top + h }));
    parts.push(svg("line", { class: "axis", x1: PLOT.left, x2: PLOT.width - PLOT.right, y1: PLOT.top + h, y2: PLOT.top + h }));
    const coordinates = plotted.map(([s], i) => px(s).toFixed(1) + "," + py(ys[i]).toFixed(1)).join(" ");
    parts.push(svg("polyline", {
      class: "run-line", "data-run": id, "data-count": plotted.length, stroke: run.colour, points: coordinates,
    }));
    plot.replaceChildren(...parts);

    const last = run.points.length ? run.points[run.points.length - 1] : null;
    const nonFinite = run.points.length - run.points.filter(([, v]) => Number.isFinite(v)).length;
    run.card.querySelector(".run-info").textContent =
      run.next + " points" + (last ? ", last: step " + fmt(last[0]) + ", value " + fmt(last[1]) : "") +
      (nonFinite ? ", " + nonFinite + " not finite (not drawn)" : "") + (useLog ? " (log scale)" : "");
  }

  async function pollRuns() {
    const listing = await getJSON("api/runs");
    const container = document.getElementById("runs");
    const seen = new Set();
    for (const summary of listing.runs) {
      const id = summary.run;
      seen.add(id);
      let run = runs.get(id);
      if (!run) {
        const colour = COLOURS[runs.size % COLOURS.length];
        run = { points: [], next: 0, colour: colour, card: runCard(id, colour) };
        runs.set(id, run);
        container.append(run.card);
      }
      if (summary.num_points === run.next && run.drawn === logScale) continue;
      if (summary.num_points !== run.next) {
        const answer = await getJSON("api/runs/" + encodeURIComponent(id) + "/points?since=" + run.next);
        const points = answer.points.map(([s, v]) => [s, toNumber(v)]);
        run.points = answer.reset ? points : run.points.concat(points);
        run.next = answer.next;
      }
      drawRun(run, id);
      run.drawn = logScale;
    }
    for (const [id, run] of runs) {
      if (!seen.has(id)) { run.card.remove(); runs.delete(id); }
    }
    document.getElementById("runs-empty").hidden = runs.size > 0;
  }

  // ------------------------------------------------------------------ the loop

  async function tick() {
    const jobs = [getJSON("api/solvers").then(renderSolvers), pollRuns()];
    if (tickCount % RESULTS_EVERY === 0) jobs.push(getJSON("api/results").then((d) => renderResults(d.results)));
    tickCount += 1;
    const outcomes = await Promise.allSettled(jobs);
    const failed = outcomes.filter((o) => o.status === "rejected");
    if (failed.length) {
      setStatus("update failed: " + failed[0].reason, true);
    } else {
      setStatus("updated " + new Date().toLocaleTimeString() + " · every " + POLL_MS / 1000 + " s", false);
    }
    document.body.dataset.updates = String(tickCount);
    window.setTimeout(tick, POLL_MS);
  }

  document.getElementById("log-scale").addEventListener("change", (event) => {
    logScale = event.target.checked;
    for (const [id, run] of runs) { drawRun(run, id); run.drawn = logScale; }
  });
  tick();
})();
