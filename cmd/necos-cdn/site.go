package main

import (
	"compress/gzip"
	"log"
	"net"
	"net/http"
	"path"
	"strings"
)

// headerServer names the server that answered, so a visitor (and a test) sees whether an
// edge or the core served it.
const headerServer = "X-CDN-Server"

// site serves content: the core's (place empty: every place's and its own) or an edge's
// (its place's only; the rest is redirected to core).
type site struct {
	name, root, zone string
	place, core      string
}

// placeOf returns the place a request is about, from its host (PLACE.ZONE) or, for any
// other host, from its first path element when that names a directory of a place; and
// the path inside the place's content.
func (s *site) placeOf(r *http.Request) (place, rest string) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	p := path.Clean("/" + r.URL.Path)
	if label, ok := strings.CutSuffix(host, "."+s.zone); ok && !strings.Contains(label, ".") && label != "www" {
		return label, p
	}
	first, after, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if first != "" && validLabel(first) && (first == s.place || s.place == "" && isDir(s.root, first)) {
		return first, "/" + after
	}
	return "", p
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerServer, s.name)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	place, rest := s.placeOf(r)
	if s.place != "" && place != s.place {
		// Not this edge's content: the core has it.
		to := s.core + r.URL.Path
		if place != "" {
			to = s.core + "/" + place + rest
		}
		if r.URL.RawQuery != "" {
			to += "?" + r.URL.RawQuery
		}
		log.Printf("%s %s%s -> %s", r.RemoteAddr, r.Host, r.URL.Path, to)
		http.Redirect(w, r, to, http.StatusFound)
		return
	}
	dir := s.root
	if place != "" {
		dir = path.Join(s.root, place)
	}
	log.Printf("%s %s%s served (place %q)", r.RemoteAddr, r.Host, r.URL.Path, place)
	// The file server answers paths inside dir only (it cleans them).
	r2 := r.Clone(r.Context())
	r2.URL.Path = rest
	w.Header().Add("Vary", "Accept-Encoding")
	if acceptsGzip(r) {
		// Compressed on the fly, as CDN servers do: this is what costs an edge CPU when
		// it is busy (and what its elasticity policy watches).
		r2.Header.Del("Range")
		gz := &gzipWriter{ResponseWriter: w}
		defer gz.close()
		w = gz
	}
	http.FileServer(http.Dir(dir)).ServeHTTP(w, r2)
}

func acceptsGzip(r *http.Request) bool {
	for _, e := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(e), ";"); strings.EqualFold(name, "gzip") {
			return true
		}
	}
	return false
}

// gzipWriter compresses a successful answer's body; other answers pass as they are.
type gzipWriter struct {
	http.ResponseWriter
	gz      *gzip.Writer
	decided bool
}

func (g *gzipWriter) WriteHeader(code int) {
	if !g.decided {
		g.decided = true
		if code == http.StatusOK {
			h := g.Header()
			h.Del("Content-Length")
			h.Set("Content-Encoding", "gzip")
			g.gz, _ = gzip.NewWriterLevel(g.ResponseWriter, gzip.BestCompression)
		}
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipWriter) Write(b []byte) (int, error) {
	if !g.decided {
		g.WriteHeader(http.StatusOK)
	}
	if g.gz != nil {
		return g.gz.Write(b)
	}
	return g.ResponseWriter.Write(b)
}

func (g *gzipWriter) close() {
	if g.gz != nil {
		_ = g.gz.Close()
	}
}
