// citysense citizen page: Leaflet map with clustered stations, warnings near a chosen place, email subscription.
// No build step; libraries are vendored under /static/vendor; every text of a warning comes from the API.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const TILE_FALLBACK_MS = 8000;  // no tile loaded this long after the map starts: say so
// US EPA PM2.5 categories, in order: marker number = index + 1 (the key is /v1/stations' air_quality.category).
const AQ_KEYS = ["good", "moderate", "unhealthy_sensitive", "unhealthy", "very_unhealthy", "hazardous"];

const TEXT = {
  en: {
    skip: "Skip to choosing a place", tagline: "Air and environment near you, measured live",
    connecting: "● connecting…", live: "● live", reconnecting: "● reconnecting…",
    map_heading: "Measuring stations",
    map_help: "Click the map to choose your place. With the keyboard: focus the map, move it with the arrow keys, " +
      "zoom with + and −, press Enter to choose its centre; Tab reaches the stations.",
    map_label: "Map of measuring stations. Arrow keys move the map, + and − zoom, Enter chooses the centre as your place.",
    map_role: "map",
    stations: (n, unplaced) => `${n} stations` + (unplaced ? `, ${unplaced} without coordinates` : ""),
    stations_error: (msg) => `Could not load stations: ${msg}`,
    tiles_failed: "The background map could not be loaded (no connection to the map server). Stations and " +
      "warnings are shown without it.",
    tiles_off: "No background map is configured; stations are shown on a plain background.",
    legend: "Legend", legend_alert: "active alert", legend_offline: "offline", legend_nopm: "no PM2.5",
    aq: { good: "Good", moderate: "Moderate", unhealthy_sensitive: "Unhealthy for sensitive groups",
      unhealthy: "Unhealthy", very_unhealthy: "Very unhealthy", hazardous: "Hazardous" },
    no_pm: "no PM2.5", offline: "offline", online: "online",
    alerts_n: (n) => n === 1 ? "1 active alert" : `${n} active alerts`,
    station_label: (id, state, alerts) => `Station ${id}: ${state}${alerts}. Press Enter for details.`,
    cluster_label: (n, alerting) => `${n} stations` + (alerting ? `, ${alerting} with active alerts` : "") +
      ". Press Enter to zoom in.",
    place_heading: "Your place", lat: "Latitude", lon: "Longitude", radius: "Radius (km)",
    show_warnings: "Show warnings here",
    bad_coordinates: "Enter a latitude between −90 and 90 and a longitude between −180 and 180 (e.g. 48.8566).",
    bad_radius: "Enter a radius between 0.1 and 25 km.",
    place_marker: "Your place",
    warnings_heading: "Warnings near your place",
    choose_place_first: "Choose a place to see the warnings in force near it.",
    loading: "Loading…",
    no_warnings: (r) => `No warnings in force within ${r} km of your place.`,
    n_warnings: (n, r) => `${n} warning${n === 1 ? "" : "s"} in force within ${r} km of your place.`,
    warnings_off: "This city publishes no public warnings.",
    warnings_error: (msg) => `Could not load the warnings: ${msg}`,
    advice: "Health advice", distance: (km, id) => `${km} km away · station ${id}`, show_station: "Show station",
    subscribe_heading: "Get warnings by email", email: "Email address", min_severity: "Warn me from",
    email_language: "Email language", subscribe: "Subscribe",
    subscribe_no_place: "Choose a place first (map or coordinates).",
    subscribe_place: (lat, lon, r) => `Warnings for stations within ${r} km of ${lat}, ${lon}.`,
    subscribe_privacy: "We send one email with a link to confirm; every warning email has a link to unsubscribe.",
    subscribe_sending: "Sending…",
    subscribe_ok: "Check your inbox: we have sent you an email with a link to confirm the subscription. " +
      "Nothing is sent before you confirm.",
    subscribe_need_place: "Choose a place on the map or enter its coordinates first.",
    subscribe_rate: (s) => s ? ` Try again in ${s} seconds.` : "",
    subscribe_failed: (status) => `The subscription could not be sent (HTTP ${status}). Please try again later.`,
    subscribe_offline: "The subscription could not be sent: no connection to the server.",
    station_heading: "Station", station_empty: "Choose a station on the map to see its last hour.",
    metric: "Metric", last_seen: "last seen",
    chart_none: (m) => `No ${m} readings in the last hour.`,
    chart_points: (n, m, v) => `${n} ${m} readings in the last hour; latest ${v}`,
    chart_error: (msg) => `Could not load readings: ${msg}`, chart_now: "now",
    alerts_heading: "All alerts in the city",
    footer: "Station colours and numbers: US EPA PM2.5 categories of the latest reading (indicative; the AQI is a " +
      "24-hour figure).",
    cap_feed: "Warnings as a CAP feed", api_docs: "Data API",
    state: { active: "active", resolved: "resolved" },
  },
  de: {
    skip: "Weiter zur Ortswahl", tagline: "Luft und Umwelt in Ihrer Nähe, live gemessen",
    connecting: "● verbinde…", live: "● live", reconnecting: "● verbinde erneut…",
    map_heading: "Messstationen",
    map_help: "Klicken Sie in die Karte, um Ihren Ort zu wählen. Mit der Tastatur: Karte fokussieren, mit den " +
      "Pfeiltasten verschieben, mit + und − zoomen, mit Enter die Kartenmitte wählen; mit Tab zu den Stationen.",
    map_label: "Karte der Messstationen. Pfeiltasten verschieben die Karte, + und − zoomen, Enter wählt die Mitte " +
      "als Ihren Ort.",
    map_role: "Karte",
    stations: (n, unplaced) => `${n} Stationen` + (unplaced ? `, ${unplaced} ohne Koordinaten` : ""),
    stations_error: (msg) => `Stationen konnten nicht geladen werden: ${msg}`,
    tiles_failed: "Die Hintergrundkarte konnte nicht geladen werden (keine Verbindung zum Kartenserver). " +
      "Stationen und Warnungen werden ohne sie angezeigt.",
    tiles_off: "Keine Hintergrundkarte eingerichtet; die Stationen erscheinen auf schlichtem Hintergrund.",
    legend: "Legende", legend_alert: "aktive Warnung", legend_offline: "außer Betrieb", legend_nopm: "kein PM2,5",
    aq: { good: "Gut", moderate: "Mäßig", unhealthy_sensitive: "Ungesund für empfindliche Gruppen",
      unhealthy: "Ungesund", very_unhealthy: "Sehr ungesund", hazardous: "Gefährlich" },
    no_pm: "kein PM2,5", offline: "außer Betrieb", online: "in Betrieb",
    alerts_n: (n) => n === 1 ? "1 aktive Warnung" : `${n} aktive Warnungen`,
    station_label: (id, state, alerts) => `Station ${id}: ${state}${alerts}. Enter zeigt Details.`,
    cluster_label: (n, alerting) => `${n} Stationen` + (alerting ? `, ${alerting} mit aktiven Warnungen` : "") +
      ". Enter zoomt hinein.",
    place_heading: "Ihr Ort", lat: "Breitengrad", lon: "Längengrad", radius: "Umkreis (km)",
    show_warnings: "Warnungen hier zeigen",
    bad_coordinates: "Geben Sie einen Breitengrad zwischen −90 und 90 und einen Längengrad zwischen −180 und 180 " +
      "ein (z. B. 48.8566).",
    bad_radius: "Geben Sie einen Umkreis zwischen 0,1 und 25 km ein.",
    place_marker: "Ihr Ort",
    warnings_heading: "Warnungen in der Nähe Ihres Ortes",
    choose_place_first: "Wählen Sie einen Ort, um die dort geltenden Warnungen zu sehen.",
    loading: "Wird geladen…",
    no_warnings: (r) => `Keine Warnungen im Umkreis von ${r} km um Ihren Ort.`,
    n_warnings: (n, r) => `${n} ${n === 1 ? "Warnung" : "Warnungen"} im Umkreis von ${r} km um Ihren Ort.`,
    warnings_off: "Diese Stadt veröffentlicht keine öffentlichen Warnungen.",
    warnings_error: (msg) => `Warnungen konnten nicht geladen werden: ${msg}`,
    advice: "Gesundheitshinweis", distance: (km, id) => `${km} km entfernt · Station ${id}`,
    show_station: "Station zeigen",
    subscribe_heading: "Warnungen per E-Mail", email: "E-Mail-Adresse", min_severity: "Warnen ab",
    email_language: "Sprache der E-Mails", subscribe: "Abonnieren",
    subscribe_no_place: "Wählen Sie zuerst einen Ort (Karte oder Koordinaten).",
    subscribe_place: (lat, lon, r) => `Warnungen für Stationen im Umkreis von ${r} km um ${lat}, ${lon}.`,
    subscribe_privacy: "Wir senden eine E-Mail mit einem Bestätigungslink; jede Warn-E-Mail enthält einen Link zum " +
      "Abbestellen.",
    subscribe_sending: "Wird gesendet…",
    subscribe_ok: "Bitte sehen Sie in Ihr Postfach: Wir haben Ihnen eine E-Mail mit einem Link zur Bestätigung " +
      "geschickt. Vor der Bestätigung senden wir nichts.",
    subscribe_need_place: "Wählen Sie zuerst einen Ort auf der Karte oder geben Sie seine Koordinaten ein.",
    subscribe_rate: (s) => s ? ` Bitte versuchen Sie es in ${s} Sekunden erneut.` : "",
    subscribe_failed: (status) => `Das Abonnement konnte nicht gesendet werden (HTTP ${status}). Bitte später ` +
      "erneut versuchen.",
    subscribe_offline: "Das Abonnement konnte nicht gesendet werden: keine Verbindung zum Server.",
    station_heading: "Station", station_empty: "Wählen Sie eine Station auf der Karte, um ihre letzte Stunde zu sehen.",
    metric: "Messgröße", last_seen: "zuletzt gemeldet",
    chart_none: (m) => `Keine ${m}-Messwerte in der letzten Stunde.`,
    chart_points: (n, m, v) => `${n} ${m}-Messwerte in der letzten Stunde; zuletzt ${v}`,
    chart_error: (msg) => `Messwerte konnten nicht geladen werden: ${msg}`, chart_now: "jetzt",
    alerts_heading: "Alle Warnungen in der Stadt",
    footer: "Farben und Zahlen der Stationen: PM2,5-Kategorien der US-Umweltbehörde EPA für den letzten Messwert " +
      "(Richtwert; der AQI gilt für 24 Stunden).",
    cap_feed: "Warnungen als CAP-Feed", api_docs: "Daten-API",
    state: { active: "aktiv", resolved: "beendet" },
  },
};

const state = {
  lang: "en", config: null, stations: new Map(), alerts: new Map(), selected: null, metric: null,
  place: null, radiusKm: 2, markers: new Map(), tilesLoaded: 0,
};
let map = null, cluster = null, placeLayer = null;

function t(key, ...args) {
  const value = TEXT[state.lang][key] ?? TEXT.en[key];
  return typeof value === "function" ? value(...args) : value;
}

function svg(name, attrs = {}, text) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function html(name, attrs = {}, ...children) {
  const node = document.createElement(name);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

async function getJSON(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" } });
  if (!res.ok) {
    let detail = `HTTP ${res.status}`;
    try { detail = (await res.json()).detail || detail; } catch (err) { /* not JSON */ }
    const error = new Error(detail);
    error.status = res.status;
    throw error;
  }
  return res.json();
}

function fmtTime(iso) {
  const d = new Date(iso);
  const locale = state.lang === "de" ? "de-DE" : "en-GB";
  return isNaN(d) ? iso : d.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function fmtNumber(value, digits) {
  return value.toLocaleString(state.lang === "de" ? "de-DE" : "en-GB",
    { minimumFractionDigits: 0, maximumFractionDigits: digits });
}

// ---------------------------------------------------------------- language
function chooseLanguage() {
  const saved = localStorage.getItem("citysense.lang");
  if (saved && TEXT[saved]) return saved;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const code = tag.slice(0, 2).toLowerCase();
    if (TEXT[code]) return code;
  }
  return "en";
}

function applyLanguage(lang) {
  state.lang = lang;
  document.documentElement.lang = lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const button of document.querySelectorAll("#lang-switch button")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === lang));
  }
  document.getElementById("lang-switch").setAttribute("aria-label", lang === "de" ? "Sprache" : "Language");
  document.getElementById("legend").setAttribute("aria-label", t("legend"));
  document.getElementById("sub-language").value = lang;
  if (map) {
    map.getContainer().setAttribute("aria-label", t("map_label"));
    map.getContainer().setAttribute("aria-roledescription", t("map_role"));
  }
  renderSeverityOptions();
  drawLegend();
  drawMarkers();
  renderAlerts();
  renderSubscribePlace();
  updateTileNote();
  if (state.selected) renderDetailMeta();
  if (state.place) loadWarnings(); else setWarningsNote(t("choose_place_first"));
}

// ---------------------------------------------------------------- map
let alertCounts = null;  // station id -> active alerts; rebuilt when the alerts change
function stationAlertCount(id) {
  if (!alertCounts) {
    alertCounts = new Map();
    for (const a of state.alerts.values()) {
      if (a.state !== "resolved") alertCounts.set(a.station_id, (alertCounts.get(a.station_id) || 0) + 1);
    }
  }
  return alertCounts.get(id) || 0;
}

function stationLevel(s) {
  // Shape and text as well as colour: a number for the PM2.5 category, a square "×" for offline, "–" for none.
  if (s.status === "offline") return { cls: "offline", text: "×", label: t("offline") };
  if (!s.air_quality) return { cls: "nopm", text: "–", label: t("no_pm") };
  const index = AQ_KEYS.indexOf(s.air_quality.category);
  const name = t("aq")[s.air_quality.category] || s.air_quality.label;
  return { cls: `aq-${s.air_quality.category}`, text: String(index + 1),
           label: `${name} (PM2.5 ${fmtNumber(s.air_quality.pm2_5, 1)} µg/m³)` };
}

const LabelledIcon = L.DivIcon.extend({
  // The icon element is what keyboard users focus: give it the station's or cluster's name.
  createIcon(oldIcon) {
    const div = L.DivIcon.prototype.createIcon.call(this, oldIcon);
    div.setAttribute("aria-label", this.options.label);
    div.title = this.options.label;
    return div;
  },
});

function stationIcon(s) {
  const level = stationLevel(s);
  const alerts = stationAlertCount(s.id);
  const badge = alerts ? '<span class="badge" aria-hidden="true">!</span>' : "";
  const label = t("station_label", s.id, level.label, alerts ? `, ${t("alerts_n", alerts)}` : "");
  return new LabelledIcon({
    className: `station-marker ${level.cls}${alerts ? " alerting" : ""}${state.selected === s.id ? " selected" : ""}`,
    html: `<span class="pin" aria-hidden="true">${level.text}</span>${badge}`,
    iconSize: [30, 30], iconAnchor: [15, 15], label, key: `${level.cls}|${alerts}|${state.selected === s.id}|${label}`,
  });
}

function clusterIcon(group) {
  const children = group.getAllChildMarkers();
  let alerting = 0, worst = -1, offline = 0;
  for (const marker of children) {
    const s = state.stations.get(marker.options.stationId);
    if (!s) continue;
    if (stationAlertCount(s.id)) alerting++;
    if (s.status === "offline") offline++;
    else if (s.air_quality) worst = Math.max(worst, AQ_KEYS.indexOf(s.air_quality.category));
  }
  const cls = worst >= 0 ? `aq-${AQ_KEYS[worst]}` : (offline === children.length ? "offline" : "nopm");
  const badge = alerting ? '<span class="badge" aria-hidden="true">!</span>' : "";
  return new LabelledIcon({
    className: `station-cluster ${cls}${alerting ? " alerting" : ""}`,
    html: `<span class="n" aria-hidden="true">${children.length}</span>${badge}`,
    iconSize: [42, 42], iconAnchor: [21, 21], label: t("cluster_label", children.length, alerting),
  });
}

function isEnter(e) { return e.originalEvent && (e.originalEvent.key === "Enter" || e.originalEvent.key === " "); }

function initMap() {
  map = L.map("map", { zoomControl: true, keyboard: true, worldCopyJump: true }).setView([48.8566, 2.3522], 12);
  map.getContainer().setAttribute("role", "region");  // a landmark screen readers list, named below
  map.getContainer().setAttribute("aria-label", t("map_label"));
  map.attributionControl.setPrefix(false);
  const tiles = state.config && state.config.tiles;
  if (tiles) {
    const layer = L.tileLayer(tiles.url, { attribution: tiles.attribution, maxZoom: tiles.max_zoom,
                                           crossOrigin: false });
    layer.on("tileload", () => { state.tilesLoaded++; updateTileNote(); });
    layer.on("tileerror", () => { state.tileErrors = (state.tileErrors || 0) + 1; updateTileNote(); });
    layer.on("load", updateTileNote);
    layer.addTo(map);
    setTimeout(() => { state.tileTimeout = true; updateTileNote(); }, TILE_FALLBACK_MS);
  }
  updateTileNote();
  cluster = L.markerClusterGroup({ iconCreateFunction: clusterIcon, showCoverageOnHover: false,
                                   maxClusterRadius: 48, spiderfyOnMaxZoom: true });
  cluster.on("clusterkeypress", (e) => { if (isEnter(e)) e.layer.zoomToBounds({ padding: [30, 30] }); });
  map.addLayer(cluster);
  map.on("click", (e) => setPlace(e.latlng.lat, e.latlng.lng, { pan: false }));
  map.getContainer().addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target === map.getContainer()) {
      const c = map.getCenter();
      setPlace(c.lat, c.lng, { pan: false });
      e.preventDefault();
    }
  });
}

function updateTileNote() {
  const note = document.getElementById("tile-note");
  const container = document.getElementById("map");
  const tiles = state.config && state.config.tiles;
  let text = "";
  if (state.config && !tiles) text = t("tiles_off");
  else if (tiles && !state.tilesLoaded && (state.tileErrors || state.tileTimeout)) text = t("tiles_failed");
  container.classList.toggle("no-tiles", Boolean(text) || !tiles);
  note.textContent = text;
  note.hidden = !text;
}

let fitted = false;
function drawMarkers() {
  if (!cluster) return;
  const stations = [...state.stations.values()];
  const located = stations.filter((s) => s.location);
  if (!fitted && located.length && !state.place) {  // first view: all stations, before any marker is drawn
    map.fitBounds(L.latLngBounds(located.map((s) => [s.location.lat, s.location.lon])),
                  { padding: [40, 40], maxZoom: 15, animate: false });
    fitted = true;
  }
  const keep = new Set(), added = [];
  for (const s of located) {
    keep.add(s.id);
    const latlng = [s.location.lat, s.location.lon];
    let marker = state.markers.get(s.id);
    if (!marker) {
      marker = L.marker(latlng, { icon: stationIcon(s), keyboard: true, stationId: s.id });
      marker.on("click", () => selectStation(s.id));
      marker.on("keypress", (e) => { if (isEnter(e)) selectStation(s.id); });
      state.markers.set(s.id, marker);
      added.push(marker);
    } else {
      const icon = stationIcon(s);
      if (marker.getLatLng().lat !== latlng[0] || marker.getLatLng().lng !== latlng[1]) marker.setLatLng(latlng);
      if (icon.options.key !== marker.options.icon.options.key) marker.setIcon(icon);  // only what changed
    }
  }
  for (const [id, marker] of state.markers) {
    if (!keep.has(id)) { cluster.removeLayer(marker); state.markers.delete(id); }
  }
  if (added.length) cluster.addLayers(added);
  cluster.refreshClusters();
  const unplaced = stations.length - located.length;
  const note = document.getElementById("map-note"), text = t("stations", stations.length, unplaced);
  if (note.textContent !== text) note.textContent = text;  // a status region: announce changes only
}

function drawLegend() {
  const legend = document.getElementById("legend");
  const items = AQ_KEYS.map((key, i) => html("span", { class: "legend-item" },
    html("span", { class: `pin aq-${key}`, "aria-hidden": "true", text: String(i + 1) }),
    html("span", { text: t("aq")[key] })));
  items.push(html("span", { class: "legend-item" },
    html("span", { class: "pin alerting-sample", "aria-hidden": "true", text: "!" }),
    html("span", { text: t("legend_alert") })));
  items.push(html("span", { class: "legend-item" },
    html("span", { class: "pin offline", "aria-hidden": "true", text: "×" }),
    html("span", { text: t("legend_offline") })));
  items.push(html("span", { class: "legend-item" },
    html("span", { class: "pin nopm", "aria-hidden": "true", text: "–" }),
    html("span", { text: t("legend_nopm") })));
  legend.replaceChildren(...items);
}

async function loadStations() {
  try {
    const body = await getJSON("/v1/stations");
    state.stations = new Map(body.items.map((s) => [s.id, s]));
    drawMarkers();
    if (state.selected) renderDetailMeta();
  } catch (err) {
    document.getElementById("map-note").textContent = t("stations_error", err.message);
  }
}

// ---------------------------------------------------------------- place and warnings nearby
function parseNumber(text) {
  const value = Number(String(text).trim().replace(",", "."));
  return String(text).trim() === "" || !Number.isFinite(value) ? null : value;
}

function setPlace(lat, lon, { pan = true } = {}) {
  state.place = { lat: Math.round(lat * 1e5) / 1e5, lon: Math.round(lon * 1e5) / 1e5 };
  document.getElementById("place-lat").value = String(state.place.lat);
  document.getElementById("place-lon").value = String(state.place.lon);
  document.getElementById("place-error").hidden = true;
  drawPlace(pan);
  renderSubscribePlace();
  loadWarnings();
}

function drawPlace(pan) {
  if (!map || !state.place) return;
  if (placeLayer) placeLayer.remove();
  const center = [state.place.lat, state.place.lon];
  placeLayer = L.layerGroup([
    L.circle(center, { radius: state.radiusKm * 1000, className: "place-area", interactive: false }),
    L.circleMarker(center, { radius: 7, className: "place-dot", interactive: false }),
  ]).addTo(map);
  if (pan) map.fitBounds(placeLayer.getLayers()[0].getBounds(), { padding: [20, 20] });
}

function setWarningsNote(text) {
  document.getElementById("warnings-note").textContent = text;
}

let warningsRequest = 0;
async function loadWarnings() {
  if (!state.place) return;
  const request = ++warningsRequest;
  const radius = state.radiusKm;
  setWarningsNote(t("loading"));
  const q = new URLSearchParams({ lat: state.place.lat, lon: state.place.lon, radius_km: radius,
                                  language: state.lang });
  let body;
  try {
    body = await getJSON(`/v1/citizen/warnings?${q}`);
  } catch (err) {
    if (request !== warningsRequest) return;
    document.getElementById("warnings").replaceChildren();
    setWarningsNote(err.status === 404 ? t("warnings_off") : t("warnings_error", err.message));
    return;
  }
  if (request !== warningsRequest) return;  // a newer place or language meanwhile
  const r = fmtNumber(radius, 1);
  setWarningsNote(body.items.length ? t("n_warnings", body.items.length, r) : t("no_warnings", r));
  // The list is rebuilt on every refresh; a keyboard user's focus on one of its buttons moves to the new button.
  const focused = document.activeElement && document.activeElement.closest("#warnings li");
  const list = document.getElementById("warnings");
  list.replaceChildren(...body.items.map((w) => {
    const advice = html("p", { class: "advice" }, html("strong", { text: `${t("advice")}: ` }), w.instruction);
    const show = html("button", { type: "button", class: "link", text: t("show_station") });
    show.addEventListener("click", () => selectStation(w.station_id, { zoom: true }));
    return html("li", { class: w.severity, "data-alert": w.alert_id },
      html("p", { class: "severity" }, html("span", { class: "sev-icon", "aria-hidden": "true" }),
           html("span", { text: w.severity_name })),
      html("h3", { text: w.headline }),
      html("p", { text: w.description }),
      advice,
      html("p", { class: "meta" }, html("span", { text: t("distance", fmtNumber(w.distance_km, 1), w.station_id) }),
           " · ", show));
  }));
  if (focused) {
    const again = [...list.children].find((li) => li.dataset.alert === focused.dataset.alert);
    if (again) again.querySelector("button").focus();
  }
}

function readPlaceForm() {
  const lat = parseNumber(document.getElementById("place-lat").value);
  const lon = parseNumber(document.getElementById("place-lon").value);
  const radius = parseNumber(document.getElementById("place-radius").value);
  const error = document.getElementById("place-error");
  let message = "";
  if (lat === null || lon === null || lat < -90 || lat > 90 || lon < -180 || lon > 180) message = t("bad_coordinates");
  else if (radius === null || radius < 0.1 || radius > 25) message = t("bad_radius");
  error.textContent = message;
  error.hidden = !message;
  if (message) return;
  setRadius(radius);
  setPlace(lat, lon, { pan: true });
}

function setRadius(radius) {
  state.radiusKm = radius;
  document.getElementById("place-radius").value = String(radius);
  document.getElementById("sub-radius").value = String(radius);
}

// ---------------------------------------------------------------- subscription
function renderSeverityOptions() {
  const select = document.getElementById("sub-severity");
  const severities = (state.config && state.config.severities) ||
    ["info", "warning", "critical"].map((value) => ({ value, names: {} }));
  const current = select.value || "warning";
  select.replaceChildren(...severities.map((s) =>
    new Option(s.names[state.lang] || s.value, s.value, false, s.value === current)));
}

function renderSubscribePlace() {
  const text = state.place
    ? t("subscribe_place", fmtNumber(state.place.lat, 5), fmtNumber(state.place.lon, 5), fmtNumber(state.radiusKm, 1))
    : t("subscribe_no_place");
  document.getElementById("subscribe-place").textContent = text;
}

function showFieldErrors(params) {
  for (const node of document.querySelectorAll("#subscribe-form .field-error")) {
    node.hidden = true; node.textContent = "";
  }
  for (const input of document.querySelectorAll("#subscribe-form [aria-invalid]")) {
    input.removeAttribute("aria-invalid");
  }
  for (const p of params || []) {
    const field = String(p.name || "").replace(/^body\./, "");
    const node = document.getElementById(`sub-${field}-error`);
    const input = document.querySelector(`#subscribe-form [name="${CSS.escape(field)}"]`);
    if (node) { node.textContent = p.reason; node.hidden = false; }
    if (input) input.setAttribute("aria-invalid", "true");
  }
}

function showSubscribeResult(text, ok) {
  const result = document.getElementById("subscribe-result");
  result.textContent = text;
  result.className = ok ? "ok" : "error";
  result.hidden = false;
}

async function subscribe(event) {
  event.preventDefault();
  showFieldErrors([]);
  if (!state.place) { showSubscribeResult(t("subscribe_need_place"), false); return; }
  const radius = parseNumber(document.getElementById("sub-radius").value);
  const body = {
    email: document.getElementById("sub-email").value.trim(),
    lat: state.place.lat, lon: state.place.lon,
    radius_km: radius === null ? document.getElementById("sub-radius").value : radius,
    min_severity: document.getElementById("sub-severity").value,
    language: document.getElementById("sub-language").value,
  };
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  showSubscribeResult(t("subscribe_sending"), true);
  try {
    const res = await fetch("/v1/citizen/subscriptions", {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    let answer = {};
    try { answer = await res.json(); } catch (err) { /* no JSON body */ }
    if (res.status === 202) {
      showSubscribeResult(t("subscribe_ok"), true);
    } else if (res.status === 422 || res.status === 429 || res.status === 413) {
      showFieldErrors(answer["invalid-params"]);
      const retry = res.status === 429 ? t("subscribe_rate", res.headers.get("Retry-After")) : "";
      showSubscribeResult((answer.detail || answer.title || t("subscribe_failed", res.status)) + retry, false);
    } else {
      showSubscribeResult(t("subscribe_failed", res.status), false);
    }
  } catch (err) {
    showSubscribeResult(t("subscribe_offline"), false);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- alerts
function severityName(severity) {
  const known = state.config && state.config.severities && state.config.severities.find((s) => s.value === severity);
  return (known && known.names[state.lang]) || severity;
}

function renderAlerts(newId) {
  const list = document.getElementById("alerts");
  const items = [...state.alerts.values()].sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""));
  list.replaceChildren(...items.slice(0, 200).map((a) => {
    const button = html("button", { type: "button", class: "alert-item" },
      html("span", { class: "msg", text: a.message }),
      html("span", { class: "meta",
        text: `${severityName(a.severity)} · ${a.station_id} · ${t("state")[a.state] || a.state} · ` +
              fmtTime(a.updated_at) }));
    button.addEventListener("click", () => selectStation(a.station_id, { zoom: true }));
    return html("li", { class: `${a.severity} ${a.state}` + (a.id === newId ? " new" : ""), "data-alert": a.id },
                button);
  }));
  document.getElementById("alert-count").textContent =
    String(items.filter((a) => a.state !== "resolved").length);
}

async function loadAlerts() {
  try {
    const body = await getJSON("/v1/alerts?state=active&limit=200");
    for (const a of body.items) state.alerts.set(a.id, a);
    alertCounts = null;
    renderAlerts();
    drawMarkers();
  } catch (err) { /* the live stream still fills the list */ }
}

function fromEvent(ev) {
  // An alert event (contract v1) -> the shape /v1/alerts returns.
  return {
    id: ev.alert_id, station_id: ev.station_id, severity: ev.severity, kind: ev.kind, message: ev.message,
    state: ev.state === "resolved" ? "resolved" : "active", updated_at: ev.event_time, opened_at: ev.opened_at,
  };
}

let refreshTimer = null;
function scheduleRefresh() {
  // Alert events come in bursts: redraw the markers and reload the nearby warnings once per burst.
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    drawMarkers();
    if (state.place) loadWarnings();
  }, 300);
}

function connectStream() {
  const live = document.getElementById("live");
  const source = new EventSource("/v1/alerts/stream?state=all");
  source.onopen = () => { live.dataset.i18n = "live"; live.textContent = t("live"); live.className = "live on"; };
  source.onerror = () => {
    live.dataset.i18n = "reconnecting"; live.textContent = t("reconnecting"); live.className = "live off";
  };
  source.addEventListener("alert", (msg) => {
    const alert = fromEvent(JSON.parse(msg.data));
    state.alerts.set(alert.id, alert);
    alertCounts = null;
    renderAlerts(alert.id);
    scheduleRefresh();
    if (alert.station_id === state.selected) loadChart();
  });
}

// ---------------------------------------------------------------- station detail
function renderDetailMeta() {
  const s = state.stations.get(state.selected);
  if (!s) return;
  document.getElementById("detail-title").textContent = s.id;
  const level = stationLevel(s);
  const status = s.status === "offline" ? t("offline") : t("online");
  document.getElementById("detail-meta").textContent =
    `${status} · ${t("last_seen")} ${fmtTime(s.last_seen)} · ${level.label}`;
}

function selectStation(id, { zoom = false } = {}) {
  const s = state.stations.get(id);
  if (!s) return;
  const previous = state.selected;
  state.selected = id;
  document.getElementById("detail-empty").hidden = true;
  document.getElementById("detail-body").hidden = false;
  renderDetailMeta();
  const select = document.getElementById("metric");
  const metrics = Object.keys(s.latest).sort();
  if (!metrics.includes(state.metric)) state.metric = metrics.includes("pm2_5") ? "pm2_5" : metrics[0];
  select.replaceChildren(...metrics.map((m) => new Option(m, m, false, m === state.metric)));
  for (const other of [previous, id]) {
    const marker = state.markers.get(other);
    const station = state.stations.get(other);
    if (marker && station) marker.setIcon(stationIcon(station));
  }
  const marker = state.markers.get(id);
  if (zoom && marker) cluster.zoomToShowLayer(marker);
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
    document.getElementById("chart-note").textContent = t("chart_error", err.message);
    return;
  }
  if (id !== state.selected || metric !== state.metric) return;  // the user moved on meanwhile
  drawChart(points.sort((a, b) => a[0] - b[0]), from.getTime(), to.getTime(), metric);
}

function drawChart(points, t0, t1, metric) {
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const W = 360, H = 160, L0 = 40, R = 8, T = 10, B = 20;
  const note = document.getElementById("chart-note");
  if (!points.length) { note.textContent = t("chart_none", metric); return; }
  let lo = Math.min(...points.map((p) => p[1])), hi = Math.max(...points.map((p) => p[1]));
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (v) => L0 + ((v - t0) / (t1 - t0)) * (W - L0 - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  chart.append(svg("line", { x1: L0, y1: H - B, x2: W - R, y2: H - B, stroke: "#aab" }));
  chart.append(svg("line", { x1: L0, y1: T, x2: L0, y2: H - B, stroke: "#aab" }));
  chart.append(svg("text", { class: "axis", x: 2, y: T + 8 }, hi.toFixed(1)));
  chart.append(svg("text", { class: "axis", x: 2, y: H - B }, lo.toFixed(1)));
  chart.append(svg("text", { class: "axis", x: L0, y: H - 4 }, fmtTime(new Date(t0).toISOString())));
  chart.append(svg("text", { class: "axis", x: W - R - 48, y: H - 4 }, t("chart_now")));
  const d = points.map(([tt, v], i) => `${i ? "L" : "M"}${x(tt).toFixed(1)},${y(v).toFixed(1)}`).join("");
  chart.append(svg("path", { class: "line", d }));
  note.textContent = t("chart_points", points.length, metric, points[points.length - 1][1]);
}

// ---------------------------------------------------------------- start
async function start() {
  try {
    state.config = await getJSON("/v1/citizen/map");
  } catch (err) {
    state.config = { tiles: null, severities: null };
  }
  if (state.config.radius_km) setRadius(state.config.radius_km.default);
  initMap();
  applyLanguage(chooseLanguage());
  for (const button of document.querySelectorAll("#lang-switch button")) {
    button.addEventListener("click", () => {
      localStorage.setItem("citysense.lang", button.dataset.lang);
      applyLanguage(button.dataset.lang);
    });
  }
  document.getElementById("place-form").addEventListener("submit", (e) => { e.preventDefault(); readPlaceForm(); });
  document.getElementById("subscribe-form").addEventListener("submit", subscribe);
  document.getElementById("sub-radius").addEventListener("change", (e) => {
    const radius = parseNumber(e.target.value);
    if (radius !== null && radius >= 0.1 && radius <= 25) {
      setRadius(radius); drawPlace(false); renderSubscribePlace(); loadWarnings();
    }
  });
  document.getElementById("metric").addEventListener("change", (e) => { state.metric = e.target.value; loadChart(); });
  await loadStations();
  loadAlerts();
  connectStream();
  setInterval(loadStations, 10000);
  setInterval(() => { if (state.selected) loadChart(); }, 30000);
}

start();
