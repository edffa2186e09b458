package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// storeTimeout bounds the record writes that follow a deployment whose context ended.
const storeTimeout = 10 * time.Second

// launch records the deployment, registers its policies and runs it in the background;
// with wait it returns once the deployment has ended.
func (o *Orchestrator) launch(ctx context.Context, p *plan, wait bool) (*Record, error) {
	return o.start(ctx, p, wait, false)
}

// start runs a plan as a deployment of the service p.id. With merge, the plan's parts
// are deployed into the service's existing record (the service reaching a part that
// elasticity added or grew), its other parts and its policies left as they are;
// otherwise the record is replaced by a new deployment of the whole service.
func (o *Orchestrator) start(ctx context.Context, p *plan, wait, merge bool) (*Record, error) {
	sliceID := p.view.Slice.ID
	in, rctx, err := o.claim(sliceID, p.id)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			o.release(sliceID, p.id, in)
		}
	}()
	var rec *store.Service
	if merge {
		if rec, err = o.mergeRecord(ctx, p); err != nil {
			return nil, err
		}
	} else if rec, err = o.newRecord(ctx, p); err != nil {
		return nil, err
	}
	o.log.Info("deploying service", "slice", sliceID, "service", p.id, "parts", len(p.parts), "generation", rec.Generation,
		"merge", merge)
	started = true
	go func() {
		defer o.release(sliceID, p.id, in)
		in.ended = o.run(rctx, p)
		if o.ended != nil {
			o.ended(sliceID, p.id)
		}
	}()
	if !wait {
		return rec, nil
	}
	select {
	case <-in.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if in.ended != nil {
		return in.ended, nil
	}
	return o.store.GetService(ctx, sliceID, p.id)
}

// newRecord records a new deployment of the whole service and registers its policies.
func (o *Orchestrator) newRecord(ctx context.Context, p *plan) (*store.Service, error) {
	sliceID := p.view.Slice.ID
	rec := &store.Service{SliceID: sliceID, ID: p.id, Tenant: p.tenant, Doc: p.doc, State: store.ServiceDeploying,
		Warnings: p.warnings, Generation: 1, StartedAt: time.Now().UTC()}
	prev, err := o.store.GetService(ctx, sliceID, p.id)
	switch {
	case err == nil:
		rec.Generation, rec.CreatedAt = prev.Generation+1, prev.CreatedAt
		if rec.Doc == "" {
			rec.Doc = prev.Doc
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	for _, pol := range p.policies {
		rec.Policies = append(rec.Policies, pol.Name)
	}
	for _, pp := range p.parts {
		rec.Parts = append(rec.Parts, store.ServicePart{Name: pp.part.Name, Provider: pp.part.Provider, State: sdk.DeployPending})
	}
	msg := fmt.Sprintf("service %s onto %d parts (deployment %d)", p.id, len(p.parts), rec.Generation)
	if err := o.store.PutService(ctx, rec, store.Event{Type: EvDeploying, Message: msg,
		Data: map[string]string{"service": p.id, "generation": strconv.Itoa(rec.Generation)}}); err != nil {
		return nil, err
	}
	if p.policies != nil || prev != nil {
		if err := o.registerPolicies(ctx, sliceID, p.id, p.policies); err != nil {
			o.finish(sliceID, p.id, store.ServiceFailed, err.Error())
			return nil, err
		}
	}
	return rec, nil
}

// mergeRecord marks the plan's parts pending in the service's existing record.
func (o *Orchestrator) mergeRecord(ctx context.Context, p *plan) (*store.Service, error) {
	var names []string
	for _, pp := range p.parts {
		names = append(names, pp.part.Name)
	}
	msg := fmt.Sprintf("service %s onto part %s", p.id, strings.Join(names, ", "))
	return o.store.UpdateService(ctx, p.view.Slice.ID, p.id, func(s *store.Service) ([]store.Event, error) {
		if s.State == store.ServiceUndeploying {
			return nil, fmt.Errorf("service %s: %w", p.id, ErrBusy)
		}
		for _, pp := range p.parts {
			sp := store.ServicePart{Name: pp.part.Name, Provider: pp.part.Provider, State: sdk.DeployPending}
			if cur, ok := s.Part(pp.part.Name); ok {
				*cur = sp
			} else {
				s.Parts = append(s.Parts, sp)
			}
		}
		s.State, s.Message, s.StartedAt, s.FinishedAt = store.ServiceDeploying, "", time.Now().UTC(), time.Time{}
		return []store.Event{{Type: EvDeploying, Message: msg, Data: map[string]string{"service": p.id}}}, nil
	})
}

// run deploys every part in parallel, records the outcome and returns the record as it
// left it (nil when that failed).
func (o *Orchestrator) run(ctx context.Context, p *plan) *store.Service {
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range p.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.runPart(ctx, p, i)
		}()
	}
	wg.Wait()
	sliceID := p.view.Slice.ID
	wctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	rec, err := o.store.GetService(wctx, sliceID, p.id)
	if err != nil {
		o.log.Error("read service after deployment", "slice", sliceID, "service", p.id, "error", err)
		return nil
	}
	state, msg := outcome(rec.Parts, ctx.Err() != nil)
	ended := o.finish(sliceID, p.id, state, msg)
	o.log.Info("service deployment ended", "slice", sliceID, "service", p.id, "state", state, "message", msg,
		"took", time.Since(begin).String())
	return ended
}

// outcome is what a deployment's parts make of the service: Failed when a part failed
// (interrupted: the deployment's context ended), Applied when every part's steps
// succeeded but some part's workloads are not ready yet, else Deployed.
func outcome(parts []store.ServicePart, interrupted bool) (store.ServiceState, string) {
	var failed, waiting []string
	for _, sp := range parts {
		switch sp.State {
		case sdk.DeploySucceeded:
		case sdk.DeployApplied:
			waiting = append(waiting, fmt.Sprintf("%s: %s", sp.Name, sp.Message))
		default:
			failed = append(failed, fmt.Sprintf("%s: %s", sp.Name, sp.Message))
		}
	}
	switch {
	case interrupted && len(failed) > 0:
		return store.ServiceFailed, "interrupted: " + joinSemi(failed)
	case len(failed) > 0:
		return store.ServiceFailed, fmt.Sprintf("%d of %d parts failed: %s", len(failed), len(parts), joinSemi(failed))
	case len(waiting) > 0:
		return store.ServiceApplied, fmt.Sprintf("%d of %d parts applied, workloads not ready: %s", len(waiting), len(parts), joinSemi(waiting))
	}
	return store.ServiceDeployed, fmt.Sprintf("%d parts deployed", len(parts))
}

// finish records the end of a deployment and returns the record as it left it (nil when
// it could not be written, or the service is being undeployed).
func (o *Orchestrator) finish(sliceID, id string, state store.ServiceState, msg string) *store.Service {
	wctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	ev := EvDeployed
	switch state {
	case store.ServiceFailed:
		ev = EvFailed
	case store.ServiceApplied:
		ev = EvApplied
	}
	undeploying := false
	rec, err := o.store.UpdateService(wctx, sliceID, id, func(s *store.Service) ([]store.Event, error) {
		if s.State == store.ServiceUndeploying {
			undeploying = true
			return nil, nil // undeployed meanwhile: its record is going away
		}
		s.State, s.Message, s.FinishedAt = state, msg, time.Now().UTC()
		return []store.Event{{Type: ev, Message: fmt.Sprintf("service %s: %s", id, msg), Data: map[string]string{"service": id}}}, nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		o.log.Error("record the end of a deployment", "slice", sliceID, "service", id, "error", err)
	}
	if err != nil || undeploying {
		return nil
	}
	return rec
}

// runPart runs one part's Deploy, reading its progress meanwhile, and records each step
// as it ends.
func (o *Orchestrator) runPart(ctx context.Context, p *plan, i int) {
	pp := p.parts[i]
	part := pp.part
	req := sdk.DeployRequest{ServiceID: p.id, Part: *part.Observed, Work: pp.work, StepTimeout: o.opts.StepTimeout}
	pctx, cancel := context.WithTimeout(ctx, o.opts.PartTimeout)
	defer cancel()
	type result struct {
		d   sdk.Deployment
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := pp.dep.Deploy(pctx, req)
		done <- result{d, err}
	}()
	tr := &tracker{o: o, p: p, part: part, reported: map[string]bool{}, budget: o.opts.OutputBudget / max(len(p.parts), 1)}
	tr.write(sdk.Deployment{State: sdk.DeployRunning}, nil)
	tick := time.NewTicker(o.opts.PollInterval)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			tr.write(r.d, r.err)
			return
		case <-tick.C:
			sctx, scancel := context.WithTimeout(pctx, o.opts.PollInterval*4)
			d, err := pp.dep.DeployStatus(sctx, sdk.DeployStatusRequest{ServiceID: p.id, Ref: part.Ref()})
			scancel()
			if err == nil && d.State == sdk.DeployRunning {
				tr.write(d, nil)
			}
		}
	}
}

// tracker turns a part's successive deployment states into record updates and step
// events, each step reported once.
type tracker struct {
	o        *Orchestrator
	p        *plan
	part     *store.Part
	reported map[string]bool // node/index of steps already reported
	last     string          // fingerprint of the last state written
	budget   int             // output bytes the part may keep in the record
}

func (t *tracker) write(d sdk.Deployment, callErr error) {
	sp := store.ServicePart{Name: t.part.Name, Provider: t.part.Provider, State: d.State, Message: d.Message}
	if callErr != nil {
		sp.State = sdk.DeployFailed
		sp.Message = callErr.Error()
		if sdk.CodeOf(callErr) == sdk.CodeCanceled || errors.Is(callErr, context.Canceled) {
			sp.Message = "canceled: " + callErr.Error()
		}
	}
	if sp.State == "" {
		sp.State = sdk.DeployFailed
	}
	steps := 0
	for _, n := range d.Nodes {
		steps += len(n.Steps)
	}
	limit := min(max(t.budget/max(2*steps, 1), 1<<10), 16<<10)
	var evs []store.Event
	for _, n := range d.Nodes {
		sn := store.ServiceNode{Node: n.Node, VDU: vduOf(t.part, n.Node), State: n.State}
		for _, s := range n.Steps {
			s.Stdout, s.Stderr = tail(s.Stdout, limit), tail(s.Stderr, limit)
			sn.Steps = append(sn.Steps, s)
			k := n.Node + "/" + strconv.Itoa(s.Index)
			if t.reported[k] || !finished(s.State) {
				continue
			}
			t.reported[k] = true
			evs = append(evs, stepEvent(t.p.id, t.part.Name, n.Node, s))
		}
		sp.Nodes = append(sp.Nodes, sn)
	}
	fp := fingerprint(sp)
	if fp == t.last && len(evs) == 0 {
		return
	}
	t.last = fp
	sliceID := t.p.view.Slice.ID
	wctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	_, err := t.o.store.UpdateService(wctx, sliceID, t.p.id, func(s *store.Service) ([]store.Event, error) {
		if cur, ok := s.Part(t.part.Name); ok {
			*cur = sp
		} else {
			s.Parts = append(s.Parts, sp)
		}
		return evs, nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.o.log.Error("record deployment progress", "slice", sliceID, "service", t.p.id, "part", t.part.Name, "error", err)
	}
}

func finished(state string) bool {
	return state == sdk.DeploySucceeded || state == sdk.DeployFailed || state == sdk.DeploySkipped
}

// stepEvent tells of one step that ended: where, what, how it went.
func stepEvent(id, part, node string, s sdk.StepResult) store.Event {
	msg := fmt.Sprintf("%s/%s step %d %s", part, node, s.Index, s.State)
	if s.State != sdk.DeploySkipped {
		msg += fmt.Sprintf(" in %s", s.Duration.Round(time.Millisecond))
	}
	if s.State == sdk.DeployFailed {
		if s.Error != "" {
			msg += ": " + s.Error
		} else {
			msg += fmt.Sprintf(": exit %d", s.ExitCode)
		}
	}
	msg += ": " + clip(s.Step, 80)
	return store.Event{Type: EvStep, Part: part, Message: msg, Data: map[string]string{
		"service": id, "node": node, "step": strconv.Itoa(s.Index), "kind": s.Kind, "state": s.State,
		"exit_code": strconv.Itoa(s.ExitCode), "duration": s.Duration.String()}}
}

// fingerprint summarizes a part's state, to skip writes that change nothing.
func fingerprint(sp store.ServicePart) string {
	var b strings.Builder
	b.WriteString(sp.State + "|" + sp.Message)
	for _, n := range sp.Nodes {
		b.WriteString("|" + n.Node + ":" + n.State)
		for _, s := range n.Steps {
			fmt.Fprintf(&b, ",%s:%d:%d:%d", s.State, s.ExitCode, len(s.Stdout), len(s.Stderr))
		}
	}
	return b.String()
}

// tail keeps the last n bytes of s, saying how much was dropped.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("[... %d bytes dropped ...]\n%s", len(s)-n, s[len(s)-n:])
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
