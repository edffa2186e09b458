package monitoring

import (
	"fmt"
	"testing"
)

// BenchmarkCollect measures what one period of monitoring costs the collector: N
// one-part slices (three nodes, two metrics: six points a part) on one provider at the
// default 10 s granularity, each period ticked by hand instead of waited for. The VIM
// and Monitor are in-process fakes (fakes_test.go) that cost next to nothing, so what is
// measured is the collector's own work: gathering the loop's parts, the MetricsBatch
// calls, the points, the Write calls. In "grpc" the same fakes are served through
// go-plugin's in-memory gRPC connection, which adds what encoding and decoding the
// calls costs, on both sides (in production the plugin's half is spent in the plugin's
// process). Per period it reports the wall time (ns/op), this process's CPU time
// (cpu-ns/op, every goroutine's, the embedded store's included) and what fraction of
// a core that CPU time is at one period every 10 s (cores@10s):
//
//	go test -run '^$' -bench 'Collect$' -benchtime 200x ./core/monitoring
func BenchmarkCollect(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, via := range []string{"inproc", "grpc"} {
			b.Run(fmt.Sprintf("slices=%d/%s", n, via), func(b *testing.B) {
				r := newRig(b, func(v *fakeVIM, m *fakeMonitor) Plugins { return pluginsVia(b, via, v, m) })
				for i := range n {
					r.slice(fmt.Sprint("s", i), partSpec{"core", "P", ""})
				}
				key := loopKey{"P", DefaultGranularity}
				eventually(b, "every part measured once", func() error {
					r.col.mu.Lock()
					defer r.col.mu.Unlock()
					started := 0
					for _, run := range r.col.slices {
						for _, m := range run.members {
							if m.started {
								started++
							}
						}
					}
					if started < n {
						return fmt.Errorf("%d of %d parts", started, n)
					}
					return nil
				})
				// A period that runs once the rounds of the parts' joins are over.
				r.tick(key)
				r.vim.calls()
				r.mon.mu.Lock()
				r.mon.count = 0
				r.mon.mu.Unlock()
				b.ReportAllocs()
				b.ResetTimer()
				cpu := processCPU()
				for i := 0; i < b.N; i++ {
					r.tick(key)
				}
				per := float64(processCPU()-cpu) / float64(b.N)
				b.StopTimer()
				b.ReportMetric(per, "cpu-ns/op")
				b.ReportMetric(per/float64(DefaultGranularity), "cores@10s")
				r.mon.mu.Lock()
				points := r.mon.count
				r.mon.mu.Unlock()
				if want := b.N * n * 6; points != want {
					b.Fatalf("%d points written in %d periods, want %d", points, b.N, want)
				}
				if via == "inproc" {
					if calls := len(r.vim.calls()); calls != b.N*((n+MaxBatchParts-1)/MaxBatchParts) {
						b.Fatalf("%d MetricsBatch calls in %d periods", calls, b.N)
					}
				}
			})
		}
	}
}
