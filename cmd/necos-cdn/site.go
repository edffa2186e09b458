package main

import (
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
	http.FileServer(http.Dir(dir)).ServeHTTP(w, r2)
}
