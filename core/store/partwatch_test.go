package store

import (
	"context"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// TestWatchParts: a listing of every part first, then each write and delete as it is
// committed (a slice's deletion removes its parts), and the channel closes when the
// watch's context ends.
func TestWatchParts(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	a := newSlice("alice", "cdn")
	if err := s.CreateSlice(ctx, a, Event{}); err != nil {
		t.Fatal(err)
	}
	parts := []*Part{{SliceID: a.ID, Name: "core", State: PartPlanned, Provider: "BR"}, {SliceID: a.ID, Name: "edge", State: PartPlanned}}
	if err := s.SavePlan(ctx, a, parts, nil, SliceCreating); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := s.WatchParts(wctx)
	next := func(what string) PartsUpdate { t.Helper(); return nextPartsUpdate(t, ch, what) }
	u := next("listing")
	if !u.Reset || len(u.Parts) != 2 || u.Parts[0].Name != "core" || u.Parts[0].Provider != "BR" || u.Parts[0].Rev == 0 {
		t.Fatalf("listing: %+v", u)
	}
	listed := u.Parts[1].Rev

	edge := *parts[1]
	edge.State = PartReady
	if err := s.PutPart(ctx, &edge); err != nil {
		t.Fatal(err)
	}
	u = next("write")
	if u.Reset || len(u.Parts) != 1 || u.Parts[0].Name != "edge" || u.Parts[0].State != PartReady || u.Parts[0].Rev <= listed || len(u.Deleted) != 0 {
		t.Fatalf("write: %+v", u)
	}
	if err := s.DeletePart(ctx, a.ID, "core"); err != nil {
		t.Fatal(err)
	}
	u = next("delete")
	if len(u.Parts) != 0 || len(u.Deleted) != 1 || u.Deleted[0] != (sdk.PartRef{SliceID: a.ID, PartID: "core"}) {
		t.Fatalf("delete: %+v", u)
	}
	sl, err := s.GetSlice(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSlice(ctx, sl); err != nil {
		t.Fatal(err)
	}
	u = next("slice deleted")
	if len(u.Deleted) != 1 || u.Deleted[0] != (sdk.PartRef{SliceID: a.ID, PartID: "edge"}) {
		t.Fatalf("slice deleted: %+v", u)
	}
	cancel()
	for range ch {
	}
}

// TestWatchPartsAfterCompaction: a watch whose starting revision was compacted away
// (it lagged behind the store's short history) lists every part again, as a Reset
// that holds the writes made meanwhile, and goes on from there.
func TestWatchPartsAfterCompaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := openEmbedded(t, t.TempDir())
	a := newSlice("alice", "cdn")
	if err := s.CreateSlice(ctx, a, Event{}); err != nil {
		t.Fatal(err)
	}
	core := &Part{SliceID: a.ID, Name: "core", State: PartPlanned}
	if err := s.SavePlan(ctx, a, []*Part{core}, nil, SliceCreating); err != nil {
		t.Fatal(err)
	}
	// After the first listing only: a write the watch would start before, then a
	// compaction past it.
	once := false
	s.afterPartsList = func() {
		if once {
			return
		}
		once = true
		edge := &Part{SliceID: a.ID, Name: "edge", State: PartReady}
		if err := s.PutPart(ctx, edge); err != nil {
			t.Error(err)
			return
		}
		// A revision is compacted once a later one is the compaction's: one more write,
		// outside the parts, and the edge's own revision is gone.
		r, err := s.cli.Put(ctx, s.key("test-compaction"), "")
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := s.cli.Compact(ctx, r.Header.Revision); err != nil {
			t.Error(err)
		}
	}
	ch := s.WatchParts(ctx)
	next := func(what string) PartsUpdate { t.Helper(); return nextPartsUpdate(t, ch, what) }
	if u := next("listing"); !u.Reset || len(u.Parts) != 1 {
		t.Fatalf("listing: %+v", u)
	}
	u := next("listing after the compaction")
	if !u.Reset || len(u.Parts) != 2 || u.Parts[1].Name != "edge" || u.Parts[1].State != PartReady {
		t.Fatalf("after the compaction: %+v", u)
	}
	core.State = PartReady
	if err := s.PutPart(ctx, core); err != nil {
		t.Fatal(err)
	}
	if u := next("write after the resume"); u.Reset || len(u.Parts) != 1 || u.Parts[0].Name != "core" || u.Parts[0].State != PartReady {
		t.Fatalf("write after the resume: %+v", u)
	}
}

// nextPartsUpdate is the watch's next update; the test fails when the watch closes or
// sends nothing for a minute.
func nextPartsUpdate(t *testing.T, ch <-chan PartsUpdate, what string) PartsUpdate {
	t.Helper()
	select {
	case u, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the watch closed", what)
		}
		return u
	case <-time.After(time.Minute):
		t.Fatalf("%s: no update in a minute", what)
	}
	return PartsUpdate{}
}
