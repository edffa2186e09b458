package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/spec"
)

func example(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(), "examples", "slices", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exampleUnlinked is example accepting links not built (links-optional), for catalogues
// without a WAN provider (xenCatalogue without a federation).
func exampleUnlinked(t *testing.T, name string) []byte {
	t.Helper()
	doc := string(example(t, name))
	if !strings.Contains(doc, "    slice-requirements:\n") {
		t.Fatalf("example %s has no slice-requirements", name)
	}
	return []byte(strings.Replace(doc, "    slice-requirements:\n", "    slice-requirements:\n      links-optional: true\n", 1))
}

func getSlice(t *testing.T, d *daemon, tenant, id string) v1.Slice {
	t.Helper()
	r := d.do(tenant, "GET", "/v1/slices/"+id, "", nil)
	d.expect(r, 200, "get slice "+id)
	var s v1.Slice
	r.json(t, &s)
	return s
}

func listSlices(t *testing.T, d *daemon, tenant string) []v1.SliceSummary {
	t.Helper()
	r := d.do(tenant, "GET", "/v1/slices", "", nil)
	d.expect(r, 200, "list slices")
	var l v1.SliceList
	r.json(t, &l)
	return l.Slices
}

// The all-Xen Touristic CDN (a core and three edges, each linked to the core) through
// the NECOS route and through /v1: libvirt holds one domain per node with the asked
// vCPUs and memory, the reply carries what the original's did, and decommission leaves
// no domain and no link behind.
func TestTouristicCDNOnXen(t *testing.T) {
	needRoot(t)
	fed := newFederation(t)
	uri := libvirtURI(t)
	d := startDaemon(t, xenCatalogue(t, fed, ""))
	doc := example(t, "touristic-cdn-xen.yaml")

	// NECOS route: synchronous, 201 with the created slice in the NECOS format.
	r := d.do("demo", "POST", "/slice_activator/create_slice", "text/x-yaml", doc)
	d.expect(r, 201, "create_slice")
	created, err := spec.ParseCreatedSlice(r.Body)
	if err != nil {
		t.Fatalf("reply is not a NECOS slice: %v\n%s", err, r.Body)
	}
	st := created.Status()
	wantAt := map[string]string{"core-dc": "UNICAMP", "edge-dc-slice-spain": "SPAIN", "edge-dc-slice-greece": "GREECE", "edge-dc-slice-brazil": "UFSCAR"}
	for part, provider := range wantAt {
		ps, ok := st.Parts[part]
		switch {
		case !ok:
			t.Fatalf("reply lacks part %s", part)
		case ps.Controller.Provider != provider || ps.Controller.IP != "127.0.0.1":
			t.Errorf("part %s: dc-slice-controller %+v, want %s", part, ps.Controller, provider)
		case ps.ID.PartUUID == "" || len(ps.Nodes) != 1 || ps.Nodes[0].IP == "" || ps.VSwitch.Bridge == "":
			t.Errorf("part %s not enriched: %+v", part, ps)
		case ps.Cost == nil || ps.Cost.Euros <= 0:
			t.Errorf("part %s has no cost: %+v", part, ps.Cost)
		}
	}
	for _, l := range created.Links {
		ls := st.Links[l.Name]
		if ls.End1IP == "" || ls.End2IP == "" || ls.Controller.Provider != "WAN" {
			t.Errorf("link %s: %+v", l.Name, ls)
		}
	}
	if len(st.Links) != 3 {
		t.Fatalf("%d links in the reply, want 3", len(st.Links))
	}

	slices := listSlices(t, d, "demo")
	if len(slices) != 1 || slices[0].State != "Ready" {
		t.Fatalf("slices %+v", slices)
	}
	id := slices[0].ID
	doms := domains(t, uri, id)
	if len(doms) != 4 {
		t.Fatalf("libvirt holds %d domains of %s, want 4: %+v", len(doms), id, doms)
	}
	for _, dom := range doms {
		wantCPU, wantMem := 1, int64(1024)
		if strings.Contains(dom.Name, ".core-dc.") {
			wantCPU, wantMem = 2, 2048
		}
		if dom.VCPUs != wantCPU || dom.MemoryMB != wantMem || !dom.Active {
			t.Errorf("domain %s: %d vCPUs %d MB active=%v, want %d and %d", dom.Name, dom.VCPUs, dom.MemoryMB, dom.Active, wantCPU, wantMem)
		}
	}
	s := getSlice(t, d, "demo", id)
	for _, l := range s.Links {
		if l.State != "Ready" || l.VNI == 0 || l.Ends[0].Underlay != "10.100.0.1" {
			t.Errorf("link %+v", l)
		}
	}

	// The same name in another document is a conflict while the first lives; the same
	// document again (a retry) gets the first slice.
	other := append(append([]byte(nil), doc...), "# another document\n"...)
	d.expect(d.do("demo", "POST", "/slice_activator/create_slice", "text/x-yaml", other), 409, "duplicate create_slice")
	d.expect(d.do("demo", "POST", "/slice_activator/create_slice", "text/x-yaml", doc), 201, "create_slice retried")

	// NECOS delete route: synchronous; nothing left in libvirt.
	del := []byte("slices:\n  sliced:\n    id: TouristicCDN_xen_sliced\n")
	d.expect(d.do("demo", "POST", "/slice_activator/delete_slice", "text/x-yaml", del), 200, "delete_slice")
	if left := domains(t, uri, id); len(left) != 0 {
		t.Fatalf("domains left after decommission: %+v", left)
	}
	if got := listSlices(t, d, "demo"); len(got) != 0 {
		t.Fatalf("slices left: %+v", got)
	}

	// /v1: 202 + Location, then wait.
	r = d.do("demo", "POST", "/v1/slices", "application/yaml", doc)
	d.expect(r, 202, "POST /v1/slices")
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v1/slices/") {
		t.Fatalf("Location %q", loc)
	}
	id = strings.TrimPrefix(loc, "/v1/slices/")
	waitState(t, d, "demo", id, "Ready")
	if got := domains(t, uri, id); len(got) != 4 {
		t.Fatalf("libvirt holds %d domains, want 4", len(got))
	}
	d.expect(d.do("demo", "DELETE", "/v1/slices/"+id+"?wait=true", "", nil), 204, "DELETE ?wait")
	if left := domains(t, uri, id); len(left) != 0 {
		t.Fatalf("domains left after decommission: %+v", left)
	}
	assertNoWANDevices(t, fed)
}

func waitState(t *testing.T, d *daemon, tenant, id, want string) v1.Slice {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := getSlice(t, d, tenant, id)
		if s.State == want {
			return s
		}
		if s.State == "Failed" || time.Now().After(deadline) {
			t.Fatalf("slice %s is %s (%s), want %s", id, s.State, s.Message, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// One tenant never sees another's slices; no token is 401.
func TestTenantsAreIsolated(t *testing.T) {
	d := startDaemon(t, xenCatalogue(t, nil, ""))
	doc := exampleUnlinked(t, "touristic-cdn-xen.yaml")
	r := d.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", doc)
	d.expect(r, 201, "create")
	var s v1.Slice
	r.json(t, &s)
	d.expect(d.do("", "GET", "/v1/slices", "", nil), 401, "no token")
	d.expect(d.do("other", "GET", "/v1/slices/"+s.ID, "", nil), 404, "other tenant reads")
	d.expect(d.do("other", "DELETE", "/v1/slices/"+s.ID, "", nil), 404, "other tenant deletes")
	if l := listSlices(t, d, "other"); len(l) != 0 {
		t.Fatalf("other tenant lists %+v", l)
	}
	// The other tenant may use the same slice name.
	d.expect(d.do("other", "POST", "/v1/slices?wait=true", "application/yaml", doc), 201, "same name, other tenant")
	for _, tenant := range []string{"demo", "other"} {
		for _, sl := range listSlices(t, d, tenant) {
			d.expect(d.do(tenant, "DELETE", "/v1/slices/"+sl.ID+"?wait=true", "", nil), 204, "delete")
		}
	}
}

// Every malformed spec is a 4xx naming the field, and nothing is stored.
func TestMalformedSpecs(t *testing.T) {
	d := startDaemon(t, xenCatalogue(t, nil, ""))
	good := string(example(t, "touristic-cdn-xen.yaml"))
	cases := []struct{ name, doc, field string }{
		{"negative cpus", strings.Replace(good, "cpu-number: 2", "cpu-number: -2", 1), "cpu-number"},
		{"zero memory", strings.Replace(good, "memory-mb: 2048", "memory-mb: 0", 1), "memory-mb"},
		{"unknown part in link", strings.Replace(good, "dc-part2: edge-dc-slice-spain", "dc-part2: edge-dc-slice-mars", 1), "edge-dc-slice-mars"},
		{"duplicate part", strings.Replace(good, "name: edge-dc-slice-greece", "name: edge-dc-slice-spain", 1), "duplicate"},
		{"wrong type", strings.Replace(good, "instance-count: 1", "instance-count: many", 1), "instance-count"},
		{"unknown VIM", strings.Replace(good, "name: xen-vim", "name: openstack", 1), "xen-vim"},
		{"bad cost", strings.Replace(good, `value-euros: "<=10"`, `value-euros: "cheap"`, 1), "value-euros"},
		{"no id", strings.Replace(good, "id: TouristicCDN_xen_sliced", "id: \"\"", 1), "id"},
		{"not yaml", "slices: [unclosed", ""},
		{"alias bomb", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, route := range []string{"/v1/slices", "/slice_activator/create_slice"} {
				r := d.do("demo", "POST", route, "text/x-yaml", []byte(c.doc))
				if r.Status < 400 || r.Status >= 500 {
					t.Fatalf("%s: HTTP %d: %s", route, r.Status, r.Body)
				}
				if c.field != "" && !strings.Contains(string(r.Body), c.field) {
					t.Errorf("%s: error does not name %q: %s", route, c.field, r.Body)
				}
			}
		})
	}
	if l := listSlices(t, d, "demo"); len(l) != 0 {
		t.Fatalf("malformed specs stored slices: %+v", l)
	}
	big := strings.Repeat("#", 2<<20)
	if r := d.do("demo", "POST", "/v1/slices", "text/x-yaml", []byte(big)); r.Status != 413 {
		t.Fatalf("2 MiB body: HTTP %d", r.Status)
	}
}

// 50 tenants' requests at once against a provider with room for 10 parts: exactly 10
// slices, 40 clear refusals, and the provider holds exactly 10 domains.
func TestConcurrentRequestsNeverOverbook(t *testing.T) {
	uri := libvirtURI(t)
	d := startDaemon(t, fmt.Sprintf(`
providers:
  - name: TINY
    location: EUROPE.SPAIN
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "%s", capacity: {cpus: 10, memory_mb: 65536, storage_gb: 1000}, price_per_node_day: 1}}
`, uri))
	const n = 50
	type result struct {
		status int
		slice  v1.Slice
		body   string
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc := fmt.Sprintf(`slices:
  sliced:
    id: load-%d
    slice-parts:
      - dc-slice-part:
          name: p
          location: EUROPE
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: vm, instance-count: 1, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 256, storage-gb: 1}}}
`, i)
			r := d.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", []byte(doc))
			results[i] = result{status: r.Status, body: string(r.Body)}
			_ = json.Unmarshal(r.Body, &results[i].slice)
		}()
	}
	wg.Wait()
	ready, refused := 0, 0
	var ids []string
	for _, r := range results {
		switch {
		case r.status == 201 && r.slice.State == "Ready":
			ready++
			ids = append(ids, r.slice.ID)
		case strings.Contains(r.body, "not enough CPUs"):
			refused++
		default:
			t.Errorf("unexpected answer: HTTP %d %s", r.status, r.body)
		}
	}
	if ready != 10 || refused != 40 {
		t.Fatalf("%d slices ready, %d refused; want 10 and 40", ready, refused)
	}
	total := 0
	for _, id := range ids {
		total += len(domains(t, uri, id))
	}
	if total != 10 {
		t.Fatalf("libvirt holds %d domains of the ready slices, want 10", total)
	}
	for _, sl := range listSlices(t, d, "demo") {
		d.expect(d.do("demo", "DELETE", "/v1/slices/"+sl.ID+"?wait=true", "", nil), 204, "delete")
	}
}
