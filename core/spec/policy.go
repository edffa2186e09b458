package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Policy is an elasticity policy: when a metric of a part's nodes crosses a threshold,
// grow the part (vertical) or add a part elsewhere (horizontal) — or, for a scale-in
// policy, shrink it back (remove-node, remove-cpu, remove-memory, remove-part). It is
// written under a
// service's dc-slice-part (elasticity: [- policy: {...}]) or posted alone, as YAML or as
// JSON of the same shape, to /v1/slices/{id}/policies. docs/elasticity.md describes it
// with examples.
//
//	policy:
//	  name: cpu-high
//	  operator: '>'
//	  value: 80
//	  trigger: {points: 3}                    # or {time-window: 60} (seconds)
//	  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: default}
//	  deployment:
//	    constraints:
//	      vertical: {max-nodes: 4, max-cpus: 8, max-memory-mb: 8192}
//	      horizontal: {location: EUROPE.GREECE}
//	  post-deployment:
//	    timers: {service-redeployment: 30, reactivate-elasticity: 300}
//	    actions:
//	      vertical:   [{action: {type: add-node}}, {action: {type: add-cpu, value: 1, max: 8}}]
//	      horizontal: [{action: {type: add-part}, priority: 1}]
//
// The policy fires when every value of the trigger (the last N points, or those of the
// time window) satisfies "value <operator> threshold" on some node of node-type (with
// trigger.nodes: all, on every node of node-type measured: the default of a scale-in
// policy, [Policy.EveryNode]; with trigger.nodes: average, by the mean of the nodes'
// values, [Policy.Average]). The vertical actions are then tried in order: the first one still within its limits is
// taken. When none is left, or the provider has no room, the horizontal actions are
// tried, lowest priority number first. After an action the policy rests for
// timers.reactivate-elasticity seconds ([DefaultCooldown] when unset).
//
// A policy's actions all grow the slice or all shrink it ([Policy.ScalesIn]); a scale-in
// policy usually fires below a threshold:
//
//	policy:
//	  name: cpu-low
//	  operator: '<'
//	  value: 20
//	  trigger: {time-window: 300}
//	  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION}
//	  post-deployment:
//	    actions:
//	      vertical:   [{action: {type: remove-node}}, {action: {type: remove-cpu, value: 1, min: 2}}]
//	      horizontal: [{action: remove-part}]
//
// It undoes growth newest first: the horizontal actions are tried first (each removes
// the newest copy an add-part made of its template), then the vertical ones in order,
// each down to its floor ([Policy.Floor]: never below what the tenant's spec gave).
type Policy struct {
	Name string `json:"name"`
	// Type is free text the original carried (e.g. "elasticity"); it selects nothing.
	Type string `json:"type,omitempty"`
	// Part is the dc-slice-part the policy watches and grows. In a service document it is
	// the part the policy is written under; a policy posted alone must name it.
	Part string `json:"part,omitempty"`
	// Operator is one of >, <, >=, <=, =.
	Operator string  `json:"operator"`
	Value    float64 `json:"value"`
	Trigger  Trigger `json:"trigger"`
	// Collector is metric-collector: what is measured, on which nodes.
	Collector      Collector       `json:"metric-collector"`
	Deployment     *Deployment     `json:"deployment,omitempty"`
	PostDeployment *PostDeployment `json:"post-deployment,omitempty"`
}

// Trigger says how many values must satisfy the threshold: the last Points points, or
// all points of the last WindowSecs seconds. Exactly one is set. Nodes says on how many
// nodes ([Policy.EveryNode]).
type Trigger struct {
	Points     int `json:"points,omitempty"`
	WindowSecs int `json:"time-window,omitempty"`
	// Nodes is [TriggerAnyNode] (the policy fires when the values of some node satisfy
	// the threshold), [TriggerEveryNode] (only when those of every node measured do) or
	// [TriggerAverage] (when the mean of the nodes' values does, point by point; with
	// Points only); empty is any for a policy that grows, every for one that scales in.
	Nodes string `json:"nodes,omitempty"`
}

// Values of trigger.nodes.
const (
	// TriggerAnyNode: the policy fires when the values of some node satisfy the
	// threshold, as the original did. The default of a policy that grows: one hot node
	// is reason enough to grow.
	TriggerAnyNode = "any"
	// TriggerEveryNode: the policy fires only when the values of every node measured
	// satisfy it. The default of a scale-in policy: one idle node among busy ones is no
	// reason to shrink the part.
	TriggerEveryNode = "all"
	// TriggerAverage: the policy fires when, at each of the last Points points, the mean
	// of the nodes' values satisfies the threshold: a part judged as a whole, so that
	// neither one hot node nor one idle node decides alone.
	TriggerAverage = "average"
)

// Average reports whether the policy judges the mean of its nodes' values
// (trigger.nodes: average).
func (p *Policy) Average() bool { return p.Trigger.Nodes == TriggerAverage }

// EveryNode reports whether the policy fires only when every node measured satisfies
// its trigger: trigger.nodes is all, or it is not given and the policy scales in.
func (p *Policy) EveryNode() bool {
	switch p.Trigger.Nodes {
	case TriggerEveryNode:
		return true
	case TriggerAnyNode, TriggerAverage:
		return false
	}
	return p.ScalesIn()
}

// Collector is metric-collector.
type Collector struct {
	// NodeType limits the nodes watched to NodeMaster or NodeWorker; empty watches all.
	NodeType string `json:"node-type,omitempty"`
	// Metric is metric-name, e.g. PERCENT_CPU_UTILIZATION.
	Metric string `json:"metric-name"`
	// GranularitySecs is the sampling period; 0 is the monitor's default ("default").
	GranularitySecs int `json:"-"`
}

// collectorJSON is Collector as written: granularity is "default" or seconds.
type collectorJSON struct {
	NodeType    string `json:"node-type,omitempty"`
	Metric      string `json:"metric-name"`
	Granularity any    `json:"granularity"`
}

// MarshalJSON writes granularity as "default" or a number of seconds.
func (c Collector) MarshalJSON() ([]byte, error) {
	var g any = "default"
	if c.GranularitySecs > 0 {
		g = c.GranularitySecs
	}
	return json.Marshal(collectorJSON{NodeType: c.NodeType, Metric: c.Metric, Granularity: g})
}

// Deployment is deployment: {constraints: {vertical, horizontal}}.
type Deployment struct {
	Constraints ElasticityConstraints `json:"constraints"`
}

// ElasticityConstraints bound what the policy may do.
type ElasticityConstraints struct {
	Vertical   *VerticalLimits   `json:"vertical,omitempty"`
	Horizontal *HorizontalTarget `json:"horizontal,omitempty"`
}

// VerticalLimits cap every vertical action (an action's own max, if lower, wins) and
// floor every vertical scale-in action (an action's own min, if higher, wins); zero
// means no cap or floor beyond the tenant's spec.
type VerticalLimits struct {
	// MaxNodes caps the nodes of the VDU grown by add-node.
	MaxNodes int `json:"max-nodes,omitempty"`
	// MaxCPUs and MaxMemoryMB cap each node's vCPUs and memory (add-cpu, add-memory).
	MaxCPUs     int   `json:"max-cpus,omitempty"`
	MaxMemoryMB int64 `json:"max-memory-mb,omitempty"`
	// MinNodes floors the nodes of the VDU shrunk by remove-node.
	MinNodes int `json:"min-nodes,omitempty"`
	// MinCPUs and MinMemoryMB floor each node's vCPUs and memory (remove-cpu,
	// remove-memory).
	MinCPUs     int   `json:"min-cpus,omitempty"`
	MinMemoryMB int64 `json:"min-memory-mb,omitempty"`
}

// HorizontalTarget says where horizontal elasticity puts a new part and what it is.
type HorizontalTarget struct {
	// Location is where the new part goes, e.g. EUROPE.GREECE.
	Location string `json:"location"`
	// Template is the part copied (VIM, VDUs and sizes); empty means the policy's part.
	Template string `json:"template,omitempty"`
	// LinkTo is the part the new one is linked to; empty means the slice's first part
	// of type DC (its core), as the original linked new edges to the core.
	LinkTo string `json:"link-to,omitempty"`
	// BandwidthGB of the new link; 0 means that of Template's link to LinkTo, else 1.
	BandwidthGB float64 `json:"bandwidth-GB,omitempty"`
}

// PostDeployment is post-deployment: what follows an action. The original had two
// forms, {node, commands} and {timers, actions}; both may be given together.
type PostDeployment struct {
	// Node and Commands: commands run on that node (or VDU) once an action is done,
	// e.g. to rebalance the service onto the new capacity.
	Node     string   `json:"node,omitempty"`
	Commands []string `json:"commands,omitempty"`
	Timers   Timers   `json:"timers"`
	Actions  Actions  `json:"actions"`
}

// Timers are post-deployment.timers, in seconds.
type Timers struct {
	// ServiceRedeploymentSecs is the wait after an action before the service is
	// redeployed onto the new capacity (and Commands run).
	ServiceRedeploymentSecs int `json:"service-redeployment,omitempty"`
	// ReactivateSecs is the cooldown: after an action the policy does not fire again
	// for this long ([DefaultCooldown] when 0).
	ReactivateSecs int `json:"reactivate-elasticity,omitempty"`
}

// Actions are post-deployment.actions.
type Actions struct {
	Vertical   []VerticalAction   `json:"vertical,omitempty"`
	Horizontal []HorizontalAction `json:"horizontal,omitempty"`
}

// VerticalAction is {action: ...}, an action of type add-node, add-cpu or add-memory, or
// of scale-in remove-node, remove-cpu or remove-memory.
type VerticalAction struct {
	Action Action `json:"action"`
}

// HorizontalAction is {action: ..., priority: N}, an action of type add-part or, for
// scale-in, remove-part; lower priority numbers are tried first.
type HorizontalAction struct {
	Action   Action `json:"action"`
	Priority int    `json:"priority,omitempty"`
}

// Action types.
const (
	// ActionAddNode adds Value nodes (default 1) to the VDU (VIM Scale), up to Max nodes.
	ActionAddNode = "add-node"
	// ActionAddCPU adds Value vCPUs (default 1) to each node of the VDU (VIM Resize), up
	// to Max vCPUs per node.
	ActionAddCPU = "add-cpu"
	// ActionAddMemory adds Value MB (default 1024) to each node of the VDU (VIM Resize),
	// up to Max MB per node.
	ActionAddMemory = "add-memory"
	// ActionAddPart adds a copy of a part at another location, linked to the core.
	ActionAddPart = "add-part"

	// ActionRemoveNode removes Value nodes (default 1) from the VDU (VIM Scale), down to
	// its floor ([Policy.Floor]).
	ActionRemoveNode = "remove-node"
	// ActionRemoveCPU removes Value vCPUs (default 1) from a node of the VDU, or from each
	// (VIM Resize), down to its floor per node.
	ActionRemoveCPU = "remove-cpu"
	// ActionRemoveMemory removes Value MB (default 1024) as remove-cpu does vCPUs.
	ActionRemoveMemory = "remove-memory"
	// ActionRemovePart removes the newest copy that add-part made of a part (of
	// Template, default the policy's part); never a part of the tenant's spec.
	ActionRemovePart = "remove-part"
)

// The action types by kind and direction.
var (
	verticalGrow    = []string{ActionAddNode, ActionAddCPU, ActionAddMemory}
	verticalShrink  = []string{ActionRemoveNode, ActionRemoveCPU, ActionRemoveMemory}
	horizontalTypes = []string{ActionAddPart, ActionRemovePart}
)

// Action is one elasticity step. It is written as a mapping or, for the defaults, as
// its type alone: "action: add-node".
type Action struct {
	Type string `json:"type"`
	// VDU is the VDU grown; empty means the part's first worker VDU, else its first VDU.
	VDU string `json:"vdu,omitempty"`
	// Value is the amount added by one step; 0 means the type's default.
	Value int64 `json:"value,omitempty"`
	// Max is the limit the step may reach (nodes, vCPUs or MB per node); 0 means none
	// beyond deployment.constraints.vertical. Only for add-node, add-cpu and add-memory.
	Max int64 `json:"max,omitempty"`
	// Min is the floor a scale-in step may reach (nodes, vCPUs or MB per node); the
	// tenant's spec and deployment.constraints.vertical may raise it ([Policy.Floor]).
	// Only for remove-node, remove-cpu and remove-memory.
	Min int64 `json:"min,omitempty"`
	// Location and Template override deployment.constraints.horizontal for add-part;
	// Template names the part whose copies remove-part removes.
	Location string `json:"location,omitempty"`
	Template string `json:"template,omitempty"`
}

// DefaultCooldown is how long a policy rests after an action when
// timers.reactivate-elasticity is unset. (The original waited 30 minutes.)
const DefaultCooldown = 5 * time.Minute

// Step returns the amount one step adds (or, for scale-in, removes): Value, or the
// type's default.
func (a Action) Step() int64 {
	if a.Value > 0 {
		return a.Value
	}
	switch a.Type {
	case ActionAddMemory, ActionRemoveMemory:
		return 1024
	default:
		return 1
	}
}

// ScalesIn reports whether the action shrinks the slice: remove-node, remove-cpu,
// remove-memory or remove-part.
func (a Action) ScalesIn() bool {
	return a.Type == ActionRemovePart || contains(verticalShrink, a.Type)
}

// ScalesIn reports whether the policy shrinks the slice: its actions are scale-in
// actions (validation keeps a policy's actions all of one direction). A policy without
// actions grows.
func (p *Policy) ScalesIn() bool {
	if p.PostDeployment == nil {
		return false
	}
	for _, a := range p.PostDeployment.Actions.Vertical {
		if a.Action.ScalesIn() {
			return true
		}
	}
	for _, a := range p.PostDeployment.Actions.Horizontal {
		if a.Action.ScalesIn() {
			return true
		}
	}
	return false
}

// VDUFor returns the VDU of part that the action grows: the one it names, else the
// part's first worker VDU, else its first VDU.
func (a Action) VDUFor(part *DCPart) (*VDU, bool) {
	if a.VDU != "" {
		return part.VDU(a.VDU)
	}
	for i := range part.VIM.VDUs {
		if part.VIM.VDUs[i].NodeType() == NodeWorker {
			return &part.VIM.VDUs[i], true
		}
	}
	if len(part.VIM.VDUs) > 0 {
		return &part.VIM.VDUs[0], true
	}
	return nil, false
}

// Limit returns the most a vertical action may reach: the lower of its own Max and the
// matching cap of deployment.constraints.vertical (nodes for add-node, vCPUs or MB per
// node for add-cpu and add-memory); 0 means no limit.
func (p *Policy) Limit(a Action) int64 {
	var c int64
	if p.Deployment != nil && p.Deployment.Constraints.Vertical != nil {
		v := p.Deployment.Constraints.Vertical
		switch a.Type {
		case ActionAddNode:
			c = int64(v.MaxNodes)
		case ActionAddCPU:
			c = int64(v.MaxCPUs)
		case ActionAddMemory:
			c = v.MaxMemoryMB
		}
	}
	switch {
	case a.Max > 0 && (c == 0 || a.Max < c):
		return a.Max
	default:
		return c
	}
}

// Floor returns the least a vertical scale-in action may leave: the largest of its own
// Min, the matching floor of deployment.constraints.vertical (min-nodes for
// remove-node, min-cpus or min-memory-mb per node for remove-cpu and remove-memory) and
// what the tenant's spec gave the VDU (given: its instance-count, cpu-number or
// memory-mb; nil when the spec has no such VDU), and at least 1: a policy never shrinks
// a part below the size the tenant asked for, nor a VDU to no node at all.
func (p *Policy) Floor(a Action, given *VDU) int64 {
	floor := max(a.Min, 1)
	var c, g int64
	var v *VerticalLimits
	if p.Deployment != nil {
		v = p.Deployment.Constraints.Vertical
	}
	switch a.Type {
	case ActionRemoveNode:
		if v != nil {
			c = int64(v.MinNodes)
		}
		if given != nil {
			g = int64(max(given.Instances, 1))
		}
	case ActionRemoveCPU:
		if v != nil {
			c = int64(v.MinCPUs)
		}
		if given != nil {
			g = int64(given.CPUs)
		}
	case ActionRemoveMemory:
		if v != nil {
			c = v.MinMemoryMB
		}
		if given != nil {
			g = given.MemoryMB
		}
	}
	return max(floor, c, g)
}

// Compare reports whether v satisfies the policy's threshold ("v > 80").
func (p *Policy) Compare(v float64) bool {
	switch p.Operator {
	case ">":
		return v > p.Value
	case "<":
		return v < p.Value
	case ">=":
		return v >= p.Value
	case "<=":
		return v <= p.Value
	case "=", "==":
		return v == p.Value
	}
	return false
}

// Holds reports whether every value satisfies the threshold, and there is at least
// one: the trigger's condition on the values of one node.
func (p *Policy) Holds(values []float64) bool {
	if len(values) == 0 {
		return false
	}
	for _, v := range values {
		if !p.Compare(v) {
			return false
		}
	}
	return true
}

// Cooldown returns timers.reactivate-elasticity, or DefaultCooldown.
func (p *Policy) Cooldown() time.Duration {
	if p.PostDeployment != nil && p.PostDeployment.Timers.ReactivateSecs > 0 {
		return time.Duration(p.PostDeployment.Timers.ReactivateSecs) * time.Second
	}
	return DefaultCooldown
}

// VerticalActions returns the vertical actions to try in order. With no actions
// written at all the policy does what the original did: add one node.
func (p *Policy) VerticalActions() []Action {
	if p.PostDeployment == nil || (len(p.PostDeployment.Actions.Vertical) == 0 && len(p.PostDeployment.Actions.Horizontal) == 0) {
		return []Action{{Type: ActionAddNode}}
	}
	out := make([]Action, 0, len(p.PostDeployment.Actions.Vertical))
	for _, a := range p.PostDeployment.Actions.Vertical {
		out = append(out, a.Action)
	}
	return out
}

// HorizontalActions returns the horizontal actions by priority, each with its location
// and template filled from deployment.constraints.horizontal. With none written, a
// horizontal constraint alone means one add-part there (for a policy that grows).
func (p *Policy) HorizontalActions() []Action {
	var target HorizontalTarget
	if p.Deployment != nil && p.Deployment.Constraints.Horizontal != nil {
		target = *p.Deployment.Constraints.Horizontal
	}
	var acts []HorizontalAction
	if p.PostDeployment != nil {
		acts = append(acts, p.PostDeployment.Actions.Horizontal...)
	}
	if len(acts) == 0 && target.Location != "" && !p.ScalesIn() {
		acts = []HorizontalAction{{Action: Action{Type: ActionAddPart}}}
	}
	// Stable by priority: equal priorities keep the written order.
	for i := 1; i < len(acts); i++ {
		for j := i; j > 0 && acts[j].Priority < acts[j-1].Priority; j-- {
			acts[j], acts[j-1] = acts[j-1], acts[j]
		}
	}
	out := make([]Action, 0, len(acts))
	for _, h := range acts {
		a := h.Action
		if a.Location == "" && a.Type == ActionAddPart {
			a.Location = target.Location
		}
		if a.Template == "" {
			a.Template = target.Template
		}
		out = append(out, a)
	}
	return out
}

// ParsePolicy parses one policy posted alone, YAML or JSON, given as {policy: {...}} or
// as the policy's own mapping, and validates it; every problem is in an *[Error]. A
// policy posted alone must name its part.
func ParsePolicy(data []byte) (*Policy, error) { return Parser{}.Policy(data) }

// Policy is [ParsePolicy] with p's limits.
func (p Parser) Policy(data []byte) (*Policy, error) { return p.policy(data, true) }

// policy reads a policy document; validate applies the rules on top of the types.
func (p Parser) policy(data []byte, validate bool) (*Policy, error) {
	root, release, err := p.load(data)
	if err != nil {
		return nil, err
	}
	defer release()
	pr := &problems{}
	d := &decoder{p: pr}
	if isNull(root) {
		pr.add("", "empty document: expected policy: {...}")
		return nil, pr.err()
	}
	path := ""
	if root.Kind == yaml.MappingNode && len(root.Content) == 2 && root.Content[0].Value == "policy" {
		root, path = root.Content[1], "policy"
	}
	o := d.mapping(root, path)
	pol := d.policy(o)
	if validate {
		if pol.Part == "" {
			pr.add(join(path, "part"), "required: the dc-slice-part the policy watches and grows")
		}
		requireValue(pr, o)
		pol.check(pr, path)
	}
	if err := pr.err(); err != nil {
		return nil, err
	}
	return pol, nil
}

// UnmarshalJSON reads the policy's JSON form, which has the shape of the YAML one
// (an action may be its type alone, granularity may be "default"). Types are checked,
// the rules are not: a stored policy always reads back. Requests go through
// [ParsePolicy], which checks both.
func (p *Policy) UnmarshalJSON(data []byte) error {
	pol, err := Parser{}.policy(data, false)
	if err != nil {
		return err
	}
	*p = *pol
	return nil
}

// Validate checks a policy built in code with the rules ParsePolicy applies, but for
// the requirement of a part, which the code building it knows.
func (p *Policy) Validate() error {
	pr := &problems{}
	p.check(pr, "policy")
	return pr.err()
}

func (d *decoder) policy(o *obj) *Policy {
	p := &Policy{Name: o.str("name"), Type: o.str("type"), Part: o.str("part"), Operator: o.str("operator")}
	if v, ok := o.number("value"); ok {
		p.Value = v
	}
	if o.has("trigger") {
		t := o.sub("trigger")
		p.Trigger.Points = d.count(t, "points")
		p.Trigger.WindowSecs = d.count(t, "time-window")
		p.Trigger.Nodes = strings.ToLower(strings.TrimSpace(t.str("nodes")))
		t.rest()
	}
	if o.has("metric-collector") {
		c := o.sub("metric-collector")
		p.Collector = Collector{NodeType: strings.ToLower(c.str("node-type")), Metric: c.str("metric-name")}
		if g := c.node("granularity"); !noValue(g) {
			if _, quoted := numberText(g); g.Kind == yaml.ScalarNode && g.ShortTag() == "!!str" && !quoted {
				if !strings.EqualFold(strings.TrimSpace(g.Value), "default") {
					d.p.add(c.at("granularity"), "must be \"default\" or a number of seconds, got %s", kindOf(g))
				}
			} else if v, ok := d.integer(g, c.at("granularity")); ok {
				if v <= 0 || v > 1<<31-1 {
					d.p.add(c.at("granularity"), "must be \"default\" or a positive number of seconds, got %d", v)
				} else {
					p.Collector.GranularitySecs = int(v)
				}
			}
		}
		c.rest()
	}
	if o.has("deployment") {
		dep := o.sub("deployment")
		p.Deployment = &Deployment{}
		cons := dep.sub("constraints")
		if cons.has("vertical") {
			v := cons.sub("vertical")
			p.Deployment.Constraints.Vertical = &VerticalLimits{MaxNodes: d.count(v, "max-nodes"), MaxCPUs: d.count(v, "max-cpus"),
				MinNodes: d.count(v, "min-nodes"), MinCPUs: d.count(v, "min-cpus")}
			if n, ok := v.integer("max-memory-mb"); ok {
				p.Deployment.Constraints.Vertical.MaxMemoryMB = n
			}
			if n, ok := v.integer("min-memory-mb"); ok {
				p.Deployment.Constraints.Vertical.MinMemoryMB = n
			}
			v.rest()
		}
		if cons.has("horizontal") {
			h := cons.sub("horizontal")
			t := &HorizontalTarget{Location: h.str("location"), Template: h.str("template"), LinkTo: h.str("link-to")}
			if v, ok := h.number("bandwidth-GB"); ok {
				t.BandwidthGB = v
			}
			h.rest()
			p.Deployment.Constraints.Horizontal = t
		}
		cons.rest()
		dep.rest()
	}
	if o.has("post-deployment") {
		pd := o.sub("post-deployment")
		p.PostDeployment = &PostDeployment{Node: pd.str("node"), Commands: d.commands(pd, "commands")}
		if pd.has("timers") {
			t := pd.sub("timers")
			p.PostDeployment.Timers = Timers{ServiceRedeploymentSecs: d.count(t, "service-redeployment"), ReactivateSecs: d.count(t, "reactivate-elasticity")}
			t.rest()
		}
		if pd.has("actions") {
			a := pd.sub("actions")
			for i, item := range a.list("vertical") {
				path := index(a.at("vertical"), i)
				it := d.mapping(item, path)
				act := d.action(it, "action")
				p.PostDeployment.Actions.Vertical = append(p.PostDeployment.Actions.Vertical, VerticalAction{Action: act})
				it.rest()
			}
			for i, item := range a.list("horizontal") {
				path := index(a.at("horizontal"), i)
				it := d.mapping(item, path)
				h := HorizontalAction{Action: d.action(it, "action")}
				h.Priority = d.bounded(it, "priority", 1<<31-1)
				p.PostDeployment.Actions.Horizontal = append(p.PostDeployment.Actions.Horizontal, h)
				it.rest()
			}
			a.rest()
		}
		pd.rest()
	}
	o.rest()
	return p
}

// action reads an action: its type alone ("add-node") or {type, vdu, value, max, min, ...}.
func (d *decoder) action(o *obj, key string) Action {
	n := o.node(key)
	switch {
	case isNull(n):
		d.p.add(o.at(key), "required: an action such as {type: add-node}")
		return Action{}
	case n.Kind == yaml.ScalarNode:
		return Action{Type: strings.ToLower(o.str(key))}
	}
	m := o.sub(key)
	a := Action{Type: strings.ToLower(m.str("type")), VDU: m.str("vdu"), Location: m.str("location"), Template: m.str("template")}
	if v, ok := m.integer("value"); ok {
		a.Value = v
	}
	if v, ok := m.integer("max"); ok {
		a.Max = v
	}
	if v, ok := m.integer("min"); ok {
		a.Min = v
	}
	m.rest()
	return a
}

// commands reads a list of shell commands; a single string is one command.
func (d *decoder) commands(o *obj, key string) []string {
	n := o.node(key)
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{o.str(key)}
	}
	if n.Kind != yaml.SequenceNode {
		d.p.add(o.at(key), "must be a list of commands, got %s", kindOf(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, e := range n.Content {
		if e.Kind != yaml.ScalarNode || isNull(e) {
			d.p.add(index(o.at(key), i), "must be a command (a string), got %s", kindOf(e))
			continue
		}
		out = append(out, e.Value)
	}
	return out
}

var operators = []string{">", "<", ">=", "<=", "="}

// requireValue reports a policy mapping without a threshold: the model cannot tell a
// missing value from 0.
func requireValue(p *problems, o *obj) {
	if !o.has("value") {
		p.add(o.at("value"), "required: the threshold, a number")
	}
}

func (p *Policy) check(pr *problems, path string) {
	checkName(pr, join(path, "name"), p.Name, "the policy's name")
	if p.Part != "" && !nameRE.MatchString(p.Part) {
		pr.add(join(path, "part"), "must be %s, got %s", nameRule, quote(p.Part))
	}
	if p.Operator == "==" {
		p.Operator = "="
	}
	if !contains(operators, p.Operator) {
		if p.Operator == "" {
			pr.add(join(path, "operator"), "required: one of '>', '<', '>=', '<=', '='")
		} else {
			pr.add(join(path, "operator"), "must be one of '>', '<', '>=', '<=', '=', got %s", quote(p.Operator))
		}
	}
	tr := join(path, "trigger")
	switch {
	case p.Trigger.Points < 0 || p.Trigger.WindowSecs < 0:
		pr.add(tr, "points and time-window must be positive")
	case p.Trigger.Points > 0 && p.Trigger.WindowSecs > 0:
		pr.add(tr, "give points or time-window, not both")
	case p.Trigger.Points == 0 && p.Trigger.WindowSecs == 0:
		pr.add(tr, "required: {points: N} (the last N values) or {time-window: seconds}")
	}
	switch p.Trigger.Nodes {
	case "", TriggerAnyNode, TriggerEveryNode:
	case TriggerAverage:
		if p.Trigger.WindowSecs > 0 {
			pr.add(join(tr, "nodes"), "%s needs {points: N}: the nodes' values are averaged point by point, and a time window holds a different number of them on each node",
				TriggerAverage)
		}
	default:
		pr.add(join(tr, "nodes"), "must be %s (fire when some node satisfies the threshold), %s (only when every node does) or %s (when their mean does), got %s",
			TriggerAnyNode, TriggerEveryNode, TriggerAverage, quote(p.Trigger.Nodes))
	}
	mc := join(path, "metric-collector")
	if p.Collector.Metric == "" {
		pr.add(join(mc, "metric-name"), "required: the metric watched, e.g. PERCENT_CPU_UTILIZATION")
	}
	switch p.Collector.NodeType {
	case "", NodeMaster, NodeWorker:
	default:
		pr.add(join(mc, "node-type"), "must be master or worker, got %s", quote(p.Collector.NodeType))
	}
	if p.Collector.GranularitySecs < 0 {
		pr.add(join(mc, "granularity"), "must be \"default\" or a positive number of seconds")
	}
	hasTarget := false
	if p.Deployment != nil {
		c := join(path, "deployment.constraints")
		if v := p.Deployment.Constraints.Vertical; v != nil {
			vp := join(c, "vertical")
			if v.MaxNodes < 0 || v.MaxCPUs < 0 || v.MaxMemoryMB < 0 || v.MinNodes < 0 || v.MinCPUs < 0 || v.MinMemoryMB < 0 {
				pr.add(vp, "limits must be >= 0")
			}
			for _, b := range []struct {
				min, max   string
				floor, cap int64
			}{{"min-nodes", "max-nodes", int64(v.MinNodes), int64(v.MaxNodes)},
				{"min-cpus", "max-cpus", int64(v.MinCPUs), int64(v.MaxCPUs)},
				{"min-memory-mb", "max-memory-mb", v.MinMemoryMB, v.MaxMemoryMB}} {
				if b.floor > 0 && b.cap > 0 && b.floor > b.cap {
					pr.add(join(vp, b.min), "exceeds %s (%d), got %d", b.max, b.cap, b.floor)
				}
			}
		}
		if h := p.Deployment.Constraints.Horizontal; h != nil {
			hp := join(c, "horizontal")
			switch {
			case h.Location == "":
				pr.add(join(hp, "location"), "required: where a new part goes, e.g. EUROPE.GREECE")
			case !ValidLocation(h.Location):
				pr.add(join(hp, "location"), "must be dot-separated names from the continent down, e.g. EUROPE.SPAIN, got %s", quote(h.Location))
			default:
				hasTarget = true
			}
			for _, f := range [][2]string{{"template", h.Template}, {"link-to", h.LinkTo}} {
				if f[1] != "" && !nameRE.MatchString(f[1]) {
					pr.add(join(hp, f[0]), "must be a part name (%s), got %s", nameRule, quote(f[1]))
				}
			}
			if h.BandwidthGB < 0 {
				pr.add(join(hp, "bandwidth-GB"), "must be > 0, got %s", strconv.FormatFloat(h.BandwidthGB, 'f', -1, 64))
			}
		}
	}
	if pd := p.PostDeployment; pd != nil {
		pp := join(path, "post-deployment")
		if pd.Timers.ServiceRedeploymentSecs < 0 || pd.Timers.ReactivateSecs < 0 {
			pr.add(join(pp, "timers"), "must be seconds >= 0")
		}
		// The first action written sets the policy's direction; one of the other
		// direction is reported where it is written.
		first, firstAt := "", ""
		coherent := func(a Action, at string) {
			if first == "" {
				first, firstAt = a.Type, at
				return
			}
			if a.ScalesIn() != (Action{Type: first}).ScalesIn() {
				pr.add(join(at, "type"), "%s %s, but %s is %s, which %s: a policy's actions all grow the slice or all shrink it; write the other direction as a policy of its own",
					a.Type, direction(a.Type), strings.TrimPrefix(firstAt, pp+"."), first, direction(first))
			}
		}
		for i, a := range pd.Actions.Vertical {
			at := join(index(join(pp, "actions.vertical"), i), "action")
			switch {
			case contains(verticalGrow, a.Action.Type), contains(verticalShrink, a.Action.Type):
				coherent(a.Action, at)
			case a.Action.Type == "":
				pr.add(join(at, "type"), "required: %s (or, to scale in, %s)", strings.Join(verticalGrow, ", "), strings.Join(verticalShrink, ", "))
			default:
				pr.add(join(at, "type"), "a vertical action is %s (or, to scale in, %s), got %s",
					strings.Join(verticalGrow, ", "), strings.Join(verticalShrink, ", "), quote(a.Action.Type))
			}
			a.Action.check(pr, at)
		}
		for i, h := range pd.Actions.Horizontal {
			it := index(join(pp, "actions.horizontal"), i)
			at := join(it, "action")
			if contains(horizontalTypes, h.Action.Type) {
				coherent(h.Action, at)
			} else {
				pr.add(join(at, "type"), "a horizontal action is %s (or, to scale in, %s), got %s", ActionAddPart, ActionRemovePart, quote(h.Action.Type))
			}
			if h.Priority < 0 {
				pr.add(join(it, "priority"), "must be >= 0, got %d", h.Priority)
			}
			switch {
			case h.Action.Type == ActionRemovePart && h.Action.Location != "":
				pr.add(join(at, "location"), "%s removes the newest copy of its template wherever it is; location is for %s", ActionRemovePart, ActionAddPart)
			case h.Action.Type == ActionRemovePart:
			case h.Action.Location != "" && !ValidLocation(h.Action.Location):
				pr.add(join(at, "location"), "must be dot-separated names from the continent down, e.g. EUROPE.SPAIN, got %s", quote(h.Action.Location))
			case h.Action.Location == "" && !hasTarget:
				pr.add(join(at, "location"), "required here or as deployment.constraints.horizontal.location")
			}
			h.Action.check(pr, at)
		}
	}
}

// direction says what an action type does to the slice, for messages.
func direction(typ string) string {
	if (Action{Type: typ}).ScalesIn() {
		return "shrinks the slice"
	}
	return "grows the slice"
}

func (a Action) check(pr *problems, at string) {
	if a.VDU != "" && !nameRE.MatchString(a.VDU) {
		pr.add(join(at, "vdu"), "must be a VDU name (%s), got %s", nameRule, quote(a.VDU))
	}
	if a.Template != "" && !nameRE.MatchString(a.Template) {
		pr.add(join(at, "template"), "must be a part name (%s), got %s", nameRule, quote(a.Template))
	}
	if a.Value < 0 {
		pr.add(join(at, "value"), "must be > 0, got %d", a.Value)
	}
	if a.Max < 0 {
		pr.add(join(at, "max"), "must be > 0, got %d", a.Max)
	} else if a.Max > 0 && a.Step() > a.Max {
		pr.add(join(at, "value"), "one step (%d) exceeds max (%d)", a.Step(), a.Max)
	}
	if a.Min < 0 {
		pr.add(join(at, "min"), "must be > 0, got %d", a.Min)
	}
	switch {
	case a.Max != 0 && a.ScalesIn():
		pr.add(join(at, "max"), "%s shrinks: it has a floor (min), not a limit (max)", a.Type)
	case a.Min != 0 && a.Type == ActionRemovePart:
		pr.add(join(at, "min"), "only %s have a floor (min); %s never removes a part of the tenant's spec", strings.Join(verticalShrink, ", "), a.Type)
	case a.Min != 0 && (contains(verticalGrow, a.Type) || a.Type == ActionAddPart):
		pr.add(join(at, "min"), "%s grows: it has a limit (max), not a floor (min)", a.Type)
	}
}

// String describes the policy's condition, e.g. "PERCENT_CPU_UTILIZATION > 80 on worker
// nodes for 3 points".
func (p *Policy) String() string {
	nodes := "all nodes"
	if p.Collector.NodeType != "" {
		nodes = p.Collector.NodeType + " nodes"
	}
	if p.EveryNode() {
		nodes = "every node"
		if p.Collector.NodeType != "" {
			nodes = "every " + p.Collector.NodeType + " node"
		}
	}
	if p.Average() {
		nodes = "the mean of " + nodes
	}
	trig := fmt.Sprintf("%d points", p.Trigger.Points)
	if p.Trigger.WindowSecs > 0 {
		trig = fmt.Sprintf("%ds", p.Trigger.WindowSecs)
	}
	return fmt.Sprintf("%s: %s %s %s on %s for %s", p.Name, p.Collector.Metric, p.Operator,
		strconv.FormatFloat(p.Value, 'f', -1, 64), nodes, trig)
}
