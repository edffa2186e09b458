package vxlan

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// testNet is a federation on one machine, made of network namespaces the test creates:
// one per site, each with an underlay address on a veth whose other end sits on a
// bridge in an underlay namespace (the "WAN"). Everything is removed when the test ends.
type testNet struct {
	t     testing.TB
	id    string
	ul    string
	sites []testSite
}

type testSite struct {
	Name     string // site name
	NS       string // its namespace
	Underlay string // its underlay address
}

// end returns a link end at site i (bridge left to the caller).
func (s testSite) end(part, bridge string) sdk.LinkEnd {
	return sdk.LinkEnd{Site: s.Name, Part: part, Underlay: s.Underlay, Netns: s.NS, Bridge: bridge}
}

// needNetns skips (or, with NECOS_REQUIRE_BACKENDS, fails) a test that cannot create
// network namespaces.
func needNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		plugintest.NeedBackend(t, "network namespaces and VXLAN devices need root")
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newTestNet builds the underlay and one namespace per named site.
func newTestNet(t testing.TB, sites ...string) *testNet {
	t.Helper()
	needNetns(t)
	n := &testNet{t: t, id: randomHex(3)}
	n.ul = n.newNS("ul")
	hul := n.handle(n.ul)
	defer hul.Close()
	n.up(hul, "lo")
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "ul"
	if err := hul.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatalf("underlay bridge: %v", err)
	}
	ulbr := n.up(hul, "ul")
	for i, name := range sites {
		s := testSite{Name: name, NS: n.newNS(name), Underlay: fmt.Sprintf("10.99.0.%d", i+1)}
		n.veth(hul, fmt.Sprintf("u%d", i), ulbr, s.NS, "eth0", 0)
		h := n.handle(s.NS)
		n.up(h, "lo")
		n.addr(h, "eth0", s.Underlay+"/24")
		n.up(h, "eth0")
		h.Close()
		n.sites = append(n.sites, s)
	}
	return n
}

// newNS creates a uniquely named namespace, removed when the test ends.
func (n *testNet) newNS(role string) string {
	n.t.Helper()
	name := "necos-wt-" + n.id + "-" + role
	err := onThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		ns.Close()
		return netns.Set(orig)
	})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			plugintest.NeedBackend(n.t, "cannot create network namespaces: "+err.Error())
		}
		n.t.Fatalf("create namespace %s: %v", name, err)
	}
	n.t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			n.t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// onThread runs f on a locked OS thread of its own. f may switch the thread's
// namespace; if it cannot switch back (it returns an error after switching), the thread
// is left locked and dies with its goroutine, so no other goroutine ever runs on it.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ferr := f()
		if cur, err := netns.Get(); err == nil {
			same := cur.Equal(orig)
			cur.Close()
			if same {
				runtime.UnlockOSThread()
			}
		}
		errc <- ferr
	}()
	return <-errc
}

// inNS runs f with its thread in namespace name: sockets f opens belong to it.
func inNS(name string, f func() error) error {
	return onThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			return err
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return err
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			return fmt.Errorf("switch back from %s: %w", name, err)
		}
		return ferr
	})
}

func (n *testNet) handle(ns string) *netlink.Handle {
	n.t.Helper()
	h, err := nsHandle(ns)
	if err != nil {
		n.t.Fatal(err)
	}
	return h
}

func nsHandle(ns string) (*netlink.Handle, error) {
	nh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	return h, nil
}

func (n *testNet) up(h *netlink.Handle, name string) netlink.Link {
	n.t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		n.t.Fatalf("%s: %v", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		n.t.Fatalf("set %s up: %v", name, err)
	}
	return l
}

func (n *testNet) addr(h *netlink.Handle, dev, cidr string) {
	n.t.Helper()
	l, err := h.LinkByName(dev)
	if err != nil {
		n.t.Fatalf("%s: %v", dev, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := h.AddrAdd(l, a); err != nil {
		n.t.Fatalf("address %s on %s: %v", cidr, dev, err)
	}
}

// veth makes a veth pair: name in h's namespace (on master when not nil, up), peer in
// namespace peerNS (left down, MTU mtu when not 0).
func (n *testNet) veth(h *netlink.Handle, name string, master netlink.Link, peerNS, peer string, mtu int) {
	n.t.Helper()
	pns, err := netns.GetFromName(peerNS)
	if err != nil {
		n.t.Fatal(err)
	}
	defer pns.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	if master != nil {
		attrs.MasterIndex = master.Attrs().Index
	}
	if mtu > 0 {
		attrs.MTU = mtu
	}
	v := netlink.NewVeth(attrs)
	v.PeerName, v.PeerNamespace = peer, netlink.NsFd(pns)
	if err := h.LinkAdd(v); err != nil {
		n.t.Fatalf("veth %s/%s: %v", name, peer, err)
	}
	n.up(h, name)
}

// bridge creates a bridge in site i's namespace, as a VIM would before the WAN plugin.
func (n *testNet) bridge(i int, name string) {
	n.t.Helper()
	h := n.handle(n.sites[i].NS)
	defer h.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		n.t.Fatalf("bridge %s: %v", name, err)
	}
	n.up(h, name)
}

// vm makes a namespace standing for a VM of a part: a veth on the part's bridge at site
// i, its other end eth0 in the VM's namespace with address cidr and the bridge's MTU
// (a VIM must size its VMs' interfaces to the bridge, which the VXLAN device caps).
func (n *testNet) vm(i int, bridge, vm, cidr string) string {
	n.t.Helper()
	ns := n.newNS("vm-" + vm)
	h := n.handle(n.sites[i].NS)
	defer h.Close()
	br, err := h.LinkByName(bridge)
	if err != nil {
		n.t.Fatalf("bridge %s at %s: %v", bridge, n.sites[i].Name, err)
	}
	n.veth(h, "v"+vm, br, ns, "eth0", br.Attrs().MTU)
	hv := n.handle(ns)
	defer hv.Close()
	n.up(hv, "lo")
	n.addr(hv, "eth0", cidr)
	n.up(hv, "eth0")
	return ns
}

// delete removes device name from site i's namespace.
func (n *testNet) delete(i int, name string) {
	n.t.Helper()
	h := n.handle(n.sites[i].NS)
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		n.t.Fatalf("site %s: %s: %v", n.sites[i].Name, name, err)
	}
	if err := h.LinkDel(l); err != nil {
		n.t.Fatalf("site %s: delete %s: %v", n.sites[i].Name, name, err)
	}
}

// devices lists site i's devices by type: name -> type.
func (n *testNet) devices(i int) map[string]string {
	n.t.Helper()
	h := n.handle(n.sites[i].NS)
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		n.t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range links {
		out[l.Attrs().Name] = l.Type()
	}
	return out
}

// tbfs counts the tbf qdiscs in site i's namespace.
func (n *testNet) tbfs(i int) int {
	n.t.Helper()
	h := n.handle(n.sites[i].NS)
	defer h.Close()
	qs, err := h.QdiscList(nil)
	if err != nil {
		n.t.Fatal(err)
	}
	c := 0
	for _, q := range qs {
		if q.Type() == "tbf" {
			c++
		}
	}
	return c
}

// assertNoVXLAN fails when site i still has a VXLAN device or a tbf qdisc.
func (n *testNet) assertNoVXLAN(i int) {
	n.t.Helper()
	for name, typ := range n.devices(i) {
		if typ == "vxlan" {
			n.t.Errorf("site %s: VXLAN device %s remains", n.sites[i].Name, name)
		}
	}
	if c := n.tbfs(i); c != 0 {
		n.t.Errorf("site %s: %d tbf qdiscs remain", n.sites[i].Name, c)
	}
}

// ping sends ICMP echo requests from namespace ns to dst until one is answered or
// timeout passes.
func ping(ns, dst string, timeout time.Duration) error {
	var c *icmp.PacketConn
	if err := inNS(ns, func() (err error) {
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return fmt.Errorf("icmp socket in %s: %w", ns, err)
	}
	defer c.Close()
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	id := int(time.Now().UnixNano() & 0xffff)
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for seq := 1; time.Now().Before(deadline); seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("necos-wan")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(b, to); err != nil {
			return fmt.Errorf("send to %s: %w", dst, err)
		}
		wait := min(time.Until(deadline), 300*time.Millisecond)
		_ = c.SetReadDeadline(time.Now().Add(wait))
		for {
			nr, from, err := c.ReadFrom(buf)
			if err != nil {
				break // deadline: send the next request
			}
			m, err := icmp.ParseMessage(1, buf[:nr])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && from.String() == dst {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %s within %v", dst, timeout)
}

// throughput sends bulk TCP from namespace src to dst (an address in namespace dstNS)
// for d and returns the receiver's goodput in bit/s, measured after warmup so that
// tbf's initial burst and TCP's slow start do not count.
func throughput(srcNS, dstNS, dst string, d, warmup time.Duration) (float64, error) {
	var ln net.Listener
	if err := inNS(dstNS, func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(dst, "0"))
		return err
	}); err != nil {
		return 0, fmt.Errorf("listen in %s: %w", dstNS, err)
	}
	defer ln.Close()
	type result struct {
		bps float64
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		var total, mark int64
		var start, markAt time.Time
		for {
			nr, err := c.Read(buf)
			now := time.Now()
			if nr > 0 {
				if start.IsZero() {
					start = now
				}
				total += int64(nr)
				if markAt.IsZero() && now.Sub(start) >= warmup {
					markAt, mark = now, total
				}
			}
			if err == io.EOF {
				if markAt.IsZero() || !now.After(markAt) {
					res <- result{err: fmt.Errorf("transfer too short to measure (%d bytes)", total)}
					return
				}
				res <- result{bps: float64(total-mark) * 8 / now.Sub(markAt).Seconds()}
				return
			}
			if err != nil {
				res <- result{err: err}
				return
			}
		}
	}()
	var c net.Conn
	if err := inNS(srcNS, func() (err error) {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		return 0, fmt.Errorf("dial %s from %s: %w", ln.Addr(), srcNS, err)
	}
	payload := []byte(strings.Repeat("necos-wan-rate-", 4096))
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		_ = c.SetWriteDeadline(end)
		if _, err := c.Write(payload); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			c.Close()
			return 0, fmt.Errorf("send: %w", err)
		}
	}
	// The receiver stops its clock at EOF: close only once what is queued has drained,
	// which CloseWrite + the receiver's EOF after the last byte gives.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	defer c.Close()
	select {
	case r := <-res:
		return r.bps, r.err
	case <-time.After(d + 30*time.Second):
		return 0, errors.New("receiver did not finish")
	}
}
