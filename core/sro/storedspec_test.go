package sro_test

import (
	"context"
	"errors"
	"os"
	"strings"
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

// ParseSpec parses a text once and hands the same spec to every later reader of it; a
// refused document is refused again (not kept), and a document past the size it keeps
// is parsed every time.
func TestParseSpecReusesTheParse(t *testing.T) {
	doc, err := os.ReadFile("../../examples/slices/touristic-cdn-xen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	first, err := sro.ParseSpec(string(doc))
	if err != nil {
		t.Fatal(err)
	}
	again, err := sro.ParseSpec(string(doc))
	if err != nil || again != first {
		t.Errorf("second parse of the same text: %p, %v; want the first's %p", again, err, first)
	}
	bad := strings.Replace(string(doc), "dc-slice-parts: 4", "dc-slice-parts: four", 1)
	for range 2 {
		if _, err := sro.ParseSpec(bad); err == nil {
			t.Fatal("a document with a bad count parsed")
		}
	}
	// Comments change the text, not the slice: past the kept size, each parse is new.
	big := string(doc) + "\n#" + strings.Repeat("x", 20<<10) + "\n"
	a, errA := sro.ParseSpec(big)
	b, errB := sro.ParseSpec(big)
	if errA != nil || errB != nil || a == b {
		t.Errorf("a 27 KB document: %p (%v), %p (%v); want two parses", a, errA, b, errB)
	}
}
