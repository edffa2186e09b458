package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/internal/testenv"
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
	// The Spain edge's policy at 15 % instead of 80 %: on this shared 2-core machine a
	// loaded TCG guest reads 20-35 % (its vCPU gets that share of the host), an idle one
	// < 10 %; a 20 s cooldown, so that the horizontal action may follow within the test;
	// and more memory as its vertical action instead of a vCPU: hot-plugging a vCPU into
	// a TCG guest whose translation cache is capped (vim-xen: 32 MiB) and full crashes
	// QEMU 7.2 (tcg/region.c:372 tcg_region_initial_alloc__locked: assertion failed).
	cdnService := write("cdn-service.yaml", "services/touristic-cdn-xen.yaml", func(s string) string {
		for old, new := range map[string]string{
			"value: 80\n                trigger: {points: 3}":           "value: 15\n                trigger: {points: 3}",
			"reactivate-elasticity: 60":                                 "reactivate-elasticity: 20",
			"vertical: {max-cpus: 2}":                                   "vertical: {max-memory-mb: 1536}",
			"- action: {type: add-cpu, vdu: edge_vm, value: 1, max: 2}": "- action: {type: add-memory, vdu: edge_vm, value: 512, max: 1536}",
		} {
			if !strings.Contains(s, old) {
				t.Fatalf("the example service no longer has %q", old)
			}
			s = strings.Replace(s, old, new, 1)
		}
		return s
	})
	iotSlice := write("iot.yaml", "slices/iot-dojot.yaml", fast)
	iotService := write("iot-service.yaml", "services/iot-dojot.yaml", same)

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "necosctl"), "--server", d.url(""),
		"demo", "--cdn-token", d.tokens["demo"], "--iot-token", d.tokens["other"],
		"--cdn-slice", cdnSlice, "--cdn-service", cdnService, "--iot-slice", iotSlice, "--iot-service", iotService,
		"--web-port", "0", "--elastic-timeout", "100s", "--libvirt-uri", os.Getenv("NECOS_QEMU_URI"))
	start := time.Now()
	outb, err := cmd.CombinedOutput()
	out := string(outb)
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
		{"cdn  load the Spain edge until its policy acts (vertical, then horizontal):", "add-memory done"},
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
	for _, re := range []string{`The demo, \d+\.\ds in all`, `(?m)^placement\s`, `action 1 \(add-memory\): crossed`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("report: no match for %s", re)
		}
	}
	// The vertical action changed the part: its node has 512 MB more.
	if !strings.Contains(out, "edge-dc-slice-spain/edge_vm-1 now 1 vCPUs, 1536 MB (was 1 vCPUs, 1024 MB)") {
		t.Error("the Spain edge's node did not grow from 1024 to 1536 MB")
	}
	// Checked here too, independently of the demo.
	if m := regexp.MustCompile(`create the Touristic CDN slice \(4 parts, 3 links\): ok in [0-9.]+s \(([^:]+):`).FindStringSubmatch(out); m != nil {
		if left := domains(t, os.Getenv("NECOS_QEMU_URI"), m[1]); len(left) != 0 {
			t.Errorf("domains left: %+v", left)
		}
	} else {
		t.Error("no CDN slice id in the output")
	}
	assertNoWANDevices(t, fed)
	if !t.Failed() {
		return
	}
	t.Logf("necosd log (last 80 lines):\n%s", tail(d.log.String(), 80))
}
