package influx_test

import (
	"fmt"

	"github.com/hashicorp/go-hclog"
	"testing"
	"time"

	"github.com/necos/necos/plugins/monitor-influx/influx"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/necos/necos/sdk/plugintest/influxtest"
)

// BenchmarkInfluxDB measures the plugin against a real influxd, through the gRPC path
// both in-process and as a launched binary: write throughput (Write calls of 1000 points
// of 100 nodes, then Flush) and the latency of the queries the elasticity engine makes.
func BenchmarkInfluxDB(b *testing.B) {
	srv := influxtest.Start(b)
	clients := map[string]func(b *testing.B) *sdk.Client{
		"InProcess": func(b *testing.B) *sdk.Client {
			p := influx.New(hclog.NewNullLogger())
			b.Cleanup(func() { _ = p.Close() })
			return plugintest.InProcess(b, p, plugintest.Provider, config(b, srv, nil))
		},
		"Binary": func(b *testing.B) *sdk.Client {
			return plugintest.Binary(b, plugintest.Build(b, "github.com/necos/necos/plugins/monitor-influx"),
				plugintest.Provider, config(b, srv, nil))
		},
	}
	for _, how := range []string{"InProcess", "Binary"} {
		b.Run(how+"/Write", func(b *testing.B) { benchWrite(b, monitor(b, clients[how](b))) })
		b.Run(how+"/Query", func(b *testing.B) { benchQuery(b, monitor(b, clients[how](b))) })
	}
}

func benchPoints(metric string, n, nodes int, at time.Time) []sdk.Point {
	points := make([]sdk.Point, n)
	for i := range points {
		points[i] = sdk.Point{
			Metric: metric,
			Tags: map[string]string{sdk.TagResourceID: fmt.Sprintf("node-%03d", i%nodes), sdk.TagSlice: "slice-1",
				sdk.TagPart: "part-" + fmt.Sprint(i%nodes/10), sdk.TagNodeType: "worker"},
			Value: float64(i%100) + 0.5,
			Time:  at.Add(time.Duration(i) * time.Millisecond),
		}
	}
	return points
}

func benchWrite(b *testing.B, m sdk.Monitor) {
	const perCall = 1000
	ctx := callCtx(b)
	metric := fmt.Sprintf("bench_write_%d", time.Now().UnixNano())
	base := time.Now().Add(-24 * time.Hour)
	calls := make([][]sdk.Point, 0, b.N)
	for i := range b.N {
		calls = append(calls, benchPoints(metric, perCall, 100, base.Add(time.Duration(i)*time.Second)))
	}
	b.ResetTimer()
	begin := time.Now()
	var writeTime time.Duration
	for _, points := range calls {
		err := m.Write(ctx, sdk.WriteRequest{Points: points})
		for err != nil && sdk.CodeOf(err) == sdk.CodeResourceExhausted {
			// The queue is full: InfluxDB is the bottleneck; wait for it as a caller would.
			if err = m.Flush(ctx); err == nil {
				err = m.Write(ctx, sdk.WriteRequest{Points: points})
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	writeTime = time.Since(begin)
	if err := m.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	total := time.Since(begin)
	b.StopTimer()
	n := float64(b.N * perCall)
	b.ReportMetric(n/total.Seconds(), "points/s")
	b.ReportMetric(float64(writeTime.Microseconds())/float64(b.N), "µs/Write")
}

func benchQuery(b *testing.B, m sdk.Monitor) {
	ctx := callCtx(b)
	metric := fmt.Sprintf("bench_query_%d", time.Now().UnixNano())
	// 100 nodes with 100 points each.
	if err := m.Write(ctx, sdk.WriteRequest{Points: benchPoints(metric, 10000, 100, time.Now().Add(-time.Hour))}); err != nil {
		b.Fatal(err)
	}
	if err := m.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	queries := map[string]sdk.Query{
		"LastOfOneNode":   {Metric: metric, Last: 1, Tags: map[string]string{sdk.TagResourceID: "node-042"}},
		"Last10OfSlice":   {Metric: metric, Last: 10, Tags: map[string]string{sdk.TagSlice: "slice-1"}},
		"WindowOfOnePart": {Metric: metric, Tags: map[string]string{sdk.TagPart: "part-3"}, Start: time.Now().Add(-time.Hour), End: time.Now()},
	}
	for name, q := range queries {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := m.Query(ctx, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
