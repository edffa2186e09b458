// The API client of the page: every request carries the tenant's token in the
// Authorization header (never in a URL); the token lives in sessionStorage, so it is
// gone with the tab.

const KEY = "necos.token";

export const token = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

// An error answer of the API: its message and the fields at fault.
export class APIError extends Error {
  constructor(status, body, text) {
    super((body && body.error) || text || "HTTP " + status);
    this.status = status;
    this.problems = (body && body.problems) || [];
    this.sliceID = body && body.slice_id;
  }
}

let unauthorized = () => {};
export function onUnauthorized(f) { unauthorized = f; }

function headers(extra) {
  return { Authorization: "Bearer " + token.get(), ...extra };
}

// api calls the API; a 401 logs the tab out (unless login is set: the login form
// says so itself).
export async function api(path, { method = "GET", body, type, signal, login = false } = {}) {
  const h = headers({ Accept: "application/json" });
  if (type) h["Content-Type"] = type;
  const r = await fetch(path, { method, headers: h, body, signal, cache: "no-store", credentials: "omit", redirect: "error" });
  if (r.status === 401 && !login) unauthorized();
  if (r.status === 204) return null;
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!r.ok) throw new APIError(r.status, data, text);
  return data;
}

// stream follows a slice's server-sent events over fetch (an EventSource cannot send
// the Authorization header) and calls on(name, data) for each; it reconnects after a
// break with Last-Event-ID, and ends at stream.end, at a 404, or when signal aborts.
export async function stream(path, on, signal) {
  let last = "";
  while (!signal.aborted) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (last) h["Last-Event-ID"] = last;
      const r = await fetch(path, { headers: h, signal, cache: "no-store", credentials: "omit" });
      if (r.status === 401) { unauthorized(); return; }
      if (r.status === 404) { on("stream.end", { state: "Gone" }); return; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = "message", id = "", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const c = line.indexOf(":");
            const field = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
            if (field === "event") name = val;
            else if (field === "id") id = val;
            else if (field === "data") data += (data ? "\n" : "") + val;
          }
          if (!data) continue;
          if (id) last = id;
          let parsed;
          try { parsed = JSON.parse(data); } catch { continue; }
          on(name, parsed);
          if (name === "stream.end") return;
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}
