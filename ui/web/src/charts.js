import uPlot from "uplot";
import { h } from "./dom.js";

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

// seriesLabel names a series by its part and node, and its source when pushed.
function seriesLabel(se) {
  const t = se.tags || {};
  return [t.part, t.ResourceID].filter(Boolean).join("/") + (t.source ? ` (${t.source})` : "") || se.metric;
}

// Charts keeps one uPlot per metric in container, updated in place when the same
// series come again (so nothing jumps), rebuilt when a series appears or goes.
export class Charts {
  constructor(container) {
    this.container = container;
    this.charts = new Map(); // metric -> {key, plot, el, marks}
  }

  // update draws the series of a metrics answer; thresholds: metric -> [{value, label}];
  // actions: [{time (s), label}] marked on every chart.
  update(series, thresholds, actions) {
    const byMetric = new Map();
    for (const se of series) {
      if (!se.points.length) continue;
      if (!byMetric.has(se.metric)) byMetric.set(se.metric, []);
      byMetric.get(se.metric).push(se);
    }
    for (const [metric, c] of this.charts) {
      if (!byMetric.has(metric)) { c.plot.destroy(); c.el.remove(); this.charts.delete(metric); }
    }
    for (const metric of [...byMetric.keys()].sort()) {
      const list = byMetric.get(metric).sort((a, b) => seriesLabel(a).localeCompare(seriesLabel(b)));
      const tables = list.map((se) => [se.points.map((p) => Date.parse(p.time) / 1000), se.points.map((p) => p.value)]);
      const data = uPlot.join(tables);
      const key = list.map(seriesLabel).join("|");
      const marks = { thresholds: thresholds.get(metric) || [], actions };
      const points = list.reduce((n, se) => n + se.points.length, 0);
      let c = this.charts.get(metric);
      if (c && c.key !== key) { c.plot.destroy(); c.el.remove(); this.charts.delete(metric); c = null; }
      if (!c) {
        c = this.create(metric, list, data, marks);
        this.charts.set(metric, c);
      } else {
        c.marks.thresholds = marks.thresholds;
        c.marks.actions = marks.actions;
        c.plot.setData(data);
      }
      c.el.dataset.points = String(points);
      c.el.dataset.last = String(data[0][data[0].length - 1] || 0);
    }
    // Keep the charts in metric order.
    for (const metric of [...this.charts.keys()].sort()) this.container.append(this.charts.get(metric).el);
  }

  create(metric, list, data, marks) {
    const el = h("div", { class: "chart", "data-metric": metric }, h("h3", {}, metric));
    this.container.append(el);
    const width = Math.max(320, Math.floor(this.container.clientWidth / (this.container.clientWidth > 900 ? 2 : 1)) - 24);
    const opts = {
      width, height: 220,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: {
        x: { time: true },
        y: {
          range: (u, min, max) => {
            const thr = marks.thresholds.map((t) => t.value);
            const lo = Math.min(0, min, ...thr), hi = Math.max(max, ...thr);
            return [lo, hi === lo ? lo + 1 : hi * 1.1];
          },
        },
      },
      series: [{}, ...list.map((se, i) => ({ label: seriesLabel(se), stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true }))],
      axes: [{}, { size: 60 }],
      hooks: { draw: [(u) => drawMarks(u, marks)] },
    };
    return { key: list.map(seriesLabel).join("|"), el, marks, plot: new uPlot(opts, data, el) };
  }

  destroy() {
    for (const c of this.charts.values()) c.plot.destroy();
    this.charts.clear();
  }
}

// drawMarks draws each threshold as a dashed horizontal line and each elastic action as
// a vertical line on the time axis.
function drawMarks(u, marks) {
  const ctx = u.ctx, { left, top, width, height } = u.bbox;
  ctx.save();
  ctx.font = `${Math.round(11 * devicePixelRatio)}px sans-serif`;
  ctx.lineWidth = devicePixelRatio;
  for (const t of marks.thresholds) {
    const y = Math.round(u.valToPos(t.value, "y", true));
    if (y < top || y > top + height) continue;
    ctx.strokeStyle = "#dc2626";
    ctx.fillStyle = "#dc2626";
    ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
    ctx.fillText(t.label, left + 4, y - 4);
  }
  ctx.setLineDash([]);
  const [xmin, xmax] = [u.scales.x.min, u.scales.x.max];
  for (const a of marks.actions) {
    if (a.time < xmin || a.time > xmax) continue;
    const x = Math.round(u.valToPos(a.time, "x", true));
    ctx.strokeStyle = "#7c3aed";
    ctx.fillStyle = "#7c3aed";
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
    ctx.fillText(a.label, x + 4, top + 12 * devicePixelRatio);
  }
  ctx.restore();
}
