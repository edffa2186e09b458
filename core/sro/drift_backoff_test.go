package sro_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// passClock is the engine's clock stepped by its health passes: every Describe is one
// pass and moves the clock one health interval on, so that the back-off is counted in
// passes however fast the passes run. It records at which pass each Resize came.
type passClock struct {
	sro.Plugins
	step time.Duration
	// gate holds the passes while the test changes the provider behind necos's back.
	gate sync.RWMutex

	mu      sync.Mutex
	passes  int
	now     time.Time
	resizes []int
}

func (c *passClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *passClock) VIM(ctx context.Context, provider string) (sdk.VIM, error) {
	v, err := c.Plugins.VIM(ctx, provider)
	if err != nil {
		return nil, err
	}
	return &passVIM{VIM: v, c: c}, nil
}

// at returns the passes so far and the passes at which a Resize came.
func (c *passClock) at() (int, []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.passes, slices.Clone(c.resizes)
}

type passVIM struct {
	sdk.VIM
	c *passClock
}

func (v *passVIM) Describe(ctx context.Context, req sdk.DescribeRequest) (sdk.Part, error) {
	ref := req.Ref
	v.c.gate.RLock()
	defer v.c.gate.RUnlock()
	v.c.mu.Lock()
	v.c.passes++
	v.c.now = v.c.now.Add(v.c.step)
	v.c.mu.Unlock()
	return v.VIM.Describe(ctx, sdk.DescribeRequest{Ref: ref})
}

func (v *passVIM) Resize(ctx context.Context, r sdk.ResizeRequest) (sdk.Part, error) {
	v.c.mu.Lock()
	v.c.resizes = append(v.c.resizes, v.c.passes)
	v.c.mu.Unlock()
	return v.VIM.Resize(ctx, r)
}

// A repair the provider keeps refusing is tried again at passes 1, 3, 7 and 15 after
// the first (the wait doubles from the health interval), not at every pass, while the
// drift stays reported; once the drift clears, a new one is tried at the pass that
// finds it.
func TestUnrepairableDriftBacksOff(t *testing.T) {
	const interval = 50 * time.Millisecond
	c := &passClock{step: interval, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	env := startWith(t, catalogue(t, ""), startOptions{health: interval, now: c.Now,
		wrap: func(p sro.Plugins) sro.Plugins { c.Plugins = p; return c }})
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("backoff", part("core", "AMERICA.BRAZIL", 2, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	vim, err := env.reg.VIM(ctx, "BR")
	if err != nil {
		t.Fatal(err)
	}
	core := readyPart(t, env, sl.ID, "core")
	filler := core.Spec
	filler.Ref, filler.Name = sdk.PartRef{SliceID: "filler", PartID: "a"}, "a"
	filler.VDUs = []sdk.VDUSpec{{Name: "fill", Instances: 1, CPUs: 5, MemoryMB: 1024, StorageGB: 1}}
	// drift shrinks vm-1 to 1 vCPU and takes its room (capacity 8: 1 + 2 + 5), so that
	// its repair is refused; undrift gives the room and the vCPU back.
	drift := func() {
		c.gate.Lock()
		defer c.gate.Unlock()
		if _, err := vim.Resize(ctx, sdk.ResizeRequest{Ref: core.Ref(), VDU: "vm", Node: "vm-1", CPUs: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := vim.Create(ctx, sdk.CreateRequest{Part: filler}); err != nil {
			t.Fatal(err)
		}
	}
	undrift := func() {
		c.gate.Lock()
		defer c.gate.Unlock()
		if err := vim.Delete(ctx, sdk.DeleteRequest{Ref: filler.Ref}); err != nil {
			t.Fatal(err)
		}
		if _, err := vim.Resize(ctx, sdk.ResizeRequest{Ref: core.Ref(), VDU: "vm", Node: "vm-1", CPUs: 2}); err != nil {
			t.Fatal(err)
		}
	}
	// attempts waits until pass first+upto and returns the passes, from first, at
	// which repairs came.
	attempts := func(first, upto int) []int {
		t.Helper()
		eventually(t, "passes", func() bool { n, _ := c.at(); return n >= first+upto })
		_, rs := c.at()
		var out []int
		for _, r := range rs {
			if r >= first && r <= first+upto {
				out = append(out, r-first)
			}
		}
		return out
	}

	drift()
	eventually(t, "drift recorded", func() bool { return len(events(t, env, sl.ID, sro.EvDrift)) == 1 })
	_, rs := c.at()
	first := rs[0]
	if got, want := attempts(first, 16), []int{0, 1, 3, 7, 15}; !slices.Equal(got, want) {
		t.Fatalf("repairs at passes %v after the first, want %v", got, want)
	}
	p := readyPart(t, env, sl.ID, "core")
	if p.Drift == nil || p.Drift.Why == "" || len(events(t, env, sl.ID, sro.EvDrift)) != 1 {
		t.Fatalf("drift %+v while backing off, %d drift events", p.Drift, len(events(t, env, sl.ID, sro.EvDrift)))
	}

	// Fixed behind necos's back while it waits: the next pass clears the drift. A new
	// drift is then tried at the pass that finds it, and backs off from the start.
	undrift()
	eventually(t, "drift cleared", func() bool { return len(events(t, env, sl.ID, sro.EvDriftCleared)) == 1 })
	drift()
	found, before := c.at()
	eventually(t, "drift recorded again", func() bool { return len(events(t, env, sl.ID, sro.EvDrift)) == 2 })
	_, rs = c.at()
	again := rs[len(before)]
	if again != found+1 {
		t.Fatalf("the new drift was first tried at pass %d, %d passes after it was made", again, again-found)
	}
	if got, want := attempts(again, 8), []int{0, 1, 3, 7}; !slices.Equal(got, want) {
		t.Fatalf("repairs of the new drift at passes %v after its first, want %v", got, want)
	}
	if evs := events(t, env, sl.ID, sro.EvDrift); len(evs) != 2 {
		t.Fatalf("%d drift events", len(evs))
	}
}
