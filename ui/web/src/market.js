import { api } from "./api.js";
import { badge, dateTime, every, h } from "./dom.js";

// marketView shows the federation: every provider with its location and what it offers,
// and the plugin instances behind them with their health (refused ones with why).
export function marketView(main, signal) {
  const provBody = h("tbody"), plugBody = h("tbody");
  main.append(
    h("section", { class: "card" }, h("h1", {}, "Marketplace"),
      h("table", { class: "grid", id: "providers" },
        h("thead", {}, h("tr", {}, ["Provider", "Location", "Offers", "Site", "Plugin health"].map((c) => h("th", {}, c)))), provBody)),
    h("section", { class: "card" }, h("h2", {}, "Plugins"),
      h("table", { class: "grid", id: "plugins" },
        h("thead", {}, h("tr", {}, ["Plugin", "Provider", "Version", "Kinds", "State", "Started", "Restarts", "Last error"].map((c) => h("th", {}, c)))), plugBody)));
  every(5000, signal, async () => {
    const [pr, pl] = await Promise.all([api("/v1/providers", { signal }), api("/v1/plugins", { signal })]);
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
      h("td", {}, p.site ? p.site.underlay : ""),
      h("td", {}, (health.get(p.name) || []).map((x) => badge(x.state, `${x.plugin} ${x.state}`))))));
    plugBody.replaceChildren(...pl.plugins.map((p) => h("tr", { "data-plugin": p.name },
      h("td", {}, p.plugin), h("td", {}, p.provider || ""), h("td", {}, p.version), h("td", {}, p.kinds.join(", ")),
      h("td", {}, badge(p.state)), h("td", {}, dateTime(p.started)), h("td", { class: "num" }, p.restarts),
      h("td", { class: "error small" }, p.last_error || ""))));
  });
}
