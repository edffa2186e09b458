// Package broker is the marketplace: it finds, for every part of a slice, the providers
// that could host it, asks their plugins for offers in parallel, and picks per part the
// cheapest offer that fits the location, the capacity and the tenant's budget, reserving
// it atomically in the store so that concurrent slices never double-book a provider.
package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Plugins gives the broker the plugin clients of providers.
type Plugins interface {
	VIM(ctx context.Context, provider string) (sdk.VIM, error)
	WAN(ctx context.Context, provider string) (sdk.WAN, error)
}

// Broker places slice parts and links at providers.
type Broker struct {
	cat     *providers.Catalogue
	plugins Plugins
	store   *store.Store
	log     hclog.Logger
	// OfferTimeout bounds each provider's Offer call.
	OfferTimeout time.Duration
}

// New returns a broker over a catalogue's providers.
func New(cat *providers.Catalogue, plugins Plugins, st *store.Store, logger hclog.Logger) *Broker {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Broker{cat: cat, plugins: plugins, store: st, log: logger, OfferTimeout: 30 * time.Second}
}

// Cost models of NECOS specs.
const (
	PerMachinePerDay = "COST_PER_PHYSICAL_MACHINE_PER_DAY"
	PerPartPerDay    = "COST_PER_SLICE_PART_PER_DAY"
	PerLinkPerDay    = "COST_PER_LINK_PER_DAY"
)

// Budget is a tenant's cost bound, from `cost.dc-model` or `cost.net-model`
// (`value-euros: "<=10"`). The zero Budget accepts any price.
type Budget struct {
	// Model says what the bound applies to: per machine (node) per day for
	// COST_PER_PHYSICAL_MACHINE_PER_DAY; per part or per link per day otherwise.
	Model string
	// Op is one of <=, <, =, >=, >.
	Op    string
	Euros float64
}

// check returns "" when price (already per the model's unit) satisfies the bound, else
// why not.
func (b Budget) check(price float64, unit string) string {
	if b.Op == "" {
		return ""
	}
	ok := false
	switch b.Op {
	case "<=":
		ok = price <= b.Euros+1e-9
	case "<":
		ok = price < b.Euros
	case "=", "==":
		ok = math.Abs(price-b.Euros) < 1e-9
	case ">=":
		ok = price >= b.Euros-1e-9
	case ">":
		ok = price > b.Euros
	default:
		return fmt.Sprintf("unknown budget operator %q", b.Op)
	}
	if ok {
		return ""
	}
	if b.Op == "<=" || b.Op == "<" {
		return fmt.Sprintf("over budget by €%.2f (€%.2f %s, budget %s%.2f)", price-b.Euros, price, unit, b.Op, b.Euros)
	}
	return fmt.Sprintf("outside budget (€%.2f %s, budget %s%.2f)", price, unit, b.Op, b.Euros)
}

// PartRequest is one DC part to place.
type PartRequest struct {
	Spec sdk.PartSpec
	// VIM is the NECOS VIM name asked for, e.g. KUBERNETES.
	VIM string
	// Exclude lists providers not to use (horizontal elasticity wants another one).
	Exclude []string
}

// Placement is where a part goes.
type Placement struct {
	Part     string
	Provider string
	Offer    sdk.Offer
}

// Refusal says why a part (or link) could not be placed.
type Refusal struct {
	Part    string   `json:"part"`
	Reasons []string `json:"reasons"`
}

// NoPlacementError lists, per part, why nothing fits.
type NoPlacementError struct {
	Refusals []Refusal
}

func (e *NoPlacementError) Error() string {
	var b strings.Builder
	b.WriteString("no provider can host")
	for i, r := range e.Refusals {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " part %s: %s", r.Part, strings.Join(r.Reasons, ", "))
	}
	return b.String()
}

// holder names a part's hold in a provider's ledger.
func holder(slice, part string) string { return slice + "/" + part }

// candidate is an eligible provider for one part with its offer.
type candidate struct {
	provider string
	offer    sdk.Offer
	err      error
}

// PlaceParts places every part or none: on success each part holds a reservation at its
// provider; on failure nothing stays reserved and the error is a *NoPlacementError with
// the reasons per part (unless an infrastructure error occurred).
func (b *Broker) PlaceParts(ctx context.Context, sliceID string, reqs []PartRequest, budget Budget) ([]Placement, error) {
	type work struct {
		req   PartRequest
		cands []candidate
		why   []string
	}
	works := make([]*work, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		w := &work{req: r}
		works[i] = w
		eligible, why := b.eligible(r)
		w.why = why
		w.cands = make([]candidate, len(eligible))
		for j, p := range eligible {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.cands[j] = candidate{provider: p}
				w.cands[j].offer, w.cands[j].err = b.offer(ctx, p, r.Spec)
			}()
		}
	}
	wg.Wait()

	// Each part reserves at its cheapest fitting provider; parts do so in parallel (the
	// ledger's compare-and-swap keeps two parts at one provider honest).
	type result struct {
		placed  *Placement
		reasons []string
		err     error
	}
	results := make([]result, len(works))
	for i, w := range works {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].placed, results[i].reasons, results[i].err = b.placeOne(ctx, sliceID, w.req.Spec, w.cands, w.why, budget)
		}()
	}
	wg.Wait()
	var placed []Placement
	var refusals []Refusal
	var firstErr error
	for _, r := range results {
		switch {
		case r.err != nil:
			firstErr = cmp.Or(firstErr, r.err)
		case r.placed != nil:
			placed = append(placed, *r.placed)
		}
	}
	for i, r := range results {
		if r.err == nil && r.placed == nil {
			refusals = append(refusals, Refusal{Part: works[i].req.Spec.Ref.PartID, Reasons: r.reasons})
		}
	}
	if firstErr != nil || len(refusals) > 0 {
		b.releaseParts(ctx, sliceID, placed)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if len(refusals) > 0 {
		return nil, &NoPlacementError{Refusals: refusals}
	}
	return placed, nil
}

// placeOne reserves a part at the cheapest of its candidates that accepted, fits the
// budget and still has room; it returns nil and the reasons when none does.
func (b *Broker) placeOne(ctx context.Context, sliceID string, spec sdk.PartSpec, cands []candidate, why []string, budget Budget) (*Placement, []string, error) {
	nodes := spec.Resources().Nodes
	var ok []candidate
	reasons := append([]string(nil), why...)
	for _, c := range cands {
		switch {
		case c.err != nil:
			reasons = append(reasons, b.offerFailure(c.provider, c.err))
		case !c.offer.Accepted:
			reasons = append(reasons, fmt.Sprintf("%s: %s", c.provider, nonEmpty(c.offer.Reason, "refused")))
		default:
			if why := budget.check(unitPrice(budget.Model, c.offer.PricePerDay, nodes)); why != "" {
				reasons = append(reasons, fmt.Sprintf("%s: %s", c.provider, why))
				continue
			}
			ok = append(ok, c)
		}
	}
	sort.SliceStable(ok, func(i, j int) bool {
		if ok[i].offer.PricePerDay != ok[j].offer.PricePerDay {
			return ok[i].offer.PricePerDay < ok[j].offer.PricePerDay
		}
		return ok[i].provider < ok[j].provider
	})
	for _, c := range ok {
		err := b.store.Reserve(ctx, c.provider, holder(sliceID, spec.Ref.PartID),
			store.Hold{Resources: c.offer.Requested}, store.Hold{Resources: c.offer.Capacity})
		if errors.Is(err, store.ErrNoRoom) {
			reasons = append(reasons, fmt.Sprintf("%s: %s (reserved by other slices)", c.provider,
				strings.TrimPrefix(err.Error(), "provider "+c.provider+": no room: ")))
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reserve part %s at %s: %w", spec.Ref.PartID, c.provider, err)
		}
		return &Placement{Part: spec.Ref.PartID, Provider: c.provider, Offer: c.offer}, nil, nil
	}
	if len(reasons) == 0 {
		reasons = []string{"no provider"}
	}
	return nil, reasons, nil
}

// offerFailure says that a provider could not answer, for tenants: the plugin's own
// message when it gave one (an application error with a code), "unavailable" when the
// provider's plugin could not be reached or started (the details, which name server
// paths, go to the log).
func (b *Broker) offerFailure(provider string, err error) string {
	switch sdk.CodeOf(err) {
	case sdk.CodeUnknown, sdk.CodeUnavailable, sdk.CodeInternal, sdk.CodeDeadlineExceeded, sdk.CodeCanceled:
		b.log.Warn("offer failed", "provider", provider, "error", err)
		return fmt.Sprintf("%s: provider unavailable", provider)
	}
	return fmt.Sprintf("%s: offer failed: %v", provider, err)
}

func unitPrice(model string, perDay float64, nodes int) (float64, string) {
	if strings.EqualFold(model, PerMachinePerDay) && nodes > 0 {
		return perDay / float64(nodes), "per machine per day"
	}
	return perDay, "per day"
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// eligible lists the providers that could host a part, and, when none can, why.
func (b *Broker) eligible(r PartRequest) ([]string, []string) {
	var out []string
	atLocation, withVIM := 0, 0
	for _, p := range b.cat.Providers {
		if p.DC == nil || contains(r.Exclude, p.Name) {
			continue
		}
		if !providers.MatchLocation(r.Spec.Location, p.Location) {
			continue
		}
		atLocation++
		if !strings.EqualFold(p.DC.VIM, r.VIM) {
			continue
		}
		withVIM++
		if !p.DC.Serves(r.Spec.Type, r.VIM) {
			continue
		}
		out = append(out, p.Name)
	}
	if len(out) > 0 {
		return out, nil
	}
	loc := r.Spec.Location
	if loc == "" {
		loc = "any location"
	}
	switch {
	case atLocation == 0:
		return nil, []string{fmt.Sprintf("no provider at location %s", loc)}
	case withVIM == 0:
		return nil, []string{fmt.Sprintf("no provider at %s offers VIM %s", loc, r.VIM)}
	default:
		return nil, []string{fmt.Sprintf("no provider at %s offers %s parts with VIM %s", loc, r.Spec.Type, r.VIM)}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (b *Broker) offer(ctx context.Context, provider string, spec sdk.PartSpec) (sdk.Offer, error) {
	ctx, cancel := context.WithTimeout(ctx, b.OfferTimeout)
	defer cancel()
	vim, err := b.plugins.VIM(ctx, provider)
	if err != nil {
		return sdk.Offer{}, err
	}
	return vim.Offer(ctx, spec)
}

// ReleasePart drops a part's reservation.
func (b *Broker) ReleasePart(ctx context.Context, sliceID, part, provider string) error {
	return b.store.Release(ctx, provider, holder(sliceID, part))
}

func (b *Broker) releaseParts(ctx context.Context, sliceID string, placed []Placement) {
	for _, p := range placed {
		if err := b.store.Release(ctx, p.Provider, holder(sliceID, p.Part)); err != nil {
			b.log.Warn("release reservation", "slice", sliceID, "part", p.Part, "provider", p.Provider, "error", err)
		}
	}
}

// Resize changes a part's reservation at its provider to amount (vertical elasticity),
// refusing with store.ErrNoRoom when the provider's capacity would be exceeded.
func (b *Broker) Resize(ctx context.Context, sliceID, part, provider string, amount, capacity sdk.Resources) error {
	return b.store.Reserve(ctx, provider, holder(sliceID, part), store.Hold{Resources: amount}, store.Hold{Resources: capacity})
}

// LinkRequest is one link to place.
type LinkRequest struct {
	Spec sdk.LinkSpec
	// WIM is the NECOS WIM name asked for, e.g. VXLAN; empty accepts any.
	WIM string
}

// LinkPlacement is who builds a link; Provider is empty when the catalogue has no WAN
// provider at all (the link is then recorded but not built).
type LinkPlacement struct {
	Link     string
	Provider string
	Offer    sdk.LinkOffer
}

// PlaceLinks picks, for every link, the cheapest WAN provider that joins both ends'
// sites, accepts the link and fits the budget. A catalogue without any WAN provider
// yields placements with no provider: such links are recorded, reported as not built.
func (b *Broker) PlaceLinks(ctx context.Context, reqs []LinkRequest, budget Budget) ([]LinkPlacement, error) {
	var wans []providers.Provider
	for _, p := range b.cat.Providers {
		if p.WAN != nil {
			wans = append(wans, p)
		}
	}
	out := make([]LinkPlacement, len(reqs))
	if len(wans) == 0 {
		for i, r := range reqs {
			out[i] = LinkPlacement{Link: r.Spec.Ref.LinkID}
		}
		return out, nil
	}
	type result struct {
		provider string
		offer    sdk.LinkOffer
		err      error
	}
	results := make([][]result, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		for _, p := range wans {
			if !p.WAN.Joins(r.Spec.End1.Site, r.Spec.End2.Site) || (r.WIM != "" && p.WAN.WIM != "" && !strings.EqualFold(p.WAN.WIM, r.WIM)) {
				continue
			}
			j := len(results[i])
			results[i] = append(results[i], result{provider: p.Name})
			wg.Add(1)
			go func() {
				defer wg.Done()
				octx, cancel := context.WithTimeout(ctx, b.OfferTimeout)
				defer cancel()
				wan, err := b.plugins.WAN(octx, results[i][j].provider)
				if err == nil {
					results[i][j].offer, err = wan.OfferLink(octx, r.Spec)
				}
				results[i][j].err = err
			}()
		}
	}
	wg.Wait()
	var refusals []Refusal
	for i, r := range reqs {
		var reasons []string
		best := -1
		for j, res := range results[i] {
			switch {
			case res.err != nil:
				reasons = append(reasons, b.offerFailure(res.provider, res.err))
			case !res.offer.Accepted:
				reasons = append(reasons, fmt.Sprintf("%s: %s", res.provider, nonEmpty(res.offer.Reason, "refused")))
			default:
				if why := budget.check(res.offer.PricePerDay, "per link per day"); why != "" {
					reasons = append(reasons, fmt.Sprintf("%s: %s", res.provider, why))
					continue
				}
				if best < 0 || res.offer.PricePerDay < results[i][best].offer.PricePerDay {
					best = j
				}
			}
		}
		if best < 0 {
			if len(reasons) == 0 {
				reasons = []string{fmt.Sprintf("no WAN provider joins %s and %s", r.Spec.End1.Site, r.Spec.End2.Site)}
			}
			refusals = append(refusals, Refusal{Part: r.Spec.Ref.LinkID, Reasons: reasons})
			continue
		}
		out[i] = LinkPlacement{Link: r.Spec.Ref.LinkID, Provider: results[i][best].provider, Offer: results[i][best].offer}
	}
	if len(refusals) > 0 {
		return nil, &NoPlacementError{Refusals: refusals}
	}
	return out, nil
}
