import { api } from "./api.js";
import { badge, bandwidth, dateTime, euros, every, h } from "./dom.js";

const res = (r) => (r ? `${r.cpus} vCPU · ${Math.round(r.memory_mb / 1024)} GB · ${r.storage_gb} GB disk` : "");

// marketView shows the federation: every provider with its location and what it offers,
// and the plugin instances behind them with their health (refused ones with why).
export function marketView(main, signal) {
  const provBody = h("tbody"), plugBody = h("tbody");
  main.append(
    h("section", { class: "card" }, h("h1", {}, "Marketplace"),
      h("table", { class: "grid", id: "providers" },
        h("thead", {}, h("tr", {}, ["Provider", "Location", "Offers", "Capacity", "Free", "Held by slices", "Price / node / day", "Plugin health"].map((c) => h("th", {}, c)))), provBody)),
    h("section", { class: "card" }, h("h2", {}, "Plugins"),
      h("table", { class: "grid", id: "plugins" },
        h("thead", {}, h("tr", {}, ["Plugin", "Provider", "Version", "Kinds", "State", "Started", "Restarts", "Last error"].map((c) => h("th", {}, c)))), plugBody)));
  every(5000, signal, async () => {
    const [pr, pl, mk] = await Promise.all([api("/v1/providers", { signal }), api("/v1/plugins", { signal }), api("/v1/marketplace", { signal })]);
    const market = new Map(mk.providers.map((e) => [e.provider, e]));
    const health = new Map();
    for (const p of pl.plugins) {
      if (!p.provider) continue;
      if (!health.has(p.provider)) health.set(p.provider, []);
      health.get(p.provider).push(p);
    }
    provBody.replaceChildren(...pr.providers.map((p) => h("tr", { "data-provider": p.name },
      h("td", {}, h("strong", {}, p.name)),
      h("td", {}, p.location),
      h("td", {}, p.offers.map((o) => h("div", {}, `${o.kind}: ${o.vim || o.wim || ""} (${o.plugin})`,
        o.part_types?.length ? ` · ${o.part_types.join(", ")}` : "", o.sites?.length ? ` · sites ${o.sites.join(", ")}` : ""))),
      ...((m) => [
        h("td", { class: "small" }, res(m?.capacity)),
        h("td", { class: "small" }, res(m?.free)),
        h("td", { class: "small" }, m ? (m.holders ? `${res(m.reserved)}${m.reserved_bps ? " · " + bandwidth(m.reserved_bps) : ""} (${m.holders})` : "nothing") : ""),
        h("td", { class: "num" }, m?.price_per_node_day != null ? euros(m.price_per_node_day) : h("span", { class: "error small" }, m?.error || "")),
      ])(market.get(p.name)),
      h("td", {}, (health.get(p.name) || []).map((x) => badge(x.state, `${x.plugin} ${x.state}`))))));
    plugBody.replaceChildren(...pl.plugins.map((p) => h("tr", { "data-plugin": p.name },
      h("td", {}, p.plugin), h("td", {}, p.provider || ""), h("td", {}, p.version), h("td", {}, p.kinds.join(", ")),
      h("td", {}, badge(p.state)), h("td", {}, dateTime(p.started)), h("td", { class: "num" }, p.restarts),
      h("td", { class: "error small" }, p.last_error || ""))));
  });
}
