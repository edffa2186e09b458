package sro_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// describeCounter counts the VIMs' Describe calls per slice.
type describeCounter struct {
	sro.Plugins
	mu sync.Mutex
	n  map[string]int
}

func (c *describeCounter) of(sliceID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[sliceID]
}

func (c *describeCounter) VIM(ctx context.Context, provider string) (sdk.VIM, error) {
	v, err := c.Plugins.VIM(ctx, provider)
	if err != nil {
		return nil, err
	}
	return &countingVIM{VIM: v, c: c}, nil
}

type countingVIM struct {
	sdk.VIM
	c *describeCounter
}

func (v *countingVIM) Describe(ctx context.Context, req sdk.DescribeRequest) (sdk.Part, error) {
	v.c.mu.Lock()
	if v.c.n == nil {
		v.c.n = map[string]int{}
	}
	v.c.n[req.Ref.SliceID]++
	v.c.mu.Unlock()
	return v.VIM.Describe(ctx, req)
}

// The build's own writes (the plan, Ready) do not queue the slice again: a slice just
// made Ready has its first health round after HealthInterval, not at once (its parts
// described moments after they were made, beside the creates of the slices after it).
func TestReadySliceNotReconciledAtOnce(t *testing.T) {
	c := &describeCounter{}
	env := startWith(t, catalogue(t, ""), startOptions{health: time.Hour,
		wrap: func(p sro.Plugins) sro.Plugins { c.Plugins = p; return c }})
	ctx := context.Background()
	// A slice submitted while the engine starts to lead is queued again by the lead's
	// first listing of every slice: the slices counted come after one built first.
	warm, err := env.engine.Submit(ctx, "alice", slice("warm", part("core", "AMERICA.BRAZIL", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	wait(t, env.engine, warm.ID)
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
	for _, id := range []string{first.ID, second.ID} {
		if n := c.of(id); n != 0 {
			t.Errorf("parts of %s described %d times right after the slice was built; want 0 (health round after an hour)", id, n)
		}
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
