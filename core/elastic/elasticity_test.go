package elastic_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// The service orchestrator runs post-deployments, and follows scale-ins.
var (
	_ elastic.PostDeployer    = (*service.Orchestrator)(nil)
	_ elastic.ScaleInDeployer = (*service.Orchestrator)(nil)
)

// recorder is a PostDeployer (and ScaleInDeployer) that remembers what it was asked.
type recorder struct {
	mu   sync.Mutex
	reqs []postDeploy
	ins  []postDeploy
}

type postDeploy struct {
	slice, part string
	gone        []string // PostScaleIn's
	pd          spec.PostDeployment
}

func (r *recorder) PostScaleIn(_ context.Context, sliceID, part string, gone []string, pd spec.PostDeployment) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ins = append(r.ins, postDeploy{sliceID, part, gone, pd})
	return nil
}

func (r *recorder) scaleIns() []postDeploy {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]postDeploy(nil), r.ins...)
}

func (r *recorder) PostDeploy(_ context.Context, sliceID, part string, pd spec.PostDeployment) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, postDeploy{sliceID, part, nil, pd})
	return nil
}

func (r *recorder) requests() []postDeploy {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]postDeploy(nil), r.reqs...)
}

// cpuPolicy fires on 3 points above 80 % CPU of a worker, evaluated every second.
const cpuPolicy = `policy:
  name: %NAME%
  part: %PART%
  operator: '>'
  value: 80
  trigger: {points: %POINTS%}
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: 1}
  deployment:
    constraints:
      vertical: {max-cpus: 4}
      horizontal: {location: EUROPE.GREECE}
  post-deployment:
    node: worker-1
    commands: [systemctl restart iot-agent]
    timers: {reactivate-elasticity: 60}
    actions:
      vertical: [{action: {type: add-cpu, vdu: worker}}]
      horizontal: [{action: add-part, priority: 1}]
`

func cpu(name, part string, points int) string {
	return strings.NewReplacer("%NAME%", name, "%PART%", part, "%POINTS%", itoa(points)).Replace(cpuPolicy)
}

func itoa(n int) string { return string(rune('0' + n)) }

// liveVCPUs asks the libvirt daemon (not the plugin) how many vCPUs a domain has, running
// and in its persistent definition.
func liveVCPUs(t *testing.T, uri, uuid string) (live, config int) {
	t.Helper()
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatalf("libvirt %s: %v", uri, err)
	}
	defer conn.Close()
	d, err := conn.LookupDomainByUUIDString(uuid)
	if err != nil {
		t.Fatalf("domain %s: %v", uuid, err)
	}
	defer d.Free()
	info, err := d.GetInfo()
	if err != nil {
		t.Fatal(err)
	}
	n, err := d.GetVcpusFlags(libvirt.DOMAIN_VCPU_CONFIG)
	if err != nil {
		t.Fatal(err)
	}
	return int(info.NrVirtCpu), int(n)
}

func observedNode(t *testing.T, e *env, sliceID, part, node string) sdk.Node {
	t.Helper()
	v, err := e.engine.Get(context.Background(), "", sliceID)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := v.Part(part)
	if !ok || p.Observed == nil {
		t.Fatalf("no observed part %s", part)
	}
	for _, n := range p.Observed.Nodes {
		if n.Name == node {
			return n
		}
	}
	t.Fatalf("part %s has no node %s", part, node)
	return sdk.Node{}
}

func TestElasticity(t *testing.T) {
	post := &recorder{}
	e := start(t, envOptions{post: post})
	ctx := context.Background()

	t.Run("vertical: above the threshold grows the node in libvirt", func(t *testing.T) {
		v := e.ready(t, "vert", partDoc("edge", "EDGE", "EUROPE.SPAIN.MADRID", "worker", 2, 1))
		id := v.Slice.ID
		e.install(t, v, cpu("cpu-high", "edge", 3))
		before := observedNode(t, e, id, "edge", "worker-2")
		if live, _ := liveVCPUs(t, e.uri, before.ID); live != 1 {
			t.Fatalf("worker-2 starts with %d vCPUs", live)
		}
		written := e.push(t, id, "worker-2", time.Second, 91, 95, 97)
		done := e.waitEvent(t, id, "cpu-high", elastic.EvActionFinished, written)
		t.Logf("reaction: %s from the points written to the action finished (granularity 1s)", done.Time.Sub(written).Round(time.Millisecond))

		// The VIM and libvirt itself agree: the hot node alone has one more vCPU.
		vim, _ := e.reg.VIM(ctx, e.provider("V"))
		live, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: id, PartID: "edge"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range live.Nodes {
			want := map[string]int{"worker-1": 1, "worker-2": 2}[n.Name]
			if n.CPUs != want {
				t.Errorf("VIM: %s has %d vCPUs, want %d", n.Name, n.CPUs, want)
			}
		}
		if l, c := liveVCPUs(t, e.uri, before.ID); l != 2 || c != 2 {
			t.Errorf("libvirt: worker-2 has %d vCPUs running, %d defined; want 2", l, c)
		}
		if h := holdOf(t, e, e.provider("V"), id+"/edge"); h.CPUs != 3 {
			t.Errorf("ledger holds %d vCPUs for the part, want 3", h.CPUs)
		}
		fired := e.events(t, id, "cpu-high", elastic.EvFired, written)
		if len(fired) != 1 || !strings.Contains(fired[0].Message, "node worker-2 (push): 91, 95, 97") {
			t.Errorf("fired: %+v", fired)
		}
		e.waitEvent(t, id, "cpu-high", elastic.EvPostDeployed, written)
		reqs := post.requests()
		if len(reqs) != 1 || reqs[0].slice != id || reqs[0].part != "edge" || reqs[0].pd.Node != "worker-1" ||
			reqs[0].pd.Commands[0] != "systemctl restart iot-agent" {
			t.Errorf("post-deploy requests %+v", reqs)
		}
	})

	t.Run("below the threshold nothing happens", func(t *testing.T) {
		v := e.ready(t, "calm", partDoc("edge", "EDGE", "EUROPE.SPAIN.MADRID", "worker", 1, 1))
		id := v.Slice.ID
		e.install(t, v, cpu("cpu-high", "edge", 3))
		written := e.push(t, id, "worker-1", time.Second, 50, 79, 80)
		time.Sleep(4 * time.Second) // four evaluations
		if evs := e.events(t, id, "", elastic.EvFired, written); len(evs) != 0 {
			t.Fatalf("fired below the threshold: %+v", evs)
		}
		if n := observedNode(t, e, id, "edge", "worker-1"); n.CPUs != 1 {
			t.Fatalf("worker-1 has %d vCPUs", n.CPUs)
		}
		if l, _ := liveVCPUs(t, e.uri, observedNode(t, e, id, "edge", "worker-1").ID); l != 1 {
			t.Fatalf("libvirt: worker-1 has %d vCPUs", l)
		}
	})

	t.Run("oscillating values: the cooldown holds", func(t *testing.T) {
		v := e.ready(t, "wobbly", partDoc("edge", "EDGE", "EUROPE.SPAIN.MADRID", "worker", 1, 1))
		id := v.Slice.ID
		e.install(t, v, cpu("cpu-high", "edge", 2))
		// Up and down: never two points in a row above 80, no firing.
		start := e.push(t, id, "worker-1", 200*time.Millisecond, 95, 20, 95, 20, 95, 20)
		time.Sleep(3 * time.Second)
		if evs := e.events(t, id, "", elastic.EvFired, start); len(evs) != 0 {
			t.Fatalf("fired on oscillating values: %+v", evs)
		}
		// Two in a row: it fires once and acts.
		written := e.push(t, id, "worker-1", 200*time.Millisecond, 95, 96)
		e.waitEvent(t, id, "cpu-high", elastic.EvActionFinished, written)
		// The load swings back up within the cooldown: skipped, not acted on. (Only
		// points after the action count: let a few be measured after it.)
		time.Sleep(time.Second)
		again := e.push(t, id, "worker-1", 200*time.Millisecond, 20, 97, 98)
		skip := e.waitEvent(t, id, "cpu-high", elastic.EvSkipped, again)
		if skip.Data["reason"] != "cooldown" {
			t.Fatalf("skipped: %+v", skip)
		}
		e.push(t, id, "worker-1", 200*time.Millisecond, 99, 99)
		time.Sleep(3 * time.Second)
		if n := len(e.events(t, id, "", elastic.EvFired, start)); n != 1 {
			t.Errorf("fired %d times", n)
		}
		if n := len(e.events(t, id, "", elastic.EvActionStarted, start)); n != 1 {
			t.Errorf("%d actions", n)
		}
		// One for the whole cooldown. (A "busy" skip may come before it: the policy is
		// judged whenever points are stored, and the memory the collector measures every
		// second may be stored while the action runs.)
		cooling := 0
		for _, ev := range e.events(t, id, "", elastic.EvSkipped, start) {
			if ev.Data["reason"] == "cooldown" {
				cooling++
			}
		}
		if cooling != 1 {
			t.Errorf("%d cooldown skip events, want 1 for the whole cooldown", cooling)
		}
		if l, _ := liveVCPUs(t, e.uri, observedNode(t, e, id, "edge", "worker-1").ID); l != 2 {
			t.Errorf("libvirt: worker-1 has %d vCPUs, want 2 (one action)", l)
		}
	})

	t.Run("horizontal: a full provider gives a new part elsewhere", func(t *testing.T) {
		v := e.ready(t, "hori",
			partDoc("core", "DC", "AMERICA.BRAZIL", "vm", 1, 1),
			partDoc("edge", "EDGE", "EUROPE.GREECE.ATHENS", "worker", 1, 2))
		id := v.Slice.ID
		e.install(t, v, cpu("cpu-high", "edge", 3))
		written := e.push(t, id, "worker-1", time.Second, 90, 95, 99)
		done := e.waitEvent(t, id, "cpu-high", elastic.EvActionFinished, written)
		t.Logf("reaction: %s from the points written to the new part ready", done.Time.Sub(written).Round(time.Millisecond))
		fb := e.waitEvent(t, id, "cpu-high", elastic.EvHorizontalFallback, written)
		if !strings.Contains(fb.Message, "provider full") || !strings.Contains(fb.Message, "not enough CPUs") {
			t.Errorf("fallback says %q", fb.Message)
		}
		got, err := e.engine.Get(ctx, "alice", id)
		if err != nil {
			t.Fatal(err)
		}
		np, ok := got.Part("edge-h1")
		if !ok || !np.Elastic || np.State != store.PartReady || np.Provider != e.provider("H") || len(np.Observed.Nodes) != 1 {
			t.Fatalf("new part: %+v", np)
		}
		if np.Observed.Nodes[0].CPUs != 2 {
			t.Errorf("the copy's node has %d vCPUs, want the template's 2", np.Observed.Nodes[0].CPUs)
		}
		if l, _ := liveVCPUs(t, e.uri, np.Observed.Nodes[0].ID); l != 2 {
			t.Errorf("libvirt: the new node has %d vCPUs", l)
		}
		if len(got.Links) != 1 || got.Links[0].Name != "core-to-edge-h1" || !got.Links[0].Elastic {
			t.Errorf("links %+v", got.Links)
		}
		if edge, _ := got.Part("edge"); edge.Observed.Nodes[0].CPUs != 2 {
			t.Errorf("the full part changed: %+v", edge.Observed.Nodes)
		}
		if h := holdOf(t, e, e.provider("F"), id+"/edge"); h.CPUs != 2 {
			t.Errorf("the full provider's ledger holds %+v", h)
		}
		reqs := post.requests()
		last := reqs[len(reqs)-1]
		if last.slice != id || last.part != "edge-h1" {
			t.Errorf("post-deploy request %+v", last)
		}
		// The new part is measured too.
		deadline := time.Now().Add(time.Minute)
		for {
			pts, err := e.col.Query(ctx, id, sdk.Query{Metric: sdk.MetricMemoryUsedMB, Tags: map[string]string{sdk.TagPart: "edge-h1"}, Last: 1})
			if err == nil && len(pts) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the new part is not monitored: %v %v", pts, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("a policy on a deleted slice stops", func(t *testing.T) {
		v := e.ready(t, "doomed", partDoc("edge", "EDGE", "EUROPE.SPAIN.MADRID", "worker", 1, 1))
		id := v.Slice.ID
		e.install(t, v, cpu("cpu-high", "edge", 3))
		key := id + "/cpu-high"
		if !contains(e.el.Policies(), key) {
			t.Fatalf("policies %v", e.el.Policies())
		}
		node := observedNode(t, e, id, "edge", "worker-1")
		if _, err := e.engine.Decommission(ctx, "alice", id); err != nil {
			t.Fatal(err)
		}
		// Points above the threshold arrive while the slice goes: nothing acts on them.
		_, _ = e.col.Push(ctx, id, []sdk.Point{
			{Metric: sdk.MetricCPUPercent, Tags: map[string]string{sdk.TagResourceID: "worker-1"}, Value: 99, Time: time.Now().Add(-time.Second)},
			{Metric: sdk.MetricCPUPercent, Tags: map[string]string{sdk.TagResourceID: "worker-1"}, Value: 99, Time: time.Now().Add(-time.Millisecond)},
			{Metric: sdk.MetricCPUPercent, Tags: map[string]string{sdk.TagResourceID: "worker-1"}, Value: 99},
		})
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := e.engine.WaitGone(wctx, id); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for contains(e.el.Policies(), key) {
			if time.Now().After(deadline) {
				t.Fatalf("policy of a deleted slice still evaluated: %v", e.el.Policies())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if pols, _ := e.store.ListPolicies(ctx, id); len(pols) != 0 {
			t.Errorf("policies left: %+v", pols)
		}
		conn, err := libvirt.NewConnect(e.uri)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if d, err := conn.LookupDomainByUUIDString(node.ID); err == nil {
			d.Free()
			t.Errorf("domain of the deleted slice still in libvirt")
		}
		if _, err := e.engine.Get(ctx, "", id); !errors.Is(err, sro.ErrNotFound) {
			t.Errorf("slice: %v", err)
		}
	})
}

func holdOf(t *testing.T, e *env, provider, holder string) sdk.Resources {
	t.Helper()
	l, err := e.store.GetLedger(context.Background(), provider)
	if err != nil {
		t.Fatal(err)
	}
	return l.Holds[holder].Resources
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
