package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ttl of the answers: short, so that a place's new edge is seen soon.
const ttl = 10

// dnsServer answers A queries for its zone: PLACE.ZONE with the place's edges, every
// other name of the zone with the core. A visitor is sent to the edge of the place that
// is at the visitor's own site (the edges sharing the first siteBits of the visitor's
// address, most bits first) and, among several there or when none is, to each in turn.
// A place's edges are the --edge flags and the edges that announced themselves
// (announce), so a copy of an edge that elasticity adds is answered once it runs. Names
// outside the zone are refused: it is no recursive resolver.
type dnsServer struct {
	zone     string
	core     netip.Addr
	edges    map[string][]netip.Addr
	siteBits int
	turn     atomic.Uint64

	mu        sync.Mutex
	announced map[string]map[netip.Addr]time.Time // place -> edge -> until when
	now       func() time.Time
}

// announceFor is how long an announced edge is answered after its last announcement.
const announceFor = 3 * announceEvery

// announceEvery is how often an edge started with --announce announces itself.
const announceEvery = 10 * time.Second

// announce records that ip is an edge of place until announceFor from now.
func (d *dnsServer) announce(place string, ip netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.announced == nil {
		d.announced = map[string]map[netip.Addr]time.Time{}
	}
	if d.announced[place] == nil {
		d.announced[place] = map[netip.Addr]time.Time{}
	}
	d.announced[place][ip] = d.clock().Add(announceFor)
}

func (d *dnsServer) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

// edgesOf returns a place's edges: the flags', then the announced ones still fresh, each
// once, sorted so that the order does not depend on map iteration.
func (d *dnsServer) edgesOf(place string) []netip.Addr {
	out := append([]netip.Addr{}, d.edges[place]...)
	seen := map[netip.Addr]bool{}
	for _, ip := range out {
		seen[ip] = true
	}
	d.mu.Lock()
	now := d.clock()
	var extra []netip.Addr
	for ip, until := range d.announced[place] {
		if now.After(until) {
			delete(d.announced[place], ip)
		} else if !seen[ip] {
			extra = append(extra, ip)
		}
	}
	d.mu.Unlock()
	sort.Slice(extra, func(i, j int) bool { return extra[i].Less(extra[j]) })
	return append(out, extra...)
}

// lookup returns the addresses for name asked by a visitor at from (invalid: unknown),
// and whether the name is in the zone: for a place, its edges with those at the
// visitor's site first (see dnsServer), in turn. Each call for a place turns its edges by
// one: ask it for A queries only (a resolver asks A and AAAA together).
func (d *dnsServer) lookup(name string, from netip.Addr) ([]netip.Addr, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name != d.zone && !strings.HasSuffix(name, "."+d.zone) {
		return nil, false
	}
	label := strings.TrimSuffix(strings.TrimSuffix(name, d.zone), ".")
	ips := d.edgesOf(label)
	if len(ips) == 0 {
		return []netip.Addr{d.core}, true
	}
	near, far := d.split(ips, from)
	n := d.turn.Add(1)
	return append(rotate(near, n), rotate(far, n)...), true
}

// split returns the edges at the visitor's site, those sharing the most leading bits
// with from (at least siteBits), and the others.
func (d *dnsServer) split(ips []netip.Addr, from netip.Addr) (near, far []netip.Addr) {
	if !from.IsValid() || !from.Is4() || d.siteBits <= 0 {
		return nil, ips
	}
	best := d.siteBits
	for _, ip := range ips {
		best = max(best, commonBits(ip, from))
	}
	for _, ip := range ips {
		if commonBits(ip, from) >= best {
			near = append(near, ip)
		} else {
			far = append(far, ip)
		}
	}
	return near, far
}

// commonBits is the number of leading bits two IPv4 addresses share.
func commonBits(a, b netip.Addr) int {
	x, y := a.As4(), b.As4()
	n := 0
	for i := range 4 {
		d := x[i] ^ y[i]
		if d == 0 {
			n += 8
			continue
		}
		for d&0x80 == 0 {
			n++
			d <<= 1
		}
		return n
	}
	return n
}

// rotate returns ips turned left by n (a copy).
func rotate(ips []netip.Addr, n uint64) []netip.Addr {
	if len(ips) == 0 {
		return nil
	}
	k := int(n % uint64(len(ips)))
	return append(append([]netip.Addr{}, ips[k:]...), ips[:k]...)
}

func (d *dnsServer) inZone(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	return name == d.zone || strings.HasSuffix(name, "."+d.zone)
}

// answer builds the response to one query message from a visitor at from.
func (d *dnsServer) answer(query []byte, from netip.Addr) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true,
		RecursionDesired: h.RecursionDesired, OpCode: h.OpCode})
	b.EnableCompression()
	var ips []netip.Addr
	inZone := d.inZone(q.Name.String())
	if inZone && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL) {
		ips, _ = d.lookup(q.Name.String(), from)
	}
	switch {
	case h.OpCode != 0:
		return d.errorReply(h, q, dnsmessage.RCodeNotImplemented)
	case !inZone:
		return d.errorReply(h, q, dnsmessage.RCodeRefused)
	}
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	// Only A records: AAAA and others get an empty NOERROR answer.
	for _, ip := range ips {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: ttl}
		if err := b.AResource(rh, dnsmessage.AResource{A: ip.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func (d *dnsServer) errorReply(h dnsmessage.Header, q dnsmessage.Question, code dnsmessage.RCode) ([]byte, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RCode: code, OpCode: h.OpCode})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	return b.Finish()
}

// serve answers queries on pc until it is closed.
func (d *dnsServer) serve(pc net.PacketConn) error {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		var ip netip.Addr
		if u, ok := from.(*net.UDPAddr); ok {
			ip, _ = netip.AddrFromSlice(u.IP)
			ip = ip.Unmap()
		}
		resp, err := d.answer(buf[:n], ip)
		if err != nil {
			log.Printf("dns: bad query from %s: %v", from, err)
			continue
		}
		if _, err := pc.WriteTo(resp, from); err != nil {
			log.Printf("dns: answer %s: %v", from, err)
		}
	}
}

func isDir(root, name string) bool {
	fi, err := os.Stat(filepath.Join(root, name))
	return err == nil && fi.IsDir()
}

// announcePath is where an edge announces itself to the core: POST
// announcePath?place=PLACE, from the edge's own address (the one visitors reach it at).
const announcePath = "/.cdn/announce"

// ServeHTTP takes an edge's announcement: the caller's address becomes an edge of the
// place for announceFor.
func (d *dnsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	place := strings.ToLower(r.URL.Query().Get("place"))
	if !validLabel(place) {
		http.Error(w, "place: expected a DNS label such as spain, got "+strconv.Quote(place), http.StatusBadRequest)
		return
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !ap.Addr().Unmap().Is4() {
		http.Error(w, "an edge announces itself from an IPv4 address, not "+r.RemoteAddr, http.StatusBadRequest)
		return
	}
	ip := ap.Addr().Unmap()
	d.announce(place, ip)
	log.Printf("dns: %s is an edge of %s", ip, place)
	w.WriteHeader(http.StatusNoContent)
}

// announceLoop announces this edge of place to the core at coreURL at once, then every
// announceEvery until ctx ends. A failure is logged when it starts and when it ends,
// not at every try.
func announceLoop(ctx context.Context, c *http.Client, coreURL, place string, every time.Duration) {
	failing := false
	for {
		err := announceOnce(ctx, c, coreURL, place)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			log.Printf("announce to %s: %v", coreURL, err)
		case err == nil && failing:
			log.Printf("announced to %s again", coreURL)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func announceOnce(ctx context.Context, c *http.Client, coreURL, place string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, coreURL+announcePath+"?place="+url.QueryEscape(place), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}
