package elastic_test

import (
	"context"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/sro"
)

// BenchmarkReaction measures, on real backends (vim-xen plugin processes on the libvirt
// daemon, monitor-influx on influxd), the time from the moment a probe writes the points
// that make a policy's trigger true to the end of the action it causes:
//
//   - vertical: add-cpu on the hot node (reservation, VIM Resize, record);
//   - horizontal: the provider is full, so a copy of the part is placed, created and
//     recorded at another provider (no WAN provider: the link is recorded, not built).
//
// The policies are evaluated every second (granularity 1) on the last 3 points; the
// target is at most 2 × granularity + the backend's own time. Each run arms a fresh
// policy and writes its points at a different phase of the evaluation period, so that
// the runs would sample a wait for the next evaluation evenly (there is none: a push
// has the policy judged at once, Engine.Measured). Runs: max(b.N, 7), or
// NECOS_BENCH_RUNS. Reported: p50, p90 and max of the reaction, and p50 of the action
// alone (backend), in milliseconds.
//
//	go test -bench Reaction -run '^$' ./core/elastic
func BenchmarkReaction(b *testing.B) {
	e := start(b, envOptions{})
	runs := 7
	if s := os.Getenv("NECOS_BENCH_RUNS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			runs = n
		}
	}
	granularity := time.Second

	b.Run("vertical", func(b *testing.B) {
		v := e.ready(b, "bench-v", partDoc("edge", "EDGE", "EUROPE.SPAIN.MADRID", "worker", 1, 1))
		id := v.Slice.ID
		n := max(b.N, runs)
		var reaction, backend []time.Duration
		for i := 0; i < n; i++ {
			r, took := e.react(b, v, "v"+strconv.Itoa(i), time.Duration(i)*granularity/time.Duration(n))
			reaction, backend = append(reaction, r), append(backend, took)
			// Back to one vCPU for the next run.
			if err := e.engine.ResizePart(context.Background(), id, "edge", "worker", "worker-1", 1, 0); err != nil {
				b.Fatal(err)
			}
		}
		report(b, reaction, backend, granularity)
	})

	b.Run("horizontal", func(b *testing.B) {
		v := e.ready(b, "bench-h",
			partDoc("core", "DC", "AMERICA.BRAZIL", "vm", 1, 1),
			partDoc("edge", "EDGE", "EUROPE.GREECE.ATHENS", "worker", 1, 2))
		id := v.Slice.ID
		n := max(b.N, runs)
		var reaction, backend []time.Duration
		for i := 0; i < n; i++ {
			r, took := e.react(b, v, "h"+strconv.Itoa(i), time.Duration(i)*granularity/time.Duration(n))
			reaction, backend = append(reaction, r), append(backend, took)
			if err := e.engine.RemovePart(context.Background(), id, "edge-h1"); err != nil {
				b.Fatal(err)
			}
		}
		report(b, reaction, backend, granularity)
	})
}

// react arms a policy, writes qualifying points phase after an evaluation, and returns
// the time from that write to the action's end, and the action's own duration.
func (e *env) react(b *testing.B, v *sro.View, name string, phase time.Duration) (time.Duration, time.Duration) {
	b.Helper()
	id := v.Slice.ID
	ctx := context.Background()
	// Low points first: the series' last values must not fire the new policy.
	e.push(b, id, "worker-1", 10*time.Millisecond, 10, 10, 10)
	armed := time.Now()
	e.install(b, v, cpu(name, "edge", 3))
	time.Sleep(phase)
	written := e.push(b, id, "worker-1", 10*time.Millisecond, 95, 96, 97)
	if evs := e.events(b, id, name, elastic.EvFired, armed); len(evs) > 0 && evs[0].Time.Before(written) {
		b.Fatalf("fired before the qualifying points were written: %+v", evs[0])
	}
	done := e.waitEvent(b, id, name, elastic.EvActionFinished, armed)
	took, _ := time.ParseDuration(done.Data["took"])
	if err := elastic.Remove(ctx, e.store, id, name); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); contains(e.el.Policies(), id+"/"+name); {
		if time.Now().After(deadline) {
			b.Fatalf("policy %s still evaluated", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return done.Time.Sub(written), took
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(p*float64(len(s)-1)+0.5)]
}

func report(b *testing.B, reaction, backend []time.Duration, granularity time.Duration) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(percentile(reaction, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(reaction, 0.9)), "p90-ms")
	b.ReportMetric(ms(percentile(reaction, 1)), "max-ms")
	b.ReportMetric(ms(percentile(backend, 0.5)), "backend-p50-ms")
	target := 2*granularity + percentile(backend, 0.5)
	b.Logf("%d runs: reaction %v; action alone %v; target 2 x %s + backend = %s", len(reaction), reaction, backend, granularity, target)
}
