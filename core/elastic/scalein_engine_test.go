package elastic_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// growNode adds one worker node when a worker is above 80 % for 3 points, up to 2.
const growNode = `policy:
  name: grow
  part: edge
  operator: '>'
  value: 80
  trigger: {points: 3}
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: 1}
  post-deployment:
    timers: {reactivate-elasticity: 60}
    actions:
      vertical: [{action: {type: add-node, vdu: worker, max: 2}}]
`

// shrink removes what growth added when a worker is below 20 % for 3 points: the newest
// copy of edge first, then two worker nodes at a time — more than growth added, so that
// only the floor (the spec's one node) stops it.
const shrink = `policy:
  name: shrink
  part: edge
  operator: '<'
  value: 20
  trigger: {points: 3}
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: 1}
  post-deployment:
    commands: [echo rebalance]
    timers: {reactivate-elasticity: 1}
    actions:
      vertical: [{action: {type: remove-node, vdu: worker, value: 2}}]
      horizontal: [{action: remove-part}]
`

// workers returns the worker nodes of a part as the slice engine last observed them.
func workers(t *testing.T, e *env, sliceID, part string) []string {
	t.Helper()
	v, err := e.engine.Get(context.Background(), "", sliceID)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := v.Part(part)
	if !ok || p.Observed == nil {
		t.Fatalf("no observed part %s", part)
	}
	var out []string
	for _, n := range p.Observed.NodesOf("worker") {
		out = append(out, n.Name)
	}
	return out
}

// pushTo sends CPU values for a node of a part as a probe would, 100 ms apart, ending
// now, and returns now.
func pushTo(t *testing.T, e *env, sliceID, part, node string, values ...float64) time.Time {
	t.Helper()
	now := time.Now()
	pts := make([]sdk.Point, len(values))
	for i, v := range values {
		pts[i] = sdk.Point{Metric: sdk.MetricCPUPercent, Tags: map[string]string{sdk.TagResourceID: node, sdk.TagPart: part}, Value: v,
			Time: now.Add(-time.Duration(len(values)-1-i) * 100 * time.Millisecond)}
	}
	if _, err := e.col.Push(context.Background(), sliceID, pts); err != nil {
		t.Fatalf("push: %v", err)
	}
	return now
}

// domainGone reports whether libvirt no longer has a domain.
func domainGone(t *testing.T, uri, uuid string) bool {
	t.Helper()
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatalf("libvirt %s: %v", uri, err)
	}
	defer conn.Close()
	d, err := conn.LookupDomainByUUIDString(uuid)
	if err != nil {
		return true
	}
	d.Free()
	return false
}

// TestScaleIn grows slices on real backends (vim-xen on the libvirt daemon, influxd) and
// lets a scale-in policy shrink them back when the load drops: to the tenant's spec and
// never below it.
func TestScaleIn(t *testing.T) {
	post := &recorder{}
	e := start(t, envOptions{post: post})
	ctx := context.Background()

	t.Run("vertical: a node added is removed, the spec's node stays", func(t *testing.T) {
		v := e.ready(t, "vin", partDoc("edge", "EDGE", "EUROPE.SPAIN.MADRID", "worker", 1, 1))
		id := v.Slice.ID
		e.install(t, v, growNode)
		written := e.push(t, id, "worker-1", time.Second, 91, 95, 97)
		e.waitEvent(t, id, "grow", elastic.EvActionFinished, written)
		if got := workers(t, e, id, "edge"); len(got) != 2 {
			t.Fatalf("after growth: workers %v", got)
		}
		added := observedNode(t, e, id, "edge", "worker-2")
		if h := holdOf(t, e, e.provider("V"), id+"/edge"); h.Nodes != 2 || h.CPUs != 2 {
			t.Fatalf("ledger after growth: %+v", h)
		}

		// The load drops: one scale-in step, two nodes asked, one taken — the spec's
		// node stays.
		e.install(t, v, shrink)
		// The cold points come after the hot ones: the last three are all below.
		time.Sleep(time.Second)
		cold := e.push(t, id, "worker-1", 100*time.Millisecond, 5, 3, 2)
		done := e.waitEvent(t, id, "shrink", elastic.EvActionFinished, cold)
		if done.Data["action"] != "remove-node" || !strings.Contains(done.Message, "VDU worker of part edge from 2 to 1 nodes") {
			t.Errorf("action finished: %+v", done)
		}
		if got := workers(t, e, id, "edge"); !slices.Equal(got, []string{"worker-1"}) {
			t.Errorf("after the scale-in: workers %v, want worker-1", got)
		}
		if !domainGone(t, e.uri, added.ID) {
			t.Error("libvirt still has the domain of the node removed")
		}
		if h := holdOf(t, e, e.provider("V"), id+"/edge"); h.Nodes != 1 || h.CPUs != 1 {
			t.Errorf("ledger after the scale-in: %+v", h)
		}
		if evs := e.events(t, id, "", sro.EvPartScaled, cold); len(evs) != 1 || evs[0].Data["instances"] != "1" {
			t.Errorf("part.scaled events %+v", evs)
		}
		// The services' records are told which node went, and the commands run.
		e.waitEvent(t, id, "shrink", elastic.EvPostDeployed, cold)
		ins := post.scaleIns()
		if len(ins) != 1 || ins[0].slice != id || ins[0].part != "edge" || !slices.Equal(ins[0].gone, []string{"worker-2"}) ||
			ins[0].pd.Commands[0] != "echo rebalance" {
			t.Errorf("scale-in post-deployments %+v", ins)
		}
		if n := len(post.requests()); n != 1 {
			t.Errorf("%d redeployments: a scale-in redeploys nothing", n)
		}

		// Still idle, at the spec's size: said once, nothing more is removed. (Only points
		// after the action count.)
		time.Sleep(time.Second)
		e.push(t, id, "worker-1", 100*time.Millisecond, 4, 3, 2)
		skip := e.waitEvent(t, id, "shrink", elastic.EvSkipped, done.Time)
		if skip.Data["reason"] != "floor" || !strings.Contains(skip.Message, "has 1 nodes, at its floor (1)") ||
			!strings.Contains(skip.Message, "remove-part: no copy of part edge to remove") {
			t.Errorf("skip: %+v", skip)
		}
		e.push(t, id, "worker-1", 200*time.Millisecond, 1, 1, 1)
		time.Sleep(3 * time.Second) // three more evaluations
		if got := workers(t, e, id, "edge"); len(got) != 1 {
			t.Errorf("shrank below the spec: workers %v", got)
		}
		if n := len(e.events(t, id, "shrink", elastic.EvActionStarted, time.Time{})); n != 1 {
			t.Errorf("%d scale-in actions, want 1", n)
		}
		if n := len(e.events(t, id, "shrink", elastic.EvFired, time.Time{})); n != 1 {
			t.Errorf("fired %d times, want once", n)
		}
		if n := len(e.events(t, id, "shrink", elastic.EvExhausted, time.Time{})); n != 0 {
			t.Errorf("%d exhausted events at the floor", n)
		}
		floors := 0
		for _, ev := range e.events(t, id, "shrink", elastic.EvSkipped, time.Time{}) {
			if ev.Data["reason"] == "floor" {
				floors++
			}
		}
		if floors != 1 {
			t.Errorf("%d floor skips, want 1", floors)
		}
	})

	t.Run("horizontal: the copy is removed, never the spec's part", func(t *testing.T) {
		v := e.ready(t, "hin",
			partDoc("core", "DC", "AMERICA.BRAZIL", "vm", 1, 1),
			partDoc("edge", "EDGE", "EUROPE.GREECE.ATHENS", "worker", 1, 2))
		id := v.Slice.ID
		e.install(t, v, cpu("cpu-high", "edge", 3))
		written := e.push(t, id, "worker-1", time.Second, 90, 95, 99)
		e.waitEvent(t, id, "cpu-high", elastic.EvActionFinished, written)
		got, err := e.engine.Get(ctx, "alice", id)
		if err != nil {
			t.Fatal(err)
		}
		np, ok := got.Part("edge-h1")
		if !ok || !np.Elastic || np.State != store.PartReady {
			t.Fatalf("no copy was added: %+v", got.Parts)
		}
		copyNode := np.Observed.Nodes[0].ID

		e.install(t, v, shrink)
		// The copy has a worker-1 too: the points name their part.
		time.Sleep(time.Second)
		cold := pushTo(t, e, id, "edge", "worker-1", 5, 3, 2)
		done := e.waitEvent(t, id, "shrink", elastic.EvActionFinished, cold)
		if done.Data["action"] != "remove-part" || done.Data["part"] != "edge-h1" || done.Data["template"] != "edge" {
			t.Errorf("action finished: %+v", done)
		}
		got, err = e.engine.Get(ctx, "alice", id)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got.Part("edge-h1"); ok || len(got.Parts) != 2 || len(got.Links) != 0 {
			t.Errorf("after the scale-in: parts %d, links %+v", len(got.Parts), got.Links)
		}
		if !domainGone(t, e.uri, copyNode) {
			t.Error("libvirt still has the copy's domain")
		}
		if h := holdOf(t, e, e.provider("H"), id+"/edge-h1"); h.CPUs != 0 {
			t.Errorf("the copy's provider still holds %+v", h)
		}
		if evs := e.events(t, id, "", sro.EvPartRemoved, cold); len(evs) != 1 || evs[0].Part != "edge-h1" {
			t.Errorf("part.removed events %+v", evs)
		}
		e.waitEvent(t, id, "shrink", elastic.EvPostDeployed, cold)
		ins := post.scaleIns()
		if last := ins[len(ins)-1]; last.slice != id || last.part != "edge-h1" || last.gone != nil {
			t.Errorf("scale-in post-deployment %+v", last)
		}

		// Nothing of the spec goes: the edge and its one node are at their floor.
		time.Sleep(time.Second)
		pushTo(t, e, id, "edge", "worker-1", 4, 3, 2)
		skip := e.waitEvent(t, id, "shrink", elastic.EvSkipped, done.Time)
		if skip.Data["reason"] != "floor" {
			t.Errorf("skip: %+v", skip)
		}
		got, _ = e.engine.Get(ctx, "alice", id)
		if edge, ok := got.Part("edge"); !ok || len(edge.Observed.Nodes) != 1 || len(got.Parts) != 2 {
			t.Errorf("the spec's parts changed: %+v", got.Parts)
		}
	})
}
