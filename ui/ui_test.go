package ui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/necos/necos/ui"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(ui.Handler())
	defer srv.Close()
	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/ui/", "text/html", `<script src="app.js" defer></script>`},
		{"/ui/app.js", "text/javascript", "/v1/slices"},
		{"/ui/app.css", "text/css", ".uplot"},
	} {
		resp, body := get("GET", tc.path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(body, tc.contains) {
			t.Errorf("%s: %d %s, %d bytes", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); csp != ui.CSP || !strings.Contains(csp, "script-src 'self'") ||
			strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", tc.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", tc.path, resp.Header)
		}
	}
	// Nothing outside the built assets, no directory listing, no path tricks.
	for _, p := range []string{"/ui/nope.js", "/ui/../go.mod", "/ui/%2e%2e/ui.go", "/ui/dist/app.js", "/other"} {
		if resp, _ := get("GET", p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := get("POST", "/ui/"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	if resp, body := get("HEAD", "/ui/"); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
}

// The page loads nothing from another origin: every reference in the built HTML is
// relative (data: for the icon), and the script holds no absolute http(s) URL it would
// fetch.
func TestNoExternalAssets(t *testing.T) {
	b, err := io.ReadAll(must(ui.Assets().Open("index.html")))
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, bad := range []string{"http://", "https://", "//cdn", "<style", "style="} {
		if strings.Contains(html, bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
	if strings.Count(html, "<script") != 1 || !strings.Contains(html, `<script src="app.js" defer></script>`) {
		t.Errorf("index.html has inline or foreign scripts:\n%s", html)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestWith(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	srv := httptest.NewServer(ui.With(api))
	defer srv.Close()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]int{"/": http.StatusFound, "/ui": http.StatusFound, "/ui/": 200, "/v1/slices": http.StatusTeapot, "/healthz": http.StatusTeapot} {
		resp, err := noFollow.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || (want == http.StatusFound && resp.Header.Get("Location") != "/ui/") {
			t.Errorf("%s: %d %s, want %d", path, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	// POST / is the API's (its own 404 or 405), not a redirect.
	resp, err := noFollow.Post(srv.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("POST /: %d", resp.StatusCode)
	}
}
