package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// holdVNIs records n VNIs from min on as held by slices h-<i> (one link each), both as
// the VNI records and their holder index, straight through etcd: allocating them one by
// one would measure the setup rather than the calls.
func holdVNIs(tb testing.TB, s *Store, n int, min uint32) {
	tb.Helper()
	ctx := context.Background()
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			tb.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := 0; i < n; i++ {
		vni := min + uint32(i)
		holder := fmt.Sprintf("h-%d/l", i)
		h, _ := json.Marshal(holder)
		ops = append(ops,
			clientv3.OpPut(s.key("vnis", strconv.FormatUint(uint64(vni), 10)), string(h)),
			clientv3.OpPut(s.key("vniholders", holder), strconv.FormatUint(uint64(vni), 10)))
		if len(ops) == 64 {
			flush()
		}
	}
	flush()
}

// vniBenchStore opens a store with held VNIs held by other slices and one allocation
// made: a store's first one may load what it needs once, outside the timing.
func vniBenchStore(b *testing.B, held int) *Store {
	b.Helper()
	s := openEmbedded(b, b.TempDir())
	holdVNIs(b, s, held, 1000)
	if _, err := s.AllocateVNI(context.Background(), "warm/l", 1000, 16_000_000); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAllocateVNI allocates a new link's VNI with 0 and 10,000 VNIs held by other
// slices (each allocation's VNI is released again, untimed, so that the count holds).
func BenchmarkAllocateVNI(b *testing.B) {
	for _, held := range []int{0, 10_000} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			ctx := context.Background()
			s := vniBenchStore(b, held)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				holder := fmt.Sprintf("b-%d/l", i)
				if _, err := s.AllocateVNI(ctx, holder, 1000, 16_000_000); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.ReleaseVNI(ctx, holder); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkReleaseVNI releases one link's VNI (ReleaseVNI) and a slice's three (the
// plan's release of everything the slice holds), with 0 and 10,000 VNIs held by other
// slices; the allocations are untimed.
func BenchmarkReleaseVNI(b *testing.B) {
	for _, held := range []int{0, 10_000} {
		for _, what := range []string{"link", "slice"} {
			b.Run(fmt.Sprintf("%s/held=%d", what, held), func(b *testing.B) {
				ctx := context.Background()
				s := vniBenchStore(b, held)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					slice := fmt.Sprintf("b-%d", i)
					links := 1
					if what == "slice" {
						links = 3
					}
					for l := 0; l < links; l++ {
						if _, err := s.AllocateVNI(ctx, fmt.Sprintf("%s/l%d", slice, l), 1000, 16_000_000); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					var err error
					if what == "slice" {
						err = s.ReleaseSliceVNIs(ctx, slice)
					} else {
						err = s.ReleaseVNI(ctx, slice+"/l0")
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
