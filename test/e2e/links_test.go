package e2e

import (
	"fmt"
	"strings"
	"testing"

	v1 "github.com/necos/necos/api/v1"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A link that cannot be built rolls the slice back like a failed part: here a second
// link between the same two parts, which the WAN plugin refuses (two paths between two
// bridges would loop broadcasts). Nothing stays behind: no domain, no VXLAN device.
func TestFailedLinkRollsBack(t *testing.T) {
	needRoot(t)
	fed := newFederation(t)
	uri := libvirtURI(t)
	d := startDaemon(t, xenCatalogue(t, fed, ""))
	doc := `slices:
  sliced:
    id: loop
    slice-parts:
      - dc-slice-part:
          name: core
          location: AMERICA.BRAZIL
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
      - dc-slice-part:
          name: edge
          type: EDGE
          location: EUROPE.GREECE
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
      - net-slice-part:
          name: first
          WIM: {name: VXLAN}
          links: [{dc-part1: core}, {dc-part2: edge}, {requirements: {bandwidth-GB: 0.01}}]
      - net-slice-part:
          name: second
          WIM: {name: VXLAN}
          links: [{dc-part1: core}, {dc-part2: edge}, {requirements: {bandwidth-GB: 0.01}}]
`
	r := d.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", []byte(doc))
	if r.Status < 400 {
		t.Fatalf("a slice with a looping link was created: HTTP %d %s", r.Status, r.Body)
	}
	if !strings.Contains(string(r.Body), "already joined") {
		t.Fatalf("failure does not say why: %s", r.Body)
	}
	l := listSlices(t, d, "demo")
	if len(l) != 1 || l[0].State != "Failed" {
		t.Fatalf("slices %+v", l)
	}
	if left := domains(t, uri, l[0].ID); len(left) != 0 {
		t.Fatalf("domains left after the rollback: %+v", left)
	}
	assertNoWANDevices(t, fed)
	d.expect(d.do("demo", "DELETE", "/v1/slices/"+l[0].ID+"?wait=true", "", nil), 204, "delete the failed slice")
}

// Linked parts that ask for the same region go to distinct providers when the region
// has two (the link is a VXLAN tunnel between their sites); when it has one, both parts
// share it and a local link joins their bridges with the same rate limit. Both slices
// are Ready, and decommission leaves no device behind.
func TestLinkedPartsPlacement(t *testing.T) {
	needRoot(t)
	fed := newFederation(t)
	d := startDaemon(t, xenCatalogue(t, fed, ""))
	doc := func(id, location string) []byte {
		return []byte(`slices:
  sliced:
    id: ` + id + `
    slice-parts:
      - dc-slice-part:
          name: a
          type: EDGE
          location: ` + location + `
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
      - dc-slice-part:
          name: b
          type: EDGE
          location: ` + location + `
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
      - net-slice-part:
          name: a-b
          WIM: {name: VXLAN}
          links: [{dc-part1: a}, {dc-part2: b}, {requirements: {bandwidth-GB: 0.01}}]
`)
	}
	var ids []string
	for _, c := range []struct {
		id, location string
		sites        [2]string
		local        bool
	}{
		{"spread", "EUROPE.SPAIN", [2]string{"SPAIN", "5TONIC"}, false},
		{"shared", "EUROPE.GREECE", [2]string{"GREECE", "GREECE"}, true},
	} {
		r := d.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", doc(c.id, c.location))
		d.expect(r, 201, "create "+c.id)
		var s v1.Slice
		r.json(t, &s)
		ids = append(ids, s.ID)
		at := map[string]string{}
		for _, p := range s.Parts {
			at[p.Name] = p.Provider
		}
		if at["a"] != c.sites[0] || at["b"] != c.sites[1] {
			t.Errorf("%s: parts at %v, want a at %s and b at %s", c.id, at, c.sites[0], c.sites[1])
		}
		if len(s.Links) != 1 || s.Links[0].State != "Ready" || s.Links[0].BandwidthBps != 10_000_000 {
			t.Fatalf("%s: links %+v, want one Ready at 10 Mbit/s", c.id, s.Links)
		}
		vni := s.Links[0].VNI
		if !c.local {
			for _, site := range c.sites {
				if typ := deviceType(t, fed.netns(site), fmt.Sprintf("vx%d", vni)); typ != "vxlan" {
					t.Errorf("%s: %s holds no VXLAN device vx%d (%q)", c.id, site, vni, typ)
				}
			}
			continue
		}
		ns := fed.netns(c.sites[0])
		for _, end := range []string{"e1", "e2"} {
			name := fmt.Sprintf("vl%d%s", vni, end)
			if typ := deviceType(t, ns, name); typ != "veth" {
				t.Errorf("%s: no local link end %s in %s (%q)", c.id, name, ns, typ)
			}
			if bps := tbfRate(t, ns, name); bps != 10_000_000 {
				t.Errorf("%s: %s is limited to %d bit/s, want 10000000", c.id, name, bps)
			}
		}
	}
	for _, id := range ids {
		d.expect(d.do("demo", "DELETE", "/v1/slices/"+id+"?wait=true", "", nil), 204, "delete "+id)
	}
	assertNoWANDevices(t, fed)
}

// deviceType is the type of device name in namespace ns, "" when there is none.
func deviceType(t *testing.T, ns, name string) string {
	t.Helper()
	h := nsHandle(t, ns)
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return ""
	}
	return l.Type()
}

// tbfRate is the rate of the root tbf on device name in namespace ns, bits/s.
func tbfRate(t *testing.T, ns, name string) uint64 {
	t.Helper()
	h := nsHandle(t, ns)
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := h.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if tbf, ok := q.(*netlink.Tbf); ok {
			return tbf.Rate * 8
		}
	}
	return 0
}

func nsHandle(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	nh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
