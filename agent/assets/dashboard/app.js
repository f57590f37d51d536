// roboku dashboard: polls /dash/snapshot and /dash/charts, follows logs over the chunked
// /v1/apps/{app}/logs stream. Everything is built with textContent (app output is never HTML).
"use strict";

const TOKEN_KEY = "roboku-token";
(function takeToken() {
  const m = location.hash.match(/token=([0-9a-f]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
})();
const token = () => sessionStorage.getItem(TOKEN_KEY);

function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  return fetch(path, Object.assign({}, opts, { headers }));
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

const $ = (id) => document.getElementById(id);

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "K", "M", "G", "T"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (n >= 10 || i === 0 ? n.toFixed(0) : n.toFixed(1)) + u[i];
}
function ago(ms) {
  if (!ms) return "-";
  let s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
}
function when(ms) { return new Date(ms).toLocaleTimeString(); }
function dur(secs) {
  if (secs === null || secs === undefined) return "-";
  return ago(Date.now() - secs * 1000);
}

// ---- state ----
let snap = null;
const charts = new Map(); // "app/dyno" -> uPlot
let hostChart = null;

// ---- host ----
function renderHost(s) {
  const h = s.host || {};
  const st = s.status;
  $("agent").textContent = "robokud " + st.version + " · pid " + st.pid + " · up " + ago(st.started_at);
  const facts = [
    ["CPU", h.cpu_percent === null || h.cpu_percent === undefined ? "-" : h.cpu_percent.toFixed(1) + "% of " + h.cpus],
    ["memory", h.mem_total ? bytes(h.mem_total - h.mem_available) + " / " + bytes(h.mem_total) : "-"],
    ["disk free (data)", h.disk_free !== undefined && h.disk_free !== null ? bytes(h.disk_free) + " / " + bytes(h.disk_total) : "-"],
    ["load", h.load ? h.load.map((x) => x.toFixed(2)).join(" ") : "-"],
    ["uptime", dur(h.uptime_secs)],
    ["cgroups", st.cgroup.mode + (st.cgroup.enforced ? ", limits enforced" : ", limits NOT enforced")],
    ["agent RSS", bytes(st.agent_rss)],
    ["dynos", st.dynos_running + " running / " + st.dynos_desired + " wanted"],
  ];
  for (const t of h.temps || []) facts.push([t.zone, t.celsius.toFixed(1) + " °C"]);
  const f = s.fleet;
  facts.push(["fleet (MQTT)", !f ? "off" : (f.connected ? "connected" : "DISCONNECTED") + " · " + f.broker]);
  if (f && f.last_command) {
    const c = f.last_command;
    facts.push(["last fleet command", (c.type || "?") + " " + (c.app || "") + " " + c.status + " (" + ago(c.ts) + " ago)"]);
  }
  if (h.pressure) {
    const p = h.pressure, f = (x) => (x === null || x === undefined ? "-" : x.toFixed(1) + "%");
    facts.push(["pressure cpu/mem/io", f(p.cpu_some) + " " + f(p.memory_some) + " " + f(p.io_some)]);
  }
  $("host-facts").replaceChildren(...facts.map(([k, v]) => el("div", {}, el("b", {}, k), v)));
}

// ---- apps ----
function appCard(name) {
  let card = document.getElementById("app-" + name);
  if (card) return card;
  card = el("section", { class: "card app", id: "app-" + name, "data-app": name },
    el("h2", {}, el("span", { class: "name" }, name), " ", el("span", { class: "muted rel" })),
    el("div", { class: "muted formation" }),
    el("div", { class: "table-wrap" }, el("table", { class: "grid dynos" },
      el("thead", {}, el("tr", {}, ["dyno", "state", "port", "uptime", "restarts", "last exit", "cpu", "memory / limit", "release"].map((h) => el("th", {}, h)))),
      el("tbody"))),
    el("h3", {}, "Charts (cpu %, memory; limit dashed; marks: exits, OOM, releases)"),
    el("div", { class: "charts" }),
    el("h3", {}, "Releases"),
    el("div", { class: "table-wrap" }, el("table", { class: "grid releases" },
      el("thead", {}, el("tr", {}, ["version", "when", "door", "description", "status", ""].map((h) => el("th", {}, h)))),
      el("tbody"))));
  $("apps").append(card);
  return card;
}

function renderApp(a) {
  const card = appCard(a.info.name);
  card.querySelector(".rel").textContent = a.info.release ? "v" + a.info.release : "(not deployed)";
  const limits = {};
  for (const f of a.formation) limits[f.ptype] = f.limits.memory_max;
  card.querySelector(".formation").textContent = a.formation.length
    ? "formation: " + a.formation.map((f) => f.ptype + "=" + f.count + (f.limits.memory_max ? " (" + bytes(f.limits.memory_max) + ")" : "")).join("  ")
    : "no formation";
  const rows = a.dynos.map((d) => {
    const lim = limits[d.ptype];
    const frac = lim && d.memory_bytes ? Math.min(1, d.memory_bytes / lim) : null;
    const exit = d.last_exit
      ? el("span", { class: d.last_exit.oom ? "oom" : "" }, (d.last_exit.oom ? "OOM " : "") + d.last_exit.reason + " (" + ago(d.last_exit.at) + " ago)")
      : "-";
    return el("tr", { "data-dyno": d.name },
      el("td", {}, d.name),
      el("td", { class: "state-" + d.state }, d.state),
      el("td", {}, d.port),
      el("td", {}, d.state === "up" ? ago(d.since) : "-"),
      el("td", {}, d.restarts),
      el("td", {}, exit),
      el("td", { class: "cpu" }, d.cpu_percent === null || d.cpu_percent === undefined ? "-" : d.cpu_percent.toFixed(1) + "%"),
      el("td", {}, bytes(d.memory_bytes) + (lim ? " / " + bytes(lim) : ""),
        frac === null ? null : el("span", { class: "bar" }, el("i", { class: frac > 0.9 ? "hot" : "", style: "width:" + (frac * 100).toFixed(0) + "%" }))),
      el("td", {}, "v" + d.release));
  });
  card.querySelector("table.dynos tbody").replaceChildren(...rows);
  const rel = a.releases.map((r) => el("tr", { "data-version": r.version },
    el("td", {}, "v" + r.version + (r.current ? " (current)" : "")),
    el("td", {}, when(r.created_at)),
    el("td", {}, r.door),
    el("td", {}, r.description),
    el("td", {}, r.status),
    el("td", {}, r.current || r.status !== "succeeded" ? null : rollbackButton(a.info.name, r.version))));
  card.querySelector("table.releases tbody").replaceChildren(...rel);
}

// Two steps instead of window.confirm: works on phones and in automation alike.
const armed = new Map();
function rollbackButton(app, version) {
  const key = app + "/" + version;
  const b = el("button", { class: "rollback", "data-version": version }, "Rollback to v" + version);
  if (!token()) { b.disabled = true; b.title = "needs the token"; return b; }
  if (armed.has(key)) { b.className = "rollback confirm"; b.textContent = "Confirm rollback to v" + version + "?"; }
  b.addEventListener("click", async () => {
    if (!armed.has(key)) {
      armed.set(key, setTimeout(() => { armed.delete(key); refresh(); }, 6000));
      b.className = "rollback confirm";
      b.textContent = "Confirm rollback to v" + version + "?";
      return;
    }
    clearTimeout(armed.get(key));
    armed.delete(key);
    b.disabled = true;
    b.textContent = "rolling back…";
    const r = await api("/v1/apps/" + encodeURIComponent(app) + "/rollback", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ version }),
    });
    if (!r.ok) {
      const e = await r.json().catch(() => ({}));
      alertLine("rollback failed: " + ((e.error && e.error.message) || r.status));
    }
    refresh();
  });
  return b;
}

function alertLine(msg) { $("log-note").textContent = msg; }

function renderEvents(events) {
  // Newest first: what just happened is what the operator looks for.
  $("events").querySelector("tbody").replaceChildren(...events.slice(-30).reverse().map((e) =>
    el("tr", {}, el("td", {}, when(e.ts)), el("td", {}, e.app || "-"), el("td", {}, e.door), el("td", {}, e.action), el("td", {}, e.result))));
}

// ---- charts ----
function marksPlugin(getMarks) {
  return { hooks: { draw: [(u) => {
    const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
    for (const m of getMarks()) {
      const x = u.valToPos(m.t / 1000, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.save();
      ctx.strokeStyle = m.kind === "release" ? "#3358d4" : "#c0392b";
      ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = (10 * devicePixelRatio) + "px sans-serif";
      ctx.fillText(m.kind === "release" ? m.text : m.kind, x + 3, top + 12 * devicePixelRatio);
      ctx.restore();
    }
  }] } };
}

function chartWidth(box) { return Math.max(200, Math.floor(box.clientWidth || 320)); }

function dynoChart(app, c, box) {
  const key = app + "/" + c.dyno;
  const lim = c.memory_limit;
  const data = [c.t, c.cpu, c.mem.map((m) => (m === null ? null : m / 1048576)), c.t.map(() => (lim ? lim / 1048576 : null))];
  let u = charts.get(key);
  if (u && !box.contains(u.root)) { u.destroy(); charts.delete(key); u = null; }
  if (!u) {
    const holder = el("div", { class: "chart", "data-dyno": c.dyno }, el("h4", {}, c.dyno));
    box.append(holder);
    let marks = c.marks;
    u = new uPlot({
      width: chartWidth(holder), height: 150,
      scales: { x: { time: true }, cpu: { range: (u, a, b) => [0, Math.max(5, b || 0)] }, mem: { range: (u, a, b) => [0, Math.max(1, b || 0)] } },
      axes: [{}, { scale: "cpu", values: (u, v) => v.map((x) => x + "%") }, { scale: "mem", side: 1, grid: { show: false }, values: (u, v) => v.map((x) => x + "M") }],
      series: [{}, { label: "cpu %", scale: "cpu", stroke: "#3358d4", width: 1.5 },
        { label: "mem MB", scale: "mem", stroke: "#1b8a4a", width: 1.5 },
        { label: "limit", scale: "mem", stroke: "#c0392b", dash: [6, 4], width: 1 }],
      plugins: [marksPlugin(() => u._marks || marks)],
    }, data, holder);
    u.root.dataset.points = String(c.t.length);
    charts.set(key, u);
  } else {
    u.setData(data);
  }
  u._marks = c.marks;
  u.root.dataset.points = String(c.t.length);
  return key;
}

async function refreshCharts() {
  if (!snap) return;
  const seen = new Set();
  for (const a of snap.apps) {
    const r = await api("/dash/charts?app=" + encodeURIComponent(a.info.name));
    if (!r.ok) continue;
    const body = await r.json();
    const box = appCard(a.info.name).querySelector(".charts");
    const live = new Set(a.dynos.map((d) => d.name));
    for (const c of body.dynos) if (live.has(c.dyno)) seen.add(dynoChart(a.info.name, c, box));
    for (const h of box.querySelectorAll(".chart")) if (!live.has(h.dataset.dyno)) h.remove();
    hostData(body.host);
  }
  for (const [k, u] of charts) if (!seen.has(k)) { u.destroy(); charts.delete(k); }
}

function hostData(h) {
  const data = [h.t, h.cpu, h.mem_used.map((m) => (m === null ? null : m / 1048576))];
  if (!hostChart) {
    const box = $("host-chart");
    hostChart = new uPlot({
      width: chartWidth(box), height: 140,
      scales: { x: { time: true }, cpu: { range: [0, 100] } },
      axes: [{}, { scale: "cpu", values: (u, v) => v.map((x) => x + "%") }, { scale: "mem", side: 1, grid: { show: false }, values: (u, v) => v.map((x) => x + "M") }],
      series: [{}, { label: "host cpu %", scale: "cpu", stroke: "#3358d4" }, { label: "used MB", scale: "mem", stroke: "#1b8a4a" }],
    }, data, box);
  } else hostChart.setData(data);
}

window.addEventListener("resize", () => {
  for (const u of charts.values()) u.setSize({ width: chartWidth(u.root.parentNode), height: 150 });
  if (hostChart) hostChart.setSize({ width: chartWidth($("host-chart")), height: 140 });
});

// ---- logs ----
let logAbort = null;
const logBuf = [];
const LOG_KEEP = 600;
function logOptions() {
  if (!snap) return;
  const sel = $("log-app"), cur = sel.value;
  const names = snap.apps.map((a) => a.info.name);
  if (sel.options.length !== names.length || [...sel.options].some((o, i) => o.value !== names[i])) {
    sel.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(cur)) sel.value = cur;
    if (!logAbort) startLogs();
  }
  const app = snap.apps.find((a) => a.info.name === sel.value);
  const dsel = $("log-dyno"), dcur = dsel.value;
  const dn = app ? app.dynos.map((d) => d.name) : [];
  if (dsel.options.length - 1 !== dn.length || dn.some((n, i) => dsel.options[i + 1].value !== n)) {
    dsel.replaceChildren(el("option", { value: "" }, "all"), ...dn.map((n) => el("option", { value: n }, n)));
    if (dn.includes(dcur)) dsel.value = dcur;
  }
}

async function startLogs() {
  if (logAbort) logAbort.abort();
  const app = $("log-app").value;
  $("logs").replaceChildren();
  logBuf.length = 0;
  if (!app) return;
  if (!token()) { $("log-note").textContent = "logs need the token"; return; }
  const ctl = new AbortController();
  logAbort = ctl;
  const q = new URLSearchParams({ n: "200", tail: $("log-follow").checked ? "1" : "0" });
  if ($("log-dyno").value) q.set("dyno", $("log-dyno").value);
  if ($("log-source").value) q.set("source", $("log-source").value);
  try {
    const r = await api("/v1/apps/" + encodeURIComponent(app) + "/logs?" + q, { signal: ctl.signal });
    if (!r.ok) { $("log-note").textContent = "logs: HTTP " + r.status; return; }
    $("log-note").textContent = "";
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += dec.decode(value, { stream: true });
      const lines = rest.split("\n");
      rest = lines.pop();
      for (const l of lines) if (l.trim()) { try { logBuf.push(JSON.parse(l)); } catch (e) { /* a partial line */ } }
      if (logBuf.length > LOG_KEEP * 4) logBuf.splice(0, logBuf.length - LOG_KEEP);
    }
  } catch (e) {
    if (e.name !== "AbortError") $("log-note").textContent = "log stream ended: " + e.message;
  }
}

// Lines are drawn at most 4 times a second, only the newest LOG_KEEP: a chatty dyno costs
// the page a bounded amount of DOM work whatever its rate.
setInterval(() => {
  if (!logBuf.length) return;
  const pre = $("logs");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
  const batch = logBuf.splice(0, logBuf.length).slice(-LOG_KEEP);
  const frag = document.createDocumentFragment();
  for (const l of batch) {
    frag.append(el("div", { class: l.source === "roboku" ? "sys" : "", "data-ts": l.ts },
      new Date(l.ts).toISOString().slice(11, 23) + " " + l.dyno + " " + l.line));
  }
  pre.append(frag);
  while (pre.childNodes.length > LOG_KEEP) pre.firstChild.remove();
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}, 250);

for (const id of ["log-app", "log-dyno", "log-source", "log-follow"]) $(id).addEventListener("change", startLogs);

// ---- polling ----
let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const r = await api("/dash/snapshot");
    if (!r.ok) throw new Error("HTTP " + r.status);
    snap = await r.json();
    $("conn").textContent = "live";
    $("conn").className = "pill ok";
    renderHost(snap);
    const names = new Set(snap.apps.map((a) => a.info.name));
    for (const c of document.querySelectorAll("section.app")) if (!names.has(c.dataset.app)) c.remove();
    for (const a of snap.apps) renderApp(a);
    renderEvents(snap.events);
    logOptions();
  } catch (e) {
    $("conn").textContent = "offline (" + e.message + ")";
    $("conn").className = "pill bad";
  } finally {
    busy = false;
  }
}

$("locked").hidden = !!token();
refresh().then(refreshCharts);
setInterval(refresh, 2000);
setInterval(refreshCharts, 5000);
