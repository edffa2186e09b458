package service

import (
	"context"
	"fmt"
	"strings"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
)

// PostDeployPrefix starts the id of the service record a post-deployment runs as:
// "post-<part>".
const PostDeployPrefix = "post-"

// PostDeploy runs a policy's post-deployment commands once an elasticity action has
// grown the slice, typically on a part it just added: on pd.Node — a VDU or node of
// part, else of another part of the slice (e.g. the core's master, to rebalance), or,
// when empty, every node of part. References in the commands are substituted against
// the slice as it is now, so they can name the new part's nodes. The run is recorded as
// the service "post-<part>" of the slice, steps and events like any deployment, and
// PostDeploy returns when it has ended: an error when it could not run or a step failed.
//
// The slice need not be Ready (an elastic update may be in progress), only the parts
// concerned.
func (o *Orchestrator) PostDeploy(ctx context.Context, sliceID, part string, pd spec.PostDeployment) error {
	if len(pd.Commands) == 0 {
		return nil
	}
	v, err := o.opts.Slices.Get(ctx, "", sliceID)
	if err != nil {
		return err
	}
	target := part
	if _, ok := v.Part(part); !ok {
		return fmt.Errorf("post-deployment on slice %s: no part %q (it has %s)", sliceID, part, partNames(v))
	}
	if pd.Node != "" {
		target = partOfNode(v.Parts, part, pd.Node)
	}
	svc := &spec.Service{SliceID: v.Slice.Name, Parts: []spec.ServicePart{{Name: target,
		VDUs: []spec.ServiceVDU{{Name: pd.Node, Commands: pd.Commands}}}}}
	id := PostDeployPrefix + cleanID(part)
	p, err := o.plan(ctx, v, svc, id, false)
	if err != nil {
		return fmt.Errorf("post-deployment on part %s of slice %s: %w", part, sliceID, err)
	}
	p.tenant = v.Slice.Tenant
	p.doc = "# post-deployment of an elasticity action on part " + part + "\n"
	rec, err := o.launch(ctx, p, true)
	if err != nil {
		return fmt.Errorf("post-deployment on part %s of slice %s: %w", part, sliceID, err)
	}
	if rec.State != store.ServiceDeployed {
		return fmt.Errorf("post-deployment on part %s of slice %s: %s", part, sliceID, rec.Message)
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
