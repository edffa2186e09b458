package xenvim

import (
	"context"
	"encoding/json"
	"maps"
	"net/netip"
	"testing"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
)

// A part's endpoint holds an address of the subnet like its nodes: a node added later
// must not get it (a scale-up once did, and the new node never answered).
func TestAddressesIncludeEndpoints(t *testing.T) {
	var x domainIndex
	x.put(node{domain: "n", meta: nodeMeta{IP: "10.77.0.2", Record: partRecord{EndpointIP: "10.77.0.1"}}})
	a := newAllocator(netip.MustParsePrefix("10.77.0.0/24"), nil)
	a.taken = x.inUse
	if ip, ok := a.next(); !ok || ip.String() != "10.77.0.3" {
		t.Errorf("next free address %v %v, want 10.77.0.3", ip, ok)
	}
}

// A part is read by the names of its domains once seen; another process that scales or
// deletes the part is still seen at once (the names are checked against the record).
func TestPartReadByNameSeesOtherProcess(t *testing.T) {
	p1, provider := newTestPlugin(t, Config{})
	ref := sdk.PartRef{SliceID: "s-" + suffix(), PartID: "p"}
	mustCreate(t, p1, partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 1, CPUs: 1, MemoryMB: 256}))
	raw, _ := json.Marshal(Config{URI: "test:///default", Capacity: Capacity{CPUs: 8, MemoryMB: 4096, StorageGB: 50}})
	p2 := New(plugintest.TestLogger(t))
	if err := p2.Configure(context.Background(), sdk.Config{Provider: provider, JSON: raw}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p2.Close() }()
	ctx := context.Background()
	if got, err := p2.Describe(ctx, sdk.DescribeRequest{Ref: ref}); err != nil || len(got.Nodes) != 1 {
		t.Fatalf("describe: %+v %v", got, err)
	}
	if len(p2.names.get(ref)) != 1 {
		t.Fatalf("the part's names were not remembered: %v", p2.names.get(ref))
	}
	if _, err := p1.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "w", Instances: 3}); err != nil {
		t.Fatal(err)
	}
	if got, err := p2.Describe(ctx, sdk.DescribeRequest{Ref: ref}); err != nil || len(got.Nodes) != 3 {
		t.Fatalf("describe after the other process scaled to 3: %d nodes, %v", len(got.Nodes), err)
	}
	if _, err := p1.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "w", Instances: 2}); err != nil {
		t.Fatal(err)
	}
	if got, err := p2.Describe(ctx, sdk.DescribeRequest{Ref: ref}); err != nil || len(got.Nodes) != 2 {
		t.Fatalf("describe after the other process scaled to 2: %d nodes, %v", len(got.Nodes), err)
	}
	if err := p1.Delete(ctx, sdk.DeleteRequest{Ref: ref}); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Describe(ctx, sdk.DescribeRequest{Ref: ref}); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Fatalf("describe after the other process deleted the part: %v", err)
	}
}

// A part another process made after this one read its index (the replica that led
// before this one) is found and deleted whole: the index holding none of it is no proof
// that it has no domain (a follower that took the lead once left every domain behind).
func TestPartMadeAfterIndexReadIsFound(t *testing.T) {
	p1, provider := newTestPlugin(t, Config{})
	raw, _ := json.Marshal(Config{URI: "test:///default", Capacity: Capacity{CPUs: 8, MemoryMB: 4096, StorageGB: 50}})
	p2 := New(plugintest.TestLogger(t))
	if err := p2.Configure(context.Background(), sdk.Config{Provider: provider, JSON: raw}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p2.Close() }()
	ctx := context.Background()
	ref := sdk.PartRef{SliceID: "late-" + suffix(), PartID: "p"}
	mustCreate(t, p1, partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 2, CPUs: 1, MemoryMB: 256}))
	if !p2.index.fresh() {
		t.Fatal("the second instance's index is not fresh: the test would not show the miss")
	}
	if got, err := p2.Describe(ctx, sdk.DescribeRequest{Ref: ref}); err != nil || len(got.Nodes) != 2 {
		t.Fatalf("describe through the instance whose index predates the part: %+v, %v", got, err)
	}
	if err := p2.Delete(ctx, sdk.DeleteRequest{Ref: ref}); err != nil {
		t.Fatal(err)
	}
	s, conn, err := p1.session()
	if err != nil {
		t.Fatal(err)
	}
	left, err := p1.listNodes(conn, s, namePrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range left {
		if n.ref() == ref {
			t.Errorf("domain %s left after the delete", n.domain)
		}
	}
}

// indexAgrees checks the usage index against a fresh listing of libvirt: the same
// domains, totals and addresses.
func indexAgrees(t *testing.T, p *Plugin, when string) {
	t.Helper()
	s, conn, err := p.session()
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := p.listNodes(conn, s, namePrefix)
	if err != nil {
		t.Fatal(err)
	}
	var want sdk.Resources
	wantAddrs := map[netip.Addr]int{}
	for _, n := range nodes {
		want = want.Add(n.usage())
		for _, ip := range nodeAddrs(n) {
			wantAddrs[ip]++
		}
		got, ok := p.index.get(n.domain)
		if !ok {
			t.Errorf("%s: the index lacks domain %s", when, n.domain)
			continue
		}
		if got.cpus != n.cpus || got.memMB != n.memMB || got.meta.Record.Generation != n.meta.Record.Generation {
			t.Errorf("%s: index has %s at %d vCPUs, %d MB, record %d; libvirt %d, %d MB, record %d", when, n.domain,
				got.cpus, got.memMB, got.meta.Record.Generation, n.cpus, n.memMB, n.meta.Record.Generation)
		}
	}
	if got := p.index.totals(); got != want {
		t.Errorf("%s: index totals %+v, libvirt %+v", when, got, want)
	}
	p.index.mu.Lock()
	gotAddrs := maps.Clone(p.index.addrs)
	p.index.mu.Unlock()
	if !maps.Equal(gotAddrs, wantAddrs) {
		t.Errorf("%s: index addresses %v, libvirt %v", when, gotAddrs, wantAddrs)
	}
}

// The usage index follows what the plugin does (create, scale, resize, delete) without
// reading libvirt again, and agrees with libvirt after each step.
func TestIndexFollowsChanges(t *testing.T) {
	p, _ := newTestPlugin(t, Config{Subnet: "10.10.3.0/24", MaxNode: NodeLimit{CPUs: 4, MemoryMB: 1024}})
	ctx := context.Background()
	indexAgrees(t, p, "start")
	built := p.index.built
	ref := sdk.PartRef{SliceID: "idx-" + suffix(), PartID: "p"}
	mustCreate(t, p, partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 2, CPUs: 1, MemoryMB: 256, StorageGB: 3}))
	indexAgrees(t, p, "after create")
	if _, err := p.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "w", Instances: 3}); err != nil {
		t.Fatal(err)
	}
	indexAgrees(t, p, "after scale-up")
	if _, err := p.Resize(ctx, sdk.ResizeRequest{Ref: ref, VDU: "w", CPUs: 2, MemoryMB: 512}); err != nil {
		t.Fatal(err)
	}
	indexAgrees(t, p, "after resize")
	if _, err := p.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "w", Instances: 1}); err != nil {
		t.Fatal(err)
	}
	indexAgrees(t, p, "after scale-down")
	if err := p.Delete(ctx, sdk.DeleteRequest{Ref: ref}); err != nil {
		t.Fatal(err)
	}
	indexAgrees(t, p, "after delete")
	if !p.index.built.Equal(built) {
		t.Errorf("the index was read again from libvirt (built %v, then %v): it should follow the changes", built, p.index.built)
	}
}

// A change the index missed (another process scaled a part up) is found when the part
// is read by name, and the next capacity check reads libvirt again.
func TestIndexRebuiltOnMiss(t *testing.T) {
	p1, provider := newTestPlugin(t, Config{})
	raw, _ := json.Marshal(Config{URI: "test:///default", Capacity: Capacity{CPUs: 8, MemoryMB: 4096, StorageGB: 50}})
	p2 := New(plugintest.TestLogger(t))
	if err := p2.Configure(context.Background(), sdk.Config{Provider: provider, JSON: raw}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p2.Close() }()
	ctx := context.Background()
	ref := sdk.PartRef{SliceID: "idx-" + suffix(), PartID: "p"}
	mustCreate(t, p1, partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 1, CPUs: 1, MemoryMB: 256}))
	// p2's index predates the part; p1 scales it behind p2's back.
	p2.index.invalidate()
	if _, err := p2.Describe(ctx, sdk.DescribeRequest{Ref: ref}); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "w", Instances: 3}); err != nil {
		t.Fatal(err)
	}
	spec := sdk.PartSpec{Ref: ref, Name: "x", Type: "DC", VDUs: []sdk.VDUSpec{{Name: "w", Instances: 1, CPUs: 1, MemoryMB: 256}}}
	if o, err := p2.Offer(ctx, sdk.OfferRequest{Part: spec}); err != nil || o.Free.CPUs != 7 {
		t.Fatalf("p2's offer before its miss: free %+v %v (its index still holds one node)", o.Free, err)
	}
	if got, err := p2.Describe(ctx, sdk.DescribeRequest{Ref: ref}); err != nil || len(got.Nodes) != 3 {
		t.Fatalf("describe: %d nodes, %v", len(got.Nodes), err)
	}
	if o, err := p2.Offer(ctx, sdk.OfferRequest{Part: spec}); err != nil || o.Free.CPUs != 5 {
		t.Errorf("p2's offer after its miss: free %+v %v, want 5 vCPUs", o.Free, err)
	}
	indexAgrees(t, p2, "after the miss")
}
