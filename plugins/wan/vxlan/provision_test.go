package vxlan

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netns"
)

// With provision_sites, the plugin builds the sites of a one-machine federation the
// first time a link names them: the namespaces, the underlay, the addresses; and a VM
// on one site's bridge then reaches a VM on the other's.
func TestProvisionSites(t *testing.T) {
	needNetns(t)
	id := randomHex(3)
	ul, s1, s2 := "necos-wp-"+id+"-ul", "necos-wp-"+id+"-a", "necos-wp-"+id+"-b"
	t.Cleanup(func() {
		for _, ns := range []string{ul, s1, s2} {
			_ = netns.DeleteNamed(ns)
		}
	})
	cfg, _ := json.Marshal(map[string]any{
		"netns":           []string{"necos-wp-" + id + "-*"},
		"provision_sites": map[string]any{"underlay_netns": ul, "prefix_len": 24},
	})
	c := plugintest.InProcess(t, New(), sdk.Provider{Name: "wan-" + id}, cfg)
	wan, err := c.WAN()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := sdk.LinkSpec{
		Ref:  sdk.LinkRef{SliceID: "s-" + id, LinkID: "a-b"},
		End1: sdk.LinkEnd{Site: "A", Part: "core", Underlay: "10.98.0.1", Netns: s1, Bridge: "pbr" + id},
		End2: sdk.LinkEnd{Site: "B", Part: "edge", Underlay: "10.98.0.2", Netns: s2, Bridge: "pbr" + id},
	}
	offer, err := wan.OfferLink(ctx, sdk.OfferLinkRequest{Link: spec})
	if err != nil || !offer.Accepted {
		t.Fatalf("offer on unprovisioned sites: %+v %v", offer, err)
	}
	link, err := wan.Connect(ctx, sdk.ConnectRequest{Link: spec})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if link.State != sdk.StateReady {
		t.Fatalf("link %+v", link)
	}
	// Provisioning again is a no-op: the second connect finds everything in place.
	if _, err := wan.Connect(ctx, sdk.ConnectRequest{Link: spec}); err != nil {
		t.Fatalf("connect again: %v", err)
	}
	if err := ping(s1, "10.98.0.2", 5*time.Second); err != nil {
		t.Fatalf("site A does not reach site B's underlay: %v", err)
	}
	n := &testNet{t: t, id: id, sites: []testSite{{Name: "A", NS: s1}, {Name: "B", NS: s2}}}
	vmA := n.vm(0, spec.End1.Bridge, "a"+id[:2], "192.168.77.1/24")
	n.vm(1, spec.End2.Bridge, "b"+id[:2], "192.168.77.2/24")
	if err := ping(vmA, "192.168.77.2", 5*time.Second); err != nil {
		t.Fatalf("a VM at A does not reach a VM at B across the link: %v", err)
	}
	if err := wan.Disconnect(ctx, sdk.DisconnectRequest{Ref: spec.Ref}); err != nil {
		t.Fatal(err)
	}
	n.assertNoVXLAN(0)
	n.assertNoVXLAN(1)
}
