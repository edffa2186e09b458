package sro_test

import (
	"context"
	"errors"
	"testing"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
)

// A stored spec that no longer parses is recorded once, as EvSpecCorrupt, however many
// readers meet it; those that need the document fail with ErrCorruptSpec, the others go
// on with the records.
func TestCorruptStoredSpecRecordedOnce(t *testing.T) {
	env := start(t, catalogue(t, ""))
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("corrupt", part("core", "AMERICA.BRAZIL", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	if _, err := env.store.UpdateSlice(ctx, sl.ID, func(s *store.Slice) ([]store.Event, error) {
		s.Spec = "slices: {sliced: {id: [not, a, name]}}"
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		v, err := env.engine.Get(ctx, "alice", sl.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Spec(); !errors.Is(err, sro.ErrCorruptSpec) {
			t.Fatalf("Spec: %v, want ErrCorruptSpec", err)
		}
		if _, err := env.engine.Render(v); !errors.Is(err, sro.ErrCorruptSpec) {
			t.Fatalf("Render: %v, want ErrCorruptSpec", err)
		}
		// What needs only the records still answers.
		if st := env.engine.Status(v); len(st.Parts) != 1 {
			t.Errorf("status of the parts: %+v", st)
		}
	}
	evs, err := env.store.Events(ctx, sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == sro.EvSpecCorrupt {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d %s events, want 1: %+v", n, sro.EvSpecCorrupt, evs)
	}
}
