package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEmbeddedStoreCompacts: the revisions that updates replace are compacted once older
// than Options.History, so the store does not grow with every write.
func TestEmbeddedStoreCompacts(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: t.TempDir(), History: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sl := newSlice("alice", "cdn")
	if err := s.CreateSlice(ctx, sl, Event{Type: "slice.accepted"}); err != nil {
		t.Fatal(err)
	}
	first := sl.Rev
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Keep writing: the periodic compactor compacts to a revision it saw a retention ago.
		if _, err := s.UpdateSlice(ctx, sl.ID, func(x *Slice) ([]Event, error) { x.Message = time.Now().String(); return nil, nil }); err != nil {
			t.Fatal(err)
		}
		_, err := s.cli.Get(ctx, s.sliceKey(sl.ID), clientv3.WithRev(first))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision %d still readable after 30 s with a history of 1 s", first)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestWatchEventsAfterCompaction: a follower asking for the events after one whose
// revision was compacted gets every later event, then the new ones, in order.
func TestWatchEventsAfterCompaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openEmbedded(t, t.TempDir())
	sl := newSlice("alice", "cdn")
	if err := s.CreateSlice(ctx, sl, Event{Type: "e1"}); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"e2", "e3"} {
		if err := s.AddEvents(ctx, sl.ID, Event{Type: typ}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.Events(ctx, sl.ID)
	if err != nil || len(evs) != 3 {
		t.Fatalf("events %v %v", evs, err)
	}
	r, err := s.cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Compact(ctx, r.Header.Revision); err != nil {
		t.Fatal(err)
	}
	ch := s.WatchEvents(ctx, sl.ID, evs[0].Seq)
	if err := s.AddEvents(ctx, sl.ID, Event{Type: "e4"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 3 {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %v", got)
			}
			got = append(got, ev.Type)
		case <-ctx.Done():
			t.Fatalf("only %v", got)
		}
	}
	if got[0] != "e2" || got[1] != "e3" || got[2] != "e4" {
		t.Fatalf("events %v, want e2 e3 e4", got)
	}
}
