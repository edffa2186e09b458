package store

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestEmbeddedReadsSeeAcknowledgedWrites: the embedded store's reads and writes call the
// member in-process; a read that starts after a write was acknowledged must see it,
// whichever goroutine wrote. Writers and readers run at once so that reads meet writes
// in flight.
func TestEmbeddedReadsSeeAcknowledgedWrites(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	ctx := context.Background()
	sl := newSlice("t", "rw")
	if err := s.CreateSlice(ctx, sl, Event{Type: "created"}); err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64 // the highest generation a writer saw committed
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				next, err := s.UpdateSlice(ctx, sl.ID, func(x *Slice) ([]Event, error) {
					x.Message = strconv.Itoa(gen(x) + 1)
					return nil, nil
				})
				if err != nil {
					errs <- err
					return
				}
				for {
					cur := acked.Load()
					if int64(gen(next)) <= cur || acked.CompareAndSwap(cur, int64(gen(next))) {
						break
					}
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				want := acked.Load()
				got, err := s.GetSlice(ctx, sl.ID)
				if err != nil {
					errs <- err
					return
				}
				if int64(gen(got)) < want {
					errs <- fmt.Errorf("read generation %d after generation %d was acknowledged", gen(got), want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := s.GetSlice(ctx, sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gen(got) != 100 {
		t.Fatalf("after 100 updates: generation %d; want 100", gen(got))
	}
}

// TestReadsSeeWhatTheWatchReported: a read made once a watch has reported a write sees
// that write. The engine relies on it everywhere (a waiter told that its slice is Ready
// reads it; a slice queued by its watch event is read to be reconciled). etcd notifies
// watchers before a write is visible to reads served from the member's applied state
// (serializable reads), so the store's reads are linearizable.
func TestReadsSeeWhatTheWatchReported(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sl := newSlice("t", "watched")
	if err := s.CreateSlice(ctx, sl, Event{Type: "created"}); err != nil {
		t.Fatal(err)
	}
	const updates = 200
	done := make(chan error, 1)
	go func() {
		for i := 0; i < updates; i++ {
			if _, err := s.UpdateSlice(ctx, sl.ID, func(x *Slice) ([]Event, error) {
				x.Message = strconv.Itoa(gen(x) + 1)
				return nil, nil
			}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for want := 1; want <= updates; want++ {
		seen, err := s.WaitSlice(ctx, sl.ID, func(x *Slice) bool { return gen(x) >= want })
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetSlice(ctx, sl.ID)
		if err != nil {
			t.Fatal(err)
		}
		if gen(got) < gen(seen) {
			t.Fatalf("read generation %d after the watch reported generation %d", gen(got), gen(seen))
		}
		want = gen(seen)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// gen is the update count the test keeps in a slice's message.
func gen(sl *Slice) int {
	n, _ := strconv.Atoi(sl.Message)
	return n
}

// BenchmarkStoreRoundTrip times the store's round trips through the embedded etcd: a
// record's read, a conditional write (an update: read and compare-and-swap), and a
// prefix list of a slice's parts, one at a time and 16 at a time.
func BenchmarkStoreRoundTrip(b *testing.B) {
	s := openEmbedded(b, b.TempDir())
	ctx := context.Background()
	var ids []string
	for i := 0; i < 16; i++ {
		sl := newSlice("t", fmt.Sprintf("rt-%d", i))
		if err := s.CreateSlice(ctx, sl, Event{Type: "created"}); err != nil {
			b.Fatal(err)
		}
		for _, name := range []string{"a", "b", "c", "d"} {
			if err := s.PutPart(ctx, &Part{SliceID: sl.ID, Name: name, Provider: "p"}); err != nil {
				b.Fatal(err)
			}
		}
		ids = append(ids, sl.ID)
	}
	calls := map[string]func(id string) error{
		"get":        func(id string) error { _, err := s.GetSlice(ctx, id); return err },
		"list-parts": func(id string) error { _, err := s.ListParts(ctx, id); return err },
		"update": func(id string) error {
			_, err := s.UpdateSlice(ctx, id, func(x *Slice) ([]Event, error) { x.Message = strconv.Itoa(gen(x) + 1); return nil, nil })
			return err
		},
	}
	for _, name := range []string{"get", "list-parts", "update"} {
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/c=%d", name, conc), func(b *testing.B) {
				var next atomic.Int64
				b.SetParallelism((conc + 1) / 2) // GOMAXPROCS 2 on the reference machine
				if conc == 1 {
					for i := 0; i < b.N; i++ {
						if err := calls[name](ids[0]); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					id := ids[int(next.Add(1))%len(ids)]
					for pb.Next() {
						if err := calls[name](id); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
