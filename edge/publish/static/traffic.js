// edge traffic view: stored counts per camera and line, a chart of the last 24 h per interval and
// class (uPlot, shipped in static/vendor), the CSV download, and the latest events, kept live by
// server-sent events. Times come from the API in UTC and are shown in the browser's local time.
// window.edge.traffic exposes what is shown, for tests.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const MAX_ROWS = 50;
  const REFRESH_MS = 30000;
  const COLORS = ["#4e9af1", "#f1a24e", "#7bd389", "#e05d5d", "#b38cf0", "#d6d66b"];
  const state = (window.edge = window.edge || {}).traffic = {
    ready: false, series: {}, totals: {}, events: [], live: 0, error: null,
  };

  const withToken = (path) =>
    token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path;

  async function getJson(path) {
    const res = await fetch(withToken(path));
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw Object.assign(new Error(body.error || `HTTP ${res.status}`), { status: res.status });
    return body;
  }

  const local = (iso) => new Date(iso).toLocaleString();
  const el = (id) => document.getElementById(id);

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
  }

  function renderTotals(report) {
    const now = Date.now();
    const totals = {};
    for (const r of report.rows) {
      const key = `${r.camera}\u0000${r.line}`;
      const t = (totals[key] = totals[key] || { camera: r.camera, line: r.line, day: 0, current: 0 });
      t.day += r.total;
      if (new Date(r.start).getTime() <= now && now < new Date(r.end).getTime()) t.current += r.total;
    }
    state.totals = totals;
    const body = el("totals").tBodies[0];
    body.replaceChildren();
    for (const t of Object.values(totals)) {
      const row = body.insertRow();
      cell(row, t.camera); cell(row, t.line); cell(row, String(t.current), "n"); cell(row, String(t.day), "n");
    }
    const select = el("counts-camera");
    const cameras = [...new Set(report.rows.map((r) => r.camera))];
    if (select.options.length !== cameras.length) {
      const keep = select.value;
      select.replaceChildren(...cameras.map((c) => new Option(c, c)));
      if (cameras.includes(keep)) select.value = keep;
    }
  }

  let chart = null;
  function renderChart(report, camera) {
    const rows = report.rows.filter((r) => r.camera === camera);
    const starts = [...new Set(rows.map((r) => r.start))].sort();
    const xs = starts.map((s) => new Date(s).getTime() / 1000);
    const index = new Map(starts.map((s, i) => [s, i]));
    const series = {};
    for (const cls of report.classes) series[cls] = new Array(xs.length).fill(0);
    for (const r of rows) {
      for (const [cls, dirs] of Object.entries(r.counts)) {
        series[cls][index.get(r.start)] += Object.values(dirs).reduce((a, b) => a + b, 0);
      }
    }
    state.series = series;
    const box = el("counts-chart");
    const opts = {
      width: Math.max(320, box.clientWidth || 800), height: 260,
      title: `${camera}: vehicles per ${report.interval_s / 60} min (all lines)`,
      scales: { x: { time: true } },
      axes: [{ stroke: "#aaa", grid: { stroke: "#333" } }, { stroke: "#aaa", grid: { stroke: "#333" } }],
      series: [{}, ...Object.keys(series).map((cls, i) => ({
        label: cls, stroke: COLORS[i % COLORS.length],
        width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false },
      }))],
    };
    const data = [xs, ...Object.values(series)];
    if (chart) chart.destroy();
    chart = new uPlot(opts, data, box);
    el("csv-link").href = withToken(`/api/counts?camera=${encodeURIComponent(camera)}&format=csv`);
  }

  let report = null;
  async function refreshCounts() {
    report = await getJson("/api/counts");
    renderTotals(report);
    const camera = el("counts-camera").value;
    if (camera) renderChart(report, camera);
  }

  function eventRow(e, atTop) {
    const body = el("events").tBodies[0];
    const row = body.insertRow(atTop ? 0 : -1);
    cell(row, local(e.time)); cell(row, e.camera); cell(row, e.kind); cell(row, e.class);
    cell(row, e.line ? `${e.line} ${e.direction}` : ""); cell(row, e.plate || "", "plate");
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  }

  let pending = null;
  function live() {
    const source = new EventSource(withToken("/api/events/live"));
    source.onmessage = (msg) => {
      const e = JSON.parse(msg.data);
      state.live += 1;
      state.events.unshift(e);
      state.events.length = Math.min(state.events.length, MAX_ROWS);
      eventRow(e, true);
      if (e.kind === "crossing" && !pending) {  // counts follow crossings, at most once a second
        pending = setTimeout(() => { pending = null; refreshCounts().catch(() => {}); }, 1000);
      }
    };
  }

  async function main() {
    try {
      await refreshCounts();
    } catch (e) {
      if (e.status === 404) return; // no store: the section stays hidden
      throw e;
    }
    el("traffic").hidden = false;
    el("counts-camera").addEventListener("change", () => report && renderChart(report, el("counts-camera").value));
    if (el("counts-camera").value) renderChart(report, el("counts-camera").value);
    const { events } = await getJson("/api/events?limit=20");
    state.events = events;
    for (const e of events) eventRow(e, false);
    live();
    setInterval(() => refreshCounts().catch(() => {}), REFRESH_MS);
    state.ready = true;
  }

  main().catch((e) => { state.error = e.message; el("traffic-error").textContent = e.message; });
})();
