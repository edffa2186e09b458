package builder

import (
	"strings"
	"testing"

	"github.com/necos/necos/core/spec"
)

func TestBandwidth(t *testing.T) {
	for gb, want := range map[float64]uint64{1: 1_000_000_000, 0.05: 50_000_000, 0: 0, -1: 0, 0.0000001: 100} {
		if got := BandwidthBps(gb); got != want {
			t.Errorf("BandwidthBps(%g) = %d, want %d", gb, got, want)
		}
	}
}

func TestNames(t *testing.T) {
	b1, b2 := Bridge("s-1", "core"), Bridge("s-1", "edge")
	if len(b1) > 15 || b1 == b2 || b1 != Bridge("s-1", "core") {
		t.Fatalf("bridges %q %q: at most 15 bytes, distinct per part, stable", b1, b2)
	}
	for specID, want := range map[string]string{
		"TouristicCDN_sliced": "touristiccdn-sliced-abc123",
		"IoT Service (v2)":    "iot-service-v2-abc123",
		"___":                 "slice-abc123",
		"a-very-long-slice-name-that-goes-on-and": "a-very-long-slice-na-abc123",
	} {
		if got := SliceID(specID, "abc123"); got != want {
			t.Errorf("SliceID(%q) = %q, want %q", specID, got, want)
		}
	}
}

func TestPlan(t *testing.T) {
	s, err := spec.ParseSlice([]byte(`
slices:
  sliced:
    id: demo
    cost:
      dc-model: {model: COST_PER_PHYSICAL_MACHINE_PER_DAY, value-euros: 10}
      net-model: {model: COST_PER_LINK_PER_DAY, value-euros: "<5"}
    slice-parts:
      - dc-slice-part:
          name: core
          type: DC
          location: EUROPE
          VIM:
            name: KUBERNETES
            vdus:
              - vdu: {name: k8s-master, epa-attributes: {host-epa: {cpu-number: 2, memory-mb: {greater_or_equal: 2048}}}}
              - vdu: {name: k8s-node, instance-count: 2, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 1024, storage-gb: 10}}}
      - dc-slice-part:
          name: edge
          VIM:
            name: KUBERNETES
            vdus:
              - vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
      - net-slice-part:
          name: core-edge
          WIM: {name: VXLAN}
          links: [{dc-part1: core}, {dc-part2: edge}, {requirements: {bandwidth-GB: 0.1}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	p := New("s-1", "alice", s)
	if p.DCBudget.Op != "<=" || p.DCBudget.Euros != 10 || p.NetBudget.Op != "<" || p.NetBudget.Euros != 5 {
		t.Fatalf("budgets %+v %+v", p.DCBudget, p.NetBudget)
	}
	core := p.Parts[0].Spec
	if r := core.Resources(); r.Nodes != 3 || r.CPUs != 4 || r.MemoryMB != 4096 || r.StorageGB != 20 {
		t.Fatalf("core needs %+v", r)
	}
	if core.VDUs[0].Type != "master" || core.VDUs[1].Type != "worker" || core.Tenant != "alice" || core.Bridge != Bridge("s-1", "core") {
		t.Fatalf("core spec %+v", core)
	}
	if len(p.Links) != 1 || p.Links[0].BandwidthBps != 100_000_000 || p.Links[0].Part1 != "core" {
		t.Fatalf("links %+v", p.Links)
	}
	reqs := p.Requests()
	if len(reqs) != 2 || len(reqs[0].Linked) != 1 || reqs[0].Linked[0] != "edge" || reqs[1].Linked[0] != "core" {
		t.Fatalf("requests do not name the linked parts: %+v", reqs)
	}
	ls := LinkSpec("s-1", p.Links[0], LinkEnd("s-1", "core", "A", "10.0.0.1", "ns-a"), LinkEnd("s-1", "edge", "B", "10.0.0.2", ""), 42)
	if ls.VNI != 42 || ls.End1.Bridge != core.Bridge || ls.End2.Underlay != "10.0.0.2" || !strings.HasPrefix(ls.Ref.String(), "s-1/") {
		t.Fatalf("link spec %+v", ls)
	}
}
