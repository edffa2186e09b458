package elastic

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
)

// A vertical action refused for the tenant's budget is recorded with its reason, and
// passes to the next action as one at its limit does: here none is left.
func TestActionOverBudget(t *testing.T) {
	st := openStore(t)
	v := readySlice(t, st, "s1")
	g := &gate{st: st, calls: make(chan string, 10), release: make(chan error)}
	runGated(t, st, g, &hotMonitor{value: 95})

	p, err := spec.ParsePolicy([]byte(`policy: {name: hot, part: edge, operator: '>', value: 80, trigger: {points: 2},
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: 1},
  post-deployment: {timers: {reactivate-elasticity: 60}, actions: {vertical: [{action: {type: add-cpu, max: 4}}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), st, v, p, SourceAPI); err != nil {
		t.Fatal(err)
	}
	<-g.calls
	refused := fmt.Errorf("resize part s1/edge (node worker-1 of VDU worker to 2 vCPUs) at P: %w",
		&broker.BudgetError{Price: 12, Unit: "per machine per day", Budget: broker.Budget{Model: broker.PerMachinePerDay, Op: "<=", Euros: 10}})
	g.release <- refused
	waitFor(t, "the refusal's events", func() bool { return count(t, st, "s1", EvExhausted) == 1 })
	evs, err := st.Events(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	var failed, exhausted *store.Event
	for i := range evs {
		switch evs[i].Type {
		case EvActionFailed:
			failed = &evs[i]
		case EvExhausted:
			exhausted = &evs[i]
		}
	}
	if failed == nil || failed.Message != refused.Error() || failed.Data["action"] != spec.ActionAddCPU {
		t.Errorf("action-failed event %+v, want it to say %q", failed, refused)
	}
	if !strings.Contains(exhausted.Message, "over budget") {
		t.Errorf("exhausted event %+v does not say the budget refused", exhausted)
	}
	if n := count(t, st, "s1", EvActionFinished); n != 0 {
		t.Errorf("%d actions recorded done", n)
	}
}
