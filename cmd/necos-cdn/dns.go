package main

import (
	"errors"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/net/dns/dnsmessage"
)

// ttl of the answers: short, so that a place's new edge is seen soon.
const ttl = 10

// dnsServer answers A queries for its zone: PLACE.ZONE with the place's edges (rotated,
// so that visitors are spread over them), every other name of the zone with the core.
// Names outside the zone are refused: it is no recursive resolver.
type dnsServer struct {
	zone  string
	core  netip.Addr
	edges map[string][]netip.Addr
	turn  atomic.Uint64
}

// lookup returns the addresses for name and whether the name is in the zone. Each call
// for a place turns its edges by one: ask it for A queries only (a resolver asks A and
// AAAA together).
func (d *dnsServer) lookup(name string) ([]netip.Addr, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name != d.zone && !strings.HasSuffix(name, "."+d.zone) {
		return nil, false
	}
	label := strings.TrimSuffix(strings.TrimSuffix(name, d.zone), ".")
	if ips := d.edges[label]; len(ips) > 0 {
		n := int(d.turn.Add(1) % uint64(len(ips)))
		out := append(append([]netip.Addr{}, ips[n:]...), ips[:n]...)
		return out, true
	}
	return []netip.Addr{d.core}, true
}

func (d *dnsServer) inZone(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	return name == d.zone || strings.HasSuffix(name, "."+d.zone)
}

// answer builds the response to one query message.
func (d *dnsServer) answer(query []byte) ([]byte, error) {
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
		ips, _ = d.lookup(q.Name.String())
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
		resp, err := d.answer(buf[:n])
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
