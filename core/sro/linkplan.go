package sro

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/builder"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// linksOptionalHint tells a tenant how to accept a slice whose links cannot be built.
const linksOptionalHint = "(slice-requirements.links-optional: true accepts the slice with this link not built)"

// linksOptional reports whether the tenant accepts links no WAN provider can build
// (slice-requirements.links-optional: true): they are then recorded NotBuilt, with the
// reason, instead of refusing the slice.
func linksOptional(s *spec.Slice) bool {
	return s.Requirements != nil && s.Requirements.LinksOptional
}

// linkPlan is where links go: per link (in the order asked) its spec, its placement
// (no provider when it is not built) and, for a link not built, why.
type linkPlan struct {
	specs   []sdk.LinkSpec
	placed  []broker.LinkPlacement
	unbuilt []string
}

// placeLinks finds a WAN provider for every link between parts placed as at. A link
// that no WAN provider can build (none in the catalogue, an end at a provider without
// a WAN site, no WAN provider joining the sites, accepting it or within the budget)
// refuses the whole slice with a *broker.NoPlacementError naming the link and why,
// unless optional: it is then planned not built, with the reason.
func (e *Engine) placeLinks(ctx context.Context, sliceID string, links []builder.Link, at map[string]broker.Placement, budget broker.Budget, optional bool) (*linkPlan, error) {
	lp := &linkPlan{specs: make([]sdk.LinkSpec, len(links)), placed: make([]broker.LinkPlacement, len(links)),
		unbuilt: make([]string, len(links))}
	hasWAN := e.hasWAN()
	var reqs []broker.LinkRequest
	var idx []int // index in links of each request
	for i, l := range links {
		end1, err1 := e.linkEnd(sliceID, l.Part1, at)
		end2, err2 := e.linkEnd(sliceID, l.Part2, at)
		// The ends name their parts even without a WAN site, so that a record of a link
		// not built still says what it joins.
		end1.Part, end2.Part = l.Part1, l.Part2
		lp.specs[i] = builder.LinkSpec(sliceID, l, end1, end2, 0)
		lp.placed[i] = broker.LinkPlacement{Link: l.Name}
		switch err := errors.Join(err1, err2); {
		case !hasWAN:
			lp.unbuilt[i] = broker.NoWANProvider
		case err != nil:
			lp.unbuilt[i] = err.Error()
		default:
			reqs = append(reqs, broker.LinkRequest{Spec: lp.specs[i], WIM: l.WIM})
			idx = append(idx, i)
		}
	}
	if len(reqs) > 0 {
		placed, err := e.broker.PlaceLinks(ctx, reqs, budget)
		var refused *broker.NoPlacementError
		if err != nil && !errors.As(err, &refused) {
			return nil, err
		}
		why := map[string]string{}
		if refused != nil {
			for _, r := range refused.Refusals {
				why[r.Part] = strings.Join(r.Reasons, ", ")
			}
		}
		for k, i := range idx {
			lp.placed[i] = placed[k]
			if placed[k].Provider == "" {
				lp.unbuilt[i] = nonEmptyString(why[links[i].Name], "no WAN provider can build it")
			}
		}
	}
	if optional {
		return lp, nil
	}
	var refusals []broker.Refusal
	for i, l := range links {
		if lp.unbuilt[i] != "" {
			refusals = append(refusals, broker.Refusal{Part: l.Name, Link: true,
				Reasons: []string{lp.unbuilt[i] + " " + linksOptionalHint}})
		}
	}
	if len(refusals) > 0 {
		return nil, &broker.NoPlacementError{Refusals: refusals}
	}
	return lp, nil
}

// record returns link i's record: Planned with a VNI when a WAN provider builds it,
// else NotBuilt with the reason.
func (e *Engine) record(ctx context.Context, lp *linkPlan, i int, sliceID, name string, elastic bool) (*store.Link, error) {
	rec := &store.Link{SliceID: sliceID, Name: name, UUID: store.NewUUID(), Spec: lp.specs[i],
		Provider: lp.placed[i].Provider, PricePerDay: lp.placed[i].Offer.PricePerDay, State: store.LinkPlanned, Elastic: elastic}
	if rec.Provider == "" {
		rec.State, rec.Message = store.LinkNotBuilt, "not built: "+lp.unbuilt[i]
		return rec, nil
	}
	vni, err := e.store.AllocateVNI(ctx, vniHolder(sliceID, name), e.opts.VNIMin, e.opts.VNIMax)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	rec.Spec.VNI = vni
	return rec, nil
}

func (e *Engine) hasWAN() bool {
	for _, pr := range e.cat.Providers {
		if pr.WAN != nil {
			return true
		}
	}
	return false
}

func nonEmptyString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
