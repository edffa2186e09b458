// Package ui serves the web dashboard that necosd shows at /ui/: a tenant logs in with
// their token and sees their slices (topology, timings, services, policies, live
// metrics, events) and the marketplace. The page is static; everything it shows comes
// from the /v1 API with the tenant's token, so tenant isolation is the API's.
//
// The assets are built from ui/web (npm, from its lock file; scripts/ui.sh) into
// ui/dist, committed, and embedded here: building necos never needs npm. Every answer
// carries a strict Content-Security-Policy: scripts, styles and connections only from
// the page's own origin, no inline script or style, no framing.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed dist
var dist embed.FS

// Prefix is where necosd mounts the dashboard.
const Prefix = "/ui/"

// CSP is the Content-Security-Policy of every answer.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Assets returns the built dashboard's files.
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic("ui: embedded assets: " + err.Error())
	}
	return sub
}

// Handler serves the dashboard under Prefix: index.html at Prefix itself, the other
// assets by name, 404 for anything else. It answers GET and HEAD only.
func Handler() http.Handler {
	assets := Assets()
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", CSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		if name == r.URL.Path {
			http.NotFound(w, r)
			return
		}
		if name == "" {
			name = "index.html"
		}
		if path.Clean(name) != name || strings.Contains(name, "/") {
			http.NotFound(w, r)
			return
		}
		if _, err := fs.Stat(assets, name); err != nil {
			http.NotFound(w, r)
			return
		}
		// The page must be revalidated (a new necosd may bring new assets); the
		// assets are small and revalidated too.
		hd.Set("Cache-Control", "no-cache")
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		if name == "index.html" {
			// FileServer redirects /index.html to /: serve the file's content directly.
			serveFile(w, r2, assets, name)
			return
		}
		files.ServeHTTP(w, r2)
	})
}

func serveFile(w http.ResponseWriter, r *http.Request, assets fs.FS, name string) {
	b, err := fs.ReadFile(assets, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}

// With serves the dashboard under Prefix (and sends a browser opening / or /ui to it),
// and everything else with next, the API.
func With(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(Prefix, Handler())
	toUI := http.RedirectHandler(Prefix, http.StatusFound)
	mux.Handle("GET /{$}", toUI)
	mux.Handle("GET /ui", toUI)
	mux.Handle("/", next)
	return mux
}
