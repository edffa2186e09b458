package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/necos/necos/sdk"
)

func cpus(n int) Hold { return Hold{Resources: sdk.Resources{CPUs: n}} }

// ReserveAll takes all of a slice's holds or none, never overbooks under concurrency,
// and replaces what the holders held before.
func TestReserveAll(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	ctx := context.Background()
	providers := []string{"A", "B"}
	capacity := cpus(4)
	// Each of 40 slices wants one CPU at A and one at B: exactly 4 get both.
	var mu sync.Mutex
	won := 0
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			holders := []string{fmt.Sprintf("s%d/a", i), fmt.Sprintf("s%d/b", i)}
			err := s.ReserveAll(ctx, providers, holders, func(granted map[string]Hold) ([]Claim, error) {
				for _, p := range providers {
					if err := Fits(granted[p], cpus(1), capacity); err != nil {
						return nil, err
					}
				}
				return []Claim{{Provider: "A", Holder: holders[0], Amount: cpus(1), Capacity: capacity},
					{Provider: "B", Holder: holders[1], Amount: cpus(1), Capacity: capacity}}, nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrNoRoom):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, p := range providers {
		l, err := s.GetLedger(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Holds) != 4 || l.Total().Resources.CPUs != 4 {
			t.Errorf("%s holds %v", p, l.Holds)
		}
		total, _, _ := getOr[Hold](ctx, s, s.ledgerTotalKey(p))
		if total.Resources.CPUs != 4 {
			t.Errorf("%s's recorded total is %d CPUs, want 4", p, total.Resources.CPUs)
		}
	}
	if won != 4 {
		t.Errorf("%d slices got both holds, want 4", won)
	}

	// A holder's hold is replaced: moved from A to B (B is full: refused, A kept).
	var holder string
	l, _ := s.GetLedger(ctx, "A")
	for h := range l.Holds {
		holder = h
	}
	err := s.ReserveAll(ctx, providers, []string{holder}, func(granted map[string]Hold) ([]Claim, error) {
		if granted["A"].Resources.CPUs != 3 {
			t.Errorf("granted at A to others than %s: %d CPUs, want 3", holder, granted["A"].Resources.CPUs)
		}
		return []Claim{{Provider: "B", Holder: holder, Amount: cpus(1), Capacity: capacity}}, nil
	})
	if !errors.Is(err, ErrNoRoom) {
		t.Fatalf("a claim beyond capacity: %v, want ErrNoRoom", err)
	}
	if _, held, _ := s.GetHold(ctx, "A", holder); !held {
		t.Fatal("a refused ReserveAll dropped a hold")
	}
	err = s.ReserveAll(ctx, providers, []string{holder}, func(map[string]Hold) ([]Claim, error) {
		return []Claim{{Provider: "A", Holder: holder, Amount: cpus(2), Capacity: Hold{}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if h, _, _ := s.GetHold(ctx, "A", holder); h.Resources.CPUs != 2 {
		t.Errorf("replaced hold: %+v, want 2 CPUs", h)
	}
	if l, _ := s.GetLedger(ctx, "A"); l.Total().Resources.CPUs != 5 {
		t.Errorf("A's holds total %d CPUs, want 5", l.Total().Resources.CPUs)
	}
}

// TestLedgerSummary: the total and the number of holders, as GetLedger would sum them.
func TestLedgerSummary(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	capacity := Hold{Resources: sdk.Resources{CPUs: 100}}
	for i, cpus := range []int{1, 2, 3} {
		if err := s.Reserve(ctx, "A", fmt.Sprintf("s%d/p", i), Hold{Resources: sdk.Resources{CPUs: cpus}, BandwidthBps: 10}, capacity); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Release(ctx, "A", "s1/p"); err != nil {
		t.Fatal(err)
	}
	total, holders, err := s.LedgerSummary(ctx, "A")
	l, _ := s.GetLedger(ctx, "A")
	if err != nil || holders != 2 || total.Resources.CPUs != 4 || total.BandwidthBps != 20 || total != l.Total() {
		t.Fatalf("summary %+v, %d holders, %v; ledger total %+v", total, holders, err, l.Total())
	}
	if total, holders, err := s.LedgerSummary(ctx, "nobody"); err != nil || holders != 0 || total != (Hold{}) {
		t.Fatalf("empty ledger: %+v %d %v", total, holders, err)
	}
}
