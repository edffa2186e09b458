package monitoring

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCollectRealClock runs the collector on the real clock: N one-part slices on
// one provider measured every second (DefaultGranularity 1 s: ten times as often as
// the default, so that a run is short) for b.N seconds. It reports this process's CPU
// time per period (cpu-ns/op) and the fraction of a core that is at one period every
// 10 s (cores@10s), and the points written per period (points/op: N×6 when the
// collector keeps up), with the fakes directly ("inproc") or over gRPC ("grpc"), as in
// BenchmarkCollect. It uses the collector's exported API only, with the fakes of
// fakes_test.go, so that it also runs against earlier collectors, for before/after
// comparisons; BenchmarkCollect, with periods ticked by hand, is the one to watch.
//
//	go test -run '^$' -bench CollectRealClock -benchtime 10x ./core/monitoring
func BenchmarkCollectRealClock(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, via := range []string{"inproc", "grpc"} {
			b.Run(fmt.Sprintf("slices=%d/%s", n, via), func(b *testing.B) { benchRealClock(b, n, via) })
		}
	}
}

// benchRealClock runs one of BenchmarkCollectRealClock's cases: n slices, plugins via.
func benchRealClock(b *testing.B, n int, via string) {
	st := openStore(b)
	vim, mon := &fakeVIM{}, &fakeMonitor{}
	c := New(Options{Store: st, Plugins: pluginsVia(b, via, vim, mon), DefaultGranularity: time.Second,
		CallTimeout: time.Minute})
	defer c.Close()
	for i := range n {
		c.SliceReady(storeSlice(b, st, fmt.Sprint("s", i), partSpec{"core", "P", ""}))
	}
	count := func() int {
		mon.mu.Lock()
		defer mon.mu.Unlock()
		return mon.count
	}
	eventually(b, "every part measured", func() error {
		if got := count(); got < n*6 {
			return fmt.Errorf("%d points of %d", got, n*6)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // the starts recorded, the loops in step
	b.ResetTimer()
	cpu, points := processCPU(), count()
	time.Sleep(time.Duration(b.N) * time.Second)
	per := float64(processCPU()-cpu) / float64(b.N)
	b.StopTimer()
	b.ReportMetric(per, "cpu-ns/op")
	b.ReportMetric(per/float64(10*time.Second), "cores@10s")
	b.ReportMetric(float64(count()-points)/float64(b.N), "points/op")
}
