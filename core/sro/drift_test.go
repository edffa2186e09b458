package sro_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// gatedVIMs holds the engine's Describe calls while the test changes a provider behind
// necos's back (so that no health pass sees half of the change), and counts them.
type gatedVIMs struct {
	sro.Plugins
	gate      sync.RWMutex
	describes atomic.Int64
}

func (g *gatedVIMs) VIM(ctx context.Context, provider string) (sdk.VIM, error) {
	v, err := g.Plugins.VIM(ctx, provider)
	if err != nil {
		return nil, err
	}
	return &gatedVIM{VIM: v, parent: g}, nil
}

type gatedVIM struct {
	sdk.VIM
	parent *gatedVIMs
}

func (v *gatedVIM) Describe(ctx context.Context, req sdk.DescribeRequest) (sdk.Part, error) {
	ref := req.Ref
	v.parent.gate.RLock()
	defer v.parent.gate.RUnlock()
	defer v.parent.describes.Add(1)
	return v.VIM.Describe(ctx, sdk.DescribeRequest{Ref: ref})
}

// behindTheBack runs f while no health pass describes a part.
func (g *gatedVIMs) behindTheBack(f func()) {
	g.gate.Lock()
	defer g.gate.Unlock()
	f()
}

// passes waits until the engine has described parts n more times.
func (g *gatedVIMs) passes(t *testing.T, n int64) {
	t.Helper()
	target := g.describes.Load() + n
	eventually(t, fmt.Sprintf("%d more describes", n), func() bool { return g.describes.Load() >= target })
}

func startDrift(t *testing.T) (*env, *gatedVIMs) {
	t.Helper()
	g := &gatedVIMs{}
	env := startWith(t, catalogue(t, ""), startOptions{health: 50 * time.Millisecond,
		wrap: func(p sro.Plugins) sro.Plugins { g.Plugins = p; return g }})
	return env, g
}

// events returns the slice's events of type typ.
func events(t *testing.T, env *env, sliceID, typ string) []store.Event {
	t.Helper()
	evs, err := env.store.Events(context.Background(), sliceID)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Event
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func nodeSizes(nodes []sdk.Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, fmt.Sprintf("%s:%d", n.Name, n.CPUs))
	}
	return strings.Join(out, " ")
}

// A node deleted or resized behind necos's back is made again, or resized back, by the
// health pass through a change (evented, with the drift it repaired); the ledger's hold
// changed or dropped behind its back is set back to the part's recorded size. The slice
// stays Ready throughout.
func TestDriftRepairedToTheRecordedSize(t *testing.T) {
	env, _ := startDrift(t)
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("drift", part("core", "AMERICA.BRAZIL", 1, 2)))
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
	ref := sdk.PartRef{SliceID: sl.ID, PartID: "core"}
	holder := sl.ID + "/core"
	describe := func() string {
		live, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref})
		if err != nil {
			return err.Error()
		}
		return nodeSizes(live.Nodes)
	}

	// A node deleted behind necos's back.
	if _, err := vim.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "vm", Instances: 1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "vm-2 made again", func() bool { return len(events(t, env, sl.ID, sro.EvPartScaled)) == 1 })
	if got := describe(); got != "vm-1:1 vm-2:1" {
		t.Fatalf("BR describes %s after the repair, want vm-1:1 vm-2:1", got)
	}
	ev := events(t, env, sl.ID, sro.EvPartScaled)[0]
	if !strings.Contains(ev.Data["drift"], "vm-2 not found") || !strings.Contains(ev.Message, "back to 2 nodes") {
		t.Fatalf("repair event %+v", ev)
	}
	p := readyPart(t, env, sl.ID, "core")
	if p.State != store.PartReady || p.Change != nil || p.Drift != nil || nodeSizes(p.Observed.Nodes) != "vm-1:1 vm-2:1" {
		t.Fatalf("part after the repair: %s %q change %+v drift %+v nodes %s", p.State, p.Message, p.Change, p.Drift, nodeSizes(p.Observed.Nodes))
	}

	// A node grown behind necos's back.
	if _, err := vim.Resize(ctx, sdk.ResizeRequest{Ref: ref, VDU: "vm", Node: "vm-1", CPUs: 3}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "vm-1 resized back", func() bool { return len(events(t, env, sl.ID, sro.EvPartResized)) == 1 })
	if got := describe(); got != "vm-1:1 vm-2:1" {
		t.Fatalf("BR describes %s after the repair, want vm-1:1 vm-2:1", got)
	}
	if ev := events(t, env, sl.ID, sro.EvPartResized)[0]; !strings.Contains(ev.Data["drift"], "node vm-1 of VDU vm has 3 vCPUs and 1024 MB at the provider, 1 vCPUs and 1024 MB recorded") {
		t.Fatalf("repair event %+v", ev)
	}

	// The ledger's hold changed behind necos's back, then dropped.
	recorded := sdk.Resources{CPUs: 2, MemoryMB: 2048, StorageGB: 20, Nodes: 2}
	if h := hold(t, env, "BR", holder); h != recorded {
		t.Fatalf("hold %+v, want the recorded %+v", h, recorded)
	}
	if err := env.store.Reserve(ctx, "BR", holder, store.Hold{Resources: sdk.Resources{CPUs: 7, MemoryMB: 512, Nodes: 1}}, store.Hold{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hold corrected", func() bool { return len(events(t, env, sl.ID, sro.EvHoldCorrected)) == 1 })
	if h := hold(t, env, "BR", holder); h != recorded {
		t.Fatalf("hold %+v after the correction, want %+v", h, recorded)
	}
	ev = events(t, env, sl.ID, sro.EvHoldCorrected)[0]
	if ev.Data["from"] != "7 vCPUs, 512 MB, 0 GB on 1 node" || ev.Data["to"] != "2 vCPUs, 2048 MB, 20 GB on 2 nodes" {
		t.Fatalf("correction event %+v", ev)
	}
	if err := env.store.Release(ctx, "BR", holder); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hold made again", func() bool { return len(events(t, env, sl.ID, sro.EvHoldCorrected)) == 2 })
	if h := hold(t, env, "BR", holder); h != recorded {
		t.Fatalf("hold %+v after the release was corrected, want %+v", h, recorded)
	}
	if ev := events(t, env, sl.ID, sro.EvHoldCorrected)[1]; ev.Data["from"] != "nothing" {
		t.Fatalf("correction of a dropped hold %+v", ev)
	}
	total, _, err := env.store.LedgerSummary(ctx, "BR")
	if err != nil || total.Resources != recorded {
		t.Fatalf("BR's total %+v, %v; want the part's hold alone", total, err)
	}

	for _, typ := range []string{sro.EvDegraded, sro.EvDrift, sro.EvPartScaleFailed, sro.EvPartResizeFailed} {
		if evs := events(t, env, sl.ID, typ); len(evs) != 0 {
			t.Errorf("%d %s events: %+v", len(evs), typ, evs)
		}
	}
	if cur, _ := env.store.GetSlice(ctx, sl.ID); cur.State != store.SliceReady || cur.Message != "" {
		t.Fatalf("slice %s %q", cur.State, cur.Message)
	}
}

// Drift the provider refuses to repair (it has no room to make a node again at its
// recorded size) is recorded on the part and named by the slice, with one event however
// many passes find it again, and cleared once the repair lands. A node that cannot be
// made again leaves its part Lost and the slice Degraded until then.
func TestUnrepairableDriftReportedOnce(t *testing.T) {
	env, g := startDrift(t)
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("stuck", part("core", "AMERICA.BRAZIL", 2, 2)))
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
	ref := core.Ref()
	// filler takes cpus vCPUs at BR behind necos's back; the returned func removes it.
	filler := func(name string, cpus int) func() {
		spec := core.Spec
		spec.Ref, spec.Name = sdk.PartRef{SliceID: "filler", PartID: name}, name
		spec.VDUs = []sdk.VDUSpec{{Name: "fill", Instances: 1, CPUs: cpus, MemoryMB: 1024, StorageGB: 1}}
		if _, err := vim.Create(ctx, sdk.CreateRequest{Part: spec}); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := vim.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// vm-1 shrunk to 1 vCPU and its room taken (capacity 8: 1 + 2 + 5).
	var unfill func()
	g.behindTheBack(func() {
		if _, err := vim.Resize(ctx, sdk.ResizeRequest{Ref: ref, VDU: "vm", Node: "vm-1", CPUs: 1}); err != nil {
			t.Fatal(err)
		}
		unfill = filler("a", 5)
	})
	eventually(t, "drift recorded", func() bool { return len(events(t, env, sl.ID, sro.EvDrift)) > 0 })
	g.passes(t, 10)
	evs := events(t, env, sl.ID, sro.EvDrift)
	what := "node vm-1 of VDU vm has 1 vCPUs and 1024 MB at the provider, 2 vCPUs and 1024 MB recorded"
	if len(evs) != 1 || !strings.Contains(evs[0].Message, what) || !strings.Contains(evs[0].Message, "not enough CPUs") {
		t.Fatalf("drift events after 10 more passes: %+v", evs)
	}
	p := readyPart(t, env, sl.ID, "core")
	if p.State != store.PartReady || p.Drift == nil || p.Drift.What != what || !strings.Contains(p.Drift.Why, "not enough CPUs") {
		t.Fatalf("part %s drift %+v", p.State, p.Drift)
	}
	cur, err := env.store.GetSlice(ctx, sl.ID)
	if err != nil || cur.State != store.SliceReady || cur.Message != "drift not repaired: part core: "+what {
		t.Fatalf("slice %s %q, %v", cur.State, cur.Message, err)
	}
	if n := len(events(t, env, sl.ID, sro.EvPartResizeFailed)); n != 0 {
		t.Fatalf("%d resize failures recorded as events: a repair's failure is the drift's", n)
	}
	if h := hold(t, env, "BR", sl.ID+"/core"); h.CPUs != 4 {
		t.Fatalf("hold %+v after the failed repairs, want the recorded 4 vCPUs", h)
	}

	// The room comes back: the repair lands and the drift is cleared.
	unfill()
	eventually(t, "drift cleared", func() bool { return len(events(t, env, sl.ID, sro.EvDriftCleared)) == 1 })
	if live, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref}); err != nil || nodeSizes(live.Nodes) != "vm-1:2 vm-2:2" {
		t.Fatalf("BR describes %+v, %v", live.Nodes, err)
	}
	if p := readyPart(t, env, sl.ID, "core"); p.Drift != nil {
		t.Fatalf("drift %+v after the repair", p.Drift)
	}
	eventually(t, "slice message cleared", func() bool {
		cur, err := env.store.GetSlice(ctx, sl.ID)
		return err == nil && cur.State == store.SliceReady && cur.Message == ""
	})

	// vm-2 deleted and its room taken (2 + 6): the part is Lost, the slice Degraded,
	// once, until the room comes back.
	g.behindTheBack(func() {
		if _, err := vim.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "vm", Instances: 1}); err != nil {
			t.Fatal(err)
		}
		unfill = filler("b", 6)
	})
	got := waitState(t, env, sl.ID, store.SliceDegraded)
	if got.Message != "part core: node vm-2 not found at provider BR" {
		t.Fatalf("degraded because %q", got.Message)
	}
	g.passes(t, 10)
	if n, d := len(events(t, env, sl.ID, sro.EvDrift)), len(events(t, env, sl.ID, sro.EvDegraded)); n != 2 || d != 1 {
		t.Fatalf("%d drift events (want 2: one per drift) and %d degraded events (want 1) after 10 more passes", n, d)
	}
	p = readyPart(t, env, sl.ID, "core")
	if p.State != store.PartLost || p.Drift == nil || !strings.Contains(p.Drift.What, "VDU vm has 1 node at the provider, 2 recorded (vm-2 not found)") {
		t.Fatalf("part %s %q drift %+v", p.State, p.Message, p.Drift)
	}
	unfill()
	got = waitState(t, env, sl.ID, store.SliceReady)
	if got.Message != "" {
		t.Fatalf("recovered slice says %q", got.Message)
	}
	eventually(t, "second drift cleared", func() bool { return len(events(t, env, sl.ID, sro.EvDriftCleared)) == 2 })
	if p := readyPart(t, env, sl.ID, "core"); p.State != store.PartReady || p.Drift != nil || nodeSizes(p.Observed.Nodes) != "vm-1:2 vm-2:2" {
		t.Fatalf("part after the repair: %s drift %+v nodes %s", p.State, p.Drift, nodeSizes(p.Observed.Nodes))
	}
}
