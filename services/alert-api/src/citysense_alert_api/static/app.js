// citysense citizen page: no build step, no external resources. Works offline against the local API.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const MAP_W = 800, MAP_H = 560, PAD = 60;
const OFFLINE_COLOR = "#9aa4b2", NO_AQ_COLOR = "#d0d5dd";
const AQ_LEGEND = [
  ["Good", "#00e400"], ["Moderate", "#ffff00"], ["Unhealthy for sensitive groups", "#ff7e00"],
  ["Unhealthy", "#ff0000"], ["Very unhealthy", "#8f3f97"], ["Hazardous", "#7e0023"], ["Offline", OFFLINE_COLOR],
];

const state = { stations: new Map(), alerts: new Map(), selected: null, metric: null };

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

function fmtTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// ---------------------------------------------------------------- map
function projection(stations) {
  const located = stations.filter((s) => s.location);
  if (!located.length) return null;
  let minLon = Infinity, maxLon = -Infinity, minLat = Infinity, maxLat = -Infinity;
  for (const s of located) {
    minLon = Math.min(minLon, s.location.lon); maxLon = Math.max(maxLon, s.location.lon);
    minLat = Math.min(minLat, s.location.lat); maxLat = Math.max(maxLat, s.location.lat);
  }
  // Equirectangular with the longitude scaled by cos(latitude): faithful enough at city scale.
  const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
  const spanX = Math.max((maxLon - minLon) * k, 1e-4), spanY = Math.max(maxLat - minLat, 1e-4);
  const scale = Math.min((MAP_W - 2 * PAD) / spanX, (MAP_H - 2 * PAD) / spanY);
  const offX = (MAP_W - spanX * scale) / 2, offY = (MAP_H - spanY * scale) / 2;
  return (loc) => [offX + (loc.lon - minLon) * k * scale, MAP_H - (offY + (loc.lat - minLat) * scale)];
}

function stationColor(s) {
  if (s.status === "offline") return OFFLINE_COLOR;
  return s.air_quality ? s.air_quality.color : NO_AQ_COLOR;
}

function activeAlertStations() {
  const ids = new Set();
  for (const a of state.alerts.values()) if (a.state !== "resolved") ids.add(a.station_id);
  return ids;
}

function drawMap() {
  const svg = document.getElementById("map");
  svg.replaceChildren();
  for (let x = 0; x <= MAP_W; x += 80) svg.append(el("line", { class: "grid", x1: x, y1: 0, x2: x, y2: MAP_H }));
  for (let y = 0; y <= MAP_H; y += 80) svg.append(el("line", { class: "grid", x1: 0, y1: y, x2: MAP_W, y2: y }));
  const stations = [...state.stations.values()];
  const project = projection(stations);
  const note = document.getElementById("map-note");
  const unplaced = stations.filter((s) => !s.location).length;
  note.textContent = `${stations.length} stations` + (unplaced ? `, ${unplaced} without coordinates` : "");
  if (!project) return;
  const alerting = activeAlertStations();
  const r = stations.length > 400 ? 4 : stations.length > 100 ? 6 : 9;
  for (const s of stations.filter((x) => x.location)) {
    const [cx, cy] = project(s.location);
    const classes = ["station", s.status];
    if (alerting.has(s.id)) classes.push("alerting");
    if (state.selected === s.id) classes.push("selected");
    const dot = el("circle", { cx, cy, r, fill: stationColor(s), class: classes.join(" "), "data-station": s.id,
                               tabindex: 0 });
    const aq = s.air_quality ? `${s.air_quality.label} (PM2.5 ${s.air_quality.pm2_5.toFixed(1)} µg/m³)` : "no PM2.5";
    dot.append(el("title", {}, `${s.id} — ${s.status} — ${aq}`));
    dot.addEventListener("click", () => selectStation(s.id));
    dot.addEventListener("keydown", (e) => { if (e.key === "Enter") selectStation(s.id); });
    svg.append(dot);
    if (stations.length <= 60) svg.append(el("text", { class: "label", x: cx + r + 2, y: cy + 3 }, s.id));
  }
}

function drawLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren(...AQ_LEGEND.map(([label, color]) => {
    const span = document.createElement("span");
    span.style.setProperty("--c", color);
    span.textContent = label;
    return span;
  }));
}

async function loadStations() {
  try {
    const body = await getJSON("/v1/stations");
    state.stations = new Map(body.items.map((s) => [s.id, s]));
    drawMap();
    if (state.selected) renderDetailMeta();
  } catch (err) {
    document.getElementById("map-note").textContent = `Could not load stations: ${err.message}`;
  }
}

// ---------------------------------------------------------------- alerts
function renderAlerts(newId) {
  const list = document.getElementById("alerts");
  const items = [...state.alerts.values()].sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""));
  list.replaceChildren(...items.slice(0, 200).map((a) => {
    const li = document.createElement("li");
    li.className = `${a.severity} ${a.state}` + (a.id === newId ? " new" : "");
    li.dataset.alert = a.id;
    const msg = document.createElement("div");
    msg.textContent = a.message;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = `${a.severity} · ${a.station_id} · ${a.state} · ${fmtTime(a.updated_at)}`;
    li.append(msg, meta);
    li.addEventListener("click", () => selectStation(a.station_id));
    return li;
  }));
  document.getElementById("alert-count").textContent =
    String(items.filter((a) => a.state !== "resolved").length);
}

async function loadAlerts() {
  try {
    const body = await getJSON("/v1/alerts?state=active&limit=200");
    for (const a of body.items) state.alerts.set(a.id, a);
    renderAlerts();
    drawMap();
  } catch (err) { /* the live stream still fills the list */ }
}

function fromEvent(ev) {
  // An alert event (contract v1) -> the shape /v1/alerts returns.
  return {
    id: ev.alert_id, station_id: ev.station_id, severity: ev.severity, kind: ev.kind, message: ev.message,
    state: ev.state === "resolved" ? "resolved" : "active", updated_at: ev.event_time, opened_at: ev.opened_at,
  };
}

function connectStream() {
  const live = document.getElementById("live");
  const source = new EventSource("/v1/alerts/stream?state=all");
  source.onopen = () => { live.textContent = "● live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "● reconnecting…"; live.className = "live off"; };
  source.addEventListener("alert", (msg) => {
    const alert = fromEvent(JSON.parse(msg.data));
    state.alerts.set(alert.id, alert);
    renderAlerts(alert.id);
    drawMap();
    if (alert.station_id === state.selected) loadChart();
  });
}

// ---------------------------------------------------------------- station detail
function renderDetailMeta() {
  const s = state.stations.get(state.selected);
  if (!s) return;
  document.getElementById("detail-title").textContent = s.id;
  const aq = s.air_quality ? `${s.air_quality.label} (PM2.5 ${s.air_quality.pm2_5.toFixed(1)} µg/m³)` : "no PM2.5";
  document.getElementById("detail-meta").textContent = `${s.status} · last seen ${fmtTime(s.last_seen)} · ${aq}`;
}

function selectStation(id) {
  const s = state.stations.get(id);
  if (!s) return;
  state.selected = id;
  document.getElementById("detail-empty").hidden = true;
  document.getElementById("detail-body").hidden = false;
  renderDetailMeta();
  const select = document.getElementById("metric");
  const metrics = Object.keys(s.latest).sort();
  if (!metrics.includes(state.metric)) state.metric = metrics.includes("pm2_5") ? "pm2_5" : metrics[0];
  select.replaceChildren(...metrics.map((m) => new Option(m, m, false, m === state.metric)));
  drawMap();
  loadChart();
}

async function loadChart() {
  const id = state.selected, metric = state.metric;
  if (!id || !metric) return;
  const to = new Date(), from = new Date(to.getTime() - 3600e3);
  const points = [];
  let cursor = null;
  try {
    for (let page = 0; page < 5; page++) {
      const q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), metric, limit: "1000" });
      if (cursor) q.set("cursor", cursor);
      const body = await getJSON(`/v1/stations/${encodeURIComponent(id)}/readings?${q}`);
      for (const r of body.items) if (metric in r.metrics) points.push([Date.parse(r.ts), r.metrics[metric]]);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
  } catch (err) {
    document.getElementById("chart-note").textContent = `Could not load readings: ${err.message}`;
    return;
  }
  if (id !== state.selected || metric !== state.metric) return;  // the user moved on meanwhile
  drawChart(points.sort((a, b) => a[0] - b[0]), from.getTime(), to.getTime(), metric);
}

function drawChart(points, t0, t1, metric) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  const W = 360, H = 160, L = 40, R = 8, T = 10, B = 20;
  const note = document.getElementById("chart-note");
  if (!points.length) { note.textContent = `No ${metric} readings in the last hour.`; return; }
  let lo = Math.min(...points.map((p) => p[1])), hi = Math.max(...points.map((p) => p[1]));
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  svg.append(el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#aab" }));
  svg.append(el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#aab" }));
  svg.append(el("text", { class: "axis", x: 2, y: T + 8 }, hi.toFixed(1)));
  svg.append(el("text", { class: "axis", x: 2, y: H - B }, lo.toFixed(1)));
  svg.append(el("text", { class: "axis", x: L, y: H - 4 }, fmtTime(new Date(t0).toISOString())));
  svg.append(el("text", { class: "axis", x: W - R - 48, y: H - 4 }, "now"));
  const d = points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
  svg.append(el("path", { class: "line", d }));
  note.textContent = `${points.length} ${metric} readings in the last hour; latest ${points[points.length - 1][1]}`;
}

document.getElementById("metric").addEventListener("change", (e) => { state.metric = e.target.value; loadChart(); });
drawLegend();
loadStations();
loadAlerts();
connectStream();
setInterval(loadStations, 10000);
setInterval(() => { if (state.selected) loadChart(); }, 30000);
