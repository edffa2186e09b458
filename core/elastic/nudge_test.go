package elastic

import (
	"context"
	"testing"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/sdk"
)

// queriedMonitor is a hotMonitor that says when it has answered a query.
type queriedMonitor struct {
	hotMonitor
	answered chan struct{}
}

func (m *queriedMonitor) Query(ctx context.Context, q sdk.Query) ([]sdk.Point, error) {
	pts, err := m.hotMonitor.Query(ctx, q)
	select {
	case m.answered <- struct{}{}:
	default:
	}
	return pts, err
}

func (m *queriedMonitor) Monitor(context.Context) (sdk.Monitor, error) { return m, nil }

// A policy is judged as soon as its slice's points are stored (Measured), not at its
// next period: here an hour, so without Measured the action would wait an hour.
func TestMeasuredJudgesAtOnce(t *testing.T) {
	st := openStore(t)
	v := readySlice(t, st, "s1")
	g := &gate{st: st, calls: make(chan string, 10), release: make(chan error, 1)}
	mon := &queriedMonitor{hotMonitor: hotMonitor{value: 50}, answered: make(chan struct{}, 1)}
	e := runGated(t, st, g, mon)
	p, err := spec.ParsePolicy([]byte(`policy: {name: hourly, part: edge, operator: '>', value: 80, trigger: {points: 2},
  metric-collector: {metric-name: PERCENT_CPU_UTILIZATION, granularity: 3600},
  post-deployment: {actions: {vertical: [{action: {type: add-cpu, max: 4}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), st, v, p, SourceAPI); err != nil {
		t.Fatal(err)
	}
	// The first judgement, on points at 50 %, as the policy is armed.
	select {
	case <-mon.answered:
	case <-time.After(30 * time.Second):
		t.Fatal("the policy was never judged")
	}
	mon.set(95)
	// Points of another slice change nothing here.
	e.Measured("s2")
	select {
	case node := <-g.calls:
		t.Fatalf("the policy acted (on %s) on another slice's points", node)
	case <-time.After(300 * time.Millisecond):
	}
	e.Measured("s2", "s1")
	select {
	case node := <-g.calls:
		if node != "worker-1" {
			t.Errorf("resized node %q, want worker-1", node)
		}
		g.release <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("the policy did not act within 30 s of its slice's points being stored (its period is an hour)")
	}
}
