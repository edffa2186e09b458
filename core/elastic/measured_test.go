package elastic

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/sdk"
)

// spacedMonitor answers every query with a node's points every `every`, the newest
// stamped now, at value, as a part measured that often has them.
type spacedMonitor struct {
	hotMonitor
	every time.Duration
	mu    sync.Mutex
	asked []sdk.Query
}

func (m *spacedMonitor) Query(_ context.Context, q sdk.Query) ([]sdk.Point, error) {
	m.mu.Lock()
	m.asked = append(m.asked, q)
	m.mu.Unlock()
	now := time.Now()
	tags := map[string]string{sdk.TagSlice: q.Tags[sdk.TagSlice], sdk.TagPart: q.Tags[sdk.TagPart], sdk.TagResourceID: "worker-1", sdk.TagNodeType: "worker"}
	var out []sdk.Point
	for i := 5; i >= 0; i-- {
		if at := now.Add(-time.Duration(i) * m.every); !at.Before(q.Start) {
			out = append(out, sdk.Point{Metric: q.Metric, Tags: tags, Value: 95, Time: at})
		}
	}
	return out, nil
}

func (m *spacedMonitor) Monitor(context.Context) (sdk.Monitor, error) { return m, nil }

// A policy evaluated more often than its part's metric is measured (granularity 1 s on a
// part measured every 3 s) still sees its last 3 points: it looks back over the
// measurements, not over its own evaluation periods. Looking back 5 evaluation periods
// (5 s) it found two points of three and never fired.
func TestPolicyFinerThanItsMeasurements(t *testing.T) {
	st := openStore(t)
	v := readySlice(t, st, "s1", "monitoring-parameters: {granularity-secs: 3}")
	g := &gate{st: st, calls: make(chan string, 10), release: make(chan error, 1)}
	mon := &spacedMonitor{every: 3 * time.Second}
	runGated(t, st, g, mon)
	p, err := spec.ParsePolicy([]byte(`policy: {name: fine, part: edge, operator: '>', value: 80, trigger: {points: 3},
  metric-collector: {metric-name: PERCENT_CPU_UTILIZATION, granularity: 1},
  post-deployment: {actions: {vertical: [{action: {type: add-cpu, max: 4}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), st, v, p, SourceAPI); err != nil {
		t.Fatal(err)
	}
	select {
	case node := <-g.calls:
		if node != "worker-1" {
			t.Errorf("resized node %q", node)
		}
		g.release <- nil
	case <-time.After(20 * time.Second):
		mon.mu.Lock()
		defer mon.mu.Unlock()
		t.Fatalf("the policy never fired on 3 points measured every 3 s; it asked %+v", mon.asked)
	}
	evs, err := st.Events(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Type == EvArmed && !strings.Contains(ev.Message, "measured every 3s") {
			t.Errorf("armed event does not say how often the metric is measured: %q", ev.Message)
		}
	}
}
