package elastic

import (
	"context"
	"errors"
	"fmt"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
)

// Event types of policy registration.
const (
	EvPolicyRegistered = "policy.registered"
	EvPolicyRemoved    = "policy.removed"
)

// Sources of policies (store.Policy.Source).
const (
	SourceAPI = "api"
	// SourceServicePrefix + a service's id: a policy from a service's elasticity section.
	SourceServicePrefix = "service:"
)

// Check checks a parsed policy against the slice it is for: its part, the VDUs its
// vertical actions name in that part, and the parts its horizontal actions copy and link
// to must exist. Every problem is reported in one *spec.Error, paths as in a policy
// posted alone ("policy.part").
func Check(v *sro.View, p *spec.Policy) error {
	var probs []spec.FieldError
	add := func(path, format string, args ...any) {
		probs = append(probs, spec.FieldError{Path: "policy." + path, Message: fmt.Sprintf(format, args...)})
	}
	if err := p.Validate(); err != nil {
		var se *spec.Error
		if errors.As(err, &se) {
			probs = append(probs, se.Problems...)
		} else {
			return err
		}
	}
	names := make([]string, 0, len(v.Parts))
	for _, x := range v.Parts {
		names = append(names, x.Name)
	}
	part, ok := v.Part(p.Part)
	if !ok {
		add("part", "slice %s has no part %q (has %v)", v.Slice.ID, p.Part, names)
	}
	if ok && p.PostDeployment != nil {
		for i, a := range p.PostDeployment.Actions.Vertical {
			if a.Action.VDU != "" {
				if _, has := part.Spec.VDU(a.Action.VDU); !has {
					add(fmt.Sprintf("post-deployment.actions.vertical[%d].action.vdu", i), "part %s has no VDU %q", p.Part, a.Action.VDU)
				}
			}
		}
	}
	if p.PostDeployment != nil {
		for i, a := range p.PostDeployment.Actions.Horizontal {
			if a.Action.Template != "" {
				if _, has := v.Part(a.Action.Template); !has {
					add(fmt.Sprintf("post-deployment.actions.horizontal[%d].action.template", i), "slice has no part %q (has %v)", a.Action.Template, names)
				}
			}
		}
	}
	if p.Deployment != nil && p.Deployment.Constraints.Horizontal != nil {
		h := p.Deployment.Constraints.Horizontal
		for _, f := range [][2]string{{"template", h.Template}, {"link-to", h.LinkTo}} {
			if f[1] != "" {
				if _, has := v.Part(f[1]); !has {
					add("deployment.constraints.horizontal."+f[0], "slice has no part %q (has %v)", f[1], names)
				}
			}
		}
	}
	if len(probs) > 0 {
		return &spec.Error{Problems: probs}
	}
	return nil
}

// ErrOwned: the slice has a policy of that name registered by another source (a
// service's document, or the API): it is changed there, not replaced from here.
var ErrOwned = errors.New("policy registered by another source")

// Install checks a policy against its slice (Check) and registers it, with an event;
// source is SourceAPI or SourceServicePrefix+id. A policy of the same name from the
// same source is replaced; one from another source is refused with ErrOwned. A running
// Engine picks it up at its next re-read of the store.
func Install(ctx context.Context, st Policies, v *sro.View, p *spec.Policy, source string) (*store.Policy, error) {
	if err := Check(v, p); err != nil {
		return nil, err
	}
	cur, err := st.GetPolicy(ctx, v.Slice.ID, p.Name)
	switch {
	case err == nil && cur.Source != source:
		return nil, fmt.Errorf("%w: slice %s already has a policy %q, registered by %s", ErrOwned, v.Slice.ID, p.Name, cur.Source)
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	rec := &store.Policy{SliceID: v.Slice.ID, Name: p.Name, Source: source, Spec: *p}
	if err := st.PutPolicy(ctx, rec, store.Event{Type: EvPolicyRegistered, Part: p.Part,
		Message: fmt.Sprintf("%s (from %s)", p.String(), source), Data: map[string]string{"policy": p.Name}}); err != nil {
		return nil, err
	}
	return rec, nil
}

// Policies is where policies are registered: *store.Store is it; the API and the
// service orchestrator need no more of the store to register and remove them.
type Policies interface {
	GetPolicy(ctx context.Context, slice, name string) (*store.Policy, error)
	ListPolicies(ctx context.Context, slice string) ([]*store.Policy, error)
	PutPolicy(ctx context.Context, p *store.Policy, evs ...store.Event) error
	DeletePolicy(ctx context.Context, slice, name string, evs ...store.Event) error
}

var _ Policies = (*store.Store)(nil)

// Remove unregisters a policy of a slice, with an event; store.ErrNotFound when there
// is none of that name.
func Remove(ctx context.Context, st Policies, sliceID, name string) error {
	p, err := st.GetPolicy(ctx, sliceID, name)
	if err != nil {
		return err
	}
	return st.DeletePolicy(ctx, sliceID, name, store.Event{Type: EvPolicyRemoved, Part: p.Spec.Part,
		Message: p.Spec.String(), Data: map[string]string{"policy": name}})
}
