package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
)

// EvScaledIn: a service's record forgot a part, or nodes of a part, that an elasticity
// scale-in removed.
const EvScaledIn = "service.scaled-in"

// PostScaleIn follows an elasticity scale-in of part (the elasticity engine's
// ScaleInDeployer), once the part shrank or, for remove-part, is gone:
//
//  1. Every service record of the slice forgets what went: part itself when the slice
//     no longer has it, else the nodes of part listed in gone. A deployment of the
//     service under way here ends first. A record that kept other parts gets its state
//     again from them (an Applied service that waited only on the removed part is
//     Deployed); the record of a post-deployment on a removed part ("post-<part>") is
//     deleted.
//  2. pd.Commands run on pd.Node — else on the nodes of part or, when it is gone, of the
//     part it was a copy of — recorded as the service "post-<that part>".
//
// Nothing is redeployed: a scale-in adds no capacity, and what ran on a removed node or
// part went with it. An error names each record or step that failed.
func (o *Orchestrator) PostScaleIn(ctx context.Context, sliceID, part string, gone []string, pd spec.PostDeployment) error {
	v, err := o.opts.Slices.Get(ctx, "", sliceID)
	if err != nil {
		return err
	}
	_, kept := v.Part(part)
	problems := o.forget(ctx, v, part, kept, gone)
	if len(pd.Commands) > 0 {
		at := part
		if !kept {
			at = o.templateOf(ctx, sliceID, part)
			if _, ok := v.Part(at); !ok && pd.Node == "" {
				problems = append(problems, fmt.Sprintf("commands: part %s is gone and the slice has no part it was a copy of: give post-deployment.node", part))
				at = ""
			}
		}
		if at != "" {
			if err := o.postCommands(ctx, v, at, pd); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("post-deployment after the scale-in of part %s of slice %s: %s", part, sliceID, joinSemi(problems))
	}
	return nil
}

// forget drops part (kept false) or the gone nodes of part from every service record of
// the slice, and returns what failed.
func (o *Orchestrator) forget(ctx context.Context, v *sro.View, part string, kept bool, gone []string) []string {
	sliceID := v.Slice.ID
	recs, err := o.store.ListServices(ctx, sliceID)
	if err != nil {
		return []string{fmt.Sprintf("list services: %v", err)}
	}
	var problems []string
	for _, rec := range recs {
		if !mentions(rec, part, kept, gone) {
			continue
		}
		// A deployment of it under way here would record the part again as it ends.
		if _, err := o.Wait(ctx, sliceID, rec.ID); err != nil {
			if !errors.Is(err, ErrNotFound) {
				problems = append(problems, fmt.Sprintf("service %s: %v", rec.ID, err))
			}
			continue
		}
		what := "part " + part + " removed by elasticity"
		if kept {
			what = fmt.Sprintf("node %s of part %s removed by elasticity", strings.Join(gone, ", "), part)
		}
		ev := store.Event{Type: EvScaledIn, Part: part, Message: fmt.Sprintf("service %s: %s", rec.ID, what),
			Data: map[string]string{"service": rec.ID}}
		if !kept && strings.HasPrefix(rec.ID, PostDeployPrefix) && len(rec.Parts) == 1 {
			if err := o.store.DeleteService(ctx, sliceID, rec.ID, ev); err != nil && !errors.Is(err, store.ErrNotFound) {
				problems = append(problems, fmt.Sprintf("service %s: %v", rec.ID, err))
			}
			continue
		}
		_, err := o.store.UpdateService(ctx, sliceID, rec.ID, func(s *store.Service) ([]store.Event, error) {
			if !mentions(s, part, kept, gone) || s.State == store.ServiceUndeploying {
				return nil, errUnchanged
			}
			if kept {
				sp, _ := s.Part(part)
				sp.Nodes = slices.DeleteFunc(sp.Nodes, func(n store.ServiceNode) bool { return slices.Contains(gone, n.Node) })
				return []store.Event{ev}, nil
			}
			s.Parts = slices.DeleteFunc(s.Parts, func(sp store.ServicePart) bool { return sp.Name == part })
			if s.State.Terminal() && len(s.Parts) > 0 {
				s.State, s.Message = outcome(s.Parts, false)
			}
			return []store.Event{ev}, nil
		})
		if err != nil && !errors.Is(err, errUnchanged) && !errors.Is(err, store.ErrNotFound) {
			problems = append(problems, fmt.Sprintf("service %s: %v", rec.ID, err))
			continue
		}
		if err == nil {
			o.log.Info("service record follows a scale-in", "slice", sliceID, "service", rec.ID, "what", what)
		}
	}
	return problems
}

// mentions reports whether a service record names part (kept false) or one of the gone
// nodes of part.
func mentions(rec *store.Service, part string, kept bool, gone []string) bool {
	sp, ok := rec.Part(part)
	if !ok || !kept {
		return ok
	}
	return slices.ContainsFunc(sp.Nodes, func(n store.ServiceNode) bool { return slices.Contains(gone, n.Node) })
}
