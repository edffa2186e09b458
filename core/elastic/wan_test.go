package elastic_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/necos/necos/core/builder"
	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// sites makes two network namespaces standing for two providers' sites, joined by a veth
// pair (their WAN), each end with an underlay address. They are removed when the test
// ends.
func sites(t *testing.T, id string) (nsA, nsB, ipA, ipB string) {
	t.Helper()
	if os.Geteuid() != 0 {
		plugintest.NeedBackend(t, "network namespaces and VXLAN devices need root")
	}
	nsA, nsB = "necos-el-"+id+"-a", "necos-el-"+id+"-b"
	ipA, ipB = "10.77.0.1", "10.77.0.2"
	errc := make(chan error, 1)
	go func() {
		// Creating a namespace switches the thread into it: a thread of its own, locked
		// and dropped (never unlocked) afterwards.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		for _, name := range []string{nsA, nsB} {
			ns, err := netns.NewNamed(name)
			if err != nil {
				errc <- fmt.Errorf("namespace %s: %w", name, err)
				return
			}
			ns.Close()
		}
		errc <- netns.Set(orig)
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = netns.DeleteNamed(nsA)
		_ = netns.DeleteNamed(nsB)
	})
	ha, hb := handle(t, nsA), handle(t, nsB)
	defer ha.Close()
	defer hb.Close()
	b, err := netns.GetFromName(nsB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "wan0"
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "wan0", PeerNamespace: netlink.NsFd(b)}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	for _, x := range []struct {
		h  *netlink.Handle
		ip string
	}{{ha, ipA}, {hb, ipB}} {
		for _, dev := range []string{"lo", "wan0"} {
			l, err := x.h.LinkByName(dev)
			if err != nil {
				t.Fatal(err)
			}
			if dev == "wan0" {
				addr, _ := netlink.ParseAddr(x.ip + "/24")
				if err := x.h.AddrAdd(l, addr); err != nil {
					t.Fatal(err)
				}
			}
			if err := x.h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	return nsA, nsB, ipA, ipB
}

func handle(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	n, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	h, err := netlink.NewHandleAt(n, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// onBridge reports whether namespace ns has device dev enslaved to bridge br.
func onBridge(t *testing.T, ns, dev, br string) bool {
	t.Helper()
	h := handle(t, ns)
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return false
	}
	b, err := h.LinkByName(br)
	return err == nil && l.Attrs().MasterIndex == b.Attrs().Index
}

// Horizontal elasticity with a WAN provider: the new part is linked to the core by a
// real VXLAN tunnel between the two sites' namespaces, and both go with the slice.
func TestHorizontalLinkedByWAN(t *testing.T) {
	id := randomID()
	nsA, nsB, ipA, ipB := sites(t, id)
	e := start(t, envOptions{
		sites:   map[string][2]string{"C": {ipA, nsA}, "H": {ipB, nsB}},
		extra:   fmt.Sprintf("  - name: W-%s\n    location: EUROPE\n    wan: {plugin: wan, wim: VXLAN, config: {netns: [\"necos-el-%s-*\"], price_per_link_day: 1}}\n", id, id),
		plugins: []string{"wan"},
	})
	ctx := context.Background()
	v := e.ready(t, "linked",
		partDoc("core", "DC", "AMERICA.BRAZIL", "vm", 1, 1),
		partDoc("edge", "EDGE", "EUROPE.GREECE.ATHENS", "worker", 1, 2))
	sid := v.Slice.ID
	e.install(t, v, cpu("cpu-high", "edge", 3))
	written := e.push(t, sid, "worker-1", time.Second, 90, 95, 99)
	done := e.waitEvent(t, sid, "cpu-high", elastic.EvActionFinished, written)
	t.Logf("reaction: %s from the points written to the new part linked (%s)", done.Time.Sub(written).Round(time.Millisecond), done.Message)

	got, err := e.engine.Get(ctx, "alice", sid)
	if err != nil {
		t.Fatal(err)
	}
	np, ok := got.Part("edge-h1")
	if !ok || np.Provider != e.provider("H") || np.State != store.PartReady {
		t.Fatalf("new part %+v", np)
	}
	if len(got.Links) != 1 {
		t.Fatalf("links %+v", got.Links)
	}
	l := got.Links[0]
	if l.Name != "core-to-edge-h1" || l.State != store.LinkReady || !l.Elastic || l.Provider != "W-"+id || l.Spec.VNI == 0 ||
		l.Spec.End1.Netns != nsA || l.Spec.End2.Netns != nsB || l.Spec.BandwidthBps != 1e9 {
		t.Fatalf("link %+v", l)
	}
	vx := fmt.Sprintf("vx%d", l.Spec.VNI)
	coreBr, newBr := builder.Bridge(sid, "core"), builder.Bridge(sid, "edge-h1")
	if !onBridge(t, nsA, vx, coreBr) || !onBridge(t, nsB, vx, newBr) {
		t.Fatalf("no VXLAN %s on %s in %s and on %s in %s", vx, coreBr, nsA, newBr, nsB)
	}

	if _, err := e.engine.Decommission(ctx, "alice", sid); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := e.engine.WaitGone(wctx, sid); err != nil {
		t.Fatal(err)
	}
	if onBridge(t, nsA, vx, coreBr) || onBridge(t, nsB, vx, newBr) {
		t.Fatal("the elastic link outlived its slice")
	}
}
