package vxlan

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// TestConcurrentLinks connects the links of many slices at once, two per slice sharing
// the slice's core bridge, and closes rings of three links at once: every link gets its
// own VNI and is whole, exactly one link of each ring is refused (a loop), and removing
// them all at once leaves the sites as they were.
func TestConcurrentLinks(t *testing.T) {
	const slices = 8
	n := newTestNet(t, "core", "edge1", "edge2")
	ctx := call(t)
	wan := n.plugin(t)
	var specs []sdk.LinkSpec
	for i := range slices {
		br := fmt.Sprintf("br-cc%d", i)
		for e := 1; e <= 2; e++ {
			specs = append(specs, sdk.LinkSpec{Ref: sdk.LinkRef{SliceID: fmt.Sprintf("cc%d", i), LinkID: fmt.Sprintf("core-edge%d", e)},
				End1: n.sites[0].end("core", br), End2: n.sites[e].end("edge", br), BandwidthBps: 1_000_000})
		}
	}
	// Two rings over the three sites, each link of a ring connected at once.
	var rings [][]sdk.LinkSpec
	for r := range 2 {
		br := fmt.Sprintf("br-ring%d", r)
		link := func(id string, a, b int) sdk.LinkSpec {
			return sdk.LinkSpec{Ref: sdk.LinkRef{SliceID: fmt.Sprintf("ring%d", r), LinkID: id},
				End1: n.sites[a].end("p", br), End2: n.sites[b].end("p", br), BandwidthBps: 1_000_000}
		}
		rings = append(rings, []sdk.LinkSpec{link("ab", 0, 1), link("bc", 1, 2), link("ca", 2, 0)})
	}
	all := append([]sdk.LinkSpec{}, specs...)
	for _, r := range rings {
		all = append(all, r...)
	}
	t.Cleanup(func() {
		for _, s := range all {
			_ = wan.Disconnect(context.Background(), sdk.DisconnectRequest{Ref: s.Ref})
		}
	})

	errs := make([]error, len(all))
	links := make([]sdk.Link, len(all))
	var wg sync.WaitGroup
	for i, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			links[i], errs[i] = wan.Connect(ctx, sdk.ConnectRequest{Link: s})
		}()
	}
	wg.Wait()
	vnis := map[uint32]sdk.LinkRef{}
	for i, s := range specs {
		if errs[i] != nil {
			t.Fatalf("Connect %s: %v", s.Ref, errs[i])
		}
		if prev, dup := vnis[links[i].VNI]; dup {
			t.Errorf("links %s and %s both got VNI %d", prev, s.Ref, links[i].VNI)
		}
		vnis[links[i].VNI] = s.Ref
		if d, err := wan.DescribeLink(ctx, sdk.DescribeLinkRequest{Ref: s.Ref}); err != nil || d.State != sdk.StateReady {
			t.Errorf("DescribeLink %s: %+v, %v; want ready", s.Ref, d, err)
		}
	}
	// Frames cross the links connected at once: a VM on the first slice's core bridge
	// reaches one on each edge's.
	vms := [3]string{}
	for i := range n.sites {
		vms[i] = n.vm(i, "br-cc0", fmt.Sprintf("cc%d", i), fmt.Sprintf("192.168.30.%d/24", i+1))
	}
	for i := 1; i < 3; i++ {
		if err := ping(vms[0], fmt.Sprintf("192.168.30.%d", i+1), 3*time.Second); err != nil {
			t.Errorf("core cannot reach %s across links connected at once: %v", n.sites[i].Name, err)
		}
	}
	for i := range n.sites {
		n.delete(i, fmt.Sprintf("vcc%d", i))
	}
	for r, ring := range rings {
		refused := 0
		for i := range ring {
			j := len(specs) + 3*r + i
			switch {
			case errs[j] == nil:
			case sdk.CodeOf(errs[j]) == sdk.CodeFailedPrecondition:
				refused++
			default:
				t.Errorf("Connect %s: %v", ring[i].Ref, errs[j])
			}
		}
		if refused != 1 {
			t.Errorf("ring %d connected at once: %d links refused, want exactly 1 (the one closing the loop)", r, refused)
		}
	}

	for i, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = wan.Disconnect(ctx, sdk.DisconnectRequest{Ref: s.Ref})
		}()
	}
	wg.Wait()
	for i, s := range all {
		if errs[i] != nil {
			t.Errorf("Disconnect %s: %v", s.Ref, errs[i])
		}
	}
	n.assertPristine()
}

// TestIndexMiss has a second plugin process for the provider make links the first one's
// index does not hold: the first finds a link on a miss (DescribeLink, Disconnect), and a
// VNI it would pick but is taken makes it merge the devices and pick another.
func TestIndexMiss(t *testing.T) {
	n := newTestNet(t, "core", "edge1")
	ctx := call(t)
	a, b := newPlugin(t), newPlugin(t)
	for _, p := range []*Plugin{a, b} {
		if err := p.Configure(ctx, sdk.Config{Provider: n.provider(), JSON: n.config()}); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(slice string) sdk.LinkSpec {
		return sdk.LinkSpec{Ref: sdk.LinkRef{SliceID: slice, LinkID: "l"}, End1: n.sites[0].end("c", "br-"+slice),
			End2: n.sites[1].end("e", "br-"+slice), BandwidthBps: 1_000_000}
	}
	byB, byA, third := spec("mb"), spec("ma"), spec("mc")
	t.Cleanup(func() {
		for _, s := range []sdk.LinkSpec{byB, byA, third} {
			_ = a.Disconnect(context.Background(), sdk.DisconnectRequest{Ref: s.Ref})
		}
	})
	lb, err := b.Connect(ctx, sdk.ConnectRequest{Link: byB})
	if err != nil {
		t.Fatal(err)
	}
	// a's index does not know lb's VNI: its first pick is taken on the devices.
	la, err := a.Connect(ctx, sdk.ConnectRequest{Link: byA})
	if err != nil {
		t.Fatalf("Connect with a VNI taken behind the index: %v", err)
	}
	if la.VNI == lb.VNI {
		t.Fatalf("both links have VNI %d", la.VNI)
	}
	// A link made by b after a merged is found by a on a miss.
	lc, err := b.Connect(ctx, sdk.ConnectRequest{Link: third})
	if err != nil {
		t.Fatal(err)
	}
	d, err := a.DescribeLink(ctx, sdk.DescribeLinkRequest{Ref: third.Ref})
	if err != nil || d.State != sdk.StateReady || d.VNI != lc.VNI {
		t.Fatalf("DescribeLink of a link another process made: %+v, %v; want ready with VNI %d", d, err, lc.VNI)
	}
	for _, s := range []sdk.LinkSpec{byB, byA, third} {
		if err := a.Disconnect(ctx, sdk.DisconnectRequest{Ref: s.Ref}); err != nil {
			t.Fatalf("Disconnect %s: %v", s.Ref, err)
		}
	}
	// b's index still holds its links; their devices are gone, and so are they.
	if _, err := b.DescribeLink(ctx, sdk.DescribeLinkRequest{Ref: byB.Ref}); !sdk.IsNotFound(err) {
		t.Errorf("DescribeLink of a link removed by another process: %v, want NotFound", err)
	}
	n.assertPristine()
}
