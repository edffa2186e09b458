package api_test

import (
	"testing"
	"time"

	"github.com/necos/necos/api"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Timings is pure logic over a slice's events: these are written here as the engine
// records them (the route's test reads those of a real engine).
func TestTimingsFromEvents(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	evs := []store.Event{
		{Time: at(0), Type: "slice.accepted"},
		{Time: at(100), Type: "slice.planned"},
		{Time: at(100), Type: "part.creating", Part: "core"},
		{Time: at(100), Type: "part.creating", Part: "edge"},
		{Time: at(900), Type: "part.ready", Part: "edge"},
		{Time: at(1500), Type: "part.ready", Part: "core"},
		{Time: at(1500), Type: "link.connecting", Link: "core-edge"},
		{Time: at(1700), Type: "link.ready", Link: "core-edge"},
		{Time: at(1800), Type: "slice.ready"},
		{Time: at(2300), Type: "monitoring.started", Part: "core"},
		{Time: at(2400), Type: "monitoring.started", Part: "edge"},
		{Time: at(3000), Type: "service.deploying", Data: map[string]string{"service": "cdn"}},
		{Time: at(5000), Type: "service.deployed", Data: map[string]string{"service": "cdn"}},
		// A policy fires, a first action is refused by the backend, the next one runs.
		{Time: at(10000), Type: "elastic.fired", Part: "edge", Data: map[string]string{"policy": "cpu", "crossed": at(8000).Format(time.RFC3339Nano)}},
		{Time: at(10010), Type: "elastic.action-started", Data: map[string]string{"policy": "cpu", "action": "add-cpu"}},
		{Time: at(10020), Type: "elastic.action-failed", Data: map[string]string{"policy": "cpu", "action": "add-cpu"}},
		{Time: at(10030), Type: "elastic.action-started", Data: map[string]string{"policy": "cpu", "action": "add-node"}},
		{Time: at(12000), Type: "elastic.action-finished", Data: map[string]string{"policy": "cpu", "action": "add-node", "took": "2s"}},
		{Time: at(13000), Type: "elastic.post-deployed", Data: map[string]string{"policy": "cpu"}},
		// It fires again and is still acting; another policy's events do not mix in.
		{Time: at(20000), Type: "elastic.fired", Data: map[string]string{"policy": "cpu"}},
		{Time: at(20500), Type: "elastic.exhausted", Data: map[string]string{"policy": "mem"}},
		{Time: at(21000), Type: "slice.decommission-requested"},
	}
	now := at(22000)
	tm := api.Timings("s1", evs, now)
	type want struct {
		name, subject, outcome string
		seconds                float64
	}
	wants := []want{
		{"creation", "", v1.PhaseDone, 1.8},
		{"placement", "", v1.PhaseDone, 0.1},
		{"part", "core", v1.PhaseDone, 1.4},
		{"part", "edge", v1.PhaseDone, 0.8},
		{"link", "core-edge", v1.PhaseDone, 0.2},
		{"monitoring", "", v1.PhaseDone, 0.5},
		{"service", "cdn", v1.PhaseDone, 2},
		{"decommission", "", v1.PhaseRunning, 1},
	}
	if len(tm.Phases) != len(wants) {
		t.Fatalf("phases %+v", tm.Phases)
	}
	for i, w := range wants {
		p := tm.Phases[i]
		if p.Name != w.name || p.Subject != w.subject || p.Outcome != w.outcome || !near(p.Seconds, w.seconds) {
			t.Errorf("phase %d: %+v, want %+v", i, p, w)
		}
		if (p.End == nil) != (w.outcome == v1.PhaseRunning) {
			t.Errorf("phase %d end %v", i, p.End)
		}
	}
	if len(tm.Actions) != 2 {
		t.Fatalf("actions %+v", tm.Actions)
	}
	a := tm.Actions[0]
	if a.Policy != "cpu" || a.Part != "edge" || a.Action != "add-node" || a.Outcome != v1.PhaseDone ||
		!a.Crossed.Equal(at(8000)) || !a.Fired.Equal(at(10000)) || !a.Started.Equal(at(10010)) ||
		!a.Done.Equal(at(12000)) || !a.PostDeployed.Equal(at(13000)) {
		t.Errorf("first action %+v", a)
	}
	chain := map[string]float64{"decision": 2, "action": 2, "post-deployment": 1, "reaction": 4}
	if len(a.Phases) != len(chain) {
		t.Errorf("first action's phases %+v", a.Phases)
	}
	for _, p := range a.Phases {
		if want, ok := chain[p.Name]; !ok || !near(p.Seconds, want) || p.Outcome != v1.PhaseDone {
			t.Errorf("phase %+v, want %v s", p, want)
		}
	}
	b := tm.Actions[1]
	if b.Outcome != v1.PhaseRunning || b.Crossed != nil || b.Done != nil || len(b.Phases) != 1 ||
		b.Phases[0].Name != "action" || b.Phases[0].Outcome != v1.PhaseRunning || !near(b.Phases[0].Seconds, 2) {
		t.Errorf("second action %+v", b)
	}
}

// A slice no provider can host: placement and creation failed; one that fails while
// building rolls back.
func TestTimingsOfFailures(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	tm := api.Timings("s", []store.Event{
		{Time: t0, Type: "slice.accepted"},
		{Time: t0.Add(time.Second), Type: "slice.refused", Message: "no room"},
	}, t0.Add(time.Hour))
	if len(tm.Phases) != 2 || tm.Phases[0].Outcome != v1.PhaseFailed || tm.Phases[1].Outcome != v1.PhaseFailed ||
		tm.Phases[1].Message != "no room" {
		t.Errorf("refused: %+v", tm.Phases)
	}
	tm = api.Timings("s", []store.Event{
		{Time: t0, Type: "slice.accepted"},
		{Time: t0, Type: "slice.planned"},
		{Time: t0, Type: "part.creating", Part: "p"},
		// necosd restarted: the part is created again, its phase keeps its first start.
		{Time: t0.Add(time.Second), Type: "part.creating", Part: "p"},
		{Time: t0.Add(2 * time.Second), Type: "part.failed", Part: "p", Message: "boom"},
		{Time: t0.Add(2 * time.Second), Type: "slice.rolling-back"},
		{Time: t0.Add(3 * time.Second), Type: "slice.failed", Message: "boom"},
	}, t0.Add(time.Hour))
	got := map[string]v1.Phase{}
	for _, p := range tm.Phases {
		got[p.Name] = p
	}
	if p := got["part"]; p.Outcome != v1.PhaseFailed || !near(p.Seconds, 2) || p.Message != "boom" {
		t.Errorf("part %+v", p)
	}
	if p := got["rollback"]; p.Outcome != v1.PhaseDone || !near(p.Seconds, 1) {
		t.Errorf("rollback %+v", p)
	}
	if p := got["creation"]; p.Outcome != v1.PhaseFailed || !near(p.Seconds, 3) {
		t.Errorf("creation %+v", p)
	}
}

func TestEffectiveAt(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	pt := func(node string, s int, v float64) sdk.Point {
		return sdk.Point{Metric: "cpu", Tags: map[string]string{sdk.TagResourceID: node}, Time: t0.Add(time.Duration(s) * time.Second), Value: v}
	}
	above := func(v float64) bool { return v > 80 }
	for _, tc := range []struct {
		name string
		pts  []sdk.Point
		want int // seconds after t0; -1: never
	}{
		{"no points", nil, -1},
		{"always above", []sdk.Point{pt("a", 1, 90), pt("a", 2, 95)}, -1},
		{"drops", []sdk.Point{pt("a", 1, 90), pt("a", 2, 50), pt("a", 3, 95)}, 2},
		// Series come one after the other; b is still above when a drops.
		{"waits for every series", []sdk.Point{pt("a", 1, 90), pt("a", 2, 50), pt("a", 3, 40), pt("b", 1, 90), pt("b", 2, 90), pt("b", 3, 10)}, 3},
		{"same instant", []sdk.Point{pt("a", 1, 10), pt("b", 1, 90), pt("b", 2, 10)}, 2},
		{"below from the start", []sdk.Point{pt("a", 1, 10)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := api.EffectiveAt(tc.pts, above)
			if tc.want < 0 {
				if !got.IsZero() {
					t.Fatalf("effective at %s", got)
				}
				return
			}
			if want := t0.Add(time.Duration(tc.want) * time.Second); !got.Equal(want) {
				t.Fatalf("effective at %s, want %s", got, want)
			}
		})
	}
}

func near(a, b float64) bool { d := a - b; return d < 1e-6 && d > -1e-6 }
