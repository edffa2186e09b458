package sro_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// offerGate holds every Offer while closed, so that a slice stays Pending (planning)
// for as long as a test needs.
type offerGate struct {
	sro.Plugins
	mu     sync.Mutex
	open   chan struct{}
	asked  chan struct{}
	asking sync.Once
}

func (g *offerGate) VIM(ctx context.Context, provider string) (sdk.VIM, error) {
	v, err := g.Plugins.VIM(ctx, provider)
	if err != nil {
		return nil, err
	}
	return &gatedOffer{VIM: v, g: g}, nil
}

type gatedOffer struct {
	sdk.VIM
	g *offerGate
}

func (v *gatedOffer) Offer(ctx context.Context, req sdk.OfferRequest) (sdk.Offer, error) {
	spec := req.Part
	v.g.mu.Lock()
	open := v.g.open
	v.g.mu.Unlock()
	if open != nil {
		v.g.asking.Do(func() { close(v.g.asked) })
		select {
		case <-open:
		case <-ctx.Done():
			return sdk.Offer{}, ctx.Err()
		}
	}
	return v.VIM.Offer(ctx, sdk.OfferRequest{Part: spec})
}

// A hold that no part owns — of a slice gone, of a part gone from a slice, of a part at
// another provider than recorded — is released by the sweep, with its capacity and an
// event on the slice when there is one; the holds of a slice still being planned, which
// its placement takes before any part is recorded, are kept.
func TestOrphanHoldsSwept(t *testing.T) {
	g := &offerGate{}
	// The engine's own sweeps wait an hour: the test sweeps.
	env := startWith(t, catalogue(t, ""), startOptions{health: time.Hour,
		wrap: func(p sro.Plugins) sro.Plugins { g.Plugins = p; return g }})
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("kept", part("core", "AMERICA.BRAZIL", 1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	recorded := sdk.Resources{CPUs: 2, MemoryMB: 2048, StorageGB: 20, Nodes: 2}

	// A slice held in planning: its placement's hold is taken by the test, as the
	// broker's would be before the plan is recorded.
	g.mu.Lock()
	g.open, g.asked = make(chan struct{}), make(chan struct{})
	g.mu.Unlock()
	pending, err := env.engine.Submit(ctx, "alice", slice("planning", part("core", "EUROPE.SPAIN", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	<-g.asked

	orphan := store.Hold{Resources: sdk.Resources{CPUs: 3, MemoryMB: 3072, StorageGB: 30, Nodes: 3}}
	inFlight := store.Hold{Resources: sdk.Resources{CPUs: 1, MemoryMB: 1024, StorageGB: 10, Nodes: 1}}
	for _, h := range []struct {
		provider, holder string
		amount           store.Hold
	}{
		{"GR", "s-gone/core", orphan},          // its slice is gone
		{"BR", sl.ID + "/ghost", orphan},       // its part is gone
		{"ES", sl.ID + "/core", orphan},        // its part is at BR
		{"ES", pending.ID + "/core", inFlight}, // its slice is being planned
	} {
		if err := env.store.Reserve(ctx, h.provider, h.holder, h.amount, store.Hold{}); err != nil {
			t.Fatal(err)
		}
	}

	n, err := env.engine.SweepHolds(ctx)
	if err != nil || n != 3 {
		t.Fatalf("sweep released %d holds, %v; want the 3 orphans", n, err)
	}
	for provider, want := range map[string]sdk.Resources{"BR": recorded, "ES": inFlight.Resources, "GR": {}} {
		total, holders, err := env.store.LedgerSummary(ctx, provider)
		if err != nil || total.Resources != want {
			t.Errorf("%s holds %+v in all (%d holders), %v; want %+v", provider, total.Resources, holders, err, want)
		}
	}
	if h := hold(t, env, "ES", pending.ID+"/core"); h != inFlight.Resources {
		t.Fatalf("the planning slice's hold is %+v, want it kept", h)
	}
	evs := events(t, env, sl.ID, sro.EvHoldReleased)
	if len(evs) != 2 {
		t.Fatalf("%d hold-released events on the slice, want 2 (ghost at BR, core at ES): %+v", len(evs), evs)
	}
	for _, ev := range evs {
		if ev.Data["freed"] != "3 vCPUs, 3072 MB, 30 GB on 3 nodes" || !strings.Contains(ev.Message, "no part owns") {
			t.Errorf("event %+v", ev)
		}
	}
	if evs[0].Part+"@"+evs[0].Data["provider"] == evs[1].Part+"@"+evs[1].Data["provider"] {
		t.Errorf("the same hold released twice: %+v", evs)
	}

	// A second sweep finds nothing; the slice being planned goes on to Ready with the
	// hold its own placement takes.
	if n, err := env.engine.SweepHolds(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep released %d, %v", n, err)
	}
	close(g.open)
	if got := wait(t, env.engine, pending.ID); got.State != store.SliceReady {
		t.Fatalf("planning slice %s: %s", got.State, got.Message)
	}
	if h := hold(t, env, "ES", pending.ID+"/core"); h != inFlight.Resources {
		t.Fatalf("the planned slice holds %+v at ES, want %+v", h, inFlight.Resources)
	}
	if n, err := env.engine.SweepHolds(ctx); err != nil || n != 0 {
		t.Fatalf("sweep after the plan released %d, %v", n, err)
	}
	if h := hold(t, env, "BR", sl.ID+"/core"); h != recorded {
		t.Fatalf("the Ready part's hold is %+v, want %+v", h, recorded)
	}
}

// BenchmarkSweepHolds measures one sweep of the ledgers (what every HealthInterval adds
// to the leader's health passes) over slices Ready slices of one part each, spread over
// the three providers, with no orphan to release: the judgement of every hold alone.
func BenchmarkSweepHolds(b *testing.B) {
	const slices = 12
	env := startWith(b, catalogue(b, ""), startOptions{health: time.Hour})
	ctx := context.Background()
	locations := []string{"AMERICA.BRAZIL", "EUROPE.SPAIN", "EUROPE.GREECE"}
	ids := make([]string, slices)
	for i := range ids {
		sl, err := env.engine.Submit(ctx, "alice", slice(fmt.Sprintf("sweep-%d", i), part("core", locations[i%len(locations)], 1, 1)))
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
		if n, err := env.engine.SweepHolds(ctx); err != nil || n != 0 {
			b.Fatalf("sweep released %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*slices), "ns/hold")
}
