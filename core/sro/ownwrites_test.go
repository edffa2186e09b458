package sro_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// describeCounter counts the VIMs' Describe calls.
type describeCounter struct {
	sro.Plugins
	n atomic.Int64
}

func (c *describeCounter) VIM(ctx context.Context, provider string) (sdk.VIM, error) {
	v, err := c.Plugins.VIM(ctx, provider)
	if err != nil {
		return nil, err
	}
	return &countingVIM{VIM: v, n: &c.n}, nil
}

type countingVIM struct {
	sdk.VIM
	n *atomic.Int64
}

func (v *countingVIM) Describe(ctx context.Context, ref sdk.PartRef) (sdk.Part, error) {
	v.n.Add(1)
	return v.VIM.Describe(ctx, ref)
}

// The build's own writes (the plan, Ready) do not queue the slice again: a slice just
// made Ready has its first health round after HealthInterval, not at once (its parts
// described moments after they were made, beside the creates of the slices after it).
func TestReadySliceNotReconciledAtOnce(t *testing.T) {
	c := &describeCounter{}
	env := startWith(t, catalogue(t, ""), startOptions{health: time.Hour,
		wrap: func(p sro.Plugins) sro.Plugins { c.Plugins = p; return c }})
	ctx := context.Background()
	first, err := env.engine.Submit(ctx, "alice", slice("first", part("core", "AMERICA.BRAZIL", 1, 1), part("edge", "EUROPE.SPAIN", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, first.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	// A second slice's whole plan and build take far longer than the watch takes to
	// report the first one's Ready write: a reconcile it queued would have run by then.
	second, err := env.engine.Submit(ctx, "alice", slice("second", part("core", "AMERICA.BRAZIL", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, second.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	if n := c.n.Load(); n != 0 {
		t.Errorf("parts described %d times right after their slices were built; want 0 (health round after an hour)", n)
	}
	// Work from elsewhere still reaches a Ready slice: the tenant's decommission.
	if _, err := env.engine.Decommission(ctx, "alice", first.ID); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := env.engine.WaitGone(wctx, first.ID); err != nil {
		t.Fatal(err)
	}
}
