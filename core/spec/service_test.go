package spec

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// serviceDoc is a service deployment using references, manifests and a policy.
const serviceDoc = `slices:
  sliced:
    id: IoTService_sliced
    slice-parts:
      - dc-slice-part:
          name: dc-slice1
          vdus:
            - vdu:
                name: k8s-master
                VIM: KUBERNETES
                namespace: dojot
                commands:
                  - echo ${parts.dc-slice1.vdus.k8s-master.ip} $coreip ${HOME}
                manifests:
                  - apiVersion: v1
                    kind: ConfigMap
                    metadata: {name: edge}
                    data: {core: "${parts.dc-slice1.vim-ref.ip-api}"}
          elasticity:
            - policy:
                name: cpu-high
                operator: '>'
                value: 80
                trigger: {points: 3}
                metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: default}
                deployment:
                  constraints:
                    horizontal: {location: EUROPE.GREECE}
                post-deployment:
                  timers: {service-redeployment: 30, reactivate-elasticity: 120}
                  actions:
                    vertical:
                      - action: add-node
                      - action: {type: add-cpu, value: 1, max: 4}
                    horizontal:
                      - action: {type: add-part}
                        priority: 1
`

func TestParseService(t *testing.T) {
	svc, err := ParseService([]byte(serviceDoc))
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Warnings) > 0 {
		t.Errorf("warnings %v", svc.Warnings)
	}
	v := svc.Parts[0].VDUs[0]
	if v.Name != "k8s-master" || v.VIM != "KUBERNETES" || v.Namespace != "dojot" || len(v.Commands) != 1 || len(v.Manifests) != 1 {
		t.Fatalf("vdu %+v", v)
	}
	if !strings.HasPrefix(v.Manifests[0], "apiVersion: v1\nkind: ConfigMap\n") {
		t.Errorf("manifest keeps its key order: %q", v.Manifests[0])
	}
	pols := svc.Policies()
	if len(pols) != 1 {
		t.Fatalf("policies %+v", pols)
	}
	p := pols[0]
	want := Policy{
		Name: "cpu-high", Part: "dc-slice1", Operator: ">", Value: 80, Trigger: Trigger{Points: 3},
		Collector:  Collector{NodeType: NodeWorker, Metric: "PERCENT_CPU_UTILIZATION"},
		Deployment: &Deployment{Constraints: ElasticityConstraints{Horizontal: &HorizontalTarget{Location: "EUROPE.GREECE"}}},
		PostDeployment: &PostDeployment{
			Timers: Timers{ServiceRedeploymentSecs: 30, ReactivateSecs: 120},
			Actions: Actions{
				Vertical:   []VerticalAction{{Action: Action{Type: ActionAddNode}}, {Action: Action{Type: ActionAddCPU, Value: 1, Max: 4}}},
				Horizontal: []HorizontalAction{{Action: Action{Type: ActionAddPart}, Priority: 1}},
			},
		},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("policy\n%+v\nwant\n%+v", p, want)
	}
}

func TestParseServiceManifestForms(t *testing.T) {
	doc := `slices: {sliced: {id: s, slice-parts: [{dc-slice-part: {name: p, vdus: [
  {vdu: {name: a, manifests: "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"}},
  {vdu: {name: b, manifests: ["kind: A", {apiVersion: v1, kind: Pod, metadata: {name: q}}]}}]}}]}}`
	svc, err := ParseService([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	vdus := svc.Parts[0].VDUs
	if len(vdus[0].Manifests) != 1 || len(vdus[1].Manifests) != 2 || !strings.Contains(vdus[1].Manifests[1], "kind: Pod") {
		t.Errorf("manifests %+v", vdus)
	}
}

func TestParseServiceProblems(t *testing.T) {
	const part = "slices.sliced.slice-parts[0].dc-slice-part"
	const pol = part + ".elasticity[0].policy"
	cases := []struct{ name, old, new, path, msg string }{
		{"missing id", "    id: IoTService_sliced\n", "", "slices.sliced.id", "required"},
		{"missing part name", "          name: dc-slice1\n", "", part + ".name", "required"},
		{"missing vdu name", "                name: k8s-master\n", "", part + ".vdus[0].vdu.name", "required"},
		{"bad namespace", "namespace: dojot", "namespace: Dojot_NS", part + ".vdus[0].vdu.namespace", "Kubernetes namespace"},
		{"command not a string", "                  - echo ${parts", "                  - {run: x}\n                  - echo ${parts", part + ".vdus[0].vdu.commands[0]", "must be a command (a string), got a mapping"},
		{"manifest without kind", "kind: ConfigMap", "kindx: ConfigMap", part + ".vdus[0].vdu.manifests[0]", "needs apiVersion and kind"},
		{"manifest number", "                manifests:\n", "                manifests: 3\n                old:\n", part + ".vdus[0].vdu.manifests", "must be a Kubernetes manifest"},
		{"net part", "      - dc-slice-part:", "      - net-slice-part: {name: x}\n      - dc-slice-part:", "slices.sliced.slice-parts[0].net-slice-part", "dc-slice-parts only"},
		{"policy operator", "operator: '>'", "operator: '>>'", pol + ".operator", `must be one of '>', '<', '>=', '<=', '=', got ">>"`},
		{"policy missing operator", "                operator: '>'\n", "", pol + ".operator", "required"},
		{"policy value string", "value: 80", "value: high", pol + ".value", `must be a number, got string "high"`},
		{"policy missing value", "                value: 80\n", "", pol + ".value", "required"},
		{"policy trigger both", "trigger: {points: 3}", "trigger: {points: 3, time-window: 60}", pol + ".trigger", "not both"},
		{"policy trigger none", "trigger: {points: 3}", "trigger: {}", pol + ".trigger", "required"},
		{"policy trigger negative", "trigger: {points: 3}", "trigger: {points: -3}", pol + ".trigger.points", "must be an integer >= 0, got -3"},
		{"policy metric", "metric-name: PERCENT_CPU_UTILIZATION, ", "", pol + ".metric-collector.metric-name", "required"},
		{"policy node type", "node-type: worker", "node-type: edge", pol + ".metric-collector.node-type", "must be master or worker"},
		{"policy granularity", "granularity: default", "granularity: often", pol + ".metric-collector.granularity", `"default" or a number of seconds`},
		{"policy granularity zero", "granularity: default", "granularity: 0", pol + ".metric-collector.granularity", "positive"},
		{"policy location", "location: EUROPE.GREECE", "location: 'EUROPE GREECE'", pol + ".deployment.constraints.horizontal.location", "dot-separated"},
		{"policy action type", "action: add-node", "action: add-gpu", pol + ".post-deployment.actions.vertical[0].action.type", `got "add-gpu"`},
		{"policy horizontal in vertical", "action: add-node", "action: add-part", pol + ".post-deployment.actions.vertical[0].action.type", "a vertical action is"},
		{"policy step above max", "value: 1, max: 4", "value: 8, max: 4", pol + ".post-deployment.actions.vertical[1].action.value", "one step (8) exceeds max (4)"},
		{"policy negative max", "value: 1, max: 4", "max: -4", pol + ".post-deployment.actions.vertical[1].action.max", "must be > 0"},
		{"policy missing action", "- action: add-node", "- priority: 1", pol + ".post-deployment.actions.vertical[0].action", "required"},
		{"policy horizontal without location", "                deployment:\n                  constraints:\n                    horizontal: {location: EUROPE.GREECE}\n", "",
			pol + ".post-deployment.actions.horizontal[0].action.location", "required here or as deployment.constraints.horizontal.location"},
		{"policy negative priority", "priority: 1", "priority: -1", pol + ".post-deployment.actions.horizontal[0].priority", ">= 0"},
		{"policy timers", "reactivate-elasticity: 120", "reactivate-elasticity: -1", pol + ".post-deployment.timers.reactivate-elasticity", ">= 0"},
		{"policy other part", "                name: cpu-high\n", "                name: cpu-high\n                part: dc-slice2\n", pol + ".part", "watches that part"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseService([]byte(replace(t, serviceDoc, c.old, c.new)))
			wantProblem(t, err, c.path, c.msg)
		})
	}
}

func TestParseServiceMergeConflicts(t *testing.T) {
	doc := `slices:
  sliced:
    id: s
    slice-parts:
    - dc-slice-part:
      name: p
      vdus:
      - vdu:
        name: a
        namespace: one
        elasticity: []
      elasticity:
      - policy: {name: x, operator: '>', value: 1, trigger: {points: 1}, metric-collector: {metric-name: M}}
    - dc-slice-part:
      name: p
      vdus:
      - vdu:
        name: a
        namespace: two
      elasticity:
      - policy: {name: x, operator: '>', value: 1, trigger: {points: 1}, metric-collector: {metric-name: M}}
`
	_, err := ParseService([]byte(doc))
	wantProblem(t, err, "slices.sliced.slice-parts[1].dc-slice-part.vdus[0].vdu.namespace", "was given namespace one before, got two")
	wantProblem(t, err, "slices.sliced.slice-parts[1].dc-slice-part.elasticity[0].policy.name", `duplicate policy name "x" in part p`)
}

func TestPolicyJSON(t *testing.T) {
	svc, err := ParseService([]byte(serviceDoc))
	if err != nil {
		t.Fatal(err)
	}
	p := svc.Parts[0].Policies[0]
	data, err := json.Marshal(&p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"metric-collector":{"node-type":"worker","metric-name":"PERCENT_CPU_UTILIZATION","granularity":"default"}`,
		`"trigger":{"points":3}`, `"actions":{"vertical":[{"action":{"type":"add-node"}}`, `"reactivate-elasticity":120`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON lacks %s:\n%s", want, data)
		}
	}
	var back Policy
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p) {
		t.Errorf("JSON round trip\n%+v\nwant\n%+v", back, p)
	}
	// A bad policy posted as JSON gets the same messages as in YAML.
	bad := []byte(`{"name": "p", "part": "a", "operator": "~", "value": 1, "trigger": {"points": 1}, "metric-collector": {"metric-name": "M", "granularity": 15}}`)
	_, err = ParsePolicy(bad)
	wantProblem(t, err, "operator", `got "~"`)
	// Unmarshalling checks types, not rules, so that a stored policy always reads back.
	if err := json.Unmarshal(bad, &back); err != nil || back.Operator != "~" || back.Collector.GranularitySecs != 15 {
		t.Errorf("unmarshal: %v %+v", err, back)
	}
	err = json.Unmarshal([]byte(`{"name": "p", "value": "high"}`), &back)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %v", err)
	}
	wantProblem(t, e, "value", `must be a number, got string "high"`)
	// And {policy: ...} is accepted too.
	pol, err := ParsePolicy([]byte(`{"policy": {"name": "p", "part": "dc-slice2", "operator": "<=", "value": 10, "trigger": {"time-window": 60}, "metric-collector": {"metric-name": "M", "granularity": 15}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if pol.Part != "dc-slice2" || pol.Trigger.WindowSecs != 60 || pol.Collector.GranularitySecs != 15 {
		t.Errorf("policy %+v", pol)
	}
	if pol.String() != "p: M <= 10 on all nodes for 60s" {
		t.Errorf("String() = %s", pol.String())
	}
	_, err = ParsePolicy([]byte(`{"name": "p", "operator": "<", "value": 1, "trigger": {"points": 1}, "metric-collector": {"metric-name": "M"}}`))
	wantProblem(t, err, "part", "required")
}

func TestPolicySemantics(t *testing.T) {
	p := &Policy{Operator: ">", Value: 80}
	if !p.Compare(80.5) || p.Compare(80) || !p.Holds([]float64{81, 90}) || p.Holds([]float64{81, 70}) || p.Holds(nil) {
		t.Error("Compare/Holds with >")
	}
	for op, want := range map[string][3]bool{"<": {true, false, false}, "<=": {true, true, false}, ">=": {false, true, true}, "=": {false, true, false}} {
		p.Operator = op
		if got := [3]bool{p.Compare(79), p.Compare(80), p.Compare(81)}; got != want {
			t.Errorf("%s: %v", op, got)
		}
	}
	if p.Cooldown() != DefaultCooldown {
		t.Error("default cooldown")
	}
	// No actions at all: one more node, as the original did; a horizontal target alone
	// means one add-part there.
	p.Deployment = &Deployment{Constraints: ElasticityConstraints{Horizontal: &HorizontalTarget{Location: "EUROPE.GREECE", Template: "dc-slice2"}}}
	if got := p.VerticalActions(); !reflect.DeepEqual(got, []Action{{Type: ActionAddNode}}) {
		t.Errorf("vertical %+v", got)
	}
	if got := p.HorizontalActions(); !reflect.DeepEqual(got, []Action{{Type: ActionAddPart, Location: "EUROPE.GREECE", Template: "dc-slice2"}}) {
		t.Errorf("horizontal %+v", got)
	}
	p.PostDeployment = &PostDeployment{Timers: Timers{ReactivateSecs: 60}, Actions: Actions{
		Horizontal: []HorizontalAction{
			{Action: Action{Type: ActionAddPart, Location: "AMERICA.BRAZIL.UFSCAR"}, Priority: 2},
			{Action: Action{Type: ActionAddPart}, Priority: 1},
		},
	}}
	if p.Cooldown() != time.Minute {
		t.Error("cooldown")
	}
	if got := p.VerticalActions(); len(got) != 0 {
		t.Errorf("only horizontal actions written: %+v", got)
	}
	got := p.HorizontalActions()
	if len(got) != 2 || got[0].Location != "EUROPE.GREECE" || got[1].Location != "AMERICA.BRAZIL.UFSCAR" || got[1].Template != "dc-slice2" {
		t.Errorf("by priority: %+v", got)
	}
	if (Action{Type: ActionAddMemory}).Step() != 1024 || (Action{Type: ActionAddCPU}).Step() != 1 || (Action{Type: ActionAddNode, Value: 2}).Step() != 2 {
		t.Error("Step")
	}
	if err := (&Policy{Name: "x"}).Validate(); err == nil {
		t.Error("an empty policy must not validate")
	}
}

func TestPolicyTargets(t *testing.T) {
	s, err := ParseSlice([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	core, edge := &s.Parts[0], &s.Parts[1]
	for _, c := range []struct {
		a    Action
		part *DCPart
		want string
	}{
		{Action{Type: ActionAddNode}, core, "k8s-node"},
		{Action{Type: ActionAddNode, VDU: "k8s-master"}, core, "k8s-master"},
		{Action{Type: ActionAddCPU}, edge, "vm"},
		{Action{Type: ActionAddNode, VDU: "nothing"}, core, ""},
	} {
		got := ""
		if v, ok := c.a.VDUFor(c.part); ok {
			got = v.Name
		}
		if got != c.want {
			t.Errorf("VDUFor(%+v) = %q, want %q", c.a, got, c.want)
		}
	}
	p := &Policy{Deployment: &Deployment{Constraints: ElasticityConstraints{Vertical: &VerticalLimits{MaxNodes: 4, MaxCPUs: 8}}}}
	for a, want := range map[Action]int64{
		{Type: ActionAddNode}:              4,
		{Type: ActionAddNode, Max: 3}:      3,
		{Type: ActionAddNode, Max: 6}:      4,
		{Type: ActionAddCPU}:               8,
		{Type: ActionAddMemory}:            0,
		{Type: ActionAddMemory, Max: 4096}: 4096,
	} {
		if got := p.Limit(a); got != want {
			t.Errorf("Limit(%+v) = %d, want %d", a, got, want)
		}
	}
	if (&Policy{}).Limit(Action{Type: ActionAddNode, Max: 2}) != 2 {
		t.Error("Limit without constraints")
	}
}
