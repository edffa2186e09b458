package xenvim

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// BenchmarkGuestBoot measures define → SSH answers for real guests: -benchtime Nx boots
// N guests one after the other (p50/p95 reported), then four at once (the slowest of
// the four). It also reports an idle guest's RSS on the host and its CPU use over 10 s.
//
//	go test -run '^$' -bench GuestBoot -benchtime 10x ./plugins/vim-xen/xenvim
func BenchmarkGuestBoot(b *testing.B) {
	cfg, ok := guestConfig(b)
	if !ok {
		b.Skip("needs " + envGuestImage + " and " + envQemuURI)
	}
	e := &guestEnv{provider: sdk.Provider{Name: "bench-" + suffix()}, site: newSite(b), cfg: cfg}
	e.p = New(nil)
	if err := e.p.Configure(context.Background(), sdk.Config{Provider: e.provider, JSON: mustJSON(b, cfg)}); err != nil {
		b.Fatal(err)
	}
	defer e.p.Close()
	ctx := context.Background()
	boot := func() (time.Duration, sdk.Part, sdk.PartSpec) {
		spec := e.spec("p", sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1})
		start := time.Now()
		part, err := e.p.Create(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		waitSSH(b, part, "vm-1", "true", 60*time.Second)
		return time.Since(start), part, spec
	}
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, _, spec := boot()
		times = append(times, d)
		if err := e.p.Delete(ctx, spec.Ref); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(times[len(times)/2].Seconds(), "p50-s")
	b.ReportMetric(times[(len(times)*95+99)/100-1].Seconds(), "p95-s")

	// Four at once.
	type res struct {
		d    time.Duration
		part sdk.Part
		spec sdk.PartSpec
	}
	out := make(chan res, 4)
	start := time.Now()
	for range 4 {
		go func() { d, p, s := boot(); out <- res{d, p, s} }()
	}
	var four []res
	for range 4 {
		four = append(four, <-out)
	}
	b.ReportMetric(time.Since(start).Seconds(), "four-s")
	// Idle cost of one guest, after the four have settled.
	time.Sleep(5 * time.Second)
	name := domainName(e.provider.Name, four[0].spec.Ref, "vm-1")
	rss, cpu := qemuUsage(b, name, 10*time.Second)
	b.ReportMetric(rss, "idle-rss-MB")
	b.ReportMetric(cpu, "idle-cpu-%")
	for _, r := range four {
		_ = e.p.Delete(ctx, r.spec.Ref)
	}
}

// qemuUsage finds the qemu process of a domain and returns its RSS (MB) and its CPU use
// over window (% of one core).
func qemuUsage(b *testing.B, domain string, window time.Duration) (float64, float64) {
	pid := ""
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmd, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmd), "guest="+domain) {
			pid = p.Name()
		}
	}
	if pid == "" {
		b.Fatalf("no qemu process for %s", domain)
	}
	ticks := func() float64 {
		s, _ := os.ReadFile("/proc/" + pid + "/stat")
		f := strings.Fields(string(s)[strings.LastIndex(string(s), ")")+2:])
		u, _ := strconv.ParseFloat(f[11], 64)
		k, _ := strconv.ParseFloat(f[12], 64)
		return u + k
	}
	t0 := ticks()
	time.Sleep(window)
	cpu := (ticks() - t0) / 100 / window.Seconds() * 100
	status, _ := os.ReadFile("/proc/" + pid + "/status")
	var rss float64
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			rss = kb / 1024
		}
	}
	return rss, cpu
}
