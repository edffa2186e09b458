package kubevim

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// BenchmarkPartLifecycle creates, describes and deletes a part of three nodes on the
// real control plane, reporting each call's time. Delete includes the namespace
// controller's fixed 5 s wait before it finalizes a namespace.
func BenchmarkPartLifecycle(b *testing.B) {
	p := newPlugin(b, nil)
	ctx := context.Background()
	var create, describe, del time.Duration
	for i := 0; b.Loop(); i++ {
		spec := sdk.PartSpec{Ref: sdk.PartRef{SliceID: "bench", PartID: fmt.Sprintf("p%d", i)},
			VDUs: []sdk.VDUSpec{master(), worker(2, 1, 256)}}
		t0 := time.Now()
		if _, err := p.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := p.Describe(ctx, spec.Ref); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := p.Delete(ctx, spec.Ref); err != nil {
			b.Fatal(err)
		}
		create, describe, del = create+t1.Sub(t0), describe+t2.Sub(t1), del+time.Since(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(create.Milliseconds())/n, "create-ms/op")
	b.ReportMetric(float64(describe.Milliseconds())/n, "describe-ms/op")
	b.ReportMetric(float64(del.Milliseconds())/n, "delete-ms/op")
}
