// Command necos-cdn is the Touristic CDN service of the necos demo, run on the slice's
// guests (examples/services/touristic-cdn-xen.yaml deploys it):
//
//	necos-cdn core --name NAME --root DIR --zone ZONE --core-ip IP [--site-bits N] --edge PLACE=IP[,IP] ...
//	necos-cdn edge --name NAME --root DIR --zone ZONE --place PLACE --core URL [--announce]
//
// The core serves every page and answers DNS look-ups for the zone, sending a visitor to
// the edge of the place the content is about: PLACE.ZONE resolves to that place's edges,
// the one at the visitor's site first (an edge whose address shares the first
// --site-bits of the visitor's), in turn when there are several; every other name of the
// zone resolves to the core. A place's edges are its --edge flags and the edges that
// announce themselves (--announce: every 10 s, POST /.cdn/announce?place=PLACE to the
// core, from the address visitors reach the edge at), so a copy of an edge started later
// is answered without restarting the core. An edge serves its place's content and
// redirects any other request to the core. Every answer carries the header X-CDN-Server
// naming the server that gave it.
//
// Content lives under --root: ROOT/index.html and the like for the core's own pages,
// ROOT/PLACE/... for each place's. A request for http://PLACE.ZONE/x is served from
// ROOT/PLACE/x, one for http://www.ZONE/x (or an address) from ROOT/x.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "necos-cdn:", err)
		os.Exit(2)
	}
}

// edgeFlag collects --edge PLACE=IP[,IP...].
type edgeFlag map[string][]netip.Addr

func (e edgeFlag) String() string { return fmt.Sprint(map[string][]netip.Addr(e)) }

func (e edgeFlag) Set(v string) error {
	place, ips, ok := strings.Cut(v, "=")
	if !ok || !validLabel(place) {
		return fmt.Errorf("expected PLACE=IP[,IP...], got %q", v)
	}
	for _, s := range strings.Split(ips, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || !a.Is4() {
			return fmt.Errorf("%s: expected IPv4 addresses, got %q", place, s)
		}
		e[strings.ToLower(place)] = append(e[strings.ToLower(place)], a)
	}
	return nil
}

// validLabel reports whether s is one DNS label of letters, digits and hyphens.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func run(args []string) error {
	if len(args) == 0 || (args[0] != "core" && args[0] != "edge") {
		return errors.New("usage: necos-cdn core|edge [flags] (-h for the flags)")
	}
	role := args[0]
	fs := flag.NewFlagSet("necos-cdn "+role, flag.ContinueOnError)
	name := fs.String("name", role, "name of this server, sent in X-CDN-Server")
	root := fs.String("root", "/data/cdn", "content directory")
	zone := fs.String("zone", "cdn.touristic.example", "the CDN's DNS zone")
	httpAddr := fs.String("http", ":80", "HTTP listen address")
	logFile := fs.String("log", "", "append logs to this file (default: stderr)")
	var (
		dnsAddr, coreIP *string
		place, coreURL  *string
		siteBits        *int
		announce        *bool
		edges           = edgeFlag{}
	)
	if role == "core" {
		dnsAddr = fs.String("dns", ":53", "DNS listen address (UDP)")
		coreIP = fs.String("core-ip", "", "the core's address, the answer for the zone's other names")
		fs.Var(edges, "edge", "PLACE=IP[,IP...]: the edges of a place (repeatable)")
		siteBits = fs.Int("site-bits", 24, "leading address bits a visitor shares with the edges at its site (0: no preference)")
	} else {
		place = fs.String("place", "", "the place whose content this edge serves")
		coreURL = fs.String("core", "", "the core's base URL, where other requests are redirected")
		announce = fs.Bool("announce", false, "announce this edge to the core's DNS every 10 s")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		log.SetOutput(f)
	}
	z := strings.ToLower(strings.TrimSuffix(*zone, "."))
	var handler http.Handler
	var dns *dnsServer
	switch role {
	case "core":
		ip, err := netip.ParseAddr(*coreIP)
		if err != nil || !ip.Is4() {
			return fmt.Errorf("--core-ip: expected an IPv4 address, got %q", *coreIP)
		}
		if *siteBits < 0 || *siteBits > 32 {
			return fmt.Errorf("--site-bits: expected 0 to 32, got %d", *siteBits)
		}
		dns = &dnsServer{zone: z, core: ip, edges: edges, siteBits: *siteBits}
		web := &site{name: *name, root: *root, zone: z}
		// Not a ServeMux: it would redirect unclean paths the site answers itself.
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == announcePath {
				dns.ServeHTTP(w, r)
				return
			}
			web.ServeHTTP(w, r)
		})
	case "edge":
		if !validLabel(*place) {
			return fmt.Errorf("--place: expected a DNS label such as spain, got %q", *place)
		}
		if !strings.HasPrefix(*coreURL, "http://") && !strings.HasPrefix(*coreURL, "https://") {
			return fmt.Errorf("--core: expected a URL such as http://10.10.1.2, got %q", *coreURL)
		}
		handler = &site{name: *name, root: *root, zone: z, place: strings.ToLower(*place),
			core: strings.TrimSuffix(*coreURL, "/")}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if dns != nil {
		pc, err := net.ListenPacket("udp", *dnsAddr)
		if err != nil {
			return err
		}
		defer pc.Close()
		go func() { errc <- dns.serve(pc) }()
		log.Printf("%s: DNS for %s on %s", *name, z, pc.LocalAddr())
	}
	if role == "edge" && *announce {
		go announceLoop(ctx, &http.Client{Timeout: 5 * time.Second}, strings.TrimSuffix(*coreURL, "/"), strings.ToLower(*place), announceEvery)
	}
	log.Printf("%s: %s serving %s on %s", *name, role, *root, ln.Addr())
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
