import { bandwidth, s } from "./dom.js";

// Layout constants (SVG user units).
const W = 250, COLGAP = 110, ROWGAP = 28, HEAD = 58, LINE = 16, PAD = 16;

const region = (loc) => (loc || "?").split(".")[0];

// topology draws a slice's parts grouped in columns by region (the first word of their
// location: AMERICA, EUROPE...), each part with its provider, type and nodes, and the
// links between them with their bandwidth; every element is coloured by its state, and a
// Lost part (its provider no longer has it) says why on the part.
export function topology(sl) {
  const cols = new Map();
  for (const p of sl.parts) {
    const r = region(p.location);
    if (!cols.has(r)) cols.set(r, []);
    cols.get(r).push(p);
  }
  const regions = [...cols.keys()].sort();
  const pos = new Map();
  let height = 0;
  regions.forEach((r, ci) => {
    let y = PAD + 22;
    for (const p of cols.get(r)) {
      const nodes = Math.max(p.nodes.length, 1);
      const hgt = HEAD + nodes * LINE + 10 + (p.state === "Lost" ? LINE : 0);
      pos.set(p.name, { x: PAD + ci * (W + COLGAP), y, h: hgt });
      y += hgt + ROWGAP;
    }
    height = Math.max(height, y);
  });
  const width = Math.max(PAD * 2 + regions.length * W + (regions.length - 1) * COLGAP, 400);
  height = Math.max(height, 160);

  const svg = s("svg", { id: "topology", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "slice topology" });
  regions.forEach((r, ci) => svg.append(s("text", { x: PAD + ci * (W + COLGAP), y: PAD + 8, class: "region" }, r)));

  for (const l of sl.links) {
    const a = pos.get(l.ends[0].part), b = pos.get(l.ends[1].part);
    if (!a || !b) continue;
    const x1 = a.x + W / 2, y1 = a.y + a.h / 2, x2 = b.x + W / 2, y2 = b.y + b.h / 2;
    // Between columns, from the facing sides.
    const [sx, ex] = x1 === x2 ? [x1, x2] : x1 < x2 ? [a.x + W, b.x] : [a.x, b.x + W];
    const label = [bandwidth(l.bandwidth_bps), l.vni ? "VNI " + l.vni : ""].filter(Boolean).join(" · ");
    const mx = (sx + ex) / 2, my = (y1 + y2) / 2;
    svg.append(s("g", { class: "link st-" + l.state, "data-link": l.name, "data-state": l.state },
      s("title", {}, `${l.name}: ${l.state}${l.message ? " — " + l.message : ""}`),
      x1 === x2
        ? s("path", { d: `M${a.x + W} ${y1} C${a.x + W + 60} ${y1} ${b.x + W + 60} ${y2} ${b.x + W} ${y2}` })
        : s("line", { x1: sx, y1, x2: ex, y2 }),
      s("text", { x: x1 === x2 ? a.x + W + 50 : mx, y: my - 6, "text-anchor": "middle" }, label || l.state)));
  }

  for (const p of sl.parts) {
    const { x, y, h } = pos.get(p.name);
    const g = s("g", { class: "part st-" + p.state, "data-part": p.name, "data-state": p.state, transform: `translate(${x} ${y})` },
      s("title", {}, `${p.name}: ${p.state}${p.message ? " — " + p.message : ""}`),
      s("rect", { width: W, height: h, rx: 8 }),
      s("text", { x: 12, y: 20, class: "name" }, p.name + (p.elastic ? " (elastic)" : "")),
      s("text", { x: W - 12, y: 20, class: "state", "text-anchor": "end" }, p.state),
      s("text", { x: 12, y: 38, class: "meta" }, `${p.provider || "unplaced"} · ${p.type || "DC"} · ${p.location || ""}`));
    const nodes = p.nodes.length ? p.nodes : null;
    if (nodes) {
      nodes.forEach((n, i) => g.append(s("text", { x: 12, y: HEAD + 4 + i * LINE, class: "node" },
        `${n.name}${n.type ? " [" + n.type + "]" : ""} ${n.cpus || "?"} vCPU ${n.memory_mb || "?"} MB${n.ips.length ? " " + n.ips[0] : ""}`)));
    } else {
      const r = p.resources;
      g.append(s("text", { x: 12, y: HEAD + 4, class: "node muted" }, `${r.nodes} nodes asked, ${r.cpus} vCPU, ${r.memory_mb} MB`));
    }
    if (p.state === "Lost") {
      // What the provider no longer has, on the part itself: a person sees why the slice is
      // Degraded without hovering.
      const why = p.message || "its provider no longer has it";
      g.append(s("text", { x: 12, y: h - 10, class: "lost-why" }, "\u26a0 " + (why.length > 44 ? why.slice(0, 43) + "\u2026" : why)));
    }
    svg.append(g);
  }
  return svg;
}
