package elastic

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Scale-in undoes growth newest first: a copy of a part that add-part made is removed
// before the part it copies shrinks (horizontal actions first, by priority, then the
// vertical ones in the order written), one step per firing. Nothing is shrunk below
// its floor (spec.Policy.Floor: the action's min, deployment.constraints.vertical's
// min-*, and what the tenant's spec gave the VDU), and remove-part removes only parts
// elasticity added, never one of the tenant's spec.

// ScaleInDeployer is a PostDeployer that also follows a scale-in; the service
// orchestrator (*service.Orchestrator) is one. Without it, a scale-in's post-deployment
// is skipped, with an event saying so.
type ScaleInDeployer interface {
	// PostScaleIn follows a scale-in of part: the slice's service records forget what
	// is gone — part itself when remove-part removed it, else the nodes of part listed
	// in gone — then pd.Commands run on pd.Node (else on part's nodes or, for a
	// removed part, those of the part it was a copy of). Nothing is redeployed: no
	// capacity was added.
	PostScaleIn(ctx context.Context, sliceID, part string, gone []string, pd spec.PostDeployment) error
}

// shrinkStep is one scale-in step a policy may take.
type shrinkStep struct {
	action string // the action's type
	part   string // the part shrunk or removed
	vdu    string
	// node is the one node resized; "" resizes every node of the VDU.
	node string
	// to is the new size: nodes (remove-node), vCPUs or MB per node.
	to int64
	// template is, for remove-part, the part the removed one is a copy of.
	template string
	// nodes are the VDU's nodes before a remove-node, to tell which went.
	nodes []string
	what  string
}

// planScaleIn lists the steps a scale-in policy may take now, in the order they are
// tried: for every remove-part (by priority) the newest ready copy of its template, then
// for every vertical action the first target above its floor. skipped says, action by
// action, why it has none. v is the slice now, s the tenant's spec (nil when it cannot
// be read: the floors are then the policy's own), added the order in which parts were
// added (a larger number is newer; see addedOrder), f the firing.
func planScaleIn(pol *spec.Policy, v *sro.View, s *spec.Slice, added map[string]int, f *Firing) (steps []shrinkStep, skipped []string) {
	for _, a := range pol.HorizontalActions() {
		if a.Type != spec.ActionRemovePart {
			continue
		}
		template := a.Template
		if template == "" {
			template = pol.Part
		}
		cs := copiesOf(v, s, template, added)
		if len(cs) == 0 {
			skipped = append(skipped, fmt.Sprintf("%s: no copy of part %s to remove", a.Type, template))
			continue
		}
		c := cs[0]
		steps = append(steps, shrinkStep{action: a.Type, part: c.Name, template: template,
			what: fmt.Sprintf("part %s, the newest copy of %s, at %s", c.Name, template, c.Provider)})
	}
	p, ok := v.Part(pol.Part)
	if !ok {
		return steps, append(skipped, fmt.Sprintf("slice has no part %q", pol.Part))
	}
	dp := dcPart(p)
	var fired []string
	if f != nil {
		fired = f.Nodes
	}
	for _, a := range pol.VerticalActions() {
		st, why := shrinkVertical(pol, p, &dp, givenPart(s, p.Name), a, fired)
		if why != "" {
			skipped = append(skipped, why)
			continue
		}
		steps = append(steps, st)
	}
	return steps, skipped
}

// shrinkVertical plans one vertical scale-in action on part p; why says why there is
// nothing to do.
func shrinkVertical(pol *spec.Policy, p *store.Part, dp *spec.DCPart, given *spec.DCPart, a spec.Action, fired []string) (shrinkStep, string) {
	vdu, ok := a.VDUFor(dp)
	if !ok {
		return shrinkStep{}, fmt.Sprintf("%s: part %s has no VDU %q", a.Type, p.Name, a.VDU)
	}
	var gv *spec.VDU
	if given != nil {
		gv, _ = given.VDU(vdu.Name)
	}
	floor := pol.Floor(a, gv)
	step := a.Step()
	switch a.Type {
	case spec.ActionRemoveNode:
		var names []string
		have := vdu.Instances
		if p.Observed != nil {
			ns := p.Observed.NodesOf(vdu.Name)
			have = len(ns)
			for _, n := range ns {
				names = append(names, n.Name)
			}
		}
		want := max(int64(have)-step, floor)
		if want >= int64(have) {
			return shrinkStep{}, fmt.Sprintf("%s: VDU %s of part %s has %d nodes, at its floor (%d)", a.Type, vdu.Name, p.Name, have, floor)
		}
		return shrinkStep{action: a.Type, part: p.Name, vdu: vdu.Name, to: want, nodes: names,
			what: fmt.Sprintf("VDU %s of part %s from %d to %d nodes", vdu.Name, p.Name, have, want)}, ""
	case spec.ActionRemoveCPU, spec.ActionRemoveMemory:
		unit := "vCPUs"
		size := func(n sdk.Node) int64 { return int64(n.CPUs) }
		cur := int64(vdu.CPUs)
		if a.Type == spec.ActionRemoveMemory {
			unit, size, cur = "MB", func(n sdk.Node) int64 { return n.MemoryMB }, vdu.MemoryMB
		}
		// The nodes the policy fired on shrink, the first above its floor, when they are
		// the VDU's; otherwise (or when the series named no node) every node of the VDU
		// does, as add-cpu grows them.
		var mine []sdk.Node
		if p.Observed != nil {
			for _, name := range fired {
				for _, n := range p.Observed.NodesOf(vdu.Name) {
					if n.Name == name {
						mine = append(mine, n)
					}
				}
			}
		}
		for _, n := range mine {
			if want := max(size(n)-step, floor); want < size(n) {
				return shrinkStep{action: a.Type, part: p.Name, vdu: vdu.Name, node: n.Name, to: want,
					what: fmt.Sprintf("node %s of part %s from %d to %d %s", n.Name, p.Name, size(n), want, unit)}, ""
			}
		}
		if len(mine) > 0 {
			names := make([]string, len(mine))
			for i, n := range mine {
				names[i] = n.Name
			}
			return shrinkStep{}, fmt.Sprintf("%s: node %s of VDU %s at its floor (%d %s)", a.Type, strings.Join(names, ", "), vdu.Name, floor, unit)
		}
		want := max(cur-step, floor)
		if want >= cur {
			return shrinkStep{}, fmt.Sprintf("%s: every node of VDU %s has %d %s, at its floor (%d)", a.Type, vdu.Name, cur, unit, floor)
		}
		return shrinkStep{action: a.Type, part: p.Name, vdu: vdu.Name, to: want,
			what: fmt.Sprintf("every node of VDU %s of part %s from %d to %d %s", vdu.Name, p.Name, cur, want, unit)}, ""
	}
	return shrinkStep{}, fmt.Sprintf("%s: not a vertical scale-in action", a.Type)
}

// copiesOf returns the Ready copies of template that elasticity added to the slice
// ("<template>-h<n>", Elastic, no part of the tenant's spec, no change pending), newest
// first: by added, else by n.
func copiesOf(v *sro.View, s *spec.Slice, template string, added map[string]int) []*store.Part {
	var out []*store.Part
	num := map[string]int{}
	for _, p := range v.Parts {
		t, ok := spec.TemplateOfCopy(p.Name)
		if !ok || t != template || !p.Elastic || p.State != store.PartReady || p.Change != nil {
			continue
		}
		if s != nil {
			if _, inSpec := s.Part(p.Name); inSpec {
				continue
			}
		}
		num[p.Name], _ = strconv.Atoi(p.Name[len(template)+2:])
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Name, out[j].Name
		if added[a] != added[b] {
			return added[a] > added[b]
		}
		return num[a] > num[b]
	})
	return out
}

// addedOrder numbers the parts of a slice's events by when each was last added
// (part.added): a larger number is newer.
func addedOrder(evs []store.Event) map[string]int {
	out := map[string]int{}
	for i, ev := range evs {
		if ev.Type == sro.EvPartAdded && ev.Part != "" {
			out[ev.Part] = i + 1
		}
	}
	return out
}

// scaleInPlan reads the slice, its spec and its events and plans the policy's scale-in.
func (e *Engine) scaleInPlan(ctx context.Context, ev *evaluator, f *Firing) (*sro.View, []shrinkStep, []string, error) {
	v, err := e.opts.Engine.Get(ctx, "", ev.pol.SliceID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read slice: %w", err)
	}
	// A spec that does not parse (the slice engine records it) leaves the policy's own
	// floors; every VDU still keeps one node.
	s, _ := v.Spec()
	var added map[string]int
	if hasElastic(v) {
		evs, err := e.opts.Store.Events(ctx, ev.pol.SliceID)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read events: %w", err)
		}
		added = addedOrder(evs)
	}
	steps, skipped := planScaleIn(&ev.pol.Spec, v, s, added, f)
	return v, steps, skipped, nil
}

func hasElastic(v *sro.View) bool {
	for _, p := range v.Parts {
		if p.Elastic {
			return true
		}
	}
	return false
}

// scaleIn takes the first step of the policy's scale-in that the backend accepts; a step
// it refuses (a Kubernetes part whose workloads use more than the smaller size) passes to
// the next, as a grow step at its limit does.
func (e *Engine) scaleIn(ctx context.Context, ev *evaluator, f *Firing) (outcome, error) {
	sliceID := ev.pol.SliceID
	_, steps, skipped, err := e.scaleInPlan(ctx, ev, f)
	if err != nil {
		return outcome{}, err
	}
	for _, st := range steps {
		e.event(ctx, sliceID, ev.ev(EvActionStarted, st.action+": "+st.what, stepData(st)))
		out, err := e.shrink(ctx, sliceID, st)
		if err == nil {
			return out, nil
		}
		if sdk.CodeOf(err) != sdk.CodeFailedPrecondition || ctx.Err() != nil {
			return outcome{}, err
		}
		e.event(ctx, sliceID, ev.ev(EvActionFailed, err.Error(), map[string]string{"action": st.action}))
		skipped = append(skipped, fmt.Sprintf("%s: %v", st.action, err))
	}
	return outcome{}, fmt.Errorf("%w: %s", errExhausted, strings.Join(skipped, "; "))
}

func stepData(st shrinkStep) map[string]string {
	d := map[string]string{"action": st.action}
	for k, v := range map[string]string{"vdu": st.vdu, "template": st.template, "node": st.node} {
		if v != "" {
			d[k] = v
		}
	}
	if st.action == spec.ActionRemovePart {
		d["part"] = st.part
	}
	return d
}

// shrink runs one scale-in step through the slice engine.
func (e *Engine) shrink(ctx context.Context, sliceID string, st shrinkStep) (outcome, error) {
	out := outcome{action: st.action, part: st.part, vdu: st.vdu, node: st.node, template: st.template, what: st.what, scaledIn: true}
	switch st.action {
	case spec.ActionRemovePart:
		if err := e.opts.Engine.RemovePart(ctx, sliceID, st.part); err != nil {
			return outcome{}, err
		}
		return out, nil
	case spec.ActionRemoveNode:
		if err := e.opts.Engine.ScalePart(ctx, sliceID, st.part, st.vdu, int(st.to)); err != nil {
			return outcome{}, err
		}
		// The nodes gone are those of the VDU before that the part no longer has, as the
		// VIM now describes it: the services' records forget them. (Which ones the VIM
		// removes is its choice.) When the part cannot be read back, none is named.
		if v, err := e.opts.Engine.Get(ctx, "", sliceID); err == nil {
			if p, ok := v.Part(st.part); ok && p.Observed != nil {
				now := p.Observed.NodesOf(st.vdu)
				out.gone = slices.DeleteFunc(slices.Clone(st.nodes), func(name string) bool {
					return slices.ContainsFunc(now, func(n sdk.Node) bool { return n.Name == name })
				})
			}
		}
		return out, nil
	case spec.ActionRemoveCPU:
		return out, e.opts.Engine.ResizePart(ctx, sliceID, st.part, st.vdu, st.node, int(st.to), 0)
	case spec.ActionRemoveMemory:
		return out, e.opts.Engine.ResizePart(ctx, sliceID, st.part, st.vdu, st.node, 0, st.to)
	}
	return outcome{}, errors.New(st.action + ": not a scale-in action")
}

// givenPart is the part as the tenant's spec describes it (spec.Slice.Given), nil when
// the spec has neither it nor the part it copies.
func givenPart(s *spec.Slice, part string) *spec.DCPart {
	dp, _ := s.Given(part)
	return dp
}
