// The dashboard: loads the network and the latest state, then follows the live stream (SSE).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const I18N = window.RP_I18N, LEVELS = window.RP_LEVELS;
  const state = {
    lang: localStorage.getItem("rp-lang") || "zh-CN",
    token: sessionStorage.getItem("rp-token") || "",
    config: null, codesTs: null, index: null, trend: [], top: [], incidents: null, closures: null,
    counters: null, lastTs: null,
  };
  // what tests and benchmarks read: the latest figures shown, and the map's draw statistics
  const probe = (window.__rp = { ready: false, ticksApplied: 0, initialRenderMs: null, map: null, errors: [] });
  const t = (key) => (I18N[state.lang] && I18N[state.lang][key]) || I18N.en[key] || key;
  // a status word the labels do not know is shown as it came
  const statusLabel = (s) => (I18N.en["status_" + s] ? t("status_" + s) : String(s));
  const levelName = (code) => (LEVELS[code] || LEVELS[0])[state.lang === "en" ? 1 : 0];
  const hexRgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const fmtTime = (ts) => (ts == null ? "—" : new Date(ts * 1000).toLocaleString(state.lang === "en" ? "en-GB" : "zh-CN", { hour12: false }));

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const res = await fetch(path, Object.assign({}, options, { headers }));
    const type = res.headers.get("content-type") || "";
    const body = type.includes("json") ? await res.json() : await res.arrayBuffer();
    return { status: res.status, ok: res.ok, body };
  }

  // ---- language ---------------------------------------------------------------------------------
  function applyLanguage() {
    document.documentElement.lang = state.lang;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
    $("lang").textContent = state.lang === "en" ? "中文" : "EN";
    renderLegend(); renderOperator(); renderConn(); renderAll();
    if (state.config) {
      $("map-note").textContent = `${state.config.n_segments.toLocaleString()} ${t("segments_count")}`;
      loadCameras(); loadDetectors();
    }
  }
  function renderConn() {
    $("conn").className = state.online ? "conn on" : "conn off";
    $("conn").textContent = t(state.online ? "online" : "offline");
  }
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "en" ? "zh-CN" : "en";
    localStorage.setItem("rp-lang", state.lang);
    applyLanguage();
  });

  // ---- operator sign-in (the bearer token is entered once per browser session) ------------------
  function renderOperator() {
    const signed = !!state.token;
    $("operator-state").textContent = t(signed ? "operator" : "viewer");
    $("operator-state").className = signed ? "operator" : "";
    $("signin").hidden = signed;
    $("signout").hidden = !signed;
    $("closure-submit").disabled = false;
  }
  $("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token-input").value.trim();
    $("token-input").value = "";
    if (state.token) sessionStorage.setItem("rp-token", state.token);
    renderOperator(); renderClosures();
  });
  $("signout").addEventListener("click", () => {
    state.token = ""; sessionStorage.removeItem("rp-token"); renderOperator(); renderClosures();
  });

  // ---- map ----------------------------------------------------------------------------------------
  const palette = {};
  for (const [code, v] of Object.entries(LEVELS)) palette[code] = hexRgb(v[2]);
  const map = new window.RoadMap($("map"), $("tiles"), $("overlay"), palette);
  probe.map = map.stats;
  window.__rp_mapobj = map;

  function renderLegend() {
    $("legend").innerHTML = [1, 2, 3, 4, 5, 6, 0].map((c) =>
      `<span><i style="background:${LEVELS[c][2]}"></i>${esc(levelName(c))}</span>`).join("");
  }

  async function onMapClick(sx, sy) {
    const [x, y] = map.toMetres(sx, sy);
    const r = 6 * map.view.mpp;
    const [lon0, lat0] = map.toLonLat(x - r, y - r), [lon1, lat1] = map.toLonLat(x + r, y + r);
    const res = await api(`/api/segments?bbox=${lon0},${lat0},${lon1},${lat1}&limit=20`);
    if (!res.ok || !res.body.features.length) { map.selected = null; $("map-info").hidden = true; map.requestDraw(); return; }
    // nearest of the candidates to the click
    let best = null, bestD = Infinity;
    for (const f of res.body.features) {
      for (const [lon, lat] of f.geometry.coordinates) {
        const [mx, my] = map.fromLonLat(lon, lat);
        const d = (mx - x) ** 2 + (my - y) ** 2;
        if (d < bestD) { bestD = d; best = f; }
      }
    }
    const p = best.properties;
    map.selected = best.geometry.coordinates.map(([lon, lat]) => map.fromLonLat(lon, lat));
    map.requestDraw();
    $("map-info").hidden = false;
    $("map-info").innerHTML = `<b>${esc(p.name || p.segment_id)}</b> <small>${esc(p.segment_id)}</small><br>
      ${t("level")}: <span class="badge l${p.closed ? 6 : p.level}">${esc(levelName(p.closed ? 6 : p.level))}</span>
      ${t("speed")}: ${p.speed_kmh ?? "—"} / ${p.free_flow_kmh ?? "—"} km/h`;
    const input = $("closure-segments");
    const ids = input.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (!ids.includes(p.segment_id)) { ids.push(p.segment_id); input.value = ids.join(","); }
  }

  // ---- gauge and trend -------------------------------------------------------------------------
  const BAND_CODES = [1, 2, 3, 4, 5];
  function drawGauge(tpi) {
    const c = $("gauge"), ctx = c.getContext("2d"), cx = c.width / 2, cy = c.height - 12, r = 92;
    ctx.clearRect(0, 0, c.width, c.height);
    ctx.lineWidth = 16;
    BAND_CODES.forEach((code, k) => {
      ctx.strokeStyle = LEVELS[code][2];
      ctx.beginPath();
      ctx.arc(cx, cy, r, Math.PI + (k / 5) * Math.PI, Math.PI + ((k + 1) / 5) * Math.PI);
      ctx.stroke();
    });
    if (tpi == null) return;
    const a = Math.PI + (Math.min(Math.max(tpi, 0), 10) / 10) * Math.PI;
    ctx.strokeStyle = "#e8eef7"; ctx.lineWidth = 4;
    ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(cx + Math.cos(a) * (r - 14), cy + Math.sin(a) * (r - 14)); ctx.stroke();
    ctx.fillStyle = "#e8eef7"; ctx.beginPath(); ctx.arc(cx, cy, 6, 0, 2 * Math.PI); ctx.fill();
  }

  function drawTrend() {
    const c = $("trend"), ctx = c.getContext("2d"), w = c.width, h = c.height, pad = 22;
    ctx.clearRect(0, 0, w, h);
    BAND_CODES.forEach((code, k) => {
      ctx.fillStyle = LEVELS[code][2] + "22";
      ctx.fillRect(pad, h - pad - ((k + 1) / 5) * (h - pad - 6), w - pad - 4, (h - pad - 6) / 5);
    });
    ctx.fillStyle = "#8a96a8"; ctx.font = "10px sans-serif";
    for (const v of [0, 5, 10]) ctx.fillText(String(v), 4, h - pad - (v / 10) * (h - pad - 6) + 3);
    const pts = state.trend.filter((p) => p.tpi != null);
    if (pts.length < 1) return;
    const t0 = pts[0].ts, t1 = Math.max(pts[pts.length - 1].ts, t0 + 1);
    ctx.strokeStyle = "#e8eef7"; ctx.lineWidth = 1.8; ctx.beginPath();
    pts.forEach((p, k) => {
      const x = pad + ((p.ts - t0) / (t1 - t0)) * (w - pad - 6), y = h - pad - (p.tpi / 10) * (h - pad - 6);
      if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const fmt = (ts) => new Date(ts * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
    ctx.fillText(fmt(t0), pad, h - 6);
    ctx.fillText(fmt(t1), w - 38, h - 6);
  }

  // ---- panels ---------------------------------------------------------------------------------------
  function renderIndex() {
    const idx = state.index, city = idx && idx.city;
    $("tick-time").textContent = fmtTime(idx && idx.ts);
    const v = $("tpi-value");
    v.textContent = city && city.tpi != null ? city.tpi.toFixed(1) : "—";
    v.dataset.ts = idx && idx.ts != null ? String(idx.ts) : "";
    v.dataset.tpi = city && city.tpi != null ? String(city.tpi) : "";
    $("tpi-level").textContent = city ? levelName(city.level) : "—";
    $("tpi-level").className = city ? `badge l${city.level}` : "";
    $("city-tti").textContent = city && city.tti != null ? city.tti.toFixed(2) : "—";
    $("city-severe").textContent = city && city.severe_share != null ? `${(city.severe_share * 100).toFixed(1)}%` : "—";
    $("city-known").textContent = city && city.known_share != null ? `${(city.known_share * 100).toFixed(0)}%` : "—";
    drawGauge(city ? city.tpi : null);
    const d = (idx && idx.districts) || {};
    $("districts").innerHTML = Object.entries(d).map(([name, a]) =>
      `<span class="district"><b>${esc(name)}</b> ${a.tpi == null ? "—" : a.tpi.toFixed(1)} <i class="badge l${a.level}">${esc(levelName(a.level))}</i></span>`).join("");
  }

  function renderTop() {
    $("top-roads").innerHTML = state.top.length ? state.top.map((r, k) =>
      `<li data-k="${k}"><span class="name">${esc(r.road)}</span> <b>${r.tpi.toFixed(1)}</b>
        <span class="badge l${r.level}">${esc(levelName(r.level))}</span></li>`).join("")
      : `<li class="muted">${t("no_data")}</li>`;
  }
  $("top-roads").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-k]");
    if (!li) return;
    const road = state.top[Number(li.dataset.k)];
    const [x, y] = map.fromLonLat(road.worst_point[0], road.worst_point[1]);
    map.centreOn(x, y, Math.min(map.view.mpp, 3));
  });

  function unavailableHtml(v) {
    return `<li class="muted">${t("unavailable")}: ${esc(v.unavailable)}</li>`;
  }

  function renderIncidents() {
    const v = state.incidents;
    if (v == null) { $("incidents").innerHTML = `<li class="muted">…</li>`; return; }
    if (v.unavailable) { $("incidents").innerHTML = unavailableHtml(v); return; }
    $("incidents").innerHTML = v.length ? v.map((i) => `<li class="incident"><span class="badge l5">${esc(i.type)}</span>
      <span class="name">${esc(i.description || i.segment_id)}</span> <small>${esc(fmtTime(i.start))} · ${esc(i.source)}</small></li>`).join("")
      : `<li class="muted">${t("none_active")}</li>`;
  }

  function renderClosures() {
    const v = state.closures;
    if (v == null) { $("closures").innerHTML = `<li class="muted">…</li>`; return; }
    if (v.unavailable) { $("closures").innerHTML = unavailableHtml(v); return; }
    $("closures").innerHTML = v.length ? v.map((c) => `<li class="closure" data-id="${esc(c.closure_id)}">
      <span class="badge l6">${esc(t("t_" + c.type))}</span> <span class="name">${esc(c.closure_id)}</span>
      <small>${esc(c.segment_ids.slice(0, 3).join(", "))}${c.segment_ids.length > 3 ? " …" : ""} · ${esc(c.reason || "")} · ${esc(c.status)}</small>
      ${state.token ? `<button class="clear" data-id="${esc(c.closure_id)}">${t("clear")}</button>` : ""}</li>`).join("")
      : `<li class="muted">${t("none_active")}</li>`;
  }

  $("closures").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.clear");
    if (!b) return;
    const res = await api(`/api/closures/${encodeURIComponent(b.dataset.id)}`, { method: "DELETE" });
    if (!res.ok) { $("closure-error").textContent = `${res.status}: ${res.body.detail}`; return; }
    await loadClosures();
  });

  $("closure-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("closure-error").textContent = "";
    const ids = $("closure-segments").value.split(",").map((s) => s.trim()).filter(Boolean);
    const record = { segment_ids: ids, type: $("closure-type").value, reason: $("closure-reason").value };
    const now = (state.index && state.index.ts) || Date.now() / 1000;
    const dur = Number($("closure-duration").value);
    if (dur > 0) record.end = Math.max(now, Date.now() / 1000) + dur;
    const res = await api("/api/closures", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(record) });
    if (!res.ok) {
      const hint = res.status === 401 ? ` (${t("sign_in_first")})` : "";
      $("closure-error").textContent = `${res.status}: ${res.body.detail}${hint}`;
      return;
    }
    $("closure-segments").value = "";
    $("closure-reason").value = "";
    await loadClosures();
  });

  function renderCounters() {
    const c = state.counters;
    $("counters").innerHTML = c ? `<span>${t("readings")} ${t("accepted")}</span> <b>${c.accepted.toLocaleString()}</b>
      <span>${t("rejected")}</span> <b>${c.rejected.toLocaleString()}</b>
      <span>${t("ticks")}</span> <b>${c.ticks}</b> <span>${t("tick_ms")}</span> <b>${c.last_tick_ms} ms</b>
      <span>${t("renderer")}</span> <b>${esc(map.stats.renderer)}</b>
      <span>${t("segments_count")}</span> <b>${state.config ? state.config.n_segments.toLocaleString() : "—"}</b>` : "";
  }

  async function loadCameras() {
    const res = await api("/api/cameras");
    const wall = $("cameras");
    if (!res.ok) { wall.innerHTML = `<div class="muted">${t("unavailable")}: ${esc(res.body.detail)}</div>`; return; }
    const stamp = Date.now();
    wall.innerHTML = res.body.cameras.length ? res.body.cameras.map((c) => {
      const health = (c.health && c.health.status) || "unknown";
      const reasons = ((c.health && c.health.reasons) || []).join(", ");
      return `<figure class="camera ${esc(health)}"><img alt="${esc(c.camera_id)}" loading="lazy"
        src="/api/cameras/${encodeURIComponent(c.camera_id)}/snapshot.jpg?t=${stamp}" onerror="this.style.visibility='hidden'">
        <figcaption>${esc(c.camera_id)} <span class="health ${esc(health)}">${esc(statusLabel(health))}</span>
        <small>${esc(reasons)}</small></figcaption></figure>`;
    }).join("") : `<div class="muted">${t("none_active")}</div>`;
  }

  async function loadDetectors() {
    const res = await api("/api/detectors");
    if (!res.ok) {
      $("detector-summary").innerHTML = `<span class="muted">${t("unavailable")}: ${esc(res.body.detail)}</span>`;
      $("detector-problems").innerHTML = "";
      return;
    }
    const s = res.body.summary;
    $("detector-summary").innerHTML = Object.entries(s).map(([k, n]) =>
      `<span class="health ${esc(k)}">${esc(statusLabel(k))} ${n}</span>`).join(" ");
    const bad = res.body.detectors.filter((d) => d.status !== "ok").slice(0, 12);
    $("detector-problems").innerHTML = bad.length ? bad.map((d) =>
      `<li><b>${esc(d.detector_id)}</b> <span class="health ${esc(d.status)}">${esc(statusLabel(d.status))}</span> <small>${esc(d.reason || "")}</small></li>`).join("")
      : `<li class="muted">${t("all_ok")}</li>`;
  }

  async function loadList(path, key) {
    const res = await api(path);
    return res.ok ? res.body[key] : { unavailable: res.body.detail || String(res.status) };
  }
  async function loadClosures() { state.closures = await loadList("/api/closures", "closures"); renderClosures(); }
  async function loadIncidents() { state.incidents = await loadList("/api/incidents", "incidents"); renderIncidents(); }

  function renderAll() {
    renderIndex(); drawTrend(); renderTop(); renderIncidents(); renderClosures(); renderCounters();
  }

  // ---- live stream ---------------------------------------------------------------------------------
  async function loadCodes() {
    const res = await api("/api/network/levels");
    if (res.ok) { map.setAllCodes(res.body.codes); state.codesTs = res.body.ts; }
  }

  function onTick(ev) {
    const started = performance.now();
    const e = JSON.parse(ev.data);
    if (e.codes) map.setAllCodes(e.codes);
    else if (e.changed) map.setCodes(e.changed.rows, e.changed.codes);
    state.index = { ts: e.ts, city: e.city, districts: e.districts };
    if (e.city && (!state.trend.length || state.trend[state.trend.length - 1].ts < e.ts)) {
      state.trend.push({ ts: e.ts, tpi: e.city.tpi });
      if (state.trend.length > 2000) state.trend.shift();
    }
    state.top = e.top || [];
    state.counters = e.counters;
    if (e.incidents !== null) state.incidents = e.incidents; else loadIncidents();
    if (e.closures !== null) state.closures = e.closures;
    renderAll();
    probe.ticksApplied++;
    probe.lastTickTs = e.ts;
    // main-thread time to take one tick (parse, recolour, panels); the redraw follows in the next frame
    probe.tickApplyMs = (probe.tickApplyMs || []).concat([performance.now() - started]).slice(-100);
    if (probe.ticksApplied % 5 === 1) { loadCameras(); loadDetectors(); }
  }

  function connect() {
    const q = state.config.read_requires_token && state.token ? `?access_token=${encodeURIComponent(state.token)}` : "";
    const es = new EventSource(`/api/stream${q}`);
    es.addEventListener("hello", () => { state.online = true; renderConn(); loadCodes(); });
    es.addEventListener("tick", onTick);
    es.addEventListener("closures", (ev) => { state.closures = JSON.parse(ev.data).closures; renderClosures(); });
    es.addEventListener("resync", () => loadCodes());
    es.onerror = () => { state.online = false; renderConn(); };
  }

  async function start() {
    const t0 = performance.now();
    applyLanguage();
    $("map-note").textContent = t("loading_map");
    const cfg = await api("/api/config");
    if (!cfg.ok) { $("map-note").textContent = `${cfg.status}: ${cfg.body.detail}`; return; }
    state.config = cfg.body;
    map.tileUrl = cfg.body.tile_url || "";
    const geo = await api("/api/network/geometry.bin");
    map.load(cfg.body.geometry, geo.body);
    map.attachInteraction(onMapClick);
    const [levels, index, top, hist] = await Promise.all([
      api("/api/network/levels"), api("/api/index"), api("/api/top"), api("/api/index/history?max_points=1000"),
    ]);
    if (levels.ok) map.setAllCodes(levels.body.codes);
    if (index.ok) state.index = index.body;
    if (top.ok) state.top = top.body.roads;
    if (hist.ok) state.trend = hist.body.points.map((p) => ({ ts: p.ts, tpi: p.tpi }));
    map.onDraw = () => {
      if (probe.initialRenderMs === null) { probe.initialRenderMs = performance.now() - t0; probe.ready = true; }
    };
    $("map-note").textContent = `${cfg.body.n_segments.toLocaleString()} ${t("segments_count")}`;
    renderAll();
    loadIncidents(); loadClosures(); loadCameras(); loadDetectors();
    connect();
  }
  start().catch((err) => { probe.errors.push(String(err)); $("map-note").textContent = String(err); });
})();
