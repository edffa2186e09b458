package store

import (
	"context"
	"errors"
	"testing"
)

// ReleaseOrphan releases a hold only while the hold, its slice and its part are as they
// were judged; another holder's change of the provider's total does not stop it.
func TestReleaseOrphan(t *testing.T) {
	for _, tc := range []struct {
		name string
		// meanwhile runs between the judgement and the release.
		meanwhile func(t *testing.T, s *Store)
		released  bool
	}{
		{name: "unchanged", meanwhile: func(*testing.T, *Store) {}, released: true},
		{name: "another holder reserved", released: true, meanwhile: func(t *testing.T, s *Store) {
			if err := s.Reserve(context.Background(), "A", "s-2/x", cpus(1), Hold{}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "the hold was taken again", meanwhile: func(t *testing.T, s *Store) {
			if err := s.Reserve(context.Background(), "A", "s-1/p", cpus(3), Hold{}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "the part was recorded", meanwhile: func(t *testing.T, s *Store) {
			if _, err := s.commit(context.Background(), op{key: s.partKey("s-1", "p"), v: Part{SliceID: "s-1", Name: "p"}, rev: 0}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "the slice was recorded", meanwhile: func(t *testing.T, s *Store) {
			if _, err := s.commit(context.Background(), op{key: s.sliceKey("s-1"), v: Slice{ID: "s-1", State: SlicePending}, rev: 0}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openEmbedded(t, t.TempDir())
			ctx := context.Background()
			if err := s.Reserve(ctx, "A", "s-1/p", cpus(2), Hold{}); err != nil {
				t.Fatal(err)
			}
			holds, err := s.Holds(ctx, "A")
			if err != nil || len(holds) != 1 || holds[0].Holder != "s-1/p" || holds[0].Hold != cpus(2) || holds[0].Rev == 0 {
				t.Fatalf("holds %+v, %v", holds, err)
			}
			tc.meanwhile(t, s)
			err = s.ReleaseOrphan(ctx, Orphan{Provider: "A", HoldRecord: holds[0], SliceID: "s-1", Part: "p"}, nil)
			_, held, gerr := s.GetHold(ctx, "A", "s-1/p")
			if gerr != nil {
				t.Fatal(gerr)
			}
			total, _, _ := s.LedgerSummary(ctx, "A")
			l, _ := s.GetLedger(ctx, "A")
			switch {
			case tc.released && (err != nil || held):
				t.Fatalf("release: %v, still held %v", err, held)
			case !tc.released && (!errors.Is(err, ErrConflict) || !held):
				t.Fatalf("release: %v (want a conflict), still held %v", err, held)
			case total != l.Total():
				t.Fatalf("total %+v, the holds sum to %+v", total, l.Total())
			}
		})
	}
}
