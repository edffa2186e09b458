package elastic

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// The tests of this file check the engine's own logic — when it fires, skips, rests
// and stops — with stand-ins for the slice engine and the monitor. elasticity_test.go
// shows it on real backends.

// hotMonitor answers every query with the last two points of one node, stamped now,
// all at value.
type hotMonitor struct {
	mu    sync.Mutex
	value float64
}

func (m *hotMonitor) set(v float64) {
	m.mu.Lock()
	m.value = v
	m.mu.Unlock()
}

func (m *hotMonitor) Write(context.Context, sdk.WriteRequest) error { return nil }
func (m *hotMonitor) Flush(context.Context) error                   { return nil }
func (m *hotMonitor) Health(context.Context) error                  { return nil }
func (m *hotMonitor) Query(_ context.Context, q sdk.Query) ([]sdk.Point, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	tags := map[string]string{sdk.TagSlice: q.Tags[sdk.TagSlice], sdk.TagPart: q.Tags[sdk.TagPart], sdk.TagResourceID: "worker-1", sdk.TagNodeType: "worker"}
	var out []sdk.Point
	for _, at := range []time.Time{now.Add(-500 * time.Millisecond), now} {
		if !at.Before(q.Start) {
			out = append(out, sdk.Point{Metric: q.Metric, Tags: tags, Value: m.value, Time: at})
		}
	}
	return out, nil
}

func (m *hotMonitor) Monitor(context.Context) (sdk.Monitor, error) { return m, nil }

// gate stands in for the slice engine: every resize (and, with scales set, every
// scale) waits for a release.
type gate struct {
	st      *store.Store
	calls   chan string
	release chan error
	// scales receives the node count of every scale; nil refuses them.
	scales chan int
}

func (g *gate) Get(ctx context.Context, _, id string) (*sro.View, error) {
	sl, err := g.st.GetSlice(ctx, id)
	if err != nil {
		return nil, err
	}
	parts, err := g.st.ListParts(ctx, id)
	return &sro.View{Slice: sl, Parts: parts}, err
}

func (g *gate) ResizePart(ctx context.Context, sliceID, part, vdu, node string, cpus int, memMB int64) error {
	g.calls <- node
	select {
	case err := <-g.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) ScalePart(ctx context.Context, _, _, _ string, instances int) error {
	if g.scales == nil {
		return errors.New("not expected")
	}
	g.scales <- instances
	select {
	case err := <-g.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) AddPart(context.Context, string, string, sro.AddPartOptions) (*store.Part, error) {
	return nil, errors.New("not expected")
}

func (g *gate) RemovePart(context.Context, string, string) error {
	return errors.New("not expected")
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// readySlice records a Ready slice with one part of one worker node; partExtra adds
// lines (indented as the part's keys) to its part in the spec.
func readySlice(t *testing.T, st *store.Store, id string, partExtra ...string) *sro.View {
	t.Helper()
	ctx := context.Background()
	extra := ""
	for _, l := range partExtra {
		extra += "          " + l + "\n"
	}
	sl := &store.Slice{ID: id, Name: id, Tenant: "alice", State: store.SliceReady, Spec: `slices:
  sliced:
    id: ` + id + `
    slice-parts:
      - dc-slice-part:
          name: edge
          VIM: {name: xen-vim, vdus: [{vdu: {name: worker, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}}]}
` + extra}
	if err := st.CreateSlice(ctx, sl, store.Event{Type: "test"}); err != nil {
		t.Fatal(err)
	}
	p := &store.Part{SliceID: id, Name: "edge", Provider: "P", State: store.PartReady,
		Spec:     sdk.PartSpec{Ref: sdk.PartRef{SliceID: id, PartID: "edge"}, VDUs: []sdk.VDUSpec{{Name: "worker", Instances: 1, CPUs: 1, MemoryMB: 512, Type: "worker"}}},
		Observed: &sdk.Part{Nodes: []sdk.Node{{Name: "worker-1", VDU: "worker", Type: "worker", CPUs: 1, MemoryMB: 512}}}}
	if err := st.PutPart(ctx, p); err != nil {
		t.Fatal(err)
	}
	return &sro.View{Slice: sl, Parts: []*store.Part{p}}
}

func count(t *testing.T, st *store.Store, sliceID, typ string) int {
	t.Helper()
	evs, err := st.Events(context.Background(), sliceID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runGated runs (and returns) an engine over st whose elastic actions go through g, reading metrics
// from mon, until the test ends.
func runGated(t *testing.T, st *store.Store, g *gate, mon MonitorSource) *Engine {
	t.Helper()
	e := New(Options{Store: st, Engine: g, Monitor: mon, Resync: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func TestBusyCooldownAndRemoval(t *testing.T) {
	st := openStore(t)
	v := readySlice(t, st, "s1")
	g := &gate{st: st, calls: make(chan string, 10), release: make(chan error)}
	mon := &hotMonitor{value: 95}
	e := runGated(t, st, g, mon)

	p, err := spec.ParsePolicy([]byte(`policy: {name: hot, part: edge, operator: '>', value: 80, trigger: {points: 2},
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: 1},
  post-deployment: {timers: {reactivate-elasticity: 2}, actions: {vertical: [{action: {type: add-cpu, max: 4}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), st, v, p, SourceAPI); err != nil {
		t.Fatal(err)
	}
	// It fires on the hot node: the node alone grows.
	if node := <-g.calls; node != "worker-1" {
		t.Fatalf("resized node %q", node)
	}
	// While the action runs the policy still holds: skipped once, never run twice.
	waitFor(t, "a busy skip", func() bool { return count(t, st, "s1", EvSkipped) == 1 })
	time.Sleep(2500 * time.Millisecond)
	if n := count(t, st, "s1", EvSkipped); n != 1 {
		t.Errorf("%d skips recorded while busy, want 1", n)
	}
	if len(g.calls) != 0 {
		t.Fatal("fired again while its action ran")
	}
	g.release <- nil
	waitFor(t, "the action's end", func() bool { return count(t, st, "s1", EvActionFinished) == 1 })
	// Resting: skipped (once), then it fires again.
	waitFor(t, "a cooldown skip", func() bool { return count(t, st, "s1", EvSkipped) == 2 })
	select {
	case <-g.calls:
	case <-time.After(30 * time.Second):
		t.Fatal("did not fire again after the cooldown")
	}
	g.release <- nil
	waitFor(t, "the second action's end", func() bool { return count(t, st, "s1", EvActionFinished) == 2 })
	if n := count(t, st, "s1", EvFired); n != 2 {
		t.Errorf("fired %d times", n)
	}
	evs, _ := st.Events(context.Background(), "s1")
	var skips []string
	for _, ev := range evs {
		if ev.Type == EvSkipped {
			skips = append(skips, ev.Data["reason"])
		}
		if ev.Type == EvPostDeploySkipped && !strings.Contains(ev.Message, "no service deployer") {
			t.Errorf("post-deploy skip says %q", ev.Message)
		}
	}
	if strings.Join(skips, ",") != "busy,cooldown" {
		t.Errorf("skips %v", skips)
	}

	// A failed action rests too, and says why.
	mon.set(95)
	select {
	case <-g.calls:
	case <-time.After(30 * time.Second):
		t.Fatal("did not fire a third time")
	}
	g.release <- sdk.Errorf(sdk.CodeUnavailable, "backend away")
	waitFor(t, "the failure", func() bool { return count(t, st, "s1", EvActionFailed) == 1 })

	// Removed: the evaluator stops and says so.
	if err := Remove(context.Background(), st, "s1", "hot"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the evaluator to stop", func() bool { return len(e.Policies()) == 0 })
	waitFor(t, "the disarmed event", func() bool { return count(t, st, "s1", EvDisarmed) == 1 })
	if err := Remove(context.Background(), st, "s1", "hot"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}
}

// A restarted engine keeps the cooldown of an action taken before.
func TestCooldownSurvivesRestart(t *testing.T) {
	st := openStore(t)
	v := readySlice(t, st, "s2")
	p, err := spec.ParsePolicy([]byte(`{name: hot, part: edge, operator: '>', value: 80, trigger: {points: 2},
  metric-collector: {metric-name: cpu, granularity: 1}, post-deployment: {timers: {reactivate-elasticity: 3600}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), st, v, p, SourceAPI); err != nil {
		t.Fatal(err)
	}
	// What an engine before the restart recorded.
	if err := st.AddEvents(context.Background(), "s2", store.Event{Type: EvActionFinished, Part: "edge", Data: map[string]string{"policy": "hot"}}); err != nil {
		t.Fatal(err)
	}
	g := &gate{st: st, calls: make(chan string, 10), release: make(chan error)}
	runGated(t, st, g, &hotMonitor{value: 99})
	waitFor(t, "a cooldown skip", func() bool { return count(t, st, "s2", EvSkipped) == 1 })
	if len(g.calls) != 0 {
		t.Fatal("fired within the cooldown of an action taken before the restart")
	}
}

func TestCheck(t *testing.T) {
	st := openStore(t)
	v := readySlice(t, st, "s3")
	p, err := spec.ParsePolicy([]byte(`{name: p, part: core, operator: '>', value: 80, trigger: {points: 2},
  metric-collector: {metric-name: cpu},
  deployment: {constraints: {horizontal: {location: EUROPE, link-to: hub}}},
  post-deployment: {actions: {vertical: [{action: {type: add-node, vdu: db}}], horizontal: [{action: {type: add-part, template: far}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	err = Check(v, p)
	var se *spec.Error
	if !errors.As(err, &se) || len(se.Problems) != 3 {
		t.Fatalf("check: %v", err)
	}
	for i, want := range []string{"policy.part: slice s3 has no part \"core\"", "policy.post-deployment.actions.horizontal[0].action.template", "policy.deployment.constraints.horizontal.link-to"} {
		if !strings.HasPrefix(se.Problems[i].String(), want) {
			t.Errorf("problem %d: %s, want %s", i, se.Problems[i], want)
		}
	}
	p.Part = "edge"
	if err := Check(v, p); err == nil || !strings.Contains(err.Error(), "vertical[0].action.vdu: part edge has no VDU \"db\"") {
		t.Errorf("check: %v", err)
	}

	// A policy a service registered is not replaced through the API.
	ok, err := spec.ParsePolicy([]byte(`{name: svc, part: edge, operator: '>', value: 80, trigger: {points: 2}, metric-collector: {metric-name: cpu}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), st, v, ok, SourceServicePrefix+"iot"); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), st, v, ok, SourceAPI); !errors.Is(err, ErrOwned) || !strings.Contains(err.Error(), "registered by service:iot") {
		t.Errorf("replacing a service's policy: %v", err)
	}
	ok.Value = 90
	if _, err := Install(context.Background(), st, v, ok, SourceServicePrefix+"iot"); err != nil {
		t.Errorf("the service replacing its own policy: %v", err)
	}
}
