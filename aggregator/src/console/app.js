// Argus security console: history through POST /sql, live events through
// GET /console/api/live (server-sent events read with fetch, so the token
// travels in the Authorization header), actions through POST.
"use strict";

const $ = (selector) => document.querySelector(selector);
const session = {
  token: sessionStorage.getItem("argus.token") || "",
  actor: sessionStorage.getItem("argus.actor") || "",
};
// alert_id -> {alert_id, rule, severity, camera_id, person_ids, ts, message, closed, state}
const alerts = new Map();
const cameras = new Map();

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (session.token) h.Authorization = "Bearer " + session.token;
  return h;
}

async function sql(query) {
  let response;
  // The service runs a few queries at once and answers 429 beyond them.
  for (let attempt = 0; ; attempt++) {
    response = await fetch("/sql?format=json", {
      method: "POST",
      headers: headers({ "Content-Type": "text/plain" }),
      body: query,
    });
    if (response.status !== 429 || attempt >= 5) break;
    const wait = Number(response.headers.get("Retry-After")) || 1;
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
  }
  if (!response.ok) {
    const text = await response.text();
    throw new Error(response.status + ": " + text);
  }
  return response.json();
}

function quote(text) {
  return "'" + String(text).replace(/'/g, "''") + "'";
}

function text(tag, value, className) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (className) node.className = className;
  return node;
}

function stateOf(alert) {
  if (alert.action === "resolved") return "resolved";
  if (alert.action === "acknowledged") return alert.closed ? "closed, acknowledged" : "acknowledged";
  return alert.closed ? "closed" : "open";
}

function renderAlerts() {
  const body = $("#alerts tbody");
  body.replaceChildren();
  const rows = [...alerts.values()].sort((a, b) => (a.ts < b.ts ? 1 : -1));
  $("#no-alerts").hidden = rows.length > 0;
  for (const alert of rows) {
    const tr = document.createElement("tr");
    tr.dataset.alertId = alert.alert_id;
    tr.className = "sev-" + alert.severity + (alert.closed ? " closed" : "");
    tr.append(
      text("td", alert.ts.slice(5, 10) + " " + alert.ts.slice(11, 19)),
      text("td", alert.rule),
      text("td", alert.camera_id),
      text("td", alert.person_ids || "–"),
      text("td", stateOf(alert), "state"),
    );
    const actions = document.createElement("td");
    if (!alert.action) {
      const ack = text("button", "Acknowledge", "ack");
      ack.onclick = (e) => { e.stopPropagation(); act(alert.alert_id, "acknowledge"); };
      actions.append(ack);
    }
    if (alert.action !== "resolved") {
      const resolve = text("button", "Resolve", "resolve secondary");
      resolve.onclick = (e) => { e.stopPropagation(); act(alert.alert_id, "resolve"); };
      actions.append(resolve);
    }
    tr.append(actions);
    tr.onclick = () => showDetail(alert.alert_id);
    body.append(tr);
  }
}

async function loadAlerts() {
  const rows = await sql(
    "WITH last_action AS (SELECT alert_id, action FROM (SELECT alert_id, action, " +
      "ROW_NUMBER() OVER (PARTITION BY alert_id ORDER BY ts DESC) AS n FROM alert_actions) AS a WHERE n = 1), " +
      "closes AS (SELECT DISTINCT alert_id FROM alerts WHERE closed) " +
      "SELECT r.alert_id, r.rule, r.severity, r.camera_id, r.person_ids, r.ts, r.message, r.evidence, " +
      "c.alert_id IS NOT NULL AS closed, l.action FROM alerts r " +
      "LEFT JOIN closes c ON c.alert_id = r.alert_id LEFT JOIN last_action l ON l.alert_id = r.alert_id " +
      "WHERE NOT r.closed ORDER BY r.ts DESC LIMIT 200",
  );
  for (const row of rows) {
    const known = alerts.get(row.alert_id) || {};
    alerts.set(row.alert_id, Object.assign(known, row, {
      closed: row.closed || known.closed || false,
      action: row.action || known.action || null,
    }));
  }
  renderAlerts();
}

function renderCameras() {
  const board = $("#cameras");
  board.replaceChildren();
  for (const camera of [...cameras.values()].sort((a, b) => (a.camera_id < b.camera_id ? -1 : 1))) {
    const li = text("li", camera.camera_id + ": " + camera.state, camera.state);
    li.title = "since " + camera.since;
    board.append(li);
  }
}

async function loadCameras() {
  const rows = await sql(
    "SELECT camera_id, state, since FROM (SELECT camera_id, state, since, " +
      "ROW_NUMBER() OVER (PARTITION BY camera_id ORDER BY ts DESC) AS n FROM camera_health_reports) AS r WHERE n = 1",
  );
  for (const row of rows) cameras.set(row.camera_id, row);
  renderCameras();
}

const COLOURS = ["#3fb0ff", "#ffb347", "#7fd17f", "#ff5c5c", "#c792ea", "#f78c6c"];

async function loadOccupancy() {
  const rows = await sql(
    "SELECT camera_id, date_bin(INTERVAL '5 minutes', ts) AS t, AVG(persons) AS people FROM frames " +
      "WHERE ts > now() - INTERVAL '6 hours' GROUP BY camera_id, date_bin(INTERVAL '5 minutes', ts) ORDER BY t",
  );
  const svg = $("#occupancy");
  svg.replaceChildren();
  const legend = $("#legend");
  legend.replaceChildren();
  const end = Date.now();
  const start = end - 6 * 3600 * 1000;
  const max = Math.max(1, ...rows.map((r) => r.people));
  const series = new Map();
  for (const row of rows) {
    if (!series.has(row.camera_id)) series.set(row.camera_id, []);
    series.get(row.camera_id).push(row);
  }
  const ns = "http://www.w3.org/2000/svg";
  let i = 0;
  for (const [camera, points] of series) {
    const colour = COLOURS[i++ % COLOURS.length];
    const path = document.createElementNS(ns, "polyline");
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", colour);
    path.setAttribute("stroke-width", "2");
    path.setAttribute("points", points.map((p) => {
      const x = 10 + 580 * (Date.parse(p.t) - start) / (end - start);
      const y = 210 - 190 * p.people / max;
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" "));
    svg.append(path);
    for (const p of points) {
      const dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", (10 + 580 * (Date.parse(p.t) - start) / (end - start)).toFixed(1));
      dot.setAttribute("cy", (210 - 190 * p.people / max).toFixed(1));
      dot.setAttribute("r", "3");
      dot.setAttribute("fill", colour);
      svg.append(dot);
    }
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.style.background = colour;
    item.append(swatch, camera);
    legend.append(item);
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "14");
  label.setAttribute("y", "24");
  label.setAttribute("fill", "#8b98a5");
  label.textContent = "max " + max.toFixed(1) + " people";
  svg.append(label);
}

async function showDetail(alertId) {
  const alert = alerts.get(alertId);
  if (!alert) return;
  $("#detail").hidden = false;
  $("#detail-id").textContent = alertId;
  $("#detail-message").textContent = alert.message;
  const evidence = $("#detail-evidence");
  evidence.replaceChildren();
  // From SQL the evidence is a JSON string; from the live feed an object.
  let facts = alert.evidence;
  if (typeof facts === "string") {
    try { facts = JSON.parse(facts); } catch { facts = null; }
  }
  for (const [key, value] of Object.entries(facts || {})) {
    if (value !== null && value !== 0) evidence.append(text("li", key.replace(/_/g, " ") + ": " + value));
  }
  const path = $("#detail-path");
  path.replaceChildren();
  const ids = String(alert.person_ids || "").split(",").filter((id) => /^\d+$/.test(id));
  if (ids.length) {
    const rows = await sql(
      "SELECT person_id, camera_id, enter, exit FROM people_present WHERE person_id IN (" +
        ids.join(",") + ") ORDER BY enter LIMIT 100",
    );
    for (const row of rows) {
      path.append(text("li", "person " + row.person_id + " at " + row.camera_id + ": " +
        row.enter.slice(11, 19) + "–" + row.exit.slice(11, 19)));
    }
    if (!rows.length) path.append(text("li", "no finished visits stored yet", "muted"));
  } else {
    path.append(text("li", "camera alert: no person", "muted"));
  }
  const actions = $("#detail-actions");
  actions.replaceChildren();
  const rows = await sql(
    "SELECT action, actor, note, ts FROM alert_actions WHERE alert_id = " + quote(alertId) + " ORDER BY ts",
  );
  for (const row of rows) actions.append(text("li", row.ts.slice(0, 19) + " " + row.action + " by " + row.actor));
  if (!rows.length) actions.append(text("li", "none yet", "muted"));
}

async function act(alertId, action) {
  const response = await fetch("/console/api/alerts/" + encodeURIComponent(alertId) + "/" + action, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify({ actor: session.actor }),
  });
  if (!response.ok) {
    $("#status").textContent = action + " failed: " + (await response.text());
    return;
  }
  // The live feed confirms it; until then show it as sent.
  const alert = alerts.get(alertId);
  if (alert) {
    alert.action = action === "acknowledge" ? "acknowledged" : "resolved";
    renderAlerts();
  }
}

function onEvent(event) {
  if (event.type === "alert") {
    const known = alerts.get(event.alert_id);
    if (event.closed) {
      if (known) known.closed = true;
    } else {
      alerts.set(event.alert_id, Object.assign(known || { action: null, closed: false }, event, { closed: false }));
    }
    renderAlerts();
  } else if (event.type === "action") {
    const known = alerts.get(event.alert_id);
    if (known && !(known.action === "resolved" && event.action === "acknowledged")) {
      known.action = event.action;
      renderAlerts();
    }
  } else if (event.type === "health") {
    cameras.set(event.camera_id, event);
    renderCameras();
  }
}

async function live() {
  for (;;) {
    try {
      const response = await fetch("/console/api/live", { headers: headers() });
      if (!response.ok) throw new Error("live feed: " + response.status);
      $("#live-state").textContent = "live";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (name === "resync") refresh();
          else if (data.length) onEvent(JSON.parse(data.join("\n")));
        }
      }
    } catch (error) {
      $("#live-state").textContent = "reconnecting (" + error.message + ")";
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function refresh() {
  try {
    // One query at a time: a page takes one of the service's query slots.
    await loadAlerts();
    await loadCameras();
    await loadOccupancy();
    $("#status").textContent = "signed in as " + session.actor + ", updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("#status").textContent = "could not load: " + error.message;
  }
}

async function start() {
  $("#login").hidden = true;
  $("#console").hidden = false;
  live();
  await refresh();
  // Stored alerts (closes, actions by others while offline) and the chart.
  setInterval(refresh, 30000);
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  session.actor = $("#actor").value.trim();
  session.token = $("#token").value;
  try {
    await sql("SELECT 1");
  } catch (error) {
    const message = $("#login-error");
    message.hidden = false;
    message.textContent = error.message.startsWith("401") ? "Wrong token." : error.message;
    return;
  }
  sessionStorage.setItem("argus.token", session.token);
  sessionStorage.setItem("argus.actor", session.actor);
  start();
});

if (session.actor) {
  sql("SELECT 1").then(start, () => {});
}
