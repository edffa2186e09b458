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

// CorrectHold sets a part's hold to what the part holds, beyond the capacity if need be,
// keeps the ledger's total the sum of its holds, commits its event with the correction
// only, and leaves the hold alone once the part changed since it was read.
func TestCorrectHold(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	ctx := context.Background()
	if err := s.Reserve(ctx, "A", "s-1/other", cpus(3), cpus(4)); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(ctx, "A", "s-1/core", cpus(1), cpus(4)); err != nil {
		t.Fatal(err)
	}
	p := &Part{SliceID: "s-1", Name: "core", State: PartReady}
	if err := s.PutPart(ctx, p); err != nil {
		t.Fatal(err)
	}
	if p, err := s.GetPart(ctx, "s-1", "core"); err != nil {
		t.Fatal(err)
	} else {
		var was []string
		events := func(old Hold, had bool) []Event {
			was = append(was, fmt.Sprintf("%d %v", old.Resources.CPUs, had))
			return []Event{{Type: "part.hold-corrected", Part: "core", Message: fmt.Sprintf("from %d", old.Resources.CPUs)}}
		}
		// 3 + 2 > 4: Reserve would refuse; the correction records it all the same.
		changed, err := s.CorrectHold(ctx, p, "A", "s-1/core", cpus(2), events)
		if err != nil || !changed {
			t.Fatalf("correct 1 to 2 vCPUs: changed %v, %v", changed, err)
		}
		if changed, err := s.CorrectHold(ctx, p, "A", "s-1/core", cpus(2), events); err != nil || changed {
			t.Fatalf("a hold already right: changed %v, %v", changed, err)
		}
		if len(was) != 1 || was[0] != "1 true" {
			t.Fatalf("events asked for %v, want once, from the hold of 1 vCPU", was)
		}
	}
	total, _, err := getOr[Hold](ctx, s, s.ledgerTotalKey("A"))
	if err != nil || total.Resources.CPUs != 5 {
		t.Fatalf("total after the correction %+v, %v; want 5 vCPUs", total, err)
	}
	evs, err := s.Events(ctx, "s-1")
	if err != nil || len(evs) != 1 || evs[0].Message != "from 1" {
		t.Fatalf("events %+v, %v", evs, err)
	}

	// The part changes after it was read: the hold stays as it is.
	stale, err := s.GetPart(ctx, "s-1", "core")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdatePart(ctx, "s-1", "core", func(x *Part) ([]Event, error) {
		x.Change = &PartChange{ID: "c-1", Kind: ChangeScale}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	_, err = s.CorrectHold(ctx, stale, "A", "s-1/core", cpus(1), func(Hold, bool) []Event { return nil })
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("correction of a part changed since it was read: %v, want ErrConflict", err)
	}
	if h, _, _ := s.GetHold(ctx, "A", "s-1/core"); h != cpus(2) {
		t.Fatalf("hold after the refused correction %+v, want 2 vCPUs", h)
	}

	// A part without a hold gets one.
	p2 := &Part{SliceID: "s-1", Name: "edge", State: PartReady}
	if err := s.PutPart(ctx, p2); err != nil {
		t.Fatal(err)
	}
	p2, err = s.GetPart(ctx, "s-1", "edge")
	if err != nil {
		t.Fatal(err)
	}
	var had = true
	if changed, err := s.CorrectHold(ctx, p2, "A", "s-1/edge", cpus(1), func(_ Hold, h bool) []Event { had = h; return nil }); err != nil || !changed || had {
		t.Fatalf("a missing hold: changed %v had %v, %v", changed, had, err)
	}
	if l, err := s.GetLedger(ctx, "A"); err != nil || l.Total() != cpus(6) {
		t.Fatalf("ledger %+v, %v; want 6 vCPUs held in all", l, err)
	}
	if total, _, _ := getOr[Hold](ctx, s, s.ledgerTotalKey("A")); total != cpus(6) {
		t.Fatalf("total %+v, want the sum of the holds", total)
	}
}
