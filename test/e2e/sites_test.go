package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/necos/necos/api/v1"
)

// The site namespaces the WAN plugin built go when no live slice uses them: on
// `necosctl sites release` (which keeps, naming the slice, a site in use) and when necosd
// stops, unless it runs with --keep-sites.
func TestSitesReleased(t *testing.T) {
	needRoot(t)
	fed := newFederation(t)
	cat := xenCatalogue(t, fed, "")
	d := startDaemon(t, cat)
	doc := `slices:
  sliced:
    id: sites
    slice-parts:
      - dc-slice-part:
          name: core
          location: AMERICA.BRAZIL.UNICAMP
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
          name: core-edge
          WIM: {name: VXLAN}
          links: [{dc-part1: core}, {dc-part2: edge}, {requirements: {bandwidth-GB: 0.01}}]
`
	r := d.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", []byte(doc))
	d.expect(r, 201, "create a linked slice")
	var s v1.Slice
	r.json(t, &s)
	unicamp, greece, underlay := fed.netns("UNICAMP"), fed.netns("GREECE"), fed.netns("underlay")
	for _, ns := range []string{unicamp, greece, underlay} {
		assertNamespace(t, ns, true)
	}

	// In use: kept, the slice named; a site named on the command line and kept fails.
	out, err := d.necosctl("demo", "sites", "release", "GREECE")
	if err == nil || !strings.Contains(out, s.ID) || !strings.Contains(out, "slice delete") {
		t.Fatalf("sites release GREECE with a live slice there: %v\n%s", err, out)
	}
	out, err = d.necosctl("demo", "sites", "release", "-o", "json")
	if err != nil {
		t.Fatalf("sites release: %v\n%s", err, out)
	}
	var rel v1.SiteRelease
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	kept := map[string]v1.KeptSite{}
	for _, k := range rel.Kept {
		kept[k.Netns] = k
	}
	for _, ns := range []string{unicamp, greece} {
		if k := kept[ns]; len(k.Slices) != 1 || k.Slices[0] != s.ID {
			t.Errorf("site %s kept as %+v, want it kept for slice %s", ns, k, s.ID)
		}
		assertNamespace(t, ns, true)
	}
	// A site the catalogue does not have: refused, saying which it has.
	r = d.do("demo", "POST", "/v1/sites/release?site=MARS", "", nil)
	d.expect(r, 400, "release an unknown site")
	if !strings.Contains(string(r.Body), "MARS") || !strings.Contains(string(r.Body), "GREECE") {
		t.Fatalf("unknown site answer names neither it nor the known sites: %s", r.Body)
	}

	// Once the slice is gone its sites go on demand, one at a time.
	d.expect(d.do("demo", "DELETE", "/v1/slices/"+s.ID+"?wait=true", "", nil), 204, "delete the slice")
	out, err = d.necosctl("demo", "sites", "release", "GREECE")
	if err != nil || !strings.Contains(out, "removed "+greece) {
		t.Fatalf("sites release GREECE once free: %v\n%s", err, out)
	}
	assertNamespace(t, greece, false)
	assertNamespace(t, unicamp, true)

	// necosd's clean stop removes the rest (and the underlay) ...
	d.stop()
	for _, ns := range []string{unicamp, underlay} {
		assertNamespace(t, ns, false)
	}
	if !strings.Contains(d.log.String(), "released the sites' namespaces") {
		t.Errorf("necosd's stop did not log the release:\n%s", tail(d.log.String(), 20))
	}

	// ... unless told to keep them.
	d2 := startDaemon(t, cat, "--keep-sites")
	r = d2.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", []byte(doc))
	d2.expect(r, 201, "create the slice again")
	r.json(t, &s)
	d2.expect(d2.do("demo", "DELETE", "/v1/slices/"+s.ID+"?wait=true", "", nil), 204, "delete it")
	d2.stop()
	for _, ns := range []string{unicamp, greece, underlay} {
		assertNamespace(t, ns, true)
	}
}

func assertNamespace(t *testing.T, name string, want bool) {
	t.Helper()
	_, err := os.Stat(filepath.Join("/var/run/netns", name))
	if got := err == nil; got != want {
		t.Errorf("namespace %s exists: %v, want %v", name, got, want)
	}
}
