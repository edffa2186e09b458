package elastic

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// outcome is what an action did.
type outcome struct {
	action   string
	part     string
	template string
	vdu      string
	node     string
	what     string
	// scaledIn marks a scale-in step; gone lists the nodes a remove-node removed.
	scaledIn bool
	gone     []string
}

// act runs the policy's actions for a firing and then its post-deployment; every step
// is an event.
func (e *Engine) act(ctx context.Context, ev *evaluator, f *Firing) {
	start := time.Now()
	sliceID := ev.pol.SliceID
	out, err := e.perform(ctx, ev, f)
	took := time.Since(start)
	switch {
	case errors.Is(err, errExhausted):
		e.log.Info("policy fired, nothing left to do", "policy", ev.name(), "why", err)
		e.event(ctx, sliceID, ev.ev(EvExhausted, err.Error(), nil))
		return
	case err != nil:
		e.log.Warn("elasticity action failed", "policy", ev.name(), "error", err)
		e.event(ctx, sliceID, ev.ev(EvActionFailed, err.Error(), map[string]string{"took": took.String()}))
		return
	}
	e.log.Info("elasticity action done", "policy", ev.name(), "action", out.action, "what", out.what, "took", took)
	data := map[string]string{"action": out.action, "part": out.part, "took": took.String()}
	for k, v := range map[string]string{"vdu": out.vdu, "node": out.node, "template": out.template} {
		if v != "" {
			data[k] = v
		}
	}
	e.event(ctx, sliceID, ev.ev(EvActionFinished, fmt.Sprintf("%s: %s in %s", out.action, out.what, took.Round(time.Millisecond)), data))
	e.postDeploy(ctx, ev, out)
}

// errExhausted: the policy fired but none of its actions is left within its limits.
var errExhausted = errors.New("nothing left to do")

// perform tries the vertical actions in order, then, when the provider is full or none
// is left, the horizontal ones; a scale-in policy's actions go through scaleIn.
func (e *Engine) perform(ctx context.Context, ev *evaluator, f *Firing) (outcome, error) {
	pol := &ev.pol.Spec
	sliceID := ev.pol.SliceID
	if pol.ScalesIn() {
		return e.scaleIn(ctx, ev, f)
	}
	v, err := e.opts.Engine.Get(ctx, "", sliceID)
	if err != nil {
		return outcome{}, fmt.Errorf("read slice: %w", err)
	}
	p, ok := v.Part(pol.Part)
	if !ok {
		return outcome{}, fmt.Errorf("slice has no part %q", pol.Part)
	}
	dp := dcPart(p)
	var limits []string
	full := ""
	for _, a := range pol.VerticalActions() {
		step, why, err := e.vertical(ctx, ev, p, &dp, a, f.Node)
		if why != "" {
			limits = append(limits, why)
			continue
		}
		if err == nil {
			return step, nil
		}
		switch {
		case sro.IsProviderFull(err):
			full = err.Error()
		case sdk.CodeOf(err) == sdk.CodeFailedPrecondition, errors.Is(err, broker.ErrOverBudget):
			// The backend's own limit (a node's maximum size), or the tenant's budget
			// (the part's new price breaks it): like an action at its limit, the next
			// one may still do — another vertical action may cost less, and a copy of
			// the part is priced against the budget where it is placed.
			e.event(ctx, sliceID, ev.ev(EvActionFailed, err.Error(), map[string]string{"action": a.Type}))
			limits = append(limits, fmt.Sprintf("%s: %v", a.Type, err))
			continue
		default:
			return outcome{}, err
		}
		break
	}
	hs := pol.HorizontalActions()
	why := full
	if why == "" {
		why = "no vertical action left within its limits: " + strings.Join(limits, "; ")
	}
	if len(hs) == 0 {
		if full != "" {
			return outcome{}, fmt.Errorf("provider has no room and the policy has no horizontal action: %s", full)
		}
		return outcome{}, fmt.Errorf("%w: %s", errExhausted, strings.Join(limits, "; "))
	}
	e.event(ctx, sliceID, ev.ev(EvHorizontalFallback, "horizontal elasticity: "+why, nil))
	var errs []error
	for _, a := range hs {
		template := a.Template
		if template == "" {
			template = pol.Part
		}
		var target spec.HorizontalTarget
		if pol.Deployment != nil && pol.Deployment.Constraints.Horizontal != nil {
			target = *pol.Deployment.Constraints.Horizontal
		}
		where := a.Location
		if where == "" {
			where = "the template's location"
		}
		e.event(ctx, sliceID, ev.ev(EvActionStarted, fmt.Sprintf("%s: a copy of part %s at %s", spec.ActionAddPart, template, where),
			map[string]string{"action": spec.ActionAddPart, "template": template}))
		np, err := e.opts.Engine.AddPart(ctx, sliceID, template, sro.AddPartOptions{
			Location: a.Location, LinkTo: target.LinkTo, BandwidthGB: target.BandwidthGB, Reason: "policy " + pol.Name})
		if err == nil {
			return outcome{action: spec.ActionAddPart, part: np.Name, template: template,
				what: fmt.Sprintf("part %s, a copy of %s, at %s", np.Name, template, np.Provider)}, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return outcome{}, fmt.Errorf("horizontal elasticity failed: %w", errors.Join(errs...))
}

// vertical runs one vertical action; why is set (and nothing done) when the action is at
// its limit or does not apply.
func (e *Engine) vertical(ctx context.Context, ev *evaluator, p *store.Part, dp *spec.DCPart, a spec.Action, fired string) (outcome, string, error) {
	pol := &ev.pol.Spec
	sliceID := ev.pol.SliceID
	vdu, ok := a.VDUFor(dp)
	if !ok {
		return outcome{}, fmt.Sprintf("%s: part %s has no VDU %q", a.Type, p.Name, a.VDU), nil
	}
	limit := pol.Limit(a)
	step := a.Step()
	started := func(what string) {
		e.event(ctx, sliceID, ev.ev(EvActionStarted, a.Type+": "+what, map[string]string{"action": a.Type, "vdu": vdu.Name}))
	}
	switch a.Type {
	case spec.ActionAddNode:
		have := vdu.Instances
		if p.Observed != nil {
			have = len(p.Observed.NodesOf(vdu.Name))
		}
		want := int64(have) + step
		if limit > 0 && want > limit {
			want = limit
		}
		if want <= int64(have) {
			return outcome{}, fmt.Sprintf("%s: VDU %s has %d nodes, its limit", a.Type, vdu.Name, have), nil
		}
		what := fmt.Sprintf("VDU %s of part %s from %d to %d nodes", vdu.Name, p.Name, have, want)
		started(what)
		err := e.opts.Engine.ScalePart(ctx, sliceID, p.Name, vdu.Name, int(want))
		return outcome{action: a.Type, part: p.Name, vdu: vdu.Name, what: what}, "", err
	case spec.ActionAddCPU, spec.ActionAddMemory:
		// The node the policy fired on grows when it is one of the VDU's; otherwise (or
		// when the series named no node) every node of the VDU does.
		node, cur := "", int64(vdu.CPUs)
		if a.Type == spec.ActionAddMemory {
			cur = vdu.MemoryMB
		}
		if p.Observed != nil && fired != "" {
			for _, n := range p.Observed.NodesOf(vdu.Name) {
				if n.Name == fired {
					node, cur = n.Name, int64(n.CPUs)
					if a.Type == spec.ActionAddMemory {
						cur = n.MemoryMB
					}
				}
			}
		}
		want := cur + step
		if limit > 0 && want > limit {
			want = limit
		}
		unit, target := "vCPUs", "every node of VDU "+vdu.Name
		if a.Type == spec.ActionAddMemory {
			unit = "MB"
		}
		if node != "" {
			target = "node " + node
		}
		if want <= cur {
			return outcome{}, fmt.Sprintf("%s: %s has %d %s, its limit", a.Type, target, cur, unit), nil
		}
		what := fmt.Sprintf("%s of part %s from %d to %d %s", target, p.Name, cur, want, unit)
		started(what)
		var err error
		if a.Type == spec.ActionAddCPU {
			err = e.opts.Engine.ResizePart(ctx, sliceID, p.Name, vdu.Name, node, int(want), 0)
		} else {
			err = e.opts.Engine.ResizePart(ctx, sliceID, p.Name, vdu.Name, node, 0, want)
		}
		return outcome{action: a.Type, part: p.Name, vdu: vdu.Name, node: node, what: what}, "", err
	}
	return outcome{}, fmt.Sprintf("%s: not a vertical action", a.Type), nil
}

// dcPart describes a part as it is now (its VDUs with their current sizes and counts),
// for spec.Action.VDUFor.
func dcPart(p *store.Part) spec.DCPart {
	dp := spec.DCPart{Name: p.Name, Type: p.Spec.Type, Location: p.Spec.Location}
	for _, v := range p.Spec.VDUs {
		dp.VIM.VDUs = append(dp.VIM.VDUs, spec.VDU{Name: v.Name, Instances: v.Instances, CPUs: v.CPUs,
			MemoryMB: v.MemoryMB, StorageGB: v.StorageGB, Type: v.Type, Image: v.Image})
	}
	return dp
}

// postDeploy hands the policy's post-deployment to the PostDeployer after
// timers.service-redeployment seconds.
func (e *Engine) postDeploy(ctx context.Context, ev *evaluator, out outcome) {
	sliceID := ev.pol.SliceID
	var pd spec.PostDeployment
	if ev.pol.Spec.PostDeployment != nil {
		pd = *ev.pol.Spec.PostDeployment
	}
	if e.opts.PostDeployer == nil {
		what := "the service is not redeployed onto " + out.part
		if out.scaledIn {
			what = "the services' records are not told what " + out.action + " removed"
		}
		e.event(ctx, sliceID, ev.ev(EvPostDeploySkipped,
			"no service deployer configured: "+what+" and no post-deployment command runs", nil))
		return
	}
	run := func() error { return e.opts.PostDeployer.PostDeploy(ctx, sliceID, out.part, pd) }
	if out.scaledIn {
		sd, ok := e.opts.PostDeployer.(ScaleInDeployer)
		if !ok {
			e.event(ctx, sliceID, ev.ev(EvPostDeploySkipped,
				"the service deployer does not follow a scale-in: the services' records are not told what "+out.action+
					" removed and no post-deployment command runs", nil))
			return
		}
		run = func() error { return sd.PostScaleIn(ctx, sliceID, out.part, out.gone, pd) }
	}
	if wait := time.Duration(pd.Timers.ServiceRedeploymentSecs) * time.Second; wait > 0 {
		select {
		case <-ctx.Done():
			e.event(ctx, sliceID, ev.ev(EvPostDeployFailed, "not run: "+ctx.Err().Error(), nil))
			return
		case <-time.After(wait):
		}
	}
	if err := run(); err != nil {
		e.log.Warn("post-deployment failed", "policy", ev.name(), "part", out.part, "error", err)
		e.event(ctx, sliceID, ev.ev(EvPostDeployFailed, err.Error(), map[string]string{"part": out.part}))
		return
	}
	e.event(ctx, sliceID, ev.ev(EvPostDeployed, "post-deployment done on "+out.part, map[string]string{"part": out.part}))
}
