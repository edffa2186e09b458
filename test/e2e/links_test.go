package e2e

import (
	"strings"
	"testing"
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
