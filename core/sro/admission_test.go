package sro_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/store"
)

// TestAdmissionUnderContention sends 100 concurrent creates of N-part slices against
// two providers with room for exactly K such slices (each part needs one CPU and may go
// to either provider), 20 times for each N: exactly K slices are Ready every time, the
// others are refused for want of room, and nothing stays reserved once all are gone.
// Parts reserve all together or not at all: a slice that fails never holds a part long
// enough to crowd another out.
func TestAdmissionUnderContention(t *testing.T) {
	const (
		k       = 6
		creates = 100
		runs    = 20
	)
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			half := k * n / 2
			cat, err := providers.Parse([]byte(fmt.Sprintf(`
providers:
  - name: ES
    location: EUROPE.SPAIN
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: %d, memory_mb: 1000000, storage_gb: 100000}, price_per_node_day: 2}}
  - name: GR
    location: EUROPE.GREECE
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: %d, memory_mb: 1000000, storage_gb: 100000}, price_per_node_day: 3}}
`, half, k*n-half)))
			if err != nil {
				t.Fatal(err)
			}
			env := start(t, cat)
			ctx := context.Background()
			var counts []string
			for run := range runs {
				start := time.Now()
				ready, refused := createConcurrently(t, env, fmt.Sprintf("n%dr%d", n, run), n, creates)
				counts = append(counts, fmt.Sprint(len(ready)))
				if len(ready) != k || refused != creates-k {
					t.Errorf("run %d: %d Ready, %d refused for want of room; want %d and %d", run, len(ready), refused, k, creates-k)
				}
				for _, id := range ready {
					if _, err := env.engine.Decommission(ctx, "alice", id); err != nil {
						t.Fatal(err)
					}
				}
				for _, id := range ready {
					wctx, cancel := context.WithTimeout(ctx, time.Minute)
					err := env.engine.WaitGone(wctx, id)
					cancel()
					if err != nil {
						t.Fatal(err)
					}
				}
				for _, p := range []string{"ES", "GR"} {
					if l, _ := env.store.GetLedger(ctx, p); len(l.Holds) != 0 {
						t.Fatalf("run %d: %s still holds %v after every slice is gone", run, p, l.Holds)
					}
				}
				t.Logf("run %d: %d Ready of %d in %v", run, len(ready), creates, time.Since(start).Round(time.Millisecond))
			}
			t.Logf("N=%d, K=%d: Ready per run over %d runs: %s", n, k, runs, strings.Join(counts, " "))
		})
	}
}

// createConcurrently submits count slices of n one-CPU parts at once and waits for them
// all; it returns the Ready ones and how many were refused for want of room.
func createConcurrently(t *testing.T, env *env, prefix string, n, count int) (ready []string, refused int) {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var parts []string
			for j := range n {
				parts = append(parts, part(fmt.Sprintf("p%d", j), "EUROPE", 1, 1))
			}
			sl, err := env.engine.Submit(ctx, "alice", slice(fmt.Sprintf("%s-%d", prefix, i), parts...))
			if err != nil {
				t.Error(err)
				return
			}
			got := wait(t, env.engine, sl.ID)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case got.State == store.SliceReady:
				ready = append(ready, sl.ID)
			case got.State == store.SliceFailed && strings.Contains(got.Message, "not enough CPUs"):
				refused++
				if _, err := env.engine.Decommission(ctx, "alice", sl.ID); err != nil {
					t.Error(err)
				}
			default:
				t.Errorf("slice %s: %s: %s", sl.ID, got.State, got.Message)
			}
		}()
	}
	wg.Wait()
	return ready, refused
}
