package elastic

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// scaleInSpec is the tenant's spec of the slice planScaleIn is judged on: edge has one
// worker of 1 vCPU and 512 MB and one master; edge-h9 is a part of the spec whose name
// looks like a copy's.
const scaleInSpec = `slices:
  sliced:
    id: s
    slice-parts:
      - dc-slice-part:
          name: core
          type: DC
          VIM: {name: xen-vim, vdus: [{vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}}]}
      - dc-slice-part:
          name: edge
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: k8s-master, epa-attributes: {host-epa: {cpu-number: 2, memory-mb: 1024}}}
              - vdu: {name: worker, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
      - dc-slice-part:
          name: edge-h9
          VIM: {name: xen-vim, vdus: [{vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}}]}
`

// scaleInPart is a Ready part whose VDU worker has nodes of these vCPUs (the spec says
// specCPUs per node), and one master node.
func scaleInPart(name string, elastic bool, specCPUs int, cpus ...int) *store.Part {
	p := &store.Part{SliceID: "s", Name: name, Provider: "P-" + name, State: store.PartReady, Elastic: elastic,
		Spec: sdk.PartSpec{VDUs: []sdk.VDUSpec{
			{Name: "k8s-master", Instances: 1, CPUs: 2, MemoryMB: 1024, Type: "master"},
			{Name: "worker", Instances: len(cpus), CPUs: specCPUs, MemoryMB: 512, Type: "worker"}}},
		Observed: &sdk.Part{Nodes: []sdk.Node{{Name: "k8s-master-1", VDU: "k8s-master", CPUs: 2, MemoryMB: 1024}}}}
	for i, c := range cpus {
		p.Observed.Nodes = append(p.Observed.Nodes, sdk.Node{Name: sdk.NodeName("worker", i+1), VDU: "worker", CPUs: c, MemoryMB: 512})
	}
	return p
}

func TestPlanScaleIn(t *testing.T) {
	s, err := spec.ParseSlice([]byte(scaleInSpec))
	if err != nil {
		t.Fatal(err)
	}
	pending := scaleInPart("edge-h3", true, 1, 1)
	pending.Change = &store.PartChange{Kind: store.ChangeRemove}
	parts := []*store.Part{
		scaleInPart("core", false, 1, 1),
		scaleInPart("edge", false, 1, 1, 4, 2),
		scaleInPart("edge-h1", true, 1, 1, 1),
		scaleInPart("edge-h2", true, 1, 1),
		pending,                               // being removed already
		scaleInPart("edge-h9", false, 1, 1),   // the tenant's
		scaleInPart("edge-hx", true, 1, 1),    // not a copy's name
		scaleInPart("edge-h1-h1", true, 1, 1), // a copy of a copy
		scaleInPart("core-h1", true, 1, 1),
	}
	v := &sro.View{Slice: &store.Slice{ID: "s"}, Parts: parts}
	pol := func(actions string) *spec.Policy {
		return policy(t, `{name: low, part: edge, operator: '<', value: 10, trigger: {points: 2}, metric-collector: {metric-name: cpu},
  post-deployment: {actions: `+actions+`}}`)
	}
	fired := func(nodes ...string) *Firing { return &Firing{Nodes: nodes} }
	for _, c := range []struct {
		name    string
		p       *spec.Policy
		view    *sro.View
		added   map[string]int
		f       *Firing
		want    []string // action part vdu node to, per step
		skipped string   // in the reasons, when no step is wanted
	}{
		{name: "the newest copy first, then the vertical actions", p: pol(`{vertical: [{action: remove-node}], horizontal: [{action: remove-part}]}`),
			added: map[string]int{"edge-h1": 1, "edge-h2": 2}, f: fired("worker-1"),
			want: []string{"remove-part edge-h2 - - 0", "remove-node edge worker - 2"}},
		{name: "a copy re-added is the newest", p: pol(`{horizontal: [{action: remove-part}]}`),
			added: map[string]int{"edge-h1": 5, "edge-h2": 2}, want: []string{"remove-part edge-h1 - - 0"}},
		{name: "without events, the highest number", p: pol(`{horizontal: [{action: remove-part}]}`),
			want: []string{"remove-part edge-h2 - - 0"}},
		{name: "copies of another template", p: pol(`{horizontal: [{action: {type: remove-part, template: core}}]}`),
			want: []string{"remove-part core-h1 - - 0"}},
		{name: "no copy left", p: pol(`{horizontal: [{action: remove-part}]}`),
			view: &sro.View{Slice: v.Slice, Parts: []*store.Part{parts[1], pending, parts[5], parts[6]}}, skipped: "remove-part: no copy of part edge to remove"},
		{name: "remove-node down by its step", p: pol(`{vertical: [{action: {type: remove-node, value: 2}}]}`),
			want: []string{"remove-node edge worker - 1"}},
		{name: "remove-node never below the spec", p: pol(`{vertical: [{action: {type: remove-node, value: 5}}]}`),
			want: []string{"remove-node edge worker - 1"}},
		{name: "remove-node at its min", p: pol(`{vertical: [{action: {type: remove-node, min: 3}}]}`),
			skipped: "remove-node: VDU worker of part edge has 3 nodes, at its floor (3)"},
		{name: "remove-node at the spec's count", p: pol(`{vertical: [{action: remove-node}]}`),
			view: &sro.View{Slice: v.Slice, Parts: []*store.Part{scaleInPart("edge", false, 1, 1)}}, skipped: "has 1 nodes, at its floor (1)"},
		{name: "remove-cpu on the node that fired", p: pol(`{vertical: [{action: remove-cpu}]}`), f: fired("worker-2"),
			want: []string{"remove-cpu edge worker worker-2 3"}},
		{name: "remove-cpu never below the spec", p: pol(`{vertical: [{action: {type: remove-cpu, value: 8}}]}`), f: fired("worker-2"),
			want: []string{"remove-cpu edge worker worker-2 1"}},
		{name: "remove-cpu: the first fired node above its floor", p: pol(`{vertical: [{action: remove-cpu}]}`), f: fired("worker-1", "worker-3"),
			want: []string{"remove-cpu edge worker worker-3 1"}},
		{name: "remove-cpu: the fired node at its floor", p: pol(`{vertical: [{action: remove-cpu}]}`), f: fired("worker-1"),
			skipped: "remove-cpu: node worker-1 of VDU worker at its floor (1 vCPUs)"},
		{name: "remove-cpu: fired on another VDU, every node", p: pol(`{vertical: [{action: remove-cpu}]}`), f: fired("k8s-master-1"),
			view: &sro.View{Slice: v.Slice, Parts: []*store.Part{scaleInPart("edge", false, 3, 3, 3)}}, want: []string{"remove-cpu edge worker - 2"}},
		{name: "remove-cpu: the master at the spec's size", p: pol(`{vertical: [{action: {type: remove-cpu, vdu: k8s-master}}]}`), f: fired("worker-2"),
			skipped: "remove-cpu: every node of VDU k8s-master has 2 vCPUs, at its floor (2)"},
		{name: "remove-memory: every node at the spec's size", p: pol(`{vertical: [{action: remove-memory}]}`),
			skipped: "remove-memory: every node of VDU worker has 512 MB, at its floor (512)"},
		{name: "an action at its floor passes to the next", p: pol(`{vertical: [{action: remove-memory}, {action: remove-node}]}`),
			want: []string{"remove-node edge worker - 2"}},
		{name: "a copy's floor is its template's spec", p: policy(t, `{name: low, part: edge-h1, operator: '<', value: 10, trigger: {points: 2},
  metric-collector: {metric-name: cpu}, post-deployment: {actions: {vertical: [{action: {type: remove-node, value: 3}}]}}}`),
			want: []string{"remove-node edge-h1 worker - 1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			view := v
			if c.view != nil {
				view = c.view
			}
			steps, skipped := planScaleIn(c.p, view, s, c.added, c.f)
			var got []string
			for _, st := range steps {
				or := func(s string) string {
					if s == "" {
						return "-"
					}
					return s
				}
				got = append(got, fmt.Sprintf("%s %s %s %s %d", st.action, st.part, or(st.vdu), or(st.node), st.to))
			}
			if strings.Join(got, "; ") != strings.Join(c.want, "; ") {
				t.Errorf("steps %q, want %q (skipped: %q)", got, c.want, skipped)
			}
			if c.skipped != "" && !strings.Contains(strings.Join(skipped, "; "), c.skipped) {
				t.Errorf("skipped %q, want it to say %q", skipped, c.skipped)
			}
		})
	}
}

// The floors hold without the tenant's spec too: every VDU keeps one node.
func TestPlanScaleInWithoutSpec(t *testing.T) {
	v := &sro.View{Slice: &store.Slice{ID: "s"}, Parts: []*store.Part{scaleInPart("edge", false, 1, 1, 1)}}
	p := policy(t, `{name: low, part: edge, operator: '<', value: 10, trigger: {points: 2}, metric-collector: {metric-name: cpu},
  post-deployment: {actions: {vertical: [{action: {type: remove-node, value: 9}}]}}}`)
	steps, _ := planScaleIn(p, v, nil, nil, nil)
	if len(steps) != 1 || steps[0].to != 1 || strings.Join(steps[0].nodes, ",") != "worker-1,worker-2" {
		t.Fatalf("steps %+v", steps)
	}
	v.Parts = []*store.Part{scaleInPart("edge", false, 1, 1)}
	if steps, skipped := planScaleIn(p, v, nil, nil, nil); len(steps) != 0 || len(skipped) != 1 {
		t.Fatalf("a VDU of one node shrinks: %+v %q", steps, skipped)
	}
}

func TestAddedOrder(t *testing.T) {
	evs := []store.Event{{Type: sro.EvPartAdded, Part: "edge-h1"}, {Type: sro.EvPartAdded, Part: "edge-h2"}, {Type: sro.EvPartRemoved, Part: "edge-h1"},
		{Type: sro.EvPartAdded, Part: "edge-h1"}, {Type: sro.EvPartScaled, Part: "edge-h2"}}
	if o := addedOrder(evs); !(o["edge-h1"] > o["edge-h2"]) || o["edge-h2"] == 0 || len(o) != 2 {
		t.Errorf("added order %v: edge-h1, added again, is the newest", o)
	}
}

func TestJudgeNodes(t *testing.T) {
	below := policy(t, `{name: p, part: edge, operator: '<', value: 10, trigger: {points: 2}, metric-collector: {metric-name: cpu}}`)
	var pts []sdk.Point
	for _, s := range [][]sdk.Point{series("w-1", "", 5, 3), series("w-1", "push", 1, 1), series("w-2", "", 50, 60), series("w-3", "", 2, 1)} {
		pts = append(pts, s...)
	}
	f := Judge(below, pts)
	if f == nil || f.Node != "w-1" || strings.Join(f.Nodes, ",") != "w-1,w-3" {
		t.Fatalf("fired %+v, want on w-1 with nodes w-1, w-3", f)
	}
}

// A scale-in policy at its floor says so once and does nothing — no action, no cooldown
// — however long the part stays idle; once the part has more than the spec gave, it
// shrinks it back, one step, and rests.
func TestScaleInFloorIsQuiet(t *testing.T) {
	st := openStore(t)
	v := readySlice(t, st, "s5")
	g := &gate{st: st, calls: make(chan string, 10), release: make(chan error), scales: make(chan int, 10)}
	runGated(t, st, g, &hotMonitor{value: 3})
	p, err := spec.ParsePolicy([]byte(`policy: {name: idle, part: edge, operator: '<', value: 10, trigger: {points: 2},
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: 1},
  post-deployment: {timers: {reactivate-elasticity: 1}, actions: {vertical: [{action: remove-node}, {action: {type: remove-cpu, min: 1}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), st, v, p, SourceAPI); err != nil {
		t.Fatal(err)
	}
	// floors counts the floor skips (while the action runs, busy ones may come too).
	floors := func() int {
		evs, err := st.Events(context.Background(), "s5")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range evs {
			if ev.Type == EvSkipped && ev.Data["reason"] == "floor" {
				n++
			}
		}
		return n
	}
	waitFor(t, "the floor skip", func() bool { return count(t, st, "s5", EvSkipped) == 1 && floors() == 1 })
	time.Sleep(2500 * time.Millisecond) // two more evaluations, both at the floor
	evs, _ := st.Events(context.Background(), "s5")
	for _, ev := range evs {
		switch ev.Type {
		case EvSkipped:
			if ev.Data["reason"] != "floor" || !strings.Contains(ev.Message, "nothing to shrink: remove-node: VDU worker of part edge has 1 nodes, at its floor (1)") {
				t.Errorf("skip %+v", ev)
			}
		case EvFired, EvActionStarted, EvExhausted:
			t.Errorf("at its floor, the policy recorded %s: %s", ev.Type, ev.Message)
		}
	}
	if n := count(t, st, "s5", EvSkipped); n != 1 {
		t.Errorf("%d skips at the floor, want 1", n)
	}

	// Grown meanwhile (by another policy): two workers.
	grow := func(n int) {
		t.Helper()
		if _, err := st.UpdatePart(context.Background(), "s5", "edge", func(x *store.Part) ([]store.Event, error) {
			x.Spec.VDUs[0].Instances = n
			x.Observed.Nodes = x.Observed.Nodes[:0]
			for i := 1; i <= n; i++ {
				x.Observed.Nodes = append(x.Observed.Nodes, sdk.Node{Name: sdk.NodeName("worker", i), VDU: "worker", Type: "worker", CPUs: 1, MemoryMB: 512})
			}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	grow(2)
	select {
	case n := <-g.scales:
		if n != 1 {
			t.Fatalf("scaled to %d nodes, want 1", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not shrink a part above its floor")
	}
	grow(1) // what the slice engine would have recorded
	g.release <- nil
	waitFor(t, "the action's end", func() bool { return count(t, st, "s5", EvActionFinished) == 1 })
	// Back at the floor: said once more, and nothing else.
	waitFor(t, "the second floor skip", func() bool { return floors() == 2 })
	time.Sleep(2500 * time.Millisecond)
	if len(g.scales) != 0 || len(g.calls) != 0 {
		t.Error("shrank below the spec's size")
	}
	if n := floors(); n != 2 {
		t.Errorf("%d floor skips, want 2", n)
	}
	if n := count(t, st, "s5", EvFired); n != 1 {
		t.Errorf("fired %d times, want once", n)
	}
	evs, _ = st.Events(context.Background(), "s5")
	for _, ev := range evs {
		if ev.Type == EvActionFinished && (ev.Data["action"] != spec.ActionRemoveNode || ev.Data["vdu"] != "worker" ||
			ev.Message == "" || !strings.Contains(ev.Message, "VDU worker of part edge from 2 to 1 nodes")) {
			t.Errorf("action finished %+v", ev)
		}
		if ev.Type == EvPostDeploySkipped && !strings.Contains(ev.Message, "the services' records are not told what remove-node removed") {
			t.Errorf("post-deploy skip %+v", ev)
		}
	}
}
