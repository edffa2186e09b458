package spec

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// scaleIn is a scale-in policy posted alone, with every kind of scale-in action.
const scaleIn = `policy:
  name: cpu-low
  part: edge
  operator: '<'
  value: 20
  trigger: {time-window: 120}
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION}
  deployment:
    constraints:
      vertical: {min-nodes: 1, min-cpus: 1}
  post-deployment:
    timers: {reactivate-elasticity: 600}
    actions:
      vertical:
        - action: remove-node
        - action: {type: remove-cpu, vdu: worker, value: 2, min: 2}
        - action: {type: remove-memory}
      horizontal:
        - action: remove-part
          priority: 1
`

func TestParseScaleIn(t *testing.T) {
	p, err := ParsePolicy([]byte(scaleIn))
	if err != nil {
		t.Fatal(err)
	}
	if !p.ScalesIn() {
		t.Error("a policy of remove actions does not scale in")
	}
	wantV := []Action{{Type: ActionRemoveNode}, {Type: ActionRemoveCPU, VDU: "worker", Value: 2, Min: 2}, {Type: ActionRemoveMemory}}
	if got := p.VerticalActions(); !reflect.DeepEqual(got, wantV) {
		t.Errorf("vertical %+v, want %+v", got, wantV)
	}
	if got := p.HorizontalActions(); !reflect.DeepEqual(got, []Action{{Type: ActionRemovePart}}) {
		t.Errorf("horizontal %+v", got)
	}
	if v := p.Deployment.Constraints.Vertical; v.MinNodes != 1 || v.MinCPUs != 1 || v.MinMemoryMB != 0 {
		t.Errorf("vertical constraints %+v", v)
	}
	// The JSON form carries min and the floors, and reads back the same.
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"vertical":{"min-nodes":1,"min-cpus":1}`, `{"action":{"type":"remove-cpu","vdu":"worker","value":2,"min":2}}`,
		`"horizontal":[{"action":{"type":"remove-part"},"priority":1}]`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON lacks %s:\n%s", want, data)
		}
	}
	back, err := ParsePolicy(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p) {
		t.Errorf("JSON round trip\n%+v\nwant\n%+v", back, p)
	}

	// A horizontal constraint alone adds a part only for a policy that grows: remove-part
	// takes its template from it, and no location.
	q, err := ParsePolicy([]byte(`{name: p, part: edge, operator: '<', value: 5, trigger: {points: 3}, metric-collector: {metric-name: cpu},
  deployment: {constraints: {horizontal: {location: EUROPE.GREECE, template: core}}},
  post-deployment: {actions: {vertical: [{action: remove-node}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := q.HorizontalActions(); len(got) != 0 {
		t.Errorf("a scale-in policy got horizontal actions from its constraint: %+v", got)
	}
	q.PostDeployment.Actions.Horizontal = []HorizontalAction{{Action: Action{Type: ActionRemovePart}}}
	if got := q.HorizontalActions(); !reflect.DeepEqual(got, []Action{{Type: ActionRemovePart, Template: "core"}}) {
		t.Errorf("remove-part with a horizontal constraint: %+v", got)
	}
	// A policy without actions grows (one more node), as before.
	if (&Policy{}).ScalesIn() || (&Policy{PostDeployment: &PostDeployment{}}).ScalesIn() {
		t.Error("a policy without actions scales in")
	}
	for a, want := range map[Action]int64{
		{Type: ActionRemoveMemory}: 1024, {Type: ActionRemoveCPU}: 1, {Type: ActionRemoveNode, Value: 2}: 2, {Type: ActionRemovePart}: 1,
	} {
		if got := a.Step(); got != want {
			t.Errorf("Step(%+v) = %d, want %d", a, got, want)
		}
	}
}

func TestScaleInProblems(t *testing.T) {
	const acts = "post-deployment.actions."
	const pol = "policy." + acts
	for _, c := range []struct{ name, old, new, path, msg string }{
		{"grow and shrink", "        - action: remove-node\n", "        - action: add-node\n",
			pol + "vertical[1].action.type", "remove-cpu shrinks the slice, but actions.vertical[0].action is add-node, which grows the slice: a policy's actions all grow the slice or all shrink it"},
		{"add-part among scale-in", "        - action: remove-part\n", "        - action: add-part\n",
			pol + "horizontal[0].action.type", "add-part grows the slice, but actions.vertical[0].action is remove-node, which shrinks the slice"},
		{"shrink after grow horizontally", "      vertical:\n        - action: remove-node\n        - action: {type: remove-cpu, vdu: worker, value: 2, min: 2}\n        - action: {type: remove-memory}\n", "",
			"", ""}, // valid: remove-part alone, without a location anywhere
		{"max on remove", "value: 2, min: 2", "value: 2, max: 4", pol + "vertical[1].action.max", "remove-cpu shrinks: it has a floor (min), not a limit (max)"},
		{"negative min", "value: 2, min: 2", "min: -2", pol + "vertical[1].action.min", "must be > 0, got -2"},
		{"min on remove-part", "        - action: remove-part\n", "        - action: {type: remove-part, min: 1}\n",
			pol + "horizontal[0].action.min", "only remove-node, remove-cpu, remove-memory have a floor (min)"},
		{"location on remove-part", "        - action: remove-part\n", "        - action: {type: remove-part, location: EUROPE.GREECE}\n",
			pol + "horizontal[0].action.location", "remove-part removes the newest copy of its template wherever it is"},
		{"unknown vertical", "action: {type: remove-memory}", "action: {type: remove-gpu}",
			pol + "vertical[2].action.type", `a vertical action is add-node, add-cpu, add-memory (or, to scale in, remove-node, remove-cpu, remove-memory), got "remove-gpu"`},
		{"remove-part as vertical", "action: {type: remove-memory}", "action: {type: remove-part}", pol + "vertical[2].action.type", "a vertical action is"},
		{"remove-node as horizontal", "        - action: remove-part\n", "        - action: remove-node\n",
			pol + "horizontal[0].action.type", `a horizontal action is add-part (or, to scale in, remove-part), got "remove-node"`},
		{"floor above cap", "{min-nodes: 1, min-cpus: 1}", "{min-nodes: 3, max-nodes: 2}", "policy.deployment.constraints.vertical.min-nodes", "exceeds max-nodes (2), got 3"},
		{"negative floor", "{min-nodes: 1, min-cpus: 1}", "{min-memory-mb: -1}", "policy.deployment.constraints.vertical", "limits must be >= 0"},
		{"floor not a number", "{min-nodes: 1, min-cpus: 1}", "{min-cpus: many}", "policy.deployment.constraints.vertical.min-cpus", "got string"},
		{"trigger nodes unknown", "{time-window: 120}", "{time-window: 120, nodes: most}", "policy.trigger.nodes",
			`must be any (fire when some node satisfies the threshold), all (only when every node does) or average (when their mean does), got "most"`},
		{"trigger nodes average over a window", "{time-window: 120}", "{time-window: 120, nodes: average}", "policy.trigger.nodes",
			"average needs {points: N}"},
		{"trigger nodes average", "{time-window: 120}", "{points: 3, nodes: Average}", "", ""},
		{"trigger nodes not a string", "{time-window: 120}", "{time-window: 120, nodes: [all]}", "policy.trigger.nodes", "must be a string"},
		{"trigger nodes any", "{time-window: 120}", "{time-window: 120, nodes: ANY}", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(replace(t, scaleIn, c.old, c.new)))
			if c.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantProblem(t, err, c.path, c.msg)
		})
	}
	// The same rule in a grow policy: min belongs to scale-in.
	_, err := ParsePolicy([]byte(`{name: p, part: edge, operator: '>', value: 80, trigger: {points: 3}, metric-collector: {metric-name: cpu},
  post-deployment: {actions: {vertical: [{action: {type: add-node, min: 2}}]}}}`))
	wantProblem(t, err, acts+"vertical[0].action.min", "add-node grows: it has a limit (max), not a floor (min)")
}

func TestFloor(t *testing.T) {
	given := &VDU{Name: "worker", Instances: 2, CPUs: 2, MemoryMB: 1024}
	bare := &Policy{}
	floored := &Policy{Deployment: &Deployment{Constraints: ElasticityConstraints{Vertical: &VerticalLimits{MinNodes: 3, MinCPUs: 4, MaxCPUs: 8}}}}
	for _, c := range []struct {
		name  string
		p     *Policy
		a     Action
		given *VDU
		want  int64
	}{
		{"nodes: the spec's count", bare, Action{Type: ActionRemoveNode}, given, 2},
		{"nodes: min above the spec", bare, Action{Type: ActionRemoveNode, Min: 3}, given, 3},
		{"nodes: min below the spec", bare, Action{Type: ActionRemoveNode, Min: 1}, given, 2},
		{"nodes: never none", bare, Action{Type: ActionRemoveNode}, nil, 1},
		{"nodes: instance-count absent", bare, Action{Type: ActionRemoveNode}, &VDU{}, 1},
		{"nodes: the constraint", floored, Action{Type: ActionRemoveNode, Min: 1}, given, 3},
		{"cpus: the spec's size", bare, Action{Type: ActionRemoveCPU, Min: 1}, given, 2},
		{"cpus: the constraint", floored, Action{Type: ActionRemoveCPU}, nil, 4},
		{"memory: the spec's size", bare, Action{Type: ActionRemoveMemory}, given, 1024},
		{"memory: min above the spec", bare, Action{Type: ActionRemoveMemory, Min: 2048}, given, 2048},
		{"memory: not in the spec", bare, Action{Type: ActionRemoveMemory, Min: 256}, nil, 256},
	} {
		if got := c.p.Floor(c.a, c.given); got != c.want {
			t.Errorf("%s: Floor = %d, want %d", c.name, got, c.want)
		}
	}
}

// trigger.nodes: a scale-in policy fires only when every node is idle unless it says
// any; a growing one on a node unless it says all; the field reads back from JSON.
func TestTriggerNodes(t *testing.T) {
	grow := `{name: p, part: edge, operator: '>', value: 80, trigger: {points: 3%s}, metric-collector: {node-type: worker, metric-name: cpu}}`
	shrink := `{name: p, part: edge, operator: '<', value: 20, trigger: {points: 3%s}, metric-collector: {metric-name: cpu},
  post-deployment: {actions: {vertical: [{action: remove-node}]}}}`
	for _, c := range []struct {
		doc, nodes string
		every      bool
		condition  string
	}{
		{grow, "", false, "p: cpu > 80 on worker nodes for 3 points"},
		{grow, ", nodes: all", true, "p: cpu > 80 on every worker node for 3 points"},
		{grow, ", nodes: any", false, "p: cpu > 80 on worker nodes for 3 points"},
		{shrink, "", true, "p: cpu < 20 on every node for 3 points"},
		{shrink, ", nodes: any", false, "p: cpu < 20 on all nodes for 3 points"},
		{shrink, ", nodes: All", true, "p: cpu < 20 on every node for 3 points"},
		{grow, ", nodes: average", false, "p: cpu > 80 on the mean of worker nodes for 3 points"},
		{shrink, ", nodes: average", false, "p: cpu < 20 on the mean of all nodes for 3 points"},
	} {
		doc := fmt.Sprintf(c.doc, c.nodes)
		p, err := ParsePolicy([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if p.EveryNode() != c.every || p.String() != c.condition {
			t.Errorf("%s: every node %v, %q; want %v, %q", doc, p.EveryNode(), p.String(), c.every, c.condition)
		}
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Policy
		if err := json.Unmarshal(raw, &back); err != nil || back.Trigger != p.Trigger || back.EveryNode() != c.every {
			t.Errorf("%s: read back %+v, %v from %s", doc, back.Trigger, err, raw)
		}
	}
}
