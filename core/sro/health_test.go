package sro_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// waitState waits for slice id to reach state.
func waitState(t *testing.T, env *env, id string, state store.SliceState) *store.Slice {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sl, err := env.store.WaitSlice(ctx, id, func(s *store.Slice) bool { return s.State == state })
	if err != nil {
		cur, _ := env.store.GetSlice(context.Background(), id)
		t.Fatalf("slice %s never %s (now %+v): %v", id, state, cur, err)
	}
	return sl
}

// A Ready slice whose part its provider no longer has (deleted behind necos's back) is
// found by the periodic describe and shown Degraded with the reason, in its record,
// events and NECOS document; elastic actions are refused with that reason; when the
// part is back the slice is Ready again.
func TestDegradedWhenAPartIsLost(t *testing.T) {
	env := startWith(t, catalogue(t, ""), startOptions{health: 50 * time.Millisecond})
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("cdn", part("core", "AMERICA.BRAZIL", 1, 1), part("edge", "EUROPE.SPAIN", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	v, err := env.engine.Get(ctx, "alice", sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	edge, _ := v.Part("edge")
	spec := edge.Spec
	vim, err := env.reg.VIM(ctx, "ES")
	if err != nil {
		t.Fatal(err)
	}
	if err := vim.Delete(ctx, sdk.DeleteRequest{Ref: edge.Ref()}); err != nil {
		t.Fatal(err)
	}

	got := waitState(t, env, sl.ID, store.SliceDegraded)
	if want := "part edge: not found at provider ES"; got.Message != want {
		t.Fatalf("degraded because %q, want %q", got.Message, want)
	}
	if types := eventTypes(t, env, sl.ID); !strings.Contains(types, sro.EvDegraded) {
		t.Fatalf("no %s event in %s", sro.EvDegraded, types)
	}
	err = env.engine.ScalePart(ctx, sl.ID, "core", "vm", 2)
	if !errors.Is(err, sro.ErrNotReady) || !strings.Contains(err.Error(), "Degraded (part edge: not found at provider ES)") {
		t.Fatalf("scale on a degraded slice: %v", err)
	}
	if _, err := env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "EUROPE"}); !errors.Is(err, sro.ErrNotReady) {
		t.Fatalf("add part on a degraded slice: %v", err)
	}
	v, err = env.engine.Get(ctx, "alice", sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	yml, err := env.engine.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	if lost, _ := v.Part("edge"); lost.State != store.PartLost || lost.Message != "not found at provider ES" {
		t.Fatalf("lost part recorded %s: %s", lost.State, lost.Message)
	}
	if !strings.Contains(string(yml), "status: degraded") {
		t.Fatalf("NECOS document's lifecycle does not say degraded:\n%s", yml)
	}
	if !strings.Contains(string(yml), "part-state: Lost") || !strings.Contains(string(yml), "part-state-reason: not found at provider ES") {
		t.Fatalf("NECOS document does not say the slice is degraded:\n%s", yml)
	}

	// The part comes back at its provider: the slice is Ready again.
	if _, err := vim.Create(ctx, sdk.CreateRequest{Part: spec}); err != nil {
		t.Fatal(err)
	}
	got = waitState(t, env, sl.ID, store.SliceReady)
	if got.Message != "" {
		t.Fatalf("recovered slice says %q", got.Message)
	}
	if types := eventTypes(t, env, sl.ID); !strings.Contains(types, sro.EvRecovered) {
		t.Fatalf("no %s event in %s", sro.EvRecovered, types)
	}
	if err := env.engine.ScalePart(ctx, sl.ID, "core", "vm", 2); err != nil {
		t.Fatalf("scale on a recovered slice: %v", err)
	}
	if v, _ = env.engine.Get(ctx, "alice", sl.ID); v != nil {
		if back, _ := v.Part("edge"); back.State != store.PartReady || back.Message != "" {
			t.Fatalf("part back recorded %s: %s", back.State, back.Message)
		}
	}
}

// BenchmarkHealthPass measures one health pass (Reconcile of a Ready slice with nothing
// pending) over slices Ready slices of one 1-vCPU node each, spread over the three
// providers: what every HealthInterval costs the leader. The engine's own passes wait an
// hour, so that only the benchmark's run.
func BenchmarkHealthPass(b *testing.B) {
	const slices = 12
	env := startWith(b, catalogue(b, ""), startOptions{health: time.Hour})
	ctx := context.Background()
	locations := []string{"AMERICA.BRAZIL", "EUROPE.SPAIN", "EUROPE.GREECE"}
	ids := make([]string, slices)
	for i := range ids {
		sl, err := env.engine.Submit(ctx, "alice", slice(fmt.Sprintf("bench-%d", i), part("core", locations[i%len(locations)], 1, 1)))
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = sl.ID
	}
	for _, id := range ids {
		if got := wait(b, env.engine, id); got.State != store.SliceReady {
			b.Fatalf("slice %s: %s (%s)", id, got.State, got.Message)
		}
	}
	for b.Loop() {
		for _, id := range ids {
			if _, err := env.engine.Reconcile(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*slices), "ns/slice")
}
