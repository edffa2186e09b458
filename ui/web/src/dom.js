// Small DOM helpers. Text always goes in as text nodes (never as HTML), and nothing
// sets a style attribute: the page's Content-Security-Policy allows neither inline
// scripts nor inline styles.

const SVG = "http://www.w3.org/2000/svg";

function build(el, props, kids) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of kids.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// h makes an HTML element: h("td", {class: "x"}, "text", child...).
export const h = (tag, props, ...kids) => build(document.createElement(tag), props, kids);

// s makes an SVG element.
export const s = (tag, props, ...kids) => build(document.createElementNS(SVG, tag), props, kids);

export function clear(el) {
  el.replaceChildren();
  return el;
}

export const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });

// every runs f now and then every ms until signal aborts; a run never overlaps the next.
export async function every(ms, signal, f) {
  while (!signal.aborted) {
    try { await f(); } catch (e) { if (!signal.aborted) console.warn(e); }
    await sleep(ms, signal);
  }
}

// debounce calls f once, ms after the last of a burst of calls.
export function debounce(ms, f) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => f(...args), ms); };
}

export function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour12: false });
}

export function dateTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleDateString([], { year: "numeric", month: "2-digit", day: "2-digit" }) + " " + clock(iso);
}

export function age(iso, now = Date.now()) {
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

export function seconds(x) {
  if (x == null) return "";
  if (x < 1) return Math.round(x * 1000) + " ms";
  if (x < 120) return x.toFixed(x < 10 ? 2 : 1) + " s";
  return Math.floor(x / 60) + " m " + Math.round(x % 60) + " s";
}

export const euros = (x) => "€" + (x || 0).toFixed(2);

export function bandwidth(bps) {
  if (!bps) return "";
  if (bps >= 1e9) return +(bps / 1e9).toFixed(2) + " Gbit/s";
  if (bps >= 1e6) return +(bps / 1e6).toFixed(1) + " Mbit/s";
  return +(bps / 1e3).toFixed(0) + " kbit/s";
}

// badge shows a state, coloured by its class.
export const badge = (state, extra) =>
  h("span", { class: "badge st-" + String(state || "unknown").replace(/[^A-Za-z-]/g, ""), "data-state": state }, extra || state);
