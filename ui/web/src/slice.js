import { api, stream } from "./api.js";
import { Charts } from "./charts.js";
import { badge, clear, clock, dateTime, debounce, euros, every, h, seconds } from "./dom.js";
import { deleteButton } from "./slices.js";
import { topology } from "./topology.js";

const CATEGORIES = ["all", "slice", "part", "link", "service", "policy", "elastic", "monitoring"];
const MAX_EVENTS = 1000;

function section(id, title, ...kids) {
  return h("section", { class: "card", id }, h("h2", {}, title), ...kids);
}

function timingsTable(phases) {
  if (!phases.length) return h("p", { class: "muted" }, "No phase recorded yet.");
  const t0 = Math.min(...phases.map((p) => Date.parse(p.start)));
  const t1 = Math.max(...phases.map((p) => Date.parse(p.start) + p.seconds * 1000), t0 + 1);
  return h("table", { class: "grid timings" },
    h("thead", {}, h("tr", {}, ["Phase", "Of", "Start", "Duration", "Outcome", ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, phases.map((p) => {
      const bar = h("div", { class: "bar st-" + p.outcome });
      // CSSOM, not a style attribute: allowed by the page's CSP.
      bar.style.marginLeft = ((Date.parse(p.start) - t0) / (t1 - t0)) * 100 + "%";
      bar.style.width = Math.max(0.5, ((p.seconds * 1000) / (t1 - t0)) * 100) + "%";
      return h("tr", { "data-phase": p.name, "data-subject": p.subject || "" },
        h("td", {}, p.name), h("td", {}, p.subject || ""), h("td", {}, clock(p.start)),
        h("td", { class: "num" }, seconds(p.seconds)), h("td", {}, badge(p.outcome)),
        h("td", { class: "gantt", title: p.message || "" }, bar));
    })));
}

function actionsList(actions) {
  if (!actions.length) return null;
  return h("div", { class: "actions" }, h("h3", {}, "Elastic actions"), actions.map((a, i) =>
    h("div", { class: "action", "data-policy": a.policy },
      h("p", {}, h("strong", {}, `#${i + 1} ${a.policy}`), ` on ${a.part || "?"}: ${a.action || "…"} `, badge(a.outcome)),
      h("p", { class: "chain" }, [
        ["crossed", a.crossed], ["fired", a.fired], ["done", a.done], ["post-deployed", a.post_deployed], ["effective", a.effective],
      ].filter(([, t]) => t).map(([n, t]) => h("span", {}, `${n} ${clock(t)}`)).reduce((acc, x, j) => (j ? [...acc, " → ", x] : [x]), [])),
      timingsTable(a.phases),
      a.message ? h("p", { class: "muted small" }, a.message) : null)));
}

function servicesList(services) {
  if (!services.length) return h("p", { class: "muted" }, "No service deployed.");
  return services.map((svc) => h("div", { class: "service", "data-service": svc.id },
    h("p", {}, h("strong", {}, svc.id), " ", badge(svc.state), ` generation ${svc.generation}, steps ${svc.steps.succeeded}/${svc.steps.total} done`,
      svc.steps.failed ? `, ${svc.steps.failed} failed` : ""),
    svc.message ? h("p", { class: "muted small" }, svc.message) : null,
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["Part", "Node", "Step", "Kind", "State", "Took"].map((c) => h("th", {}, c)))),
      h("tbody", {}, svc.parts.flatMap((p) => p.vdus.flatMap((v) => v.nodes.flatMap((n) => n.steps.map((st) =>
        h("tr", {}, h("td", {}, p.name), h("td", {}, n.name), h("td", {}, st.step), h("td", {}, st.kind), h("td", {}, badge(st.state)),
          h("td", { class: "num" }, seconds(st.duration_ms / 1000)))))))))));
}

function policiesList(policies) {
  if (!policies.length) return h("p", { class: "muted" }, "No elasticity policy.");
  return h("ul", { class: "policies" }, policies.map((p) => h("li", { "data-policy": p.name }, h("strong", {}, p.name), " ", p.condition,
    h("span", { class: "muted small" }, ` (${p.source})`))));
}

const category = (type) => (type.split(".")[0] === "service" ? "service" : type.split(".")[0]);

export function sliceView(main, id, signal) {
  const path = "/v1/slices/" + encodeURIComponent(id);
  const head = h("div", { class: "slice-head" }, h("h1", {}, id));
  const topo = h("div", { class: "topology-box" });
  const timings = h("div", { id: "timings-box" });
  const charts = h("div", { class: "charts", id: "charts" }, h("p", { class: "muted", id: "no-metrics" }, "No metrics yet."));
  const services = h("div");
  const policies = h("div");
  const filterText = h("input", { id: "event-filter", type: "search", placeholder: "filter events" });
  const filterKind = h("select", { id: "event-kind" }, CATEGORIES.map((c) => h("option", { value: c }, c)));
  const evList = h("ol", { class: "events", id: "events" });
  const status = h("p", { class: "muted small", id: "stream-status" }, "connecting…");
  main.append(
    h("section", { class: "card" }, head),
    h("div", { class: "cols" },
      section("topology-card", "Topology", topo),
      section("timings-card", "Timings", timings)),
    section("metrics-card", "Live metrics", charts),
    h("div", { class: "cols" },
      section("services-card", "Services", services),
      section("policies-card", "Policies", policies)),
    section("events-card", "Events", h("div", { class: "filters" }, filterText, filterKind, status), evList));

  let slice = null, tm = { phases: [], actions: [] }, pols = [];
  const events = [];
  const chartSet = new Charts(charts);
  signal.addEventListener("abort", () => chartSet.destroy());

  const renderHead = () => {
    if (!slice) return;
    clear(head).append(...[
      h("h1", {}, slice.name, " ", badge(slice.deleting ? "Deleting" : slice.state)),
      h("p", { class: "meta" }, h("code", {}, slice.id), ` · ${slice.parts.length} parts, ${slice.links.length} links · ${euros(slice.cost_per_day)} per day · created ${dateTime(slice.created_at)}`,
        slice.ready_at ? ` · ready ${dateTime(slice.ready_at)}` : ""),
      slice.message ? h("p", { class: "error" }, slice.message) : null,
      slice.deleting ? null : deleteButton(slice.id, () => { location.hash = "#/"; })].filter(Boolean));
  };
  const gone = (msg) => {
    clear(head).append(h("h1", {}, id), h("p", { class: "error", id: "slice-gone" }, msg));
  };
  const renderEvents = () => {
    const q = filterText.value.trim().toLowerCase(), k = filterKind.value;
    const shown = events.filter((e) => (k === "all" || category(e.type) === k) &&
      (!q || [e.type, e.part, e.link, e.message].some((x) => x && x.toLowerCase().includes(q))));
    evList.replaceChildren(...shown.slice(-300).reverse().map((e) => h("li", { "data-type": e.type, class: "ev-" + category(e.type) },
      h("time", { datetime: e.time }, clock(e.time)), h("span", { class: "type" }, e.type),
      h("span", { class: "subject" }, e.part || e.link || ""), h("span", { class: "msg" }, e.message || ""))));
  };
  filterText.addEventListener("input", renderEvents);
  filterKind.addEventListener("change", renderEvents);

  const loadSlice = async () => {
    try {
      slice = await api(path, { signal });
    } catch (e) {
      if (e.status === 404) { slice = null; gone("No such slice (it may have been decommissioned)."); return; }
      throw e;
    }
    renderHead();
    clear(topo).append(topology(slice));
  };
  const loadRest = async () => {
    const [t, sv, pl] = await Promise.all([
      api(path + "/timings", { signal }).catch(() => null),
      api(path + "/services", { signal }).catch(() => null),
      api(path + "/policies", { signal }).catch(() => null),
    ]);
    if (t) { tm = t; clear(timings).append(timingsTable(t.phases), actionsList(t.actions) || ""); }
    if (sv) clear(services).append(...[servicesList(sv.services)].flat());
    if (pl) { pols = pl.policies; clear(policies).append(policiesList(pols)); }
  };
  const loadMetrics = async () => {
    let m;
    try {
      m = await api(path + "/metrics?since=15m", { signal });
    } catch (e) {
      document.getElementById("no-metrics")?.replaceChildren(e.status === 503 ? "No monitoring in this federation." : "No metrics: " + e.message);
      return;
    }
    const thresholds = new Map();
    for (const p of pols) {
      const metric = p.policy["metric-collector"]?.["metric-name"];
      if (!metric) continue;
      if (!thresholds.has(metric)) thresholds.set(metric, []);
      thresholds.get(metric).push({ value: p.policy.value, label: `${p.name} ${p.policy.operator} ${p.policy.value}` });
    }
    const actions = tm.actions.flatMap((a, i) => [
      { time: Date.parse(a.fired) / 1000, label: `#${i + 1} ${a.action || a.policy}` },
      ...(a.done ? [{ time: Date.parse(a.done) / 1000, label: `#${i + 1} done` }] : []),
    ]);
    const any = m.series.some((s) => s.points.length);
    document.getElementById("no-metrics")?.toggleAttribute("hidden", any);
    chartSet.update(m.series, thresholds, actions);
  };

  const refresh = debounce(250, () => { loadSlice().catch(() => {}); loadRest().catch(() => {}); });
  const refreshMetrics = debounce(500, () => loadMetrics().catch(() => {}));

  loadSlice().then(loadRest).then(loadMetrics).catch((e) => gone("Cannot read the slice: " + e.message));
  every(5000, signal, async () => { if (slice) await loadMetrics(); });

  stream(path + "/events", (name, data) => {
    if (name === "stream.live") {
      status.textContent = "live";
      status.dataset.live = "true";
      return;
    }
    if (name === "stream.end") {
      status.textContent = "the slice is gone";
      gone("The slice has been decommissioned.");
      return;
    }
    events.push(data);
    if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
    renderEvents();
    refresh();
    if (data.type.startsWith("elastic.") || data.type === "monitoring.started") refreshMetrics();
  }, signal);
}
