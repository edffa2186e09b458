import { api } from "./api.js";
import { age, badge, clear, euros, every, h } from "./dom.js";

// problemsList shows an API error with each field at fault.
export function problemsList(err) {
  return h("div", { class: "problems", role: "alert" },
    h("strong", {}, err.message),
    err.problems.length ? h("ul", {}, err.problems.map((p) => h("li", {}, p.path ? h("code", {}, p.path) : null, p.path ? ": " : "", p.message))) : null);
}

// deleteButton asks for a second click before decommissioning.
export function deleteButton(id, done) {
  let armed = false, timer;
  const b = h("button", { class: "danger", type: "button", "data-delete": id, onclick: async () => {
    if (!armed) {
      armed = true;
      b.textContent = "Confirm delete";
      timer = setTimeout(() => { armed = false; b.textContent = "Delete"; }, 5000);
      return;
    }
    clearTimeout(timer);
    b.disabled = true;
    b.textContent = "Deleting…";
    try {
      await api("/v1/slices/" + encodeURIComponent(id), { method: "DELETE" });
      done?.();
    } catch (e) {
      b.disabled = false;
      b.textContent = "Delete";
      b.after(problemsList(e));
    }
  } }, "Delete");
  return b;
}

export function slicesView(main, signal) {
  const file = h("input", { id: "spec-file", type: "file", accept: ".yaml,.yml,.json,text/yaml,application/json" });
  const out = h("div", { id: "create-result" });
  const create = h("button", { id: "create", type: "button", onclick: async () => {
    clear(out);
    const f = file.files[0];
    if (!f) { out.append(h("p", { class: "error" }, "Choose a NECOS slice file (YAML or JSON) first.")); return; }
    create.disabled = true;
    try {
      const text = await f.text();
      const type = /\.json$/i.test(f.name) ? "application/json" : "text/x-yaml";
      const sl = await api("/v1/slices", { method: "POST", body: text, type });
      location.hash = "#/slices/" + encodeURIComponent(sl.id);
    } catch (e) {
      out.append(problemsList(e));
    } finally {
      create.disabled = false;
    }
  } }, "Create slice");
  const body = h("tbody");
  const empty = h("p", { class: "muted", id: "no-slices", hidden: true }, "No slices yet: create one from a slice file.");
  main.append(
    h("section", { class: "card" },
      h("h1", {}, "Slices"),
      h("div", { class: "create" }, h("label", { for: "spec-file" }, "Slice spec"), file, create),
      out,
      h("table", { id: "slices", class: "grid" },
        h("thead", {}, h("tr", {}, ["Name", "ID", "State", "Age", "Parts", "Links", "Cost / day", ""].map((c) => h("th", {}, c)))),
        body),
      empty));

  let slices = [];
  const render = () => {
    const now = Date.now();
    body.replaceChildren(...slices.map((sl) => h("tr", { "data-id": sl.id },
      h("td", {}, h("a", { href: "#/slices/" + encodeURIComponent(sl.id) }, sl.name)),
      h("td", {}, h("code", {}, sl.id)),
      h("td", {}, badge(sl.deleting ? "Deleting" : sl.state), sl.message ? h("div", { class: sl.state === "Degraded" ? "degraded small" : "muted small" }, sl.message) : null),
      h("td", {}, age(sl.created_at, now)),
      h("td", { class: "num" }, sl.parts),
      h("td", { class: "num" }, sl.links),
      h("td", { class: "num" }, euros(sl.cost_per_day)),
      h("td", {}, sl.deleting ? null : deleteButton(sl.id, load)))));
    empty.hidden = slices.length > 0;
  };
  const load = async () => {
    const l = await api("/v1/slices", { signal });
    slices = l.slices;
    render();
  };
  every(3000, signal, load);
}
