package elastic

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/sdk"
)

// nodesMonitor answers every query with the last two points of each of its nodes,
// stamped now, at the node's value, and counts the queries (the policy's evaluations).
type nodesMonitor struct {
	mu      sync.Mutex
	values  map[string]float64
	queries int
}

func (m *nodesMonitor) set(node string, v float64) {
	m.mu.Lock()
	m.values[node] = v
	m.mu.Unlock()
}

// evaluations returns how many times the policy was evaluated.
func (m *nodesMonitor) evaluations() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queries
}

func (m *nodesMonitor) Write(context.Context, sdk.WriteRequest) error { return nil }
func (m *nodesMonitor) Flush(context.Context) error                   { return nil }
func (m *nodesMonitor) Health(context.Context) error                  { return nil }
func (m *nodesMonitor) Monitor(context.Context) (sdk.Monitor, error) {
	return m, nil
}

func (m *nodesMonitor) Query(_ context.Context, q sdk.Query) ([]sdk.Point, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queries++
	now := time.Now()
	nodes := make([]string, 0, len(m.values))
	for n := range m.values {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var out []sdk.Point
	for _, n := range nodes {
		tags := map[string]string{sdk.TagSlice: q.Tags[sdk.TagSlice], sdk.TagPart: q.Tags[sdk.TagPart], sdk.TagResourceID: n, sdk.TagNodeType: "worker"}
		for _, at := range []time.Time{now.Add(-500 * time.Millisecond), now} {
			if !at.Before(q.Start) {
				out = append(out, sdk.Point{Metric: q.Metric, Tags: tags, Value: m.values[n], Time: at})
			}
		}
	}
	return out, nil
}

// A scale-in policy (trigger.nodes unset: every node) does not fire while one of the
// part's two workers is idle and the other busy, however many times it is evaluated;
// it removes a node once both are idle.
func TestScaleInWaitsForEveryNode(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	v := readySlice(t, st, "s1")
	// Grown to two workers; the spec's one stays the floor.
	p := v.Parts[0]
	p.Spec.VDUs[0].Instances = 2
	p.Observed.Nodes = append(p.Observed.Nodes, sdk.Node{Name: "worker-2", VDU: "worker", Type: "worker", CPUs: 1, MemoryMB: 512})
	if err := st.PutPart(ctx, p); err != nil {
		t.Fatal(err)
	}
	g := &gate{st: st, calls: make(chan string, 10), release: make(chan error, 1), scales: make(chan int, 10)}
	mon := &nodesMonitor{values: map[string]float64{"worker-1": 5, "worker-2": 90}}
	runGated(t, st, g, mon)

	pol, err := spec.ParsePolicy([]byte(`policy: {name: idle, part: edge, operator: '<', value: 20, trigger: {points: 2},
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: 1},
  post-deployment: {timers: {reactivate-elasticity: 600}, actions: {vertical: [{action: {type: remove-node, vdu: worker}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !pol.EveryNode() {
		t.Fatal("a scale-in policy without trigger.nodes fires on one node")
	}
	if _, err := Install(ctx, st, v, pol, SourceAPI); err != nil {
		t.Fatal(err)
	}
	// Three evaluations with worker-1 idle and worker-2 busy: nothing.
	waitFor(t, "three evaluations", func() bool { return mon.evaluations() >= 3 })
	if n := count(t, st, "s1", EvFired); n != 0 || len(g.scales) != 0 {
		t.Fatalf("fired %d times, %d scales, while worker-2 was busy", n, len(g.scales))
	}

	// worker-2 idle too: one node removed, the firing names both.
	mon.set("worker-2", 3)
	g.release <- nil
	select {
	case n := <-g.scales:
		if n != 1 {
			t.Fatalf("scaled to %d nodes, want 1", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not scale in once every node was idle")
	}
	waitFor(t, "the action's end", func() bool { return count(t, st, "s1", EvActionFinished) == 1 })
	evs, err := st.Events(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Type == EvFired && !strings.Contains(ev.Message, "on every worker node") {
			t.Errorf("fired: %s", ev.Message)
		}
	}
	if n := count(t, st, "s1", EvFired); n != 1 {
		t.Errorf("fired %d times, want once", n)
	}
}
