package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Calls of ReserveAll that wait while a group commits share the next group's
// transaction; a call refused in a group after others claimed is asked again once their
// holds are committed, and then sees them.
func TestReserveAllGroups(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	ctx := context.Background()
	capacity := cpus(15)
	claim := func(holder string) func(map[string]Hold) ([]Claim, error) {
		return func(granted map[string]Hold) ([]Claim, error) {
			if err := Fits(granted["A"], cpus(1), capacity); err != nil {
				return nil, err
			}
			return []Claim{{Provider: "A", Holder: holder, Amount: cpus(1), Capacity: capacity}}, nil
		}
	}
	rev := func() int64 {
		r, err := s.cli.Get(ctx, "rev")
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Revision
	}
	before := rev()
	// The first call's choose holds its group until the 16 others queued behind it.
	queued := func() int {
		s.resv.mu.Lock()
		defer s.resv.mu.Unlock()
		return len(s.resv.pending)
	}
	var wg sync.WaitGroup
	errs := make([]error, 17)
	wg.Add(1)
	go func() {
		defer wg.Done()
		first := claim("s0/a")
		errs[0] = s.ReserveAll(ctx, []string{"A"}, []string{"s0/a"}, func(g map[string]Hold) ([]Claim, error) {
			for deadline := time.Now().Add(10 * time.Second); queued() < 16 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			return first(g)
		})
	}()
	for queued() == 0 && !s.resvRunning() {
		time.Sleep(time.Millisecond)
	}
	for i := 1; i < 17; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := fmt.Sprintf("s%d/a", i)
			errs[i] = s.ReserveAll(ctx, []string{"A"}, []string{h}, claim(h))
		}()
	}
	wg.Wait()
	won, refused := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, ErrNoRoom):
			refused++
		default:
			t.Errorf("call %d: %v", i, err)
		}
	}
	if won != 15 || refused != 2 {
		t.Errorf("%d calls reserved and %d were refused; want 15 and 2 (capacity 15 of 17)", won, refused)
	}
	l, err := s.GetLedger(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Holds) != 15 || l.Total().Resources.CPUs != 15 {
		t.Errorf("A holds %d holds, %d CPUs; want 15 and 15", len(l.Holds), l.Total().Resources.CPUs)
	}
	// The first call's transaction, then one for the 14 others that fit; the two refused
	// wrote nothing.
	if n := rev() - before; n != 2 {
		t.Errorf("17 reservations took %d transactions, want 2", n)
	}
}

// BenchmarkReserveAll places a 4-part slice's holds at 4 providers, one slice at a time
// and 16 at a time (each slice's holds are released again, untimed).
func BenchmarkReserveAll(b *testing.B) {
	providers := []string{"A", "B", "C", "D"}
	capacity := cpus(1_000_000)
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
			s := openEmbedded(b, b.TempDir())
			ctx := context.Background()
			work := make(chan int)
			var wg sync.WaitGroup
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range work {
						var holders []string
						for _, p := range providers {
							holders = append(holders, fmt.Sprintf("s%d/%s", i, p))
						}
						err := s.ReserveAll(ctx, providers, holders, func(map[string]Hold) ([]Claim, error) {
							var cs []Claim
							for j, p := range providers {
								cs = append(cs, Claim{Provider: p, Holder: holders[j], Amount: cpus(1), Capacity: capacity})
							}
							return cs, nil
						})
						if err != nil {
							b.Error(err)
						}
					}
				}()
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				work <- i
			}
			close(work)
			wg.Wait()
		})
	}
}

// resvRunning reports whether a group is at work.
func (s *Store) resvRunning() bool {
	s.resv.mu.Lock()
	defer s.resv.mu.Unlock()
	return s.resv.running
}
