package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// `necosctl demo` against necosd on the default catalogue's federation of real guests
// (with InfluxDB monitoring, every 2 s so that policies see their points within the
// test): the CDN tenant's phases run in order and succeed (slice, guests, service,
// visitors served by their edge and the core, the page through a forwarder), the
// Spain edge's load makes its policy act on real metrics, the IoT tenant's Kubernetes
// slice is reported as not done here (no Kubernetes provider in this catalogue), and
// after the decommission the demo finds nothing left, as this test does.
func TestDemo(t *testing.T) {
	needRoot(t)
	fed := newFederation(t)
	influx := testenv.StartInflux(t)
	d := startDaemon(t, guestCatalogue(t, fed)+influx.MonitorCatalogue())
	dir := t.TempDir()
	write := func(name, example string, edit func(string) string) string {
		b, err := os.ReadFile(filepath.Join(root(), "examples", example))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(edit(string(b))), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fast := func(s string) string { return strings.ReplaceAll(s, "granularity-secs: 10", "granularity-secs: 2") }
	same := func(s string) string { return s }
	cdnSlice := write("cdn.yaml", "slices/touristic-cdn-xen.yaml", fast)
	cdnService := write("cdn-service.yaml", "services/touristic-cdn-xen.yaml", same)
	iotSlice := write("iot.yaml", "slices/iot-dojot.yaml", fast)
	iotService := write("iot-service.yaml", "services/iot-dojot.yaml", same)

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "necosctl"), "--server", d.url(""),
		"demo", "--cdn-token", d.tokens["demo"], "--iot-token", d.tokens["other"],
		"--cdn-slice", cdnSlice, "--cdn-service", cdnService, "--iot-slice", iotSlice, "--iot-service", iotService,
		// The Spain edge's policy at 15 % instead of 80 %, as make demo sets it: on this
		// shared 2-core machine a loaded TCG guest reads 20-35 % (its vCPU gets that share
		// of the host), an idle one < 10 %; a 20 s cooldown, so that the horizontal action
		// follows within the test. (The example's vertical action is add-memory:
		// hot-plugging a vCPU into a TCG guest whose translation cache is full crashes
		// QEMU 7.2.)
		"--cpu-threshold", "15", "--cooldown", "20s",
		"--web-port", "0", "--elastic-timeout", "200s", "--boot-timeout", "5m", "--libvirt-uri", os.Getenv("NECOS_QEMU_URI"))
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	start := time.Now()
	// What the API shows while the demo runs, seen by this test on its own.
	wctx, stopWatch := context.WithCancel(ctx)
	seen := watchSlices(wctx, d, "demo")
	err := cmd.Run()
	stopWatch()
	<-seen.done
	out := outb.String()
	t.Logf("necosctl demo (%s):\n%s", time.Since(start), out)
	if err != nil {
		t.Errorf("necosctl demo: %v", err)
	}

	// The phases, in order, with their outcome.
	want := []struct{ phase, outcome string }{
		{"cdn  create the Touristic CDN slice (4 parts, 3 links): ok", ""},
		{"cdn  guests boot (SSH answers): ok", ""},
		{"cdn  deploy the CDN service: ok", ""},
		{"cdn  visitors: local content from their edge, the rest from the core: ok", "spain: edge-dc-slice-spain/"},
		{"cdn  the CDN's page on the host: ok", "served by core-dc/"},
		{"iot  create the IoT slice (Kubernetes: core 1+2 nodes, edge 1+1): not done", "refused"},
		{"cdn  load the Spain edge until its policy acts (vertical, then horizontal): ok", "add-memory done, add-part done"},
		{"cdn  horizontal: a new edge part Ready at another site: ok", "edge-dc-slice-spain-h1 at 5TONIC"},
		{"cdn  horizontal: its link to the core built: ok", "edge-dc-slice-spain-h1 <-> core-dc"},
		{"cdn  horizontal: the CDN service deployed onto it: ok", "redeployed onto edge-dc-slice-spain-h1"},
		{"cdn  horizontal: the core's DNS sends its site's visitors to it: ok", "at 5TONIC to edge-dc-slice-spain-h1/"},
		{"cdn  decommission touristiccdn", ": ok"},
		{"all  check nothing is left: ok", "nothing left"},
	}
	// Each phase's result line (not its start line, which ends with "..."), in order.
	lines := strings.Split(out, "\n")
	at := 0
	for _, w := range want {
		found := false
		for ; at < len(lines); at++ {
			l := lines[at]
			if strings.Contains(l, w.phase) && !strings.HasSuffix(l, " ...") {
				if !strings.Contains(l, w.outcome) {
					t.Errorf("phase %q: %q, want %q in it", w.phase, l, w.outcome)
				}
				found = true
				at++
				break
			}
		}
		if !found {
			t.Errorf("phase %q missing, or out of order", w.phase)
			at = 0
		}
	}
	// The final tables: the demo's phases and the engine's timings of the CDN slice,
	// with the elastic chain.
	for _, re := range []string{`The demo, \d+\.\ds in all`, `(?m)^placement\s`, `action 1 \(add-memory\): crossed`, `action 2 \(add-part\): crossed`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("report: no match for %s", re)
		}
	}
	// The core's DNS sends each site's visitors of the Spain content to the edge at their
	// site: the copy at 5TONIC (it announced itself), the first edge in Spain.
	if !strings.Contains(out, "at SPAIN still to edge-dc-slice-spain/") {
		t.Error("a visitor in Spain was not sent to the Spain edge once the copy ran")
	}
	// The policy the actions came from is the one the flags set, and the demo says so.
	if !strings.Contains(out, "policy edge-dc-slice-spain/cdn-spain-cpu: CPU > 15 % (the service's: 80 %), cooldown 20 s (the service's: 60 s)") {
		t.Error("the demo did not say that it set the Spain edge's policy to 15 % and 20 s")
	}
	// The vertical action changed the part: its node has 512 MB more.
	if !strings.Contains(out, "edge-dc-slice-spain/edge_vm-1 now 1 vCPUs, 1536 MB (was 1 vCPUs, 1024 MB)") {
		t.Error("the Spain edge's node did not grow from 1024 to 1536 MB")
	}
	// Checked here too, independently of the demo: the horizontal action as the API
	// showed it while the demo ran, and nothing left of anything the slice ever had.
	m := regexp.MustCompile(`create the Touristic CDN slice \(4 parts, 3 links\): ok in [0-9.]+s \(([^:]+):`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no CDN slice id in the output")
	}
	id := m[1]
	seen.mu.Lock()
	defer seen.mu.Unlock()
	if n := seen.maxParts[id]; n != 5 {
		t.Errorf("the CDN slice had at most %d parts, want 4 and the horizontal action's one", n)
	}
	var added string
	for name, p := range seen.readyParts[id] {
		if p.Elastic && strings.HasPrefix(name, "edge-dc-slice-spain-h") && p.Provider != "SPAIN" {
			added = name
		}
	}
	if added == "" {
		var names []string
		for name, p := range seen.readyParts[id] {
			names = append(names, name+"@"+p.Provider)
		}
		t.Errorf("no elastic copy of the Spain edge at another site was seen Ready, only %v", names)
	} else if !seen.readyLinks[id][added] {
		t.Errorf("the link of the new part %s was never seen Ready", added)
	}
	if r := d.do("demo", "GET", "/v1/slices/"+id, "", nil); r.Status != 404 {
		t.Errorf("slice %s after the demo: HTTP %d", id, r.Status)
	}
	if left := domains(t, os.Getenv("NECOS_QEMU_URI"), id); len(left) != 0 {
		t.Errorf("domains left: %+v", left)
	}
	if len(seen.netns) < 5 {
		t.Errorf("only %d part namespaces seen: %v", len(seen.netns), seen.netns)
	}
	for ns := range seen.netns {
		if _, err := os.Stat(filepath.Join("/var/run/netns", ns)); err == nil {
			t.Errorf("part namespace %s left", ns)
		}
	}
	if len(seen.bridges) < 5 { // the bridges of the 4 parts and the new one, which links join
		t.Errorf("only %d link ends seen: %v", len(seen.bridges), seen.bridges)
	}
	for end := range seen.bridges {
		if linkDeviceExists(t, end[0], end[1]) {
			t.Errorf("bridge %s of a link left in namespace %s", end[1], end[0])
		}
	}
	assertNoWANDevices(t, fed)
	if !t.Failed() {
		return
	}
	t.Logf("necosd log (last 80 lines):\n%s", tail(d.log.String(), 80))
}

// sliceWatch is what the API showed of a tenant's slices while it was polled.
type sliceWatch struct {
	mu         sync.Mutex
	done       chan struct{}
	maxParts   map[string]int                // slice -> most parts at once
	readyParts map[string]map[string]v1.Part // slice -> parts seen Ready
	readyLinks map[string]map[string]bool    // slice -> parts with a link seen Ready
	netns      map[string]bool               // parts' namespaces
	bridges    map[[2]string]bool            // {site namespace, bridge} of link ends
}

// watchSlices polls the tenant's slices every second until ctx ends (then closes done).
// It runs beside the test's goroutine, so it reports nothing itself.
func watchSlices(ctx context.Context, d *daemon, tenant string) *sliceWatch {
	w := &sliceWatch{done: make(chan struct{}), maxParts: map[string]int{}, readyParts: map[string]map[string]v1.Part{},
		readyLinks: map[string]map[string]bool{}, netns: map[string]bool{}, bridges: map[[2]string]bool{}}
	get := func(path string, v any) bool {
		req, err := http.NewRequestWithContext(ctx, "GET", d.url(path), nil)
		if err != nil {
			return false
		}
		req.Header.Set("Authorization", "Bearer "+d.tokens[tenant])
		resp, err := d.client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(v) == nil
	}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			var l v1.SliceList
			if get("/v1/slices", &l) {
				for _, sum := range l.Slices {
					var s v1.Slice
					if !get("/v1/slices/"+sum.ID, &s) {
						continue
					}
					w.record(&s)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return w
}

func (w *sliceWatch) record(s *v1.Slice) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxParts[s.ID] = max(w.maxParts[s.ID], len(s.Parts))
	if w.readyParts[s.ID] == nil {
		w.readyParts[s.ID], w.readyLinks[s.ID] = map[string]v1.Part{}, map[string]bool{}
	}
	for _, p := range s.Parts {
		if p.State == "Ready" {
			w.readyParts[s.ID][p.Name] = p
		}
		if ns := p.Attributes["netns"]; ns != "" {
			w.netns[ns] = true
		}
	}
	for _, l := range s.Links {
		for _, e := range l.Ends {
			if l.State == "Ready" {
				w.readyLinks[s.ID][e.Part] = true
			}
			if e.Site != "" && e.Bridge != "" {
				w.bridges[[2]string{e.Site, e.Bridge}] = true
			}
		}
	}
}

// linkDeviceExists reports whether namespace ns holds a device called name (a namespace
// that is gone holds nothing).
func linkDeviceExists(t *testing.T, ns, name string) bool {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return false
	}
	nh, err := netlink.NewHandleAt(h)
	h.Close()
	if err != nil {
		t.Fatalf("netlink in %s: %v", ns, err)
	}
	defer nh.Close()
	_, err = nh.LinkByName(name)
	return err == nil
}
