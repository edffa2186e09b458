package e2e

import (
	"strings"
	"testing"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"libvirt.org/go/libvirt"
)

// A domain destroyed behind necos's back makes its Ready slice Degraded, with the reason,
// in the API (slice and part); when the domain runs again the slice is Ready again.
func TestDegradedWhenADomainIsDestroyed(t *testing.T) {
	uri := libvirtURI(t)
	d := startDaemon(t, xenCatalogue(t, nil, ""), "--health-interval", "200ms")
	doc := strings.Replace(string(exampleUnlinked(t, "touristic-cdn-xen.yaml")), "id: TouristicCDN_xen_sliced", "id: degraded-"+randomID(), 1)
	r := d.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", []byte(doc))
	d.expect(r, 201, "create")
	var s v1.Slice
	r.json(t, &s)
	if s.State != "Ready" {
		t.Fatalf("slice %s: %s", s.State, s.Message)
	}
	defer d.do("demo", "DELETE", "/v1/slices/"+s.ID+"?wait=true", "", nil)
	doms := domains(t, uri, s.ID)
	if len(doms) == 0 {
		t.Fatal("no domains")
	}
	victim := doms[0].Name
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(victim)
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Free()
	if err := dom.Destroy(); err != nil {
		t.Fatalf("destroy %s: %v", victim, err)
	}
	destroyed := time.Now()

	waitFor := func(state string) v1.Slice {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			got := getSlice(t, d, "demo", s.ID)
			if got.State == state {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("slice never %s: %s (%s)", state, got.State, got.Message)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	got := waitFor("Degraded")
	t.Logf("Degraded %s after the domain was destroyed: %s", time.Since(destroyed).Round(time.Millisecond), got.Message)
	if !strings.Contains(got.Message, "is stopped at provider") {
		t.Fatalf("degraded without the reason: %q", got.Message)
	}
	lost := ""
	for _, p := range got.Parts {
		if p.State == "Lost" {
			lost = p.Name
			if !strings.Contains(p.Message, "stopped") {
				t.Fatalf("lost part %s says %q", p.Name, p.Message)
			}
		}
	}
	if lost == "" || !strings.Contains(got.Message, "part "+lost+":") {
		t.Fatalf("no part Lost, or not the one named: %+v", got)
	}
	if err := dom.Create(); err != nil {
		t.Fatalf("start %s again: %v", victim, err)
	}
	got = waitFor("Ready")
	if got.Message != "" {
		t.Fatalf("Ready again, yet says %q", got.Message)
	}
	for _, p := range got.Parts {
		if p.State != "Ready" {
			t.Fatalf("part %s is %s after recovery", p.Name, p.State)
		}
	}
}
