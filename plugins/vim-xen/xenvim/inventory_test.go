package xenvim

import (
	"context"
	"encoding/json"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"net/netip"
	"testing"
)

// A part's endpoint holds an address of the subnet like its nodes: a node added later
// must not get it (a scale-up once did, and the new node never answered).
func TestAddressesIncludeEndpoints(t *testing.T) {
	nodes := []node{{meta: nodeMeta{IP: "10.77.0.2", Record: partRecord{EndpointIP: "10.77.0.1"}}}}
	a := newAllocator(netip.MustParsePrefix("10.77.0.0/24"), addresses(nodes))
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
	if got, err := p2.Describe(ctx, ref); err != nil || len(got.Nodes) != 1 {
		t.Fatalf("describe: %+v %v", got, err)
	}
	if len(p2.names.get(ref)) != 1 {
		t.Fatalf("the part's names were not remembered: %v", p2.names.get(ref))
	}
	if _, err := p1.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "w", Instances: 3}); err != nil {
		t.Fatal(err)
	}
	if got, err := p2.Describe(ctx, ref); err != nil || len(got.Nodes) != 3 {
		t.Fatalf("describe after the other process scaled to 3: %d nodes, %v", len(got.Nodes), err)
	}
	if _, err := p1.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "w", Instances: 2}); err != nil {
		t.Fatal(err)
	}
	if got, err := p2.Describe(ctx, ref); err != nil || len(got.Nodes) != 2 {
		t.Fatalf("describe after the other process scaled to 2: %d nodes, %v", len(got.Nodes), err)
	}
	if err := p1.Delete(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Describe(ctx, ref); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Fatalf("describe after the other process deleted the part: %v", err)
	}
}
