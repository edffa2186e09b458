package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestManyWaitersHearTheirSlice: fifty requests at once each wait for their own slice
// while it is built; every waiter hears its slice become Ready. (With etcd's in-process
// client the watch stream deadlocked under this churn of watches made and cancelled, and
// waiters hung forever.)
func TestManyWaitersHearTheirSlice(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for round := 0; round < 10 && !t.Failed(); round++ {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			var wg sync.WaitGroup
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sl := newSlice("t", fmt.Sprintf("w-%d-%d", round, i))
					if err := s.CreateSlice(ctx, sl, Event{Type: "slice.accepted"}); err != nil {
						t.Error(err)
						return
					}
					// The builder is waited for too: its last commit may be seen by the
					// watch before its own answer arrives, and the round's ctx then ends.
					wg.Add(1)
					go func() {
						defer wg.Done()
						for _, st := range []SliceState{SliceCreating, SliceReady} {
							if _, err := s.UpdateSlice(ctx, sl.ID, func(x *Slice) ([]Event, error) {
								x.State = st
								return []Event{{Type: "slice." + string(st)}}, nil
							}); err != nil {
								t.Error(err)
							}
						}
					}()
					if _, err := s.WaitSlice(ctx, sl.ID, func(x *Slice) bool { return x.State.Terminal() }); err != nil {
						t.Errorf("round %d, slice %d: %v", round, i, err)
					}
				}()
			}
			wg.Wait()
			cancel()
		}
	}()
	select {
	case <-finished:
	case <-time.After(2 * time.Minute):
		t.Fatal("waiters never heard of their slices: the watch stream is stuck")
	}
}
