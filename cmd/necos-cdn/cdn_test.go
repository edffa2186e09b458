package main

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func content(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

var files = map[string]string{
	"index.html":         "core index",
	"spain/index.html":   "spain index",
	"spain/alhambra.txt": "alhambra",
	"greece/index.html":  "greece index",
}

// get asks srv for url with Host host, without following redirects.
func get(t *testing.T, h http.Handler, host, url string) *http.Response {
	t.Helper()
	r := httptest.NewRequest("GET", url, nil)
	r.Host = host
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, r *http.Response) string {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

func TestSite(t *testing.T) {
	core := &site{name: "core-dc", root: content(t, files), zone: "cdn.touristic.example"}
	edgeFiles := map[string]string{"spain/index.html": "spain at the edge", "spain/alhambra.txt": "alhambra at the edge"}
	edge := &site{name: "edge-spain", root: content(t, edgeFiles), zone: "cdn.touristic.example",
		place: "spain", core: "http://10.10.1.2"}
	for _, c := range []struct {
		name      string
		h         http.Handler
		host, url string
		status    int
		body      string
		server    string
		location  string
	}{
		{"core index", core, "www.cdn.touristic.example", "/", 200, "core index", "core-dc", ""},
		{"core by address", core, "10.10.1.2", "/", 200, "core index", "core-dc", ""},
		{"core, place host", core, "spain.cdn.touristic.example", "/alhambra.txt", 200, "alhambra", "core-dc", ""},
		{"core, place path", core, "10.10.1.2", "/greece/", 200, "greece index", "core-dc", ""},
		{"core, no such page", core, "www.cdn.touristic.example", "/nope", 404, "", "core-dc", ""},
		{"core, no escape", core, "www.cdn.touristic.example", "/../../etc/passwd", 404, "", "core-dc", ""},
		{"edge, its place by host", edge, "spain.cdn.touristic.example", "/", 200, "spain at the edge", "edge-spain", ""},
		{"edge, its place by path", edge, "10.10.2.2", "/spain/alhambra.txt", 200, "alhambra at the edge", "edge-spain", ""},
		{"edge, another place", edge, "greece.cdn.touristic.example", "/x.html", 302, "", "edge-spain", "http://10.10.1.2/greece/x.html"},
		{"edge, general content", edge, "www.cdn.touristic.example", "/videos/tour.ts", 302, "", "edge-spain", "http://10.10.1.2/videos/tour.ts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := get(t, c.h, c.host, c.url)
			if r.StatusCode != c.status {
				t.Errorf("status %d, want %d", r.StatusCode, c.status)
			}
			if b := body(t, r); c.body != "" && b != c.body {
				t.Errorf("body %q, want %q", b, c.body)
			}
			if s := r.Header.Get(headerServer); s != c.server {
				t.Errorf("%s %q, want %q", headerServer, s, c.server)
			}
			if l := r.Header.Get("Location"); l != c.location {
				t.Errorf("Location %q, want %q", l, c.location)
			}
		})
	}
}

// The DNS server over real UDP on loopback, asked with Go's own resolver.
func TestDNS(t *testing.T) {
	d := &dnsServer{zone: "cdn.touristic.example", core: netip.MustParseAddr("10.10.1.2"),
		edges: edgeFlag{"spain": {netip.MustParseAddr("10.10.2.2")},
			"greece": {netip.MustParseAddr("10.10.3.2"), netip.MustParseAddr("10.10.6.2")}}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go d.serve(pc)
	defer pc.Close()
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lookup := func(name string) []string {
		ips, err := res.LookupHost(ctx, name)
		if err != nil {
			t.Errorf("look up %s: %v", name, err)
		}
		return ips
	}
	if got := lookup("spain.cdn.touristic.example"); strings.Join(got, " ") != "10.10.2.2" {
		t.Errorf("spain: %v", got)
	}
	for _, n := range []string{"www.cdn.touristic.example", "cdn.touristic.example", "brazil.cdn.touristic.example"} {
		if got := lookup(n); strings.Join(got, " ") != "10.10.1.2" {
			t.Errorf("%s: %v, want the core", n, got)
		}
	}
	// Two edges in one place: both (the resolver may sort them), the first in turn.
	if got := lookup("greece.cdn.touristic.example"); len(got) != 2 {
		t.Fatalf("greece: %v", got)
	}
	first := map[string]bool{}
	for range 4 {
		got, _ := d.lookup("greece.cdn.touristic.example", netip.Addr{})
		first[got[0].String()] = true
	}
	if len(first) != 2 {
		t.Errorf("greece's edges never rotate: %v", first)
	}
	if _, err := res.LookupHost(ctx, "example.org"); err == nil {
		t.Error("a name outside the zone resolved")
	}
}

// A visitor is sent to the place's edge at its own site: the one whose address shares
// the most leading bits with the visitor's (at least --site-bits); a visitor at no edge's
// site gets every edge in turn.
func TestDNSVisitorsSite(t *testing.T) {
	a := netip.MustParseAddr
	spain, madrid, madrid2 := a("10.10.3.10"), a("10.10.5.10"), a("10.10.5.11")
	d := &dnsServer{zone: "cdn.touristic.example", core: a("10.10.1.2"), siteBits: 24,
		edges: edgeFlag{"spain": {spain, madrid, madrid2}}}
	for _, c := range []struct {
		name  string
		from  netip.Addr
		first []netip.Addr // what the first answer may be, over several asks
	}{
		{"a visitor in Spain", a("10.10.3.200"), []netip.Addr{spain}},
		{"a visitor in Madrid, two edges there", a("10.10.5.200"), []netip.Addr{madrid, madrid2}},
		{"a visitor at no edge's site", a("10.10.4.200"), []netip.Addr{spain, madrid, madrid2}},
		{"an unknown visitor", netip.Addr{}, []netip.Addr{spain, madrid, madrid2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			firsts := map[netip.Addr]bool{}
			for range 6 {
				got, ok := d.lookup("spain.cdn.touristic.example", c.from)
				if !ok || len(got) != 3 {
					t.Fatalf("answer %v (in zone %v), want the 3 edges", got, ok)
				}
				firsts[got[0]] = true
			}
			if len(firsts) != len(c.first) {
				t.Errorf("first answers %v, want each of %v", firsts, c.first)
			}
			for _, ip := range c.first {
				if !firsts[ip] {
					t.Errorf("first answers %v, want each of %v", firsts, c.first)
				}
			}
		})
	}
	// The other names still go to the core, wherever the visitor is.
	if got, _ := d.lookup("www.cdn.touristic.example", a("10.10.3.200")); len(got) != 1 || got[0] != d.core {
		t.Errorf("www from Spain: %v, want the core", got)
	}
}

// An edge started with --announce joins its place's answers through the core's HTTP
// server, from the address it dials from, and leaves them when it stops announcing.
func TestAnnounce(t *testing.T) {
	now := time.Now()
	d := &dnsServer{zone: "cdn.touristic.example", core: netip.MustParseAddr("10.10.1.2"), siteBits: 24,
		edges: edgeFlag{"spain": {netip.MustParseAddr("10.10.3.10")}}, now: func() time.Time { return now }}
	srv := httptest.NewServer(d)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		announceLoop(ctx, srv.Client(), srv.URL, "spain", time.Hour)
	}()
	loopback := netip.MustParseAddr("127.0.0.1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := d.lookup("spain.cdn.touristic.example", loopback)
		if len(got) == 2 && got[0] == loopback {
			break // the announced edge, first for a visitor at its site
		}
		if time.Now().After(deadline) {
			t.Fatalf("spain after the announcement: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	now = now.Add(announceFor + time.Second)
	if got, _ := d.lookup("spain.cdn.touristic.example", loopback); len(got) != 1 || got[0].String() != "10.10.3.10" {
		t.Errorf("spain once the edge stopped announcing: %v, want the --edge only", got)
	}
	// Bad announcements change nothing and say why.
	for _, c := range []struct {
		method, query string
		status        int
	}{
		{"GET", "?place=spain", http.StatusMethodNotAllowed},
		{"POST", "?place=", http.StatusBadRequest},
		{"POST", "?place=a.b", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+announcePath+c.query, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: HTTP %d, want %d", c.method, c.query, resp.StatusCode, c.status)
		}
	}
	if got := d.edgesOf("a.b"); len(got) != 0 {
		t.Errorf("a refused announcement was kept: %v", got)
	}
}

func TestFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"core", "--core-ip", "nope"}, "--core-ip"},
		{[]string{"core", "--core-ip", "10.0.0.1", "--edge", "spain"}, "PLACE=IP"},
		{[]string{"core", "--core-ip", "10.0.0.1", "--edge", "spain=x"}, "IPv4"},
		{[]string{"core", "--core-ip", "10.0.0.1", "--site-bits", "33"}, "--site-bits"},
		{[]string{"edge", "--place", "a b", "--core", "http://x"}, "--place"},
		{[]string{"edge", "--place", "spain", "--core", "10.0.0.1"}, "--core"},
	} {
		err := run(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}

// A visitor that accepts gzip gets the content compressed; one that does not, as is.
func TestSiteGzip(t *testing.T) {
	core := &site{name: "core-dc", root: content(t, map[string]string{"index.html": strings.Repeat("touristic ", 1000)}), zone: "cdn.touristic.example"}
	srv := httptest.NewServer(core)
	defer srv.Close()
	for _, gz := range []bool{true, false} {
		tr := &http.Transport{DisableCompression: !gz}
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		b := body(t, resp)
		resp.Body.Close()
		if b != strings.Repeat("touristic ", 1000) || resp.Uncompressed != gz {
			t.Errorf("gzip %v: %d bytes, uncompressed by the client %v", gz, len(b), resp.Uncompressed)
		}
	}
}
