// The sonolatent browser surface: an OSCQuery client like any other.
// It reads the tree (GET /) once, then talks over the OSCQuery WebSocket only:
// LISTEN to the values it shows (they arrive as binary OSC), and OSC messages
// as binary frames for what the performer does.

const te = new TextEncoder();
const td = new TextDecoder();
const pad4 = (n) => (n + 3) & ~3;

function oscString(s) {
  const b = te.encode(s);
  const out = new Uint8Array(pad4(b.length + 1));
  out.set(b);
  return out;
}

export function encodeMessage(address, types, args) {
  const parts = [oscString(address), oscString("," + types)];
  for (let i = 0; i < types.length; i++) {
    const t = types[i];
    if (t === "f" || t === "i") {
      const b = new Uint8Array(4);
      const dv = new DataView(b.buffer);
      if (t === "f") dv.setFloat32(0, args[i]); else dv.setInt32(0, Math.round(args[i]));
      parts.push(b);
    } else if (t === "s") {
      parts.push(oscString(String(args[i])));
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let k = 0;
  for (const p of parts) { out.set(p, k); k += p.length; }
  return out.buffer;
}

export function decodeMessage(buf) {
  const u8 = new Uint8Array(buf);
  const dv = new DataView(buf);
  let p = 0;
  const str = () => {
    let e = p;
    while (e < u8.length && u8[e] !== 0) e++;
    const s = td.decode(u8.subarray(p, e));
    p = pad4(e + 1);
    return s;
  };
  if (u8[0] !== 0x2f) return null;           // a bundle or garbage: the server sends neither
  const address = str();
  const args = [];
  if (p >= u8.length) return { address, args };
  const tags = str();
  for (const t of tags.slice(1)) {
    if (t === "f") { args.push(dv.getFloat32(p)); p += 4; }
    else if (t === "i") { args.push(dv.getInt32(p)); p += 4; }
    else if (t === "d") { args.push(dv.getFloat64(p)); p += 8; }
    else if (t === "h") { args.push(Number(dv.getBigInt64(p))); p += 8; }
    else if (t === "s") { args.push(str()); }
    else if (t === "T") { args.push(1); }
    else if (t === "F") { args.push(0); }
    else if (t === "N") { args.push(null); }
    else return null;
  }
  return { address, args };
}

// ---------------------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);
const COLORS = ["#7ee08a", "#5ec8ff", "#c58cff", "#ffb454", "#ff7eb6", "#4fe0d0", "#e0e05e", "#ff8a5e"];
const state = {
  D: 0, nSlots: 0, page: 0, samples: [], names: [], held: new Set(), edited: new Map(),
  latent: [], map: { current: null, slots: [], trail: [], extent: 2.5 }, dirty: true,
};
let ws = null;
let retry = 500;
const pending = new Map();
let flushTimer = 0;

function send(address, types = "", args = []) {
  pending.set(address, encodeMessage(address, types, args));
  if (!flushTimer) flushTimer = setTimeout(flush, 15);   // at most ~60 messages/s per control
}

function flush() {
  flushTimer = 0;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  for (const data of pending.values()) ws.send(data);
  pending.clear();
}

function status(text) {
  const el = $("status-line");
  el.textContent = text;
  clearTimeout(status.t);
  status.t = setTimeout(() => { el.textContent = ""; }, 6000);
}

function listenList() {
  const out = ["/sono/xy", "/sono/morph", "/sono/transpose", "/sono/gain", "/sono/playing", "/sono/latent",
    "/sono/map", "/sono/meter/level", "/sono/meter/cpu", "/sono/meter/underflows"];
  for (let k = 0; k < state.nSlots; k++) out.push(`/sono/slot/${k}/name`, `/sono/slot/${k}/map`);
  return out;
}

function connect() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
  const sock = new WebSocket(url);
  sock.binaryType = "arraybuffer";
  ws = sock;
  $("conn").dataset.state = "connecting";
  $("conn").textContent = "connecting";
  sock.onopen = () => {
    retry = 500;
    $("conn").dataset.state = "open";
    $("conn").textContent = "live";
    for (const a of listenList()) sock.send(JSON.stringify({ COMMAND: "LISTEN", DATA: a }));
    flush();
  };
  sock.onmessage = (ev) => {
    if (typeof ev.data === "string") return;       // PATH_* notices: the namespace is fixed
    const m = decodeMessage(ev.data);
    if (m) onValue(m.address, m.args);
  };
  sock.onclose = () => {
    if (ws !== sock) return;
    $("conn").dataset.state = "closed";
    $("conn").textContent = "offline";
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 5000);
  };
}

// ---------------------------------------------------------------------------------------------
// A control the performer is holding, or changed here in the last moment, keeps its own value: the
// server's echoes of older values (still on their way) must not pull it back between two key presses.
// `?grace=MS` in the page's address sets how long "the last moment" is (a slow network may want more).
const ECHO_GRACE_MS = Number(new URLSearchParams(location.search).get("grace") ?? 500) || 0;
function touched(el) { state.edited.set(el, performance.now()); }
function mine(el) {
  return state.held.has(el) || performance.now() - (state.edited.get(el) ?? -Infinity) < ECHO_GRACE_MS;
}

function setSlider(id, v, digits) {
  const el = $(id);
  if (!el || mine(el)) return;
  el.value = v;
  const out = $(id + "-out");
  if (out) out.textContent = Number(v).toFixed(digits);
}

function onValue(address, args) {
  if (address === "/sono/xy") {
    if (mine($("xy"))) return;
    placePuck(args[0], args[1]);
    $("xy").dataset.value = `${args[0].toFixed(4)},${args[1].toFixed(4)}`;
  } else if (address === "/sono/morph") setSlider("morph", args[0], 2);
  else if (address === "/sono/transpose") setSlider("transpose", args[0], 0);
  else if (address === "/sono/gain") setSlider("gain", args[0], 2);
  else if (address === "/sono/playing") $("playing").dataset.on = String(args[0] ? 1 : 0);
  else if (address === "/sono/latent") { state.latent = args.slice(); showLatentValues(); }
  else if (address === "/sono/map") {
    state.map.current = [args[0], args[1]];
    state.map.trail.push([args[0], args[1]]);
    if (state.map.trail.length > 60) state.map.trail.shift();
    $("map").dataset.current = `${args[0].toFixed(4)},${args[1].toFixed(4)}`;
    state.dirty = true;
  } else if (address === "/sono/meter/level") {
    const db = args[0] > 0 ? 20 * Math.log10(args[0]) : -120;
    $("meter-level").style.width = `${Math.max(0, Math.min(100, (db + 60) / 60 * 100)).toFixed(1)}%`;
    $("meter-level").dataset.value = args[0].toFixed(4);
  } else if (address === "/sono/meter/cpu") $("meter-cpu").textContent = `${Math.round(args[0] * 100)}%`;
  else if (address === "/sono/meter/underflows") $("meter-underflows").textContent = String(args[0]);
  else if (address === "/sono/error") status(`${args[0]}: ${args[1]}`);
  else {
    const m = /^\/sono\/slot\/(\d+)\/(name|map)$/.exec(address);
    if (!m) return;
    const k = Number(m[1]);
    if (m[2] === "name") setSlotName(k, args[0]);
    else { state.map.slots[k] = [args[0], args[1]]; state.dirty = true; }
  }
}

// ---------------------------------------------------------------------------------------------
function placePuck(x, y) {
  const puck = $("xy-puck");
  puck.style.left = `${(x * 100).toFixed(2)}%`;
  puck.style.top = `${((1 - y) * 100).toFixed(2)}%`;
}

function hold(el) {
  el.addEventListener("pointerdown", () => state.held.add(el));
  for (const ev of ["pointerup", "pointercancel", "blur"]) el.addEventListener(ev, () => state.held.delete(el));
}

function setupXY() {
  const pad = $("xy");
  const at = (ev) => {
    const r = pad.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, 1 - (ev.clientY - r.top) / r.height));
    placePuck(x, y);
    pad.dataset.value = `${x.toFixed(4)},${y.toFixed(4)}`;
    touched(pad);
    send("/sono/xy", "ff", [x, y]);
  };
  pad.addEventListener("pointerdown", (ev) => {
    state.held.add(pad);
    pad.setPointerCapture(ev.pointerId);
    at(ev);
    ev.preventDefault();
  });
  pad.addEventListener("pointermove", (ev) => { if (state.held.has(pad)) at(ev); });
  pad.addEventListener("keydown", (ev) => {   // arrow keys move the puck (shift: finer)
    const step = ev.shiftKey ? 0.005 : 0.05;
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[ev.key];
    if (!d) return;
    ev.preventDefault();
    const [x0, y0] = (pad.dataset.value || "0,0").split(",").map(Number);
    const x = Math.min(1, Math.max(0, x0 + d[0]));
    const y = Math.min(1, Math.max(0, y0 + d[1]));
    pad.dataset.value = `${x.toFixed(4)},${y.toFixed(4)}`;
    placePuck(x, y);
    touched(pad);
    send("/sono/xy", "ff", [x, y]);
  });
  for (const name of ["pointerup", "pointercancel"]) {
    pad.addEventListener(name, (ev) => {
      if (pad.hasPointerCapture(ev.pointerId)) pad.releasePointerCapture(ev.pointerId);
      state.held.delete(pad);
    });
  }
}

function bindSlider(id, address, digits) {
  const el = $(id);
  hold(el);
  el.addEventListener("input", () => {
    $(id + "-out").textContent = Number(el.value).toFixed(digits);
    touched(el);
    send(address, "f", [Number(el.value)]);
  });
}

function setupLatent() {
  const pages = $("latent-pages");
  const n = Math.ceil(state.D / 8);
  pages.replaceChildren();
  for (let p = 0; p < n; p++) {
    const b = document.createElement("button");
    b.type = "button";
    b.id = `latent-page-${p}`;
    b.textContent = `${p * 8}-${Math.min(state.D, p * 8 + 8) - 1}`;
    b.addEventListener("click", () => { state.page = p; buildLatentSliders(); });
    pages.append(b);
  }
  buildLatentSliders();
  $("latent-reset").addEventListener("click", () => send("/sono/latent", "f".repeat(state.D), new Array(state.D).fill(0)));
}

function buildLatentSliders() {
  const box = $("latent-sliders");
  box.replaceChildren();
  for (const b of $("latent-pages").children) b.setAttribute("aria-pressed", String(b.id === `latent-page-${state.page}`));
  for (let k = state.page * 8; k < Math.min(state.D, state.page * 8 + 8); k++) {
    const label = document.createElement("label");
    const name = document.createElement("span");
    name.textContent = String(k);
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: "-4", max: "4", step: "0.01", id: `latent-${k}` });
    input.value = String(state.latent[k] ?? 0);
    const out = document.createElement("output");
    out.id = `latent-${k}-out`;
    out.textContent = Number(input.value).toFixed(2);
    hold(input);
    input.addEventListener("input", () => {
      out.textContent = Number(input.value).toFixed(2);
      send(`/sono/latent/${k}`, "f", [Number(input.value)]);
    });
    label.append(name, input, out);
    box.append(label);
  }
}

function showLatentValues() {
  for (let k = state.page * 8; k < Math.min(state.D, state.page * 8 + 8); k++) setSlider(`latent-${k}`, state.latent[k] ?? 0, 2);
}

// ---------------------------------------------------------------------------------------------
function setupSlots() {
  const box = $("slots");
  box.replaceChildren();
  for (let k = 0; k < state.nSlots; k++) {
    const row = document.createElement("div");
    row.className = "slot";
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = COLORS[k % COLORS.length];
    sw.title = `slot ${k}`;
    const name = document.createElement("span");
    name.className = "name";
    name.id = `slot-${k}-name`;
    name.textContent = "(empty)";
    const sel = document.createElement("select");
    sel.id = `slot-${k}-select`;
    sel.setAttribute("aria-label", `load a sample into slot ${k}`);
    fillSamples(sel);
    sel.addEventListener("focus", refreshSamples);
    sel.addEventListener("change", () => {
      if (!sel.value) return;
      send(`/sono/slot/${k}/load`, "s", [sel.value]);
      status(`loading ${sel.value} into slot ${k}...`);
      sel.value = "";
    });
    const clear = document.createElement("button");
    clear.type = "button";
    clear.id = `slot-${k}-clear`;
    clear.textContent = "clear";
    clear.addEventListener("click", () => send(`/sono/slot/${k}/clear`));
    row.append(sw, name, sel, clear);
    box.append(row);
  }
}

function fillSamples(sel) {
  const opts = [new Option(`load ${sel.id.split("-")[1]}...`, "")];
  for (const s of state.samples) opts.push(new Option(s, s));
  sel.replaceChildren(...opts);
}

async function refreshSamples() {
  try {
    const r = await fetch("/sono/slot/0/load?RANGE", { headers: { Accept: "application/json" } });
    if (!r.ok) return;
    const vals = (await r.json()).RANGE?.[0]?.VALS ?? [];
    if (vals.join("\n") === state.samples.join("\n")) return;
    state.samples = vals;
    for (let k = 0; k < state.nSlots; k++) fillSamples($(`slot-${k}-select`));
  } catch (e) { /* offline: keep the list we have */ }
}

function setSlotName(k, name) {
  state.names[k] = name;
  const el = $(`slot-${k}-name`);
  if (el) { el.textContent = name || "(empty)"; el.dataset.loaded = name ? "1" : "0"; }
  const corner = $(`corner-${k}`);
  if (corner) { corner.textContent = name ? `${k} ${name}` : String(k); corner.dataset.loaded = name ? "1" : "0"; }
  if (name) status(`slot ${k}: ${name}`);
  state.dirty = true;
}

// ---------------------------------------------------------------------------------------------
function drawMap() {
  requestAnimationFrame(drawMap);
  if (!state.dirty) return;
  state.dirty = false;
  const cv = $("map");
  const dpr = window.devicePixelRatio || 1;
  const size = Math.max(100, Math.round(cv.clientWidth * dpr));
  if (cv.width !== size) { cv.width = size; cv.height = size; }
  const g = cv.getContext("2d");
  const m = state.map;
  const pts = [];
  if (m.current) pts.push(m.current);
  for (let k = 0; k < state.nSlots; k++) if (state.names[k] && m.slots[k]) pts.push(m.slots[k]);
  const want = Math.max(2, ...pts.map(([x, y]) => 1.25 * Math.max(Math.abs(x), Math.abs(y))));
  m.extent += (want - m.extent) * 0.2;
  if (Math.abs(want - m.extent) > 1e-3) state.dirty = true;
  const half = size / 2;
  const s = half / m.extent;
  const X = (x) => half + x * s;
  const Y = (y) => half - y * s;
  g.clearRect(0, 0, size, size);
  g.strokeStyle = "#2c3038";
  g.lineWidth = dpr;
  for (let r = 1; r <= Math.ceil(m.extent) + 1; r++) { g.beginPath(); g.arc(half, half, r * s, 0, 2 * Math.PI); g.stroke(); }
  g.beginPath(); g.moveTo(0, half); g.lineTo(size, half); g.moveTo(half, 0); g.lineTo(half, size); g.stroke();
  g.font = `${11 * dpr}px system-ui, sans-serif`;
  for (let k = 0; k < state.nSlots; k++) {
    if (!state.names[k] || !m.slots[k]) continue;
    const [x, y] = m.slots[k];
    g.fillStyle = COLORS[k % COLORS.length];
    g.beginPath(); g.arc(X(x), Y(y), 6 * dpr, 0, 2 * Math.PI); g.fill();
    const right = X(x) > half;             // labels point inwards, so none runs off the edge
    g.textAlign = right ? "right" : "left";
    g.fillText(`${k} ${state.names[k]}`, X(x) + (right ? -9 : 9) * dpr, Math.min(size - 4 * dpr, Math.max(12 * dpr, Y(y) + 4 * dpr)));
  }
  if (m.trail.length > 1) {
    g.strokeStyle = "#5ec8ff66";
    g.lineWidth = 2 * dpr;
    g.beginPath();
    m.trail.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
    g.stroke();
  }
  if (m.current) {
    const [x, y] = m.current;
    g.fillStyle = "#ffffff";
    g.strokeStyle = "#5ec8ff";
    g.lineWidth = 3 * dpr;
    g.beginPath(); g.arc(X(x), Y(y), 7 * dpr, 0, 2 * Math.PI); g.fill(); g.stroke();
  }
  cv.dataset.extent = m.extent.toFixed(3);
}

// ---------------------------------------------------------------------------------------------
function valueOf(node, path) {
  let n = node;
  for (const part of path.split("/").filter(Boolean)) { n = n?.CONTENTS?.[part]; if (!n) return null; }
  return n;
}

async function start() {
  let tree;
  try {
    const r = await fetch("/", { headers: { Accept: "application/json" } });
    tree = await r.json();
  } catch (e) {
    status("cannot read the OSCQuery tree; retrying");
    setTimeout(start, 2000);
    return;
  }
  const latent = valueOf(tree, "/sono/latent");
  state.D = latent ? latent.TYPE.length : 0;
  state.latent = latent?.VALUE ?? new Array(state.D).fill(0);
  state.nSlots = Object.keys(valueOf(tree, "/sono/slot")?.CONTENTS ?? {}).length;
  state.samples = valueOf(tree, "/sono/slot/0/load")?.RANGE?.[0]?.VALS ?? [];
  setupXY();
  bindSlider("morph", "/sono/morph", 2);
  bindSlider("transpose", "/sono/transpose", 0);
  bindSlider("gain", "/sono/gain", 2);
  $("play").addEventListener("click", () => send("/sono/play", "f", [1]));
  $("stop").addEventListener("click", () => send("/sono/stop"));
  setupLatent();
  setupSlots();
  for (const a of listenList()) {       // the tree's values until the WebSocket streams them
    const n = valueOf(tree, a);
    if (n && n.VALUE) onValue(a, n.VALUE);
  }
  document.body.dataset.ready = "1";
  connect();
  requestAnimationFrame(drawMap);
}

start();
