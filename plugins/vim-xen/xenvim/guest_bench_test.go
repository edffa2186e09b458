package xenvim

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"libvirt.org/go/libvirt"
)

// BenchmarkGuestBoot measures define → SSH answers for real guests: -benchtime Nx boots
// N guests one after the other (p50/p95 reported), then four at once (the slowest of
// the four), against QEMU alone booting the same four (plainQEMUFour). It also reports
// an idle guest's RSS on the host and its CPU use over 10 s.
//
//	go test -run '^$' -bench GuestBoot -benchtime 10x ./plugins/vim-xen/xenvim
func BenchmarkGuestBoot(b *testing.B) {
	cfg, ok := guestConfig(b)
	if !ok {
		b.Skip("needs " + envGuestImage + " and " + envQemuURI)
	}
	e := &guestEnv{provider: sdk.Provider{Name: "bench-" + suffix()}, site: newSite(b), cfg: cfg}
	// A benchmark killed before its clean-ups leaves its guests to the next guest test.
	plugintest.TakeLease(b, guestLeaseKind, e.provider.Name, mustJSON(b, guestLease{Site: e.site, Config: cfg}))
	e.p = New(nil)
	if err := e.p.Configure(context.Background(), sdk.Config{Provider: e.provider, JSON: mustJSON(b, cfg)}); err != nil {
		b.Fatal(err)
	}
	defer e.p.Close()
	ctx := context.Background()
	// Where the plugin's Create spends its time, step by step (steps.go), over the
	// boots one after the other.
	steps := newStepTimes()
	testHookStep = func(step string, took time.Duration) { steps.add(step, took) }
	defer func() { testHookStep = nil }()
	// boot makes a part of one guest and waits for its SSH. It runs in goroutines too,
	// so it returns its failure (b.Fatal there would leave the benchmark waiting).
	boot := func() (time.Duration, sdk.Part, sdk.PartSpec, error) {
		spec := e.spec("p", sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1})
		start := time.Now()
		part, err := e.p.Create(ctx, sdk.CreateRequest{Part: spec})
		steps.add("Create", time.Since(start))
		if err != nil {
			return 0, part, spec, err
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			try := time.Now()
			out, err := guestExec(sctx, part, "vm-1", guestClockCmd)
			cancel()
			if err == nil {
				took := time.Since(start)
				steps.guestClock(out, took)
				return took, part, spec, nil
			}
			steps.add("failed dial: "+dialFailure(err), time.Since(try))
			if time.Now().After(deadline) {
				return 0, part, spec, fmt.Errorf("node vm-1 of %s did not answer SSH within 60 s (%s): %w",
					spec.Ref, guestCPU(domainName(e.provider.Name, spec.Ref, "vm-1")), err)
			}
		}
	}
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, _, spec, err := boot()
		if derr := e.p.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); derr != nil {
			b.Errorf("delete %s: %v", spec.Ref, derr)
		}
		if err != nil {
			b.Fatal(err)
		}
		times = append(times, d)
	}
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(times[len(times)/2].Seconds(), "p50-s")
	b.ReportMetric(times[(len(times)*95+99)/100-1].Seconds(), "p95-s")
	b.ReportMetric(steps.median("Create").Seconds(), "create-s")
	b.Logf("Create's steps, median (max, count) over %d boots: %s", len(times), steps)
	steps = newStepTimes()

	// Four at once, QEMU alone first: the baseline, in the same run and on the same load.
	plain := plainQEMUFour(b, cfg)
	b.ReportMetric(plain.Seconds(), "plain-four-s")

	// Four at once through the plugin.
	type res struct {
		d    time.Duration
		part sdk.Part
		spec sdk.PartSpec
		err  error
	}
	out := make(chan res, 4)
	start := time.Now()
	for range 4 {
		go func() { d, p, s, err := boot(); out <- res{d, p, s, err} }()
	}
	var four []res
	for range 4 {
		four = append(four, <-out)
	}
	b.ReportMetric(time.Since(start).Seconds(), "four-s")
	// The plugin's four against QEMU's, at the same point of the boot: the last guest's
	// SSH server start (its init has applied the seed).
	b.ReportMetric(steps.max("guest SSH server starts").Seconds()/plain.Seconds(), "four/plain")
	b.Logf("Create's steps, median (max, count) over four at once: %s", steps)
	testHookStep = nil
	defer func() {
		for _, r := range four {
			if err := e.p.Delete(ctx, sdk.DeleteRequest{Ref: r.spec.Ref}); err != nil {
				b.Errorf("delete %s: %v", r.spec.Ref, err)
			}
		}
	}()
	for _, r := range four {
		if r.err != nil {
			b.Fatalf("four at once: %v", r.err)
		}
	}
	// Idle cost of one guest, after the four have settled.
	time.Sleep(5 * time.Second)
	name := domainName(e.provider.Name, four[0].spec.Ref, "vm-1")
	rss, cpu := qemuUsage(b, name, 10*time.Second)
	b.ReportMetric(rss, "idle-rss-MB")
	b.ReportMetric(cpu, "idle-cpu-%")
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

// BenchmarkGuestIdleMemory boots one guest of 256 MB and, once it has been idle for
// 30 s, reports where its qemu process's memory goes: the guest's RAM (the resident part
// of the RAM block), qemu's own anonymous memory (TCG's translation cache, heap, thread
// stacks, device state), and mapped files (qemu and its libraries, shared between
// guests: their PSS is what one guest costs), with what the guest says it uses (its
// balloon's statistics).
//
//	go test -run '^$' -bench GuestIdleMemory -benchtime 1x ./plugins/vim-xen/xenvim
func BenchmarkGuestIdleMemory(b *testing.B) {
	cfg, ok := guestConfig(b)
	if !ok {
		b.Skip("needs " + envGuestImage + " and " + envQemuURI)
	}
	// The maximum memory is how far Resize can grow a node live (max_node): the guest's
	// kernel sizes some tables for it.
	for _, maxMB := range []int64{1024, 256} {
		b.Run(fmt.Sprintf("max-memory-%dMB", maxMB), func(b *testing.B) {
			c := cfg
			c.MaxNode.MemoryMB = maxMB
			idleMemory(b, c)
		})
	}
}

func idleMemory(b *testing.B, cfg Config) {
	e := &guestEnv{provider: sdk.Provider{Name: "bench-" + suffix()}, site: newSite(b), cfg: cfg}
	// A benchmark killed before its clean-ups leaves its guests to the next guest test.
	plugintest.TakeLease(b, guestLeaseKind, e.provider.Name, mustJSON(b, guestLease{Site: e.site, Config: cfg}))
	e.p = New(nil)
	if err := e.p.Configure(context.Background(), sdk.Config{Provider: e.provider, JSON: mustJSON(b, cfg)}); err != nil {
		b.Fatal(err)
	}
	defer e.p.Close()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		spec := e.spec("p", sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1})
		b.Cleanup(func() { _ = e.p.Delete(context.Background(), sdk.DeleteRequest{Ref: spec.Ref}) })
		part, err := e.p.Create(ctx, sdk.CreateRequest{Part: spec})
		if err != nil {
			b.Fatal(err)
		}
		waitSSH(b, part, "vm-1", "true", 60*time.Second)
		time.Sleep(30 * time.Second)
		name := domainName(e.provider.Name, spec.Ref, "vm-1")
		m := qemuMemory(b, name)
		b.Logf("idle 30 s: rss %.0f MB (pss %.0f) = guest RAM %.0f + qemu anon %.0f + files %.0f (pss %.0f); the guest uses %.0f of %.0f MB",
			m.rss, m.pss, m.ramRSS, m.anonRSS, m.fileRSS, m.filePSS, m.guestUsed, m.guestActual)
		out, _ := sshTo(b, part, "vm-1", "grep -E '^(MemTotal|MemFree|Buffers|Cached|Shmem|Slab|PageTables|KernelStack|Percpu):' /proc/meminfo | tr -s ' ' | tr '\\n' ' '; du -sxm / 2>/dev/null | cut -f1")
		b.Logf("in the guest: %s MB in its root file system (RAM)", strings.TrimSpace(out))
		b.ReportMetric(m.rss, "rss-MB")
		b.ReportMetric(m.pss, "pss-MB")
		b.ReportMetric(m.ramRSS, "guest-ram-MB")
		b.ReportMetric(m.anonRSS, "qemu-anon-MB")
		b.ReportMetric(m.filePSS, "files-pss-MB")
		b.ReportMetric(m.guestUsed, "guest-used-MB")
		if err := e.p.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
			b.Fatal(err)
		}
	}
}

// guestRAMMapMB tells the guest's RAM from qemu's own anonymous mappings, of which the
// largest is TCG's translation cache (tcg_cache_mb, 32 MiB by default).
const guestRAMMapMB = 96

type qemuMem struct {
	rss, pss, ramRSS, anonRSS, anonPSS, fileRSS, filePSS float64
	guestUsed, guestActual, guestUnused                  float64
}

// qemuMemory reads a domain's qemu process's smaps (MB) and the guest's balloon
// statistics.
func qemuMemory(b *testing.B, domain string) qemuMem {
	b.Helper()
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
	raw, err := os.ReadFile("/proc/" + pid + "/smaps")
	if err != nil {
		b.Fatal(err)
	}
	type mapping struct {
		size, rss, pss float64
		file           bool
	}
	var maps []mapping
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4:
			lo, hi, _ := strings.Cut(f[0], "-")
			l, _ := strconv.ParseUint(lo, 16, 64)
			h, _ := strconv.ParseUint(hi, 16, 64)
			maps = append(maps, mapping{size: float64(h-l) / (1 << 20), file: len(f) >= 6 && strings.HasPrefix(f[5], "/")})
		case len(f) >= 2 && len(maps) > 0 && f[0] == "Rss:":
			v, _ := strconv.ParseFloat(f[1], 64)
			maps[len(maps)-1].rss = v / 1024
		case len(f) >= 2 && len(maps) > 0 && f[0] == "Pss:":
			v, _ := strconv.ParseFloat(f[1], 64)
			maps[len(maps)-1].pss = v / 1024
		}
	}
	var m qemuMem
	for _, mp := range maps {
		m.rss += mp.rss
		m.pss += mp.pss
		switch {
		case !mp.file && mp.size >= guestRAMMapMB:
			// The guest's RAM: its boot memory and, with virtio-mem, the device's region.
			m.ramRSS += mp.rss
		case mp.file:
			m.fileRSS += mp.rss
			m.filePSS += mp.pss
		default:
			m.anonRSS += mp.rss
			m.anonPSS += mp.pss
		}
	}
	conn, err := libvirt.NewConnect(os.Getenv(envQemuURI))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	d, err := conn.LookupDomainByName(domain)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Free()
	stats, err := d.MemoryStats(uint32(libvirt.DOMAIN_MEMORY_STAT_NR), 0)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range stats {
		switch libvirt.DomainMemoryStatTags(s.Tag) {
		case libvirt.DOMAIN_MEMORY_STAT_ACTUAL_BALLOON:
			m.guestActual = float64(s.Val) / 1024
		case libvirt.DOMAIN_MEMORY_STAT_UNUSED:
			m.guestUnused = float64(s.Val) / 1024
		}
	}
	m.guestUsed = m.guestActual - m.guestUnused
	return m
}

// stepTimes collects the durations of Create's steps (testHookStep) by step.
type stepTimes struct {
	mu    sync.Mutex
	order []string
	by    map[string][]time.Duration
}

func newStepTimes() *stepTimes { return &stepTimes{by: map[string][]time.Duration{}} }

func (t *stepTimes) add(step string, took time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.by[step]; !ok {
		t.order = append(t.order, step)
	}
	t.by[step] = append(t.by[step], took)
}

func (t *stepTimes) median(step string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := slices.Clone(t.by[step])
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

func (t *stepTimes) max(step string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.by[step]) == 0 {
		return 0
	}
	return slices.Max(t.by[step])
}

// String lists each step's median, maximum and count in the order the steps first came.
func (t *stepTimes) String() string {
	var out []string
	for _, step := range t.order {
		t.mu.Lock()
		d := slices.Clone(t.by[step])
		t.mu.Unlock()
		slices.Sort(d)
		out = append(out, fmt.Sprintf("%s %s (%s, %d×)", step, d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), len(d)))
	}
	return strings.Join(out, ", ")
}

// guestClockCmd prints the guest's uptime and when its SSH server's oldest process (the
// listener) started, in clock ticks since boot.
const guestClockCmd = `cut -d' ' -f1 /proc/uptime; for p in $(pidof dropbear); do cut -d' ' -f22 /proc/$p/stat; done | sort -n | head -1`

// guestClock places the guest's boot on the host's clock: its kernel started at
// answered - uptime after Create began, its SSH server ticks/100 s later.
func (t *stepTimes) guestClock(out string, answered time.Duration) {
	f := strings.Fields(out)
	if len(f) != 2 {
		return
	}
	up, err1 := strconv.ParseFloat(f[0], 64)
	ticks, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil {
		return
	}
	kernel := answered - time.Duration(up*float64(time.Second))
	t.add("guest kernel starts", kernel)
	t.add("guest SSH server starts", kernel+time.Duration(ticks*float64(time.Second)/100))
	t.add("SSH answered", answered)
}

// dialFailure names why an SSH attempt failed, for the benchmark's log.
func dialFailure(err error) string {
	switch msg := err.Error(); {
	case strings.Contains(msg, "no route to host"):
		return "no route"
	case strings.Contains(msg, "connection refused"):
		return "refused"
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline"):
		return "timeout"
	default:
		return "other"
	}
}

// guestCPU says how much CPU time a domain has had, to tell a guest that never got the
// CPU to boot (under load) from one that booted and is not reachable.
func guestCPU(domain string) string {
	conn, err := libvirt.NewConnect(os.Getenv(envQemuURI))
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	d, err := conn.LookupDomainByName(domain)
	if err != nil {
		return err.Error()
	}
	defer d.Free()
	info, err := d.GetInfo()
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("domain state %d, %.1f s of CPU", info.State, float64(info.CpuTime)/1e9)
}
