package influx

import (
	"fmt"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// BenchmarkEncode measures the plugin's own cost of a Write of 1000 points (checking
// and encoding to line protocol), without gRPC or InfluxDB.
func BenchmarkEncode(b *testing.B) {
	points := make([]sdk.Point, 1000)
	at := time.Now()
	for i := range points {
		points[i] = sdk.Point{Metric: "cpu", Value: float64(i), Time: at.Add(time.Duration(i)),
			Tags: map[string]string{sdk.TagResourceID: fmt.Sprintf("node-%03d", i%100), sdk.TagSlice: "slice-1",
				sdk.TagPart: "part-1", sdk.TagNodeType: "worker"}}
	}
	e := encoder{precision: time.Nanosecond, now: time.Now}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.encode(points); err != nil {
			b.Fatal(err)
		}
	}
}
