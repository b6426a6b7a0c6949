// chargepay operator dashboard: a snapshot from /dashboard/api/state, live events from
// /dashboard/events (SSE), and a hand-drawn SVG chart of the selected session's power and cost.
// Everything the station sends is written with textContent, never parsed as HTML.
"use strict";

const POLL_MS = 5000;
const REFRESH_DEBOUNCE_MS = 300;
const FINAL = new Set(["settled", "cancelled", "failed"]);
const SVG = "http://www.w3.org/2000/svg";

let csrf = "";
let sessions = new Map(); // session_id -> the session as the snapshot (and events since) say
const series = new Map(); // session_id -> {cap, currency, points: [{t, power, cost, kwh}]}
const loaded = new Set(); // sessions whose stored points were fetched
let selected = null;
let pinned = false;
let refreshTimer = null;
const rendered = {};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function badge(text, kind) {
  return el("span", { class: `status ${kind || text}` }, text);
}

function money(amount, currency) {
  return amount == null ? "—" : `${amount} ${currency || ""}`.trim();
}

function short(id) {
  return id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

async function refresh() {
  const response = await fetch("/dashboard/api/state", { credentials: "same-origin" });
  if (response.status === 401) {
    window.location.assign("/dashboard/login");
    return;
  }
  if (!response.ok) return;
  const state = await response.json();
  csrf = state.csrf;
  sessions = new Map(state.sessions.map((s) => [s.session_id, s]));
  renderIfChanged("money", state.money, renderMoney);
  renderIfChanged("charge-points", state.charge_points, renderChargePoints);
  renderIfChanged("sessions", state.sessions, renderSessions);
  renderIfChanged("agents", state.agents, renderAgents);
  if (selected === null) {
    const live = state.sessions.find((s) => !FINAL.has(s.status));
    if (live) select(live.session_id, false);
  }
  drawChart();
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), REFRESH_DEBOUNCE_MS);
}

function renderIfChanged(name, data, render) {
  const key = JSON.stringify(data);
  if (rendered[name] === key) return;
  rendered[name] = key;
  render(data);
}

function renderMoney(byCurrency) {
  const box = document.getElementById("money");
  box.replaceChildren();
  const currencies = Object.keys(byCurrency);
  if (currencies.length === 0) {
    box.append(el("p", { class: "empty" }, "No payments yet."));
    return;
  }
  for (const currency of currencies) {
    for (const name of ["held", "captured", "released", "refunded"]) {
      box.append(
        el("div", { class: "card", "data-money": `${currency}:${name}` },
          el("div", { class: "label" }, `${name} (${currency.toUpperCase()})`),
          el("div", { class: "value" }, byCurrency[currency][name])));
    }
  }
}

function renderChargePoints(points) {
  const body = document.querySelector("#charge-points tbody");
  body.replaceChildren();
  if (points.length === 0) body.append(emptyRow(4, "No charge points registered."));
  for (const cp of points) {
    body.append(el("tr", { "data-charge-point-id": cp.charge_point_id },
      el("td", { class: "id" }, cp.charge_point_id),
      el("td", {}, badge(cp.connected ? "yes" : "no")),
      el("td", {}, cp.ocpp_version || "—"),
      el("td", {}, cp.status.length ? cp.status.join(", ") : "—")));
  }
}

function sessionRow(s) {
  const row = el("tr", { "data-session-id": s.session_id, "data-status": s.status },
    el("td", { class: "id", title: s.session_id }, short(s.session_id)),
    el("td", { class: "id" }, s.charge_point_id),
    el("td", { class: "id", title: s.agent_id }, short(s.agent_id)),
    el("td", { class: "session-status" }, badge(s.status)),
    el("td", { class: "num kwh" }, s.energy_kwh),
    el("td", { class: "num cost" }, money(s.cost, s.currency)),
    el("td", { class: "num cap" }, money(s.cap, s.currency)),
    el("td", { class: "num captured" }, money(s.captured, s.currency)));
  if (s.session_id === selected) row.classList.add("selected");
  row.addEventListener("click", () => select(s.session_id, true));
  return row;
}

function renderSessions(list) {
  const body = document.querySelector("#sessions tbody");
  body.replaceChildren();
  if (list.length === 0) body.append(emptyRow(8, "No sessions yet."));
  for (const s of list) body.append(sessionRow(s));
}

function renderAgents(agents) {
  const body = document.querySelector("#agents tbody");
  body.replaceChildren();
  if (agents.length === 0) body.append(emptyRow(7, "No agents registered."));
  for (const a of agents) {
    const actions = el("td", { class: "actions" });
    if (a.status === "active") {
      const reason = el("input", { type: "text", placeholder: "reason", maxLength: 500 });
      const button = el("button", { class: "danger", type: "button" }, "Suspend");
      button.addEventListener("click", () => change(a.agent_id, "suspend", button, reason.value));
      actions.append(reason, " ", button);
    } else {
      const button = el("button", { type: "button" }, "Resume");
      button.addEventListener("click", () => change(a.agent_id, "resume", button));
      actions.append(button);
    }
    const status = badge(a.status);
    if (a.suspended_reason) status.title = a.suspended_reason;
    body.append(el("tr", { "data-agent-id": a.agent_id, "data-status": a.status },
      el("td", {}, a.name),
      el("td", { class: "id", title: a.agent_id }, short(a.agent_id)),
      el("td", { class: "agent-status" }, status),
      el("td", { class: "num" }, money(a.limit_per_session, a.currency)),
      el("td", { class: "num" }, `${money(a.limit_per_window, a.currency)} / ${a.window_hours} h`),
      el("td", { class: "num" }, money(a.remaining, a.currency)),
      actions));
  }
}

function emptyRow(span, text) {
  return el("tr", {}, el("td", { colSpan: span, class: "empty" }, text));
}

async function change(agentId, action, button, reason) {
  button.disabled = true;
  const response = await fetch(`/dashboard/api/agents/${encodeURIComponent(agentId)}/${action}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Chargepay-CSRF": csrf },
    body: action === "suspend" ? JSON.stringify({ reason: reason || "" }) : undefined,
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    button.disabled = false;
    button.title = problem.detail || `HTTP ${response.status}`;
    button.textContent = `${action} failed`;
    return;
  }
  await refresh();
}

function select(sessionId, byUser) {
  selected = sessionId;
  pinned = pinned || byUser;
  for (const row of document.querySelectorAll("#sessions tr.selected")) row.classList.remove("selected");
  const row = document.querySelector(`#sessions tr[data-session-id="${CSS.escape(sessionId)}"]`);
  if (row) row.classList.add("selected");
  drawChart();
  if (!loaded.has(sessionId)) {
    loaded.add(sessionId);
    loadPoints(sessionId).catch(() => loaded.delete(sessionId));
  }
}

// The points the station kept of the session (it may have started before this page).
async function loadPoints(sessionId) {
  const response = await fetch(`/dashboard/api/sessions/${encodeURIComponent(sessionId)}/points`,
    { credentials: "same-origin" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const body = await response.json();
  const stored = body.points.map(toPoint);
  const entry = series.get(sessionId) || { cap: null, currency: null, points: [] };
  const last = stored.length ? stored[stored.length - 1].t : -Infinity;
  entry.points = stored.concat(entry.points.filter((p) => p.t > last));
  if (body.points.length) {
    const newest = body.points[body.points.length - 1];
    entry.cap = entry.cap ?? Number(newest.cap);
    entry.currency = entry.currency ?? newest.currency;
  }
  series.set(sessionId, entry);
  if (selected === sessionId) drawChart();
}

function toPoint(data) {
  return {
    t: Date.parse(data.at),
    power: data.power_kw == null ? null : Number(data.power_kw),
    cost: Number(data.cost),
    kwh: data.energy_kwh,
  };
}

// -- live events -------------------------------------------------------------------------

function onMeter(data) {
  const entry = series.get(data.session_id) || { cap: null, currency: data.currency, points: [] };
  entry.cap = Number(data.cap);
  entry.currency = data.currency;
  entry.points.push(toPoint(data));
  series.set(data.session_id, entry);
  const known = sessions.get(data.session_id);
  if (known) {
    known.energy_kwh = data.energy_kwh;
    known.cost = data.cost;
    const row = document.querySelector(`#sessions tr[data-session-id="${CSS.escape(data.session_id)}"]`);
    if (row) {
      row.querySelector(".kwh").textContent = data.energy_kwh;
      row.querySelector(".cost").textContent = money(data.cost, data.currency);
    }
  } else {
    scheduleRefresh();
  }
  const current = selected === null ? null : sessions.get(selected);
  if (!pinned && (selected === null || (current && FINAL.has(current.status)))) {
    select(data.session_id, false);
  } else if (data.session_id === selected) {
    drawChart();
  }
}

function onStatus(data) {
  const known = sessions.get(data.session_id);
  if (known && data.status) {
    known.status = data.status;
    const row = document.querySelector(`#sessions tr[data-session-id="${CSS.escape(data.session_id)}"]`);
    if (row) {
      row.dataset.status = data.status;
      row.querySelector(".session-status").replaceChildren(badge(data.status));
    }
  }
  scheduleRefresh();
}

function follow() {
  const live = document.getElementById("live");
  const source = new EventSource("/dashboard/events");
  source.addEventListener("open", () => {
    live.textContent = "live";
    live.className = "live on";
    scheduleRefresh(); // whatever happened while disconnected
  });
  source.addEventListener("error", () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  });
  source.addEventListener("stopping", () => {
    live.textContent = "station stopping…"; // the browser reconnects once it is back
    live.className = "live off";
  });
  source.addEventListener("meter", (event) => onMeter(JSON.parse(event.data)));
  source.addEventListener("status", (event) => onStatus(JSON.parse(event.data)));
  source.addEventListener("settled", (event) => onStatus(JSON.parse(event.data)));
}

// -- the chart ----------------------------------------------------------------------------

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 19);
}

function drawChart() {
  const chart = document.getElementById("chart");
  const title = document.getElementById("chart-title");
  chart.replaceChildren();
  const entry = selected === null ? null : series.get(selected);
  const points = entry ? entry.points : [];
  chart.dataset.session = selected || "";
  chart.dataset.points = String(points.length);
  const s = selected === null ? null : sessions.get(selected);
  title.textContent = selected === null
    ? "— waiting for a session"
    : `— ${short(selected)} on ${s ? s.charge_point_id : "?"}${s ? ` (${s.status})` : ""}`;

  const W = 760, H = 260, left = 52, right = 64, top = 14, bottom = 30;
  const plotW = W - left - right, plotH = H - top - bottom;
  const t0 = points.length ? points[0].t : 0;
  const t1 = points.length ? Math.max(points[points.length - 1].t, t0 + 1000) : 1000;
  const maxPower = niceMax(Math.max(0, ...points.map((p) => p.power || 0)) * 1.1);
  const cap = entry && entry.cap > 0 ? entry.cap : 0;
  const maxCost = niceMax(Math.max(cap, ...points.map((p) => p.cost)));
  const x = (t) => left + ((t - t0) / (t1 - t0)) * plotW;
  const yPower = (v) => top + plotH - (v / maxPower) * plotH;
  const yCost = (v) => top + plotH - (v / maxCost) * plotH;

  for (let i = 0; i <= 4; i++) {
    const y = top + (plotH * i) / 4;
    chart.append(svg("line", { class: "grid", x1: left, x2: left + plotW, y1: y, y2: y }));
    chart.append(svg("text", { class: "axis", x: left - 6, y: y + 4, "text-anchor": "end" },
      `${+(maxPower * (1 - i / 4)).toFixed(1)}`));
    chart.append(svg("text", { class: "axis", x: left + plotW + 6, y: y + 4 },
      `${(maxCost * (1 - i / 4)).toFixed(2)}`));
  }
  chart.append(svg("text", { class: "axis", x: left - 6, y: H - 4, "text-anchor": "end" }, "kW"));
  chart.append(svg("text", { class: "axis", x: left + plotW + 6, y: H - 4 },
    (entry && entry.currency ? entry.currency : "").toUpperCase()));
  if (!points.length) {
    chart.append(svg("text", { class: "axis", x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" },
      selected === null ? "No session is charging." : "Waiting for meter values…"));
    return;
  }
  chart.append(svg("text", { class: "axis", x: left, y: H - 10 }, clock(t0)));
  chart.append(svg("text", { class: "axis", x: left + plotW, y: H - 10, "text-anchor": "end" }, clock(t1)));
  if (cap) {
    chart.append(svg("line", { class: "cost", x1: left, x2: left + plotW, y1: yCost(cap), y2: yCost(cap), "stroke-dasharray": "4 4", opacity: 0.6 }));
    chart.append(svg("text", { class: "axis", x: left + 4, y: yCost(cap) - 4 }, `cap ${cap.toFixed(2)}`));
  }
  const withPower = points.filter((p) => p.power !== null);
  if (withPower.length) {
    chart.append(svg("polyline", { class: "power", points: withPower.map((p) => `${x(p.t)},${yPower(p.power)}`).join(" ") }));
  }
  chart.append(svg("polyline", { class: "cost", points: points.map((p) => `${x(p.t)},${yCost(p.cost)}`).join(" ") }));
  for (const p of points) {
    if (p.power !== null) chart.append(svg("circle", { class: "power", cx: x(p.t), cy: yPower(p.power), r: 2.5 }));
    chart.append(svg("circle", { class: "cost", cx: x(p.t), cy: yCost(p.cost), r: 2.5 }));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  drawChart();
  refresh().catch(() => {});
  follow();
  setInterval(() => refresh().catch(() => {}), POLL_MS);
});
