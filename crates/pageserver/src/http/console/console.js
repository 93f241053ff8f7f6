// Sediment web console: a read-only view over the pageserver's JSON API.
// Plain JavaScript, no libraries (the assets are embedded in the pageserver
// binary and work offline). Every text from the API goes into the page via
// textContent, never innerHTML. Routes live in the URL fragment:
//   #/                                   tenants
//   #/tenant/<id>                        branch tree, sizes, endpoints
//   #/tenant/<id>/timeline/<id>          layer map of one timeline
// Auth: a token given as ?token=... is kept in sessionStorage (not in the
// URL or history) and sent as "Authorization: Bearer" on every data call.
"use strict";

const TOKEN_KEY = "sediment-console-token";
const REFRESH_MS = 10000;
const SVG_NS = "http://www.w3.org/2000/svg";

(function takeTokenFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + window.location.hash);
  }
})();

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const headers = { "Accept": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, { headers });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!response.ok) {
    const msg = body && body.msg ? body.msg : String(text).slice(0, 200);
    if (response.status === 401 || response.status === 403) {
      throw new ApiError(response.status, "This pageserver requires a token (" + msg +
        "). Open the URL that `sediment console` prints, which carries one.");
    }
    throw new ApiError(response.status, path + ": " + response.status + " " + msg);
  }
  return body;
}

// ---- small DOM helpers -------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.appendChild(typeof child === "string" || typeof child === "number"
      ? document.createTextNode(String(child)) : child);
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function link(href, text, cls) { return el("a", { href, class: cls }, text); }

// ---- units ---------------------------------------------------------------

// Binary units with one decimal ("21.4 MiB"); plain bytes below 1 KiB.
function humanBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  if (bytes < 1024) return bytes + " B";
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return value.toFixed(1) + " " + units[unit];
}

function sizeCell(bytes, cls) {
  if (bytes === null || bytes === undefined) return el("td", { class: "num " + cls }, "–");
  return el("td", { class: "num " + cls, "data-bytes": String(bytes) },
    humanBytes(bytes), " ", el("span", { class: "bytes" }, "(" + bytes + " bytes)"));
}

// LSNs are "X/Y" hex; BigInt keeps all 64 bits.
function lsnValue(text) {
  if (!text || typeof text !== "string" || !text.includes("/")) return null;
  const [hi, lo] = text.split("/");
  return (BigInt("0x" + hi) << 32n) | BigInt("0x" + lo);
}

function ageText(micros) {
  if (!micros) return "";
  const seconds = Math.max(0, Date.now() / 1000 - micros / 1e6);
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  return Math.round(seconds / 3600) + " h ago";
}

// host and port of a libpq connection string; never its password.
function endpointLabel(connstr) {
  const fields = {};
  for (const part of connstr.split(/\s+/)) {
    const at = part.indexOf("=");
    if (at > 0) fields[part.slice(0, at)] = part.slice(at + 1);
  }
  if (connstr.startsWith("postgres")) {
    try {
      const url = new URL(connstr);
      return url.hostname + ":" + (url.port || "5432");
    } catch (_) { return "endpoint"; }
  }
  return (fields.host || "localhost") + ":" + (fields.port || "5432");
}

function branchName(timeline) {
  return timeline.branch_name || timeline.timeline_id.slice(0, 8) + "…";
}

// ---- pages ---------------------------------------------------------------

async function tenantsPage() {
  const tenants = await api("/v1/tenant");
  setCrumbs([]);
  const rows = tenants.map(t => el("tr", { "data-tenant": t.id },
    el("td", { class: "id" }, link("#/tenant/" + t.id, t.id)),
    el("td", {}, el("span", { class: "badge " + (t.state === "Active" ? "ok" : "warn") }, t.state)),
    el("td", {}, t.attachment_status ? t.attachment_status.slug : "–"),
    el("td", { class: "num" }, t.generation === undefined ? "–" : String(t.generation)),
    sizeCell(t.current_physical_size, "physical-size")));
  return [
    el("h1", {}, "Tenants"),
    tenants.length === 0 ? el("p", { class: "muted" }, "No tenants yet: `sediment tenant create`.") :
      el("table", { id: "tenants" },
        el("thead", {}, el("tr", {}, ["Tenant", "State", "Attachment", "Generation", "Physical size"].map(h => el("th", {}, h)))),
        el("tbody", {}, rows)),
  ];
}

// Parents before children, depth-first, children by branch point.
function treeOrder(timelines) {
  const byParent = new Map();
  for (const t of timelines) {
    const parent = t.ancestor_timeline_id || null;
    if (!byParent.has(parent)) byParent.set(parent, []);
    byParent.get(parent).push(t);
  }
  for (const list of byParent.values()) {
    list.sort((a, b) => {
      const la = lsnValue(a.ancestor_lsn || a.initdb_lsn) || 0n;
      const lb = lsnValue(b.ancestor_lsn || b.initdb_lsn) || 0n;
      return la < lb ? -1 : la > lb ? 1 : branchName(a).localeCompare(branchName(b));
    });
  }
  const known = new Set(timelines.map(t => t.timeline_id));
  const order = [];
  const seen = new Set();
  const visit = (t, depth) => {
    if (seen.has(t.timeline_id)) return;
    seen.add(t.timeline_id);
    order.push({ timeline: t, depth });
    for (const child of byParent.get(t.timeline_id) || []) visit(child, depth + 1);
  };
  // Roots, and orphans whose parent is not listed.
  for (const t of timelines) {
    if (!t.ancestor_timeline_id || !known.has(t.ancestor_timeline_id)) visit(t, 0);
  }
  return order;
}

function startLsn(t) { return t.ancestor_lsn || t.initdb_lsn; }

// Registered endpoints of one timeline (GET /v1/tenant/<id>/endpoint).
function endpointsOf(endpoints, timelineId) {
  return endpoints.filter(e => e.timeline_id === timelineId);
}

// The branch tree on a linear LSN axis: one row per timeline from its
// branch point (or initdb) to its head; a connector from the parent's row
// at the branch point; a red tick at the GC cutoff; a green marker for a
// running writable endpoint (at the head) and a purple diamond for each
// registered read-only endpoint (at its LSN).
function branchTreeSvg(order, endpoints) {
  const rowHeight = 42, left = 170, right = 150, top = 30, width = 1100;
  const height = top + order.length * rowHeight + 30;
  let min = null, max = null;
  for (const { timeline: t } of order) {
    const frozen = endpointsOf(endpoints, t.timeline_id).filter(e => e.mode === "read_only").map(e => e.lsn);
    for (const text of [startLsn(t), t.last_record_lsn, ...frozen]) {
      const v = lsnValue(text);
      if (v === null) continue;
      if (min === null || v < min) min = v;
      if (max === null || v > max) max = v;
    }
  }
  if (min === null) return el("p", { class: "muted" }, "No timelines.");
  if (max === min) max = min + 1n;
  const span = Number(max - min);
  const x = text => {
    const v = lsnValue(text);
    if (v === null) return left;
    const clamped = v < min ? min : v > max ? max : v;
    return left + (width - left - right) * Number(clamped - min) / span;
  };
  const rowOf = new Map(order.map((entry, i) => [entry.timeline.timeline_id, i]));
  const y = i => top + i * rowHeight + rowHeight / 2;
  const parts = [];
  // Axis with five ticks.
  const axis = svg("g", { class: "axis" });
  for (let i = 0; i <= 4; i++) {
    const v = min + (max - min) * BigInt(i) / 4n;
    const text = (v >> 32n).toString(16).toUpperCase() + "/" + (v & 0xffffffffn).toString(16).toUpperCase();
    const px = x(text);
    axis.appendChild(svg("line", { x1: px, x2: px, y1: top - 8, y2: height - 24, class: "grid", "stroke-dasharray": "2 4" }));
    axis.appendChild(svg("text", { x: px, y: top - 12, "text-anchor": "middle" }, text));
  }
  axis.appendChild(svg("text", { x: left, y: height - 8 }, "LSN →"));
  parts.push(axis);
  // Drawn last, so that a read-only endpoint at a branch point is not
  // hidden under the child's connector.
  const overlay = svg("g", { class: "endpoint-markers" });
  order.forEach(({ timeline: t, depth }, i) => {
    const g = svg("g", { class: "branch", "data-timeline": t.timeline_id });
    const yy = y(i);
    const x0 = x(startLsn(t)), x1 = Math.max(x(t.last_record_lsn), x0 + 2);
    const parentRow = t.ancestor_timeline_id ? rowOf.get(t.ancestor_timeline_id) : undefined;
    if (parentRow !== undefined) {
      g.appendChild(svg("path", { d: `M${x0},${y(parentRow)} L${x0},${yy}`, stroke: "#8a93a6", "stroke-width": 1.5, fill: "none", "stroke-dasharray": "3 3" }));
      g.appendChild(svg("circle", { cx: x0, cy: y(parentRow), r: 4.5, fill: "#fff", stroke: "#2f6fd0", "stroke-width": 2 },
        svg("title", {}, "branch point of " + branchName(t) + " at " + t.ancestor_lsn)));
    }
    g.appendChild(svg("line", { x1: x0, x2: x1, y1: yy, y2: yy, stroke: "#2f6fd0", "stroke-width": 6, "stroke-linecap": "round" }));
    g.appendChild(svg("text", { x: 8 + depth * 12, y: yy + 4 }, branchName(t)));
    const gc = lsnValue(t.latest_gc_cutoff_lsn);
    if (gc !== null && gc > (lsnValue(startLsn(t)) || 0n)) {
      const gx = x(t.latest_gc_cutoff_lsn);
      g.appendChild(svg("line", { x1: gx, x2: gx, y1: yy - 11, y2: yy + 11, stroke: "#c0392b", "stroke-width": 2.5 },
        svg("title", {}, "GC cutoff " + t.latest_gc_cutoff_lsn)));
    }
    g.appendChild(svg("circle", { cx: x1, cy: yy, r: 6, fill: "#1d2330" },
      svg("title", {}, "head " + t.last_record_lsn)));
    const registered = endpointsOf(endpoints, t.timeline_id);
    for (const e of registered.filter(e => e.mode === "read_only")) {
      const ex = x(e.lsn);
      overlay.appendChild(svg("path", { d: `M${ex},${yy - 9} L${ex + 7},${yy} L${ex},${yy + 9} L${ex - 7},${yy} Z`,
        fill: "#7b4fc9", stroke: "#fff", "stroke-width": 1, class: "read-only-endpoint", "data-endpoint": e.name },
        svg("title", {}, "read-only endpoint " + e.name + " (port " + e.port + ") at " + e.lsn)));
    }
    let label = t.last_record_lsn;
    const writer = registered.find(e => e.mode === "writable");
    if (t.wal_source_connstr) {
      const who = (writer ? writer.name + " " : "") + endpointLabel(t.wal_source_connstr);
      g.appendChild(svg("rect", { x: x1 + 10, y: yy - 9, width: 12, height: 18, rx: 3, fill: "#1f9d55" },
        svg("title", {}, "writable endpoint " + who)));
      label = "▶ " + who;
    }
    g.appendChild(svg("text", { x: x1 + (t.wal_source_connstr ? 28 : 12), y: yy + 4 }, label));
    parts.push(g);
  });
  parts.push(overlay);
  return svg("svg", { id: "branch-tree", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "branch tree on an LSN axis" }, parts);
}

function ingestLag(t) {
  if (!t.wal_source_connstr) return el("td", { class: "num lag muted" }, "not streaming");
  const received = lsnValue(t.last_received_msg_lsn);
  const head = lsnValue(t.last_record_lsn);
  const lag = received !== null && head !== null && received > head ? received - head : 0n;
  return el("td", { class: "num lag", "data-lag-bytes": lag.toString() },
    humanBytes(Number(lag)), " ", el("span", { class: "bytes" }, ageText(t.last_received_msg_ts)));
}

function endpointCell(t, endpoints) {
  const parts = [];
  if (t.wal_source_connstr) {
    parts.push(el("span", { class: "badge ok" }, "writable"), " ",
      el("span", { class: "mono" }, endpointLabel(t.wal_source_connstr)));
  }
  for (const e of endpointsOf(endpoints, t.timeline_id).filter(e => e.mode === "read_only")) {
    if (parts.length) parts.push(" ");
    parts.push(el("span", { class: "badge ro" }, "read-only"), " ",
      el("span", { class: "mono" }, e.name + " @ " + e.lsn));
  }
  if (parts.length === 0) return el("td", { class: "endpoint muted" }, "–");
  return el("td", { class: "endpoint" }, parts);
}

// Every registered endpoint: name, branch, mode, LSN, port, pid.
function endpointsTable(endpoints, names) {
  if (endpoints.length === 0) {
    return el("p", { class: "muted", id: "no-endpoints" }, "No endpoints registered: `sediment endpoint start`.");
  }
  return el("table", { id: "endpoints" },
    el("thead", {}, el("tr", {}, ["Endpoint", "Branch", "Mode", "LSN", "Port", "Pid"].map(h => el("th", {}, h)))),
    el("tbody", {}, endpoints.map(e => el("tr", { class: "endpoint-row", "data-endpoint": e.name, "data-mode": e.mode },
      el("td", { class: "mono" }, e.name),
      el("td", {}, names.get(e.timeline_id) || e.timeline_id),
      el("td", {}, el("span", { class: "badge " + (e.mode === "writable" ? "ok" : "ro") },
        e.mode === "writable" ? "writable" : "read-only")),
      el("td", { class: "lsn" }, e.lsn),
      el("td", { class: "num" }, String(e.port)),
      el("td", { class: "num" }, e.pid === undefined ? "–" : String(e.pid))))));
}

async function tenantPage(tenantId) {
  const [tenant, timelines, endpoints] = await Promise.all([
    api("/v1/tenant/" + tenantId),
    api("/v1/tenant/" + tenantId + "/timeline"),
    api("/v1/tenant/" + tenantId + "/endpoint"),
  ]);
  setCrumbs([["#/tenant/" + tenantId, "tenant " + tenantId.slice(0, 8) + "…"]]);
  const order = treeOrder(timelines);
  const names = new Map(timelines.map(t => [t.timeline_id, branchName(t)]));
  const rows = order.map(({ timeline: t, depth }) => el("tr", { class: "branch-row", "data-timeline": t.timeline_id, "data-branch": t.branch_name || "" },
    el("td", { class: "name" }, "\u00a0\u00a0".repeat(depth), link("#/tenant/" + tenantId + "/timeline/" + t.timeline_id, branchName(t))),
    el("td", { class: "id" }, t.timeline_id),
    el("td", {}, t.ancestor_timeline_id ? (names.get(t.ancestor_timeline_id) || t.ancestor_timeline_id) : el("span", { class: "muted" }, "root")),
    el("td", { class: "lsn branch-lsn" }, t.ancestor_lsn || t.initdb_lsn),
    el("td", { class: "lsn head-lsn" }, t.last_record_lsn),
    el("td", { class: "lsn gc-cutoff" }, t.latest_gc_cutoff_lsn),
    sizeCell(t.current_logical_size, "logical-size"),
    sizeCell(t.current_physical_size, "physical-size"),
    ingestLag(t),
    endpointCell(t, endpoints),
    el("td", {}, el("span", { class: "badge " + (t.state === "Active" ? "ok" : "warn") }, t.state))));
  const writers = timelines.filter(t => t.wal_source_connstr);
  const readers = endpoints.filter(e => e.mode === "read_only");
  return [
    el("h1", {}, "Tenant ", el("span", { class: "id" }, tenantId), " ",
      el("span", { class: "badge " + (tenant.state === "Active" ? "ok" : "warn") }, tenant.state)),
    el("p", { class: "muted" }, timelines.length + " branches, " + writers.length +
      " running writable endpoints, " + readers.length + " read-only endpoints, " +
      humanBytes(tenant.current_physical_size) + " on local disk."),
    el("h2", {}, "Branch tree"),
    el("div", { class: "panel" }, branchTreeSvg(order, endpoints)),
    el("p", { class: "legend muted" },
      el("span", {}, el("span", { class: "swatch", style: "background:#2f6fd0" }), "history from branch point to head"),
      el("span", {}, el("span", { class: "swatch", style: "background:#fff;border-color:#2f6fd0" }), "branch point"),
      el("span", {}, el("span", { class: "swatch", style: "background:#c0392b" }), "GC cutoff"),
      el("span", {}, el("span", { class: "swatch", style: "background:#1f9d55" }), "writable endpoint"),
      el("span", {}, el("span", { class: "swatch", style: "background:#7b4fc9" }), "read-only endpoint")),
    el("h2", {}, "Branches"),
    el("table", { id: "branches" },
      el("thead", {}, el("tr", {}, ["Branch", "Timeline", "Parent", "Branch LSN", "Head", "GC cutoff",
        "Logical size", "Physical size", "Ingest lag", "Endpoint", "State"].map(h => el("th", {}, h)))),
      el("tbody", {}, rows)),
    el("p", { class: "muted" }, "Branch LSN: the branch point on the parent (for a root, where its history starts). " +
      "Endpoint: the writable endpoint streaming WAL into the branch, and the read-only endpoints registered on it."),
    el("h2", {}, "Endpoints"),
    endpointsTable(endpoints, names),
    el("p", { class: "muted" }, "Endpoints as `sediment endpoint start` registered them (`endpoint stop` removes them): " +
      "writable ones stream into their branch at its head, read-only ones are frozen at their LSN."),
  ];
}

// Layer map: key range (x) × LSN range (y, oldest at the bottom), both on
// ordinal axes (each distinct bound gets an equal step), since keys are
// 18-byte values and LSN ranges differ by orders of magnitude.
function layerMapSvg(layers) {
  const width = 1100, height = 520, left = 110, bottom = 40, top = 10, right = 20;
  if (layers.length === 0) return el("p", { class: "muted" }, "No layer files yet (everything is in memory).");
  const keys = [...new Set(layers.flatMap(l => [l.key_start, l.key_end]))].sort();
  const lsns = [...new Set(layers.flatMap(l => [l.lsn_start, l.lsn_end]))]
    .sort((a, b) => { const va = lsnValue(a), vb = lsnValue(b); return va < vb ? -1 : va > vb ? 1 : 0; });
  const keyIndex = new Map(keys.map((k, i) => [k, i]));
  const lsnIndex = new Map(lsns.map((l, i) => [l, i]));
  const xStep = (width - left - right) / Math.max(1, keys.length - 1);
  const yStep = (height - top - bottom) / Math.max(1, lsns.length - 1);
  const x = k => left + keyIndex.get(k) * xStep;
  const y = l => height - bottom - lsnIndex.get(l) * yStep;
  const colors = { L0: "#8fb3ea", L1: "#2f6fd0", image: "#1f9d55" };
  const parts = [];
  const axis = svg("g", { class: "axis" });
  const every = Math.max(1, Math.ceil(lsns.length / 12));
  lsns.forEach((l, i) => {
    if (i % every !== 0 && i !== lsns.length - 1) return;
    axis.appendChild(svg("line", { x1: left - 4, x2: width - right, y1: y(l), y2: y(l), class: "grid" }));
    axis.appendChild(svg("text", { x: left - 8, y: y(l) + 4, "text-anchor": "end" }, l));
  });
  axis.appendChild(svg("text", { x: left, y: height - 12 }, "key range →  (" + keys.length + " distinct bounds; hover a rectangle for its file)"));
  parts.push(axis);
  for (const l of layers) {
    const x0 = x(l.key_start), x1 = x(l.key_end);
    let y0 = y(l.lsn_end), y1 = y(l.lsn_start);
    if (y1 - y0 < 4) { y0 = y1 - 4; } // images cover one LSN: keep them visible
    parts.push(svg("rect", { x: x0 + 0.5, y: y0, width: Math.max(2, x1 - x0 - 1), height: Math.max(3, y1 - y0),
      fill: colors[l.level] || "#888", "fill-opacity": l.level === "image" ? 0.9 : 0.55, stroke: "#1d2330", "stroke-width": 0.6,
      class: "layer", "data-level": l.level },
      svg("title", {}, l.layer_file_name + "\n" + l.level + ", " + humanBytes(l.layer_file_size) +
        "\nLSN " + l.lsn_start + " .. " + l.lsn_end)));
  }
  return svg("svg", { id: "layer-map", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "layer map: key range by LSN range" }, parts);
}

async function timelinePage(tenantId, timelineId) {
  const [timeline, map] = await Promise.all([
    api("/v1/tenant/" + tenantId + "/timeline/" + timelineId),
    api("/v1/tenant/" + tenantId + "/timeline/" + timelineId + "/layer"),
  ]);
  setCrumbs([["#/tenant/" + tenantId, "tenant " + tenantId.slice(0, 8) + "…"],
    ["#/tenant/" + tenantId + "/timeline/" + timelineId, "branch " + branchName(timeline)]]);
  const layers = map.historic_layers;
  const total = layers.reduce((sum, l) => sum + l.layer_file_size, 0);
  const count = level => layers.filter(l => l.level === level).length;
  return [
    el("h1", {}, "Branch ", branchName(timeline), " ", el("span", { class: "id muted" }, timelineId)),
    el("p", {}, "Head ", el("span", { class: "lsn" }, timeline.last_record_lsn), ", GC cutoff ",
      el("span", { class: "lsn" }, timeline.latest_gc_cutoff_lsn), ", disk-consistent ",
      el("span", { class: "lsn" }, timeline.disk_consistent_lsn), "; ",
      layers.length + " layer files (" + count("L0") + " L0, " + count("L1") + " L1, " + count("image") +
      " image), " + humanBytes(total) + "."),
    el("h2", {}, "Layer map"),
    el("div", { class: "panel" }, layerMapSvg(layers)),
    el("p", { class: "legend muted" },
      el("span", {}, el("span", { class: "swatch", style: "background:#8fb3ea" }), "L0 delta"),
      el("span", {}, el("span", { class: "swatch", style: "background:#2f6fd0" }), "L1 delta"),
      el("span", {}, el("span", { class: "swatch", style: "background:#1f9d55" }), "image")),
    el("h2", {}, "In memory"),
    el("table", {}, el("thead", {}, el("tr", {}, ["From LSN", "To LSN", "Size"].map(h => el("th", {}, h)))),
      el("tbody", {}, map.in_memory_layers.map(m => el("tr", {},
        el("td", { class: "lsn" }, m.lsn_start), el("td", { class: "lsn" }, m.lsn_end || "open"),
        sizeCell(m.size_bytes, "memory-size"))))),
    el("h2", {}, "Layer files"),
    el("table", { id: "layers" }, el("thead", {}, el("tr", {}, ["Level", "Keys", "LSNs", "Size"].map(h => el("th", {}, h)))),
      el("tbody", {}, layers.map(l => el("tr", {},
        el("td", {}, l.level),
        el("td", { class: "mono" }, l.key_start.slice(0, 12) + "… – " + l.key_end.slice(0, 12) + "…"),
        el("td", { class: "lsn" }, l.lsn_start + " – " + l.lsn_end),
        sizeCell(l.layer_file_size, "file-size"))))),
  ];
}

// ---- routing -----------------------------------------------------------

function setCrumbs(items) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...items.flatMap(([href, text]) => [document.createTextNode(" / "), link(href, text)]));
}

let refreshTimer = null;
let renderSeq = 0;

async function render() {
  const seq = ++renderSeq;
  const app = document.getElementById("app");
  const status = document.getElementById("status");
  const parts = (window.location.hash.replace(/^#\/?/, "") || "").split("/").filter(Boolean);
  let page;
  if (parts.length === 0) page = tenantsPage();
  else if (parts[0] === "tenant" && parts.length === 2) page = tenantPage(parts[1]);
  else if (parts[0] === "tenant" && parts.length === 4 && parts[2] === "timeline") page = timelinePage(parts[1], parts[3]);
  else page = Promise.reject(new Error("unknown page " + window.location.hash));
  try {
    const content = await page;
    if (seq !== renderSeq) return;
    app.replaceChildren(...content);
    status.textContent = "updated " + new Date().toLocaleTimeString();
    document.body.setAttribute("data-rendered", String(seq));
  } catch (error) {
    if (seq !== renderSeq) return;
    app.replaceChildren(el("p", { class: "error", id: "error" }, error.message));
    status.textContent = "";
    document.body.setAttribute("data-rendered", String(seq));
  }
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(render, REFRESH_MS);
}

window.addEventListener("hashchange", render);
render();
