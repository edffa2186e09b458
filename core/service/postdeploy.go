package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// PostDeployPrefix starts the id of the service record a post-deployment runs as:
// "post-<part>".
const PostDeployPrefix = "post-"

// PostDeploy brings the slice's services onto capacity an elasticity action just made,
// then runs the policy's post-deployment commands. part is the part the action grew
// (vertical) or, for add-part, the new part.
//
//  1. Every service of the slice whose document deploys onto part — or, for a part
//     elasticity added, onto the part it is a copy of (its template) — is deployed onto
//     part again: the same VDUs' commands and manifests, so that new nodes or the new
//     part run what their siblings run. This is a partial deployment of each service,
//     recorded in the service's own record (the new part joins its parts, and leaves
//     with the service on undeploy).
//  2. pd.Commands run on pd.Node — a VDU or node of part, else of another part of the
//     slice (e.g. the core's master, to rebalance), or, when empty, every node of part
//     — recorded as the service "post-<part>".
//
// References are substituted against the slice as it is now, so they can name the new
// nodes. PostDeploy returns when everything has run: an error names each service or
// step that failed. The slice need not be Ready, only the parts concerned.
func (o *Orchestrator) PostDeploy(ctx context.Context, sliceID, part string, pd spec.PostDeployment) error {
	v, err := o.opts.Slices.Get(ctx, "", sliceID)
	if err != nil {
		return err
	}
	if _, ok := v.Part(part); !ok {
		return fmt.Errorf("post-deployment on slice %s: no part %q (it has %s)", sliceID, part, partNames(v))
	}
	problems := o.redeploy(ctx, v, part)
	if len(pd.Commands) > 0 {
		if err := o.postCommands(ctx, v, part, pd); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("post-deployment on part %s of slice %s: %s", part, sliceID, joinSemi(problems))
	}
	return nil
}

// redeploy deploys the slice's services onto part (see PostDeploy) and returns what
// failed.
func (o *Orchestrator) redeploy(ctx context.Context, v *sro.View, part string) []string {
	sliceID := v.Slice.ID
	recs, err := o.store.ListServices(ctx, sliceID)
	if err != nil {
		return []string{fmt.Sprintf("list services: %v", err)}
	}
	template := o.templateOf(ctx, sliceID, part)
	var problems []string
	for _, rec := range recs {
		if strings.HasPrefix(rec.ID, PostDeployPrefix) || rec.State == store.ServiceUndeploying {
			continue
		}
		svc, err := spec.ParseService([]byte(rec.Doc))
		if err != nil {
			continue // recorded documents parsed when deployed; a newer parser may differ
		}
		src, ok := svc.Part(part)
		var vdus []spec.ServiceVDU
		if ok {
			vdus = src.VDUs
		} else if template != "" {
			if src, ok = svc.Part(template); ok {
				vdus = selfRefs(src.VDUs, template, part)
			}
		}
		if !ok || len(vdus) == 0 {
			continue
		}
		one := &spec.Service{SliceID: svc.SliceID, Parts: []spec.ServicePart{{Name: part, VDUs: vdus}}}
		// A deployment of the service in progress first ends: the two would race.
		if _, err := o.Wait(ctx, sliceID, rec.ID); err != nil {
			problems = append(problems, fmt.Sprintf("service %s: %v", rec.ID, err))
			continue
		}
		p, err := o.plan(ctx, v, one, rec.ID, false)
		if err != nil {
			problems = append(problems, fmt.Sprintf("service %s: %v", rec.ID, err))
			continue
		}
		if len(p.parts) == 0 {
			continue
		}
		p.tenant = rec.Tenant
		done, err := o.start(ctx, p, true, true)
		if err != nil {
			problems = append(problems, fmt.Sprintf("service %s: %v", rec.ID, err))
			continue
		}
		sp, ok := done.Part(part)
		if ok && sp.State == sdk.DeployApplied {
			sp = o.awaitWorkloads(ctx, v, done, part)
		}
		if ok && sp.State != sdk.DeploySucceeded {
			problems = append(problems, fmt.Sprintf("service %s on part %s: %s: %s", rec.ID, part, sp.State, partProblem(sp)))
		}
		o.log.Info("service redeployed after elasticity", "slice", sliceID, "service", rec.ID, "part", part,
			"template", template)
	}
	return problems
}

// partProblem is what went wrong on a part: its message, else its failed steps' errors
// (a deployer may say why on the step only, e.g. a manifest the cluster refused).
func partProblem(sp *store.ServicePart) string {
	if sp.Message != "" {
		return sp.Message
	}
	var out []string
	for _, n := range sp.Nodes {
		for _, st := range n.Steps {
			if st.State == sdk.DeployFailed {
				out = append(out, fmt.Sprintf("%s step %d (%s): %s", n.Node, st.Index+1, st.Step, st.Error))
			}
		}
	}
	return joinSemi(out)
}

// appliedWait bounds how long a post-deployment waits for the workloads it applied to be
// ready (a new part's pods to start).
const appliedWait = 3 * time.Minute

// awaitWorkloads re-checks (recheck.go) a service whose steps on part all ran while its
// workloads there were not ready yet, every second, until they are ready or fail or
// appliedWait passes, and returns the part as the record then says: a post-deployment
// is done once the new capacity runs the service, not when its manifests are applied.
func (o *Orchestrator) awaitWorkloads(ctx context.Context, v *sro.View, rec *Record, part string) *store.ServicePart {
	wctx, cancel := context.WithTimeout(ctx, appliedWait)
	defer cancel()
	for {
		rec = o.recheck(wctx, v, rec)
		sp, ok := rec.Part(part)
		if !ok {
			return &store.ServicePart{Name: part, State: sdk.DeployFailed, Message: "no longer in the service's record"}
		}
		if sp.State != sdk.DeployApplied {
			return sp
		}
		select {
		case <-wctx.Done():
			out := *sp
			out.Message += fmt.Sprintf(" (still, %s after its steps ran)", appliedWait)
			return &out
		case <-time.After(time.Second):
		}
	}
}

// selfRefs returns a copy of a template part's VDUs for the part copied from it, where a
// reference to the template itself (${parts.<template>.…}) names the copy instead: a
// command that tells a server which part it is, or dials its own part's nodes, does so
// for the copy as it did for the original. References to other parts stay.
func selfRefs(vdus []spec.ServiceVDU, template, part string) []spec.ServiceVDU {
	from, to := "${parts."+template+".", "${parts."+part+"."
	swap := func(s string) string {
		var b strings.Builder
		for {
			i := strings.Index(s, from)
			if i < 0 {
				b.WriteString(s)
				return b.String()
			}
			b.WriteString(s[:i])
			if i > 0 && s[i-1] == '$' {
				b.WriteString(from) // $${parts.…} is a literal, not a reference
			} else {
				b.WriteString(to)
			}
			s = s[i+len(from):]
		}
	}
	out := make([]spec.ServiceVDU, len(vdus))
	for i, v := range vdus {
		out[i] = v
		out[i].Namespace = swap(v.Namespace)
		out[i].Commands = make([]string, len(v.Commands))
		for j, c := range v.Commands {
			out[i].Commands[j] = swap(c)
		}
		out[i].Manifests = make([]string, len(v.Manifests))
		for j, m := range v.Manifests {
			out[i].Manifests[j] = swap(m)
		}
	}
	return out
}

// templateOf returns the part an elastic part was copied from, as its part.adding event
// recorded, or "".
func (o *Orchestrator) templateOf(ctx context.Context, sliceID, part string) string {
	evs, err := o.store.Events(ctx, sliceID)
	if err != nil {
		return ""
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if ev := evs[i]; ev.Type == sro.EvPartAdding && ev.Part == part {
			return ev.Data["template"]
		}
	}
	return ""
}

// postCommands runs a post-deployment's commands, recorded as the service post-<part>.
func (o *Orchestrator) postCommands(ctx context.Context, v *sro.View, part string, pd spec.PostDeployment) error {
	target := part
	if pd.Node != "" {
		target = partOfNode(v.Parts, part, pd.Node)
	}
	svc := &spec.Service{SliceID: v.Slice.Name, Parts: []spec.ServicePart{{Name: target,
		VDUs: []spec.ServiceVDU{{Name: pd.Node, Commands: pd.Commands}}}}}
	id := PostDeployPrefix + cleanID(part)
	p, err := o.plan(ctx, v, svc, id, false)
	if err != nil {
		return fmt.Errorf("commands: %w", err)
	}
	p.tenant = v.Slice.Tenant
	p.doc = "# post-deployment of an elasticity action on part " + part + "\n"
	rec, err := o.launch(ctx, p, true)
	if err != nil {
		return fmt.Errorf("commands: %w", err)
	}
	if rec.State != store.ServiceDeployed {
		return fmt.Errorf("commands: %s", rec.Message)
	}
	return nil
}

// partOfNode returns the part holding a VDU or node called name: preferred first, else
// the first other part that has it (preferred when none has: planning then reports it).
func partOfNode(parts []*store.Part, preferred, name string) string {
	has := func(p *store.Part) bool {
		if p.Observed == nil {
			return false
		}
		_, ok := resolveNode(p, nil, name)
		return ok
	}
	for _, p := range parts {
		if p.Name == preferred && has(p) {
			return p.Name
		}
	}
	for _, p := range parts {
		if has(p) {
			return p.Name
		}
	}
	return preferred
}

// cleanID makes a service id of a part name: characters outside the id alphabet become
// '_' and it is cut to fit.
func cleanID(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 63-len(PostDeployPrefix) {
		out = out[:63-len(PostDeployPrefix)]
	}
	return out
}
