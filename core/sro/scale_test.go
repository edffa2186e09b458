package sro_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

func readyPart(t *testing.T, env *env, sliceID, name string) *store.Part {
	t.Helper()
	v, err := env.engine.Get(context.Background(), "", sliceID)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := v.Part(name)
	if !ok {
		t.Fatalf("slice %s has no part %s", sliceID, name)
	}
	return p
}

func hold(t *testing.T, env *env, provider, holder string) sdk.Resources {
	t.Helper()
	l, err := env.store.GetLedger(context.Background(), provider)
	if err != nil {
		t.Fatal(err)
	}
	return l.Holds[holder].Resources
}

func eventTypes(t *testing.T, env *env, sliceID string) string {
	t.Helper()
	evs, err := env.store.Events(context.Background(), sliceID)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	return strings.Join(types, ",")
}

func TestResizeAndScalePart(t *testing.T) {
	env := start(t, catalogue(t, ""))
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("grow", part("core", "AMERICA.BRAZIL", 2, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	holder := sl.ID + "/core"
	vim, _ := env.reg.VIM(ctx, "BR")
	ref := sdk.PartRef{SliceID: sl.ID, PartID: "core"}

	// Every node of the VDU to 4 vCPUs: ledger, backend and record agree.
	if err := env.engine.ResizePart(ctx, sl.ID, "core", "vm", "", 4, 0); err != nil {
		t.Fatal(err)
	}
	if h := hold(t, env, "BR", holder); h.CPUs != 4 || h.Nodes != 1 {
		t.Fatalf("hold after resize: %+v", h)
	}
	live, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref})
	if err != nil || live.Nodes[0].CPUs != 4 {
		t.Fatalf("BR describes %+v, %v", live.Nodes, err)
	}
	p := readyPart(t, env, sl.ID, "core")
	if p.Observed.Nodes[0].CPUs != 4 || p.Spec.VDUs[0].CPUs != 4 {
		t.Fatalf("record after resize: observed %+v spec %+v", p.Observed.Nodes, p.Spec.VDUs)
	}

	// One more node: 8 vCPUs held, the capacity.
	if err := env.engine.ScalePart(ctx, sl.ID, "core", "vm", 2); err != nil {
		t.Fatal(err)
	}
	if h := hold(t, env, "BR", holder); h.CPUs != 8 || h.Nodes != 2 {
		t.Fatalf("hold after scale: %+v", h)
	}
	if live, _ := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref}); len(live.Nodes) != 2 || live.Nodes[1].CPUs != 4 {
		t.Fatalf("BR describes %+v", live.Nodes)
	}

	// The provider is full: both refusals say so, and nothing changes.
	err = env.engine.ScalePart(ctx, sl.ID, "core", "vm", 3)
	if !errors.Is(err, sro.ErrProviderFull) || !errors.Is(err, store.ErrNoRoom) || !sro.IsProviderFull(err) {
		t.Fatalf("scale beyond capacity: %v", err)
	}
	err = env.engine.ResizePart(ctx, sl.ID, "core", "vm", "vm-1", 5, 0)
	if !errors.Is(err, sro.ErrProviderFull) {
		t.Fatalf("resize beyond capacity: %v", err)
	}
	if h := hold(t, env, "BR", holder); h.CPUs != 8 || h.Nodes != 2 {
		t.Fatalf("hold after refusals: %+v", h)
	}
	if live, _ := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref}); len(live.Nodes) != 2 || live.Nodes[0].CPUs != 4 {
		t.Fatalf("BR describes %+v after refusals", live.Nodes)
	}

	// One node back down frees room for the other to grow.
	if err := env.engine.ResizePart(ctx, sl.ID, "core", "vm", "vm-2", 2, 0); err != nil {
		t.Fatal(err)
	}
	if err := env.engine.ResizePart(ctx, sl.ID, "core", "vm", "vm-1", 6, 0); err != nil {
		t.Fatal(err)
	}
	if h := hold(t, env, "BR", holder); h.CPUs != 8 {
		t.Fatalf("hold after node resizes: %+v", h)
	}
	p = readyPart(t, env, sl.ID, "core")
	if p.Spec.VDUs[0].CPUs != 4 || p.Observed.Nodes[0].CPUs != 6 || p.Observed.Nodes[1].CPUs != 2 {
		t.Fatalf("a node resize changed the VDU, or was not observed: spec %+v observed %+v", p.Spec.VDUs, p.Observed.Nodes)
	}

	// Bad requests name what is wrong.
	if err := env.engine.ResizePart(ctx, sl.ID, "core", "nope", "", 2, 0); !errors.Is(err, sro.ErrNotFound) {
		t.Fatalf("unknown VDU: %v", err)
	}
	if err := env.engine.ScalePart(ctx, sl.ID, "edge", "vm", 2); !errors.Is(err, sro.ErrNotFound) {
		t.Fatalf("unknown part: %v", err)
	}
	types := eventTypes(t, env, sl.ID)
	for _, want := range []string{sro.EvPartResized, sro.EvPartScaled, sro.EvPartScaleFailed, sro.EvPartResizeFailed} {
		if !strings.Contains(types, want) {
			t.Errorf("events %s lack %s", types, want)
		}
	}
}

func TestAddAndRemovePart(t *testing.T) {
	env := start(t, catalogue(t, ""))
	ctx := context.Background()
	// No WAN provider here: the added part's link is recorded, not built.
	sl, err := env.engine.Submit(ctx, "alice", linksOptional(slice("cdn", part("core", "AMERICA.BRAZIL", 1, 1), part("edge", "EUROPE.SPAIN", 1, 2))))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	// Grow the template first: the copy is of what the tenant asked, not of the grown part.
	if err := env.engine.ScalePart(ctx, sl.ID, "edge", "vm", 3); err != nil {
		t.Fatal(err)
	}
	np, err := env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "EUROPE", Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if np.Name != "edge-h1" || np.Provider != "GR" || !np.Elastic || np.State != store.PartReady || len(np.Observed.Nodes) != 2 {
		t.Fatalf("added part %s at %s elastic=%v state %s observed %+v", np.Name, np.Provider, np.Elastic, np.State, np.Observed)
	}
	vim, _ := env.reg.VIM(ctx, "GR")
	if live, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: np.Ref()}); err != nil || len(live.Nodes) != 2 {
		t.Fatalf("GR describes %+v, %v", live, err)
	}
	if h := hold(t, env, "GR", sl.ID+"/edge-h1"); h.Nodes != 2 {
		t.Fatalf("GR holds %+v for the new part", h)
	}
	v, _ := env.engine.Get(ctx, "alice", sl.ID)
	if len(v.Links) != 1 || v.Links[0].Name != "core-to-edge-h1" || v.Links[0].State != store.LinkNotBuilt || !v.Links[0].Elastic {
		t.Fatalf("links %+v", v.Links)
	}
	yml, err := env.engine.Render(v)
	if err != nil || !strings.Contains(string(yml), "edge-h1") {
		t.Fatalf("render lacks the added part: %v\n%s", err, yml)
	}
	// A second copy gets the next name.
	np2, err := env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "EUROPE.GREECE"})
	if err != nil || np2.Name != "edge-h2" {
		t.Fatalf("second copy: %v %v", np2, err)
	}

	// Removing one puts everything back.
	if err := env.engine.RemovePart(ctx, sl.ID, "edge-h1"); err != nil {
		t.Fatal(err)
	}
	if _, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: np.Ref()}); err == nil {
		t.Fatal("domains of a removed part are still there")
	}
	if h := hold(t, env, "GR", sl.ID+"/edge-h1"); h != (sdk.Resources{}) {
		t.Fatalf("GR still holds %+v for the removed part", h)
	}
	if err := env.engine.RemovePart(ctx, sl.ID, "core"); sdk.CodeOf(err) != sdk.CodeFailedPrecondition {
		t.Fatalf("removing a part of the spec: %v", err)
	}
	types := eventTypes(t, env, sl.ID)
	for _, want := range []string{sro.EvPartAdding, sro.EvPartAdded, sro.EvLinkNoWAN, sro.EvPartRemoved} {
		if !strings.Contains(types, want) {
			t.Errorf("events %s lack %s", types, want)
		}
	}

	// Decommission takes the elastic part along.
	if _, err := env.engine.Decommission(ctx, "alice", sl.ID); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := env.engine.WaitGone(wctx, sl.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: np2.Ref()}); err == nil {
		t.Fatal("domains of the elastic part outlived the slice")
	}
	for _, p := range []string{"BR", "ES", "GR"} {
		if l, _ := env.store.GetLedger(ctx, p); len(l.Holds) != 0 {
			t.Errorf("%s still holds %v", p, l.Holds)
		}
	}
}

// A part that cannot be placed or built leaves nothing behind.
func TestAddPartFailures(t *testing.T) {
	cat := catalogue(t, `
  - name: BAD
    location: ASIA.JAPAN
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", domain_type: bogus, capacity: {cpus: 8, memory_mb: 16384, storage_gb: 100}, price_per_node_day: 1}}
  - name: DEAR
    location: ASIA.CHINA
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 100}, price_per_node_day: 50}}
`)
	env := start(t, cat)
	ctx := context.Background()
	// No WAN provider: the new part's link is recorded not built before the part is
	// created, and a failed create removes that record too.
	sl, err := env.engine.Submit(ctx, "alice", linksOptional(slice("cdn", part("core", "AMERICA.BRAZIL", 1, 1), part("edge", "EUROPE.SPAIN", 1, 1))))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}

	_, err = env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "ASIA.JAPAN"})
	if err == nil || !strings.Contains(err.Error(), "part edge-h1 at BAD") {
		t.Fatalf("add at a broken provider: %v", err)
	}
	var refused *broker.NoPlacementError
	_, err = env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "ASIA.CHINA"})
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "over budget") {
		t.Fatalf("add over budget: %v", err)
	}
	_, err = env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "EUROPE.SPAIN"})
	if !errors.As(err, &refused) {
		t.Fatalf("add where only the template's provider is: %v", err)
	}
	v, _ := env.engine.Get(ctx, "alice", sl.ID)
	if len(v.Parts) != 2 || len(v.Links) != 0 {
		t.Fatalf("failed adds left records: %d parts, %d links", len(v.Parts), len(v.Links))
	}
	vim, _ := env.reg.VIM(ctx, "BAD")
	if p, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: sl.ID, PartID: "edge-h1"}}); err == nil {
		t.Fatalf("failed add left domains: %+v", p)
	}
	for _, p := range []string{"BAD", "DEAR"} {
		if l, _ := env.store.GetLedger(ctx, p); len(l.Holds) != 0 {
			t.Errorf("%s still holds %v", p, l.Holds)
		}
	}
	if types := eventTypes(t, env, sl.ID); !strings.Contains(types, sro.EvPartAddFailed) || !strings.Contains(types, sro.EvPartDeleted) {
		t.Errorf("events %s", types)
	}

	// Not while the slice goes away.
	if _, err := env.engine.Decommission(ctx, "alice", sl.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "EUROPE"}); !errors.Is(err, sro.ErrNotReady) && !errors.Is(err, sro.ErrNotFound) {
		t.Fatalf("add to a slice being decommissioned: %v", err)
	}
}

// Changes of one part asked at once are converged one after the other (one intent per
// part at a time): both land, and the ledger holds their sum.
func TestConcurrentChangesOfAPart(t *testing.T) {
	env := start(t, catalogue(t, ""))
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("both", part("core", "AMERICA.BRAZIL", 1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	errs := make(chan error, 2)
	for i, node := range []string{"vm-1", "vm-2"} {
		go func() { errs <- env.engine.ResizePart(ctx, sl.ID, "core", "vm", node, 2+i, 0) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	p := readyPart(t, env, sl.ID, "core")
	if p.Change != nil || p.Observed.Nodes[0].CPUs != 2 || p.Observed.Nodes[1].CPUs != 3 {
		t.Fatalf("after two resizes: change %+v, nodes %+v", p.Change, p.Observed.Nodes)
	}
	if h := hold(t, env, "BR", sl.ID+"/core"); h.CPUs != 5 || h.Nodes != 2 {
		t.Fatalf("hold %+v, want 5 vCPUs on 2 nodes", h)
	}
	// A Ready slice asks to be reconciled again after the health interval, without a
	// periodic resync; a slice that is gone asks for nothing.
	res, err := env.engine.Reconcile(ctx, sl.ID)
	if err != nil || res.RequeueAfter != 30*time.Second {
		t.Fatalf("reconcile of a Ready slice: %+v, %v", res, err)
	}
	if res, err := env.engine.Reconcile(ctx, "s-000000000000"); err != nil || res.RequeueAfter != 0 {
		t.Fatalf("reconcile of no slice: %+v, %v", res, err)
	}
}
