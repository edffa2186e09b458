package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// necosd killed with SIGKILL at any point of a create: after a restart the slice ends
// Ready (with its domains) or rolled back (with none), never with an orphaned domain;
// and decommission then leaves nothing.
func TestKill9DuringCreate(t *testing.T) {
	uri := libvirtURI(t)
	d := startDaemon(t, xenCatalogue(t, nil, ""))
	doc := exampleUnlinked(t, "touristic-cdn-xen.yaml")
	for i, delay := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
		100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		t.Run(fmt.Sprintf("after_%v", delay), func(t *testing.T) {
			name := fmt.Sprintf("crash-%d", i)
			body := strings.Replace(string(doc), "id: TouristicCDN_xen_sliced", "id: "+name, 1)
			r := d.do("demo", "POST", "/v1/slices", "application/yaml", []byte(body))
			d.expect(r, 202, "create")
			id := strings.TrimPrefix(r.Header.Get("Location"), "/v1/slices/")
			time.Sleep(delay)
			d.kill9()
			d.start()
			var s = getSlice(t, d, "demo", id)
			deadline := time.Now().Add(2 * time.Minute)
			for s.State != "Ready" && s.State != "Failed" {
				if time.Now().After(deadline) {
					t.Fatalf("slice %s stuck in %s after restart", id, s.State)
				}
				time.Sleep(100 * time.Millisecond)
				s = getSlice(t, d, "demo", id)
			}
			doms := domains(t, uri, id)
			switch s.State {
			case "Ready":
				if len(doms) != 4 {
					t.Fatalf("Ready after restart with %d domains, want 4: %+v", len(doms), doms)
				}
			case "Failed":
				if len(doms) != 0 {
					t.Fatalf("rolled back after restart, yet %d domains remain: %+v", len(doms), doms)
				}
			}
			t.Logf("killed %v after the request: slice ended %s", delay, s.State)
			d.expect(d.do("demo", "DELETE", "/v1/slices/"+id+"?wait=true", "", nil), 204, "delete")
			if left := domains(t, uri, id); len(left) != 0 {
				t.Fatalf("domains left after decommission: %+v", left)
			}
		})
	}
}

// necosd killed during a decommission finishes it after a restart.
func TestKill9DuringDecommission(t *testing.T) {
	uri := libvirtURI(t)
	d := startDaemon(t, xenCatalogue(t, nil, ""))
	r := d.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", exampleUnlinked(t, "touristic-cdn-xen.yaml"))
	d.expect(r, 201, "create")
	id := listSlices(t, d, "demo")[0].ID
	d.expect(d.do("demo", "DELETE", "/v1/slices/"+id, "", nil), 202, "delete")
	d.kill9()
	d.start()
	deadline := time.Now().Add(2 * time.Minute)
	for len(listSlices(t, d, "demo")) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("slice still there 2 minutes after restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if left := domains(t, uri, id); len(left) != 0 {
		t.Fatalf("domains left: %+v", left)
	}
}
