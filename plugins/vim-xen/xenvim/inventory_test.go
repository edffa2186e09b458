package xenvim

import (
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
