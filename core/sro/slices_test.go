package sro_test

import (
	"context"
	"testing"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
)

func TestLifecycleStatusFollowsTheSlice(t *testing.T) {
	for st, want := range map[store.SliceState]string{
		store.SlicePending:     "construction",
		store.SliceCreating:    "construction",
		store.SliceReady:       "active",
		store.SliceDegraded:    "degraded",
		store.SliceRollingBack: "failed",
		store.SliceFailed:      "failed",
		store.SliceDeleting:    "decommissioning",
	} {
		if got := sro.LifecycleStatus(st); got != want {
			t.Errorf("LifecycleStatus(%s) = %q, want %q", st, got, want)
		}
	}
}

// Two slices that draw the same id: the second draws again and is stored under its
// own, instead of being told that its name is taken.
func TestSubmitDrawsAnotherID(t *testing.T) {
	draws := []string{"aaaaaa", "aaaaaa", "aaaaaa", "bbbbbb"}
	restore := sro.SetIDSuffix(func() string {
		d := draws[0]
		if len(draws) > 1 {
			draws = draws[1:]
		}
		return d
	})
	defer restore()
	env := start(t, catalogue(t, ""))
	ctx := context.Background()
	a, err := env.engine.Submit(ctx, "alice", slice("cdn", part("core", "AMERICA.BRAZIL", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.engine.Submit(ctx, "bob", slice("cdn", part("core", "AMERICA.BRAZIL", 1, 1)))
	if err != nil {
		t.Fatalf("a slice whose first ids were taken: %v", err)
	}
	if a.ID != "cdn-aaaaaa" || b.ID != "cdn-bbbbbb" {
		t.Fatalf("ids %s and %s, want cdn-aaaaaa and cdn-bbbbbb", a.ID, b.ID)
	}
	for _, sl := range []*store.Slice{a, b} {
		if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady || got.Tenant != sl.Tenant {
			t.Fatalf("%s: %s of %s, want Ready of %s", sl.ID, got.State, got.Tenant, sl.Tenant)
		}
	}
}
