// The necos dashboard: a tenant logs in with their token and sees their slices, each
// slice's topology, timings, services, policies, live metrics and events, and the
// marketplace. Every number comes from the /v1 API; live updates from the slice's
// event stream.
import { api, onUnauthorized, token } from "./api.js";
import { clear, h } from "./dom.js";
import { marketView } from "./market.js";
import { sliceView } from "./slice.js";
import { slicesView } from "./slices.js";

let current = null;

function loginView(main) {
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, placeholder: "bearer token" });
  const msg = h("p", { id: "login-error", class: "error", role: "alert" });
  const form = h("form", { id: "login", class: "card login",
    onsubmit: async (e) => {
      e.preventDefault();
      msg.textContent = "";
      const t = input.value.trim();
      if (!t) return;
      token.set(t);
      try {
        await api("/v1/slices", { login: true });
        route();
      } catch (err) {
        token.clear();
        msg.textContent = err.status === 401 ? "Unknown token." : "Cannot reach the API: " + err.message;
      }
    } },
    h("h1", {}, "Log in to necos"),
    h("p", { class: "muted" }, "Paste your tenant token (necosd writes the demo tenant's to data/demo-token). It is kept in this tab only."),
    h("label", { for: "token" }, "Token"), input,
    h("button", { type: "submit", id: "login-submit" }, "Log in"), msg);
  main.append(form);
  input.focus();
}

function route() {
  current?.abort();
  current = new AbortController();
  const main = clear(document.getElementById("main"));
  const hash = decodeURIComponent(location.hash.slice(1)) || "/";
  const loggedIn = !!token.get();
  document.body.classList.toggle("out", !loggedIn);
  for (const [id, on] of [["nav-slices", hash === "/" || hash.startsWith("/slices/")], ["nav-market", hash === "/market"]]) {
    document.getElementById(id).classList.toggle("on", on);
  }
  if (!loggedIn) return loginView(main);
  const m = hash.match(/^\/slices\/([^/]+)$/);
  if (m) return sliceView(main, m[1], current.signal);
  if (hash === "/market") return marketView(main, current.signal);
  return slicesView(main, current.signal);
}

onUnauthorized(() => {
  token.clear();
  route();
});
document.getElementById("logout").addEventListener("click", () => {
  token.clear();
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
route();
