// Package broker is the marketplace: it finds, for every part of a slice, the providers
// that could host it, asks their plugins for offers in parallel, and picks per part the
// cheapest offer that fits the location, the capacity and the tenant's budget, reserving
// it atomically in the store so that concurrent slices never double-book a provider.
package broker

import (
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
	// OfferPatience is how long a placement keeps asking again a provider whose offer
	// failed for want of an answer (its plugin down or restarting, or too slow under
	// load), while the part or link has no acceptable offer from anyone else: a provider
	// slow under load costs the tenant time, not the slice. When it runs out, the refusal
	// says the providers were unavailable (see NoPlacementError.Unavailable).
	OfferPatience time.Duration
	// retryPause is the first pause between two asks; it doubles up to maxRetryPause.
	retryPause time.Duration
}

// maxRetryPause bounds the pause between two offers asked of an unanswering provider.
const maxRetryPause = 5 * time.Second

// New returns a broker over a catalogue's providers.
func New(cat *providers.Catalogue, plugins Plugins, st *store.Store, logger hclog.Logger) *Broker {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Broker{cat: cat, plugins: plugins, store: st, log: logger, OfferTimeout: 30 * time.Second,
		OfferPatience: 2 * time.Minute, retryPause: 250 * time.Millisecond}
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

// ErrOverBudget is in the chain of every *BudgetError: a price that breaks the
// tenant's budget, at creation or when a part grows.
var ErrOverBudget = errors.New("over budget")

// BudgetError says that a price breaks a budget.
type BudgetError struct {
	// Price is per Unit, as the budget's model counts it.
	Price  float64
	Unit   string
	Budget Budget
}

func (e *BudgetError) Error() string {
	b := e.Budget
	switch b.Op {
	case "<=", "<":
		return fmt.Sprintf("over budget by €%.2f (€%.2f %s, budget %s%.2f)", e.Price-b.Euros, e.Price, e.Unit, b.Op, b.Euros)
	case "=", "==", ">=", ">":
		return fmt.Sprintf("outside budget (€%.2f %s, budget %s%.2f)", e.Price, e.Unit, b.Op, b.Euros)
	}
	return fmt.Sprintf("unknown budget operator %q", b.Op)
}

func (e *BudgetError) Is(target error) bool { return target == ErrOverBudget }

// CheckPart says whether an offer for a part of spec fits the budget, priced per the
// budget's model (per machine: the offer's price over the spec's nodes): nil, or a
// *BudgetError. Placements at creation and the growth of a placed part (vertical
// elasticity) are priced by it alike.
func (b Budget) CheckPart(o sdk.Offer, spec sdk.PartSpec) error {
	return b.check(unitPrice(b.Model, o.PricePerDay, spec.Resources().Nodes))
}

// check returns nil when price (already per the model's unit) satisfies the bound, else
// a *BudgetError saying why not.
func (b Budget) check(price float64, unit string) error {
	if b.Op == "" {
		return nil
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
	}
	if ok {
		return nil
	}
	return &BudgetError{Price: price, Unit: unit, Budget: b}
}

// PartRequest is one DC part to place.
type PartRequest struct {
	Spec sdk.PartSpec
	// VIM is the NECOS VIM name asked for, e.g. KUBERNETES.
	VIM string
	// Exclude lists providers not to use (horizontal elasticity wants another one).
	Exclude []string
	// Linked names the parts of the same request this one has a link to: linked parts
	// go to distinct providers when their locations and room allow it, so that their
	// link crosses the WAN rather than joining two bridges of one site.
	Linked []string
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
	// Link says that Part names a link (a net-slice-part).
	Link bool `json:"link,omitempty"`
	// Unavailable says that every provider that could have hosted it failed to answer
	// (for OfferPatience): asking again later may succeed.
	Unavailable bool `json:"unavailable,omitempty"`
}

// NoPlacementError lists, per part, why nothing fits.
type NoPlacementError struct {
	Refusals []Refusal
}

// Unavailable reports whether nothing was refused but for providers that did not
// answer: the slice may be placed when asked again, unlike one that does not fit.
func (e *NoPlacementError) Unavailable() bool {
	for _, r := range e.Refusals {
		if !r.Unavailable {
			return false
		}
	}
	return len(e.Refusals) > 0
}

func (e *NoPlacementError) Error() string {
	var b strings.Builder
	b.WriteString("no provider can host")
	if e.Unavailable() {
		b.Reset()
		b.WriteString("no provider answered in time (try again later)")
	}
	for i, r := range e.Refusals {
		if i > 0 {
			b.WriteString(";")
		}
		kind := "part"
		if r.Link {
			kind = "link"
		}
		fmt.Fprintf(&b, " %s %s: %s", kind, r.Part, strings.Join(r.Reasons, ", "))
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

// partWork is one part being placed: its request, the providers whose offers fit
// its location, VIM and budget (cheapest first), and why the others do not.
type partWork struct {
	req     PartRequest
	ok      []candidate
	reasons []string
	// unavailable: every eligible provider failed to answer.
	unavailable bool
}

// PlaceParts places every part or none: on success each part holds a reservation at its
// provider; on failure nothing is reserved and the error is a *NoPlacementError with
// the reasons per part (unless an infrastructure error occurred).
//
// The parts' holds are taken together in one transaction of the store (see
// [store.Store.ReserveAll]), from ledgers read at one revision: concurrent slices never
// overbook a provider, and a slice never holds some of its parts while failing the
// others, so a slice is refused only when the slices already placed leave no room.
func (b *Broker) PlaceParts(ctx context.Context, sliceID string, reqs []PartRequest, budget Budget) ([]Placement, error) {
	works := b.offers(ctx, reqs, budget)
	var refusals []Refusal
	for _, w := range works {
		if len(w.ok) == 0 {
			refusals = append(refusals, Refusal{Part: w.req.Spec.Ref.PartID, Reasons: nonEmptyReasons(w.reasons), Unavailable: w.unavailable})
		}
	}
	if len(refusals) > 0 {
		return nil, &NoPlacementError{Refusals: refusals}
	}
	var providers, holders []string
	seen := map[string]bool{}
	for _, w := range works {
		holders = append(holders, holder(sliceID, w.req.Spec.Ref.PartID))
		for _, c := range w.ok {
			if !seen[c.provider] {
				seen[c.provider] = true
				providers = append(providers, c.provider)
			}
		}
	}
	sort.Strings(providers)
	var placed []Placement
	err := b.store.ReserveAll(ctx, providers, holders, func(granted map[string]store.Hold) ([]store.Claim, error) {
		var refused *NoPlacementError
		placed, refused = assign(works, granted)
		if refused != nil {
			return nil, refused
		}
		claims := make([]store.Claim, len(placed))
		for i, pl := range placed {
			claims[i] = store.Claim{Provider: pl.Provider, Holder: holder(sliceID, pl.Part),
				Amount: store.Hold{Resources: pl.Offer.Requested}, Capacity: store.Hold{Resources: pl.Offer.Capacity}}
		}
		return claims, nil
	})
	var refused *NoPlacementError
	if errors.As(err, &refused) {
		return nil, refused
	}
	if err != nil {
		return nil, fmt.Errorf("reserve the parts of %s: %w", sliceID, err)
	}
	return placed, nil
}

// offers asks every eligible provider of every part for an offer, all in parallel, and
// keeps per part those that accepted and fit the budget.
func (b *Broker) offers(ctx context.Context, reqs []PartRequest, budget Budget) []*partWork {
	works := make([]*partWork, len(reqs))
	cands := make([][]candidate, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		works[i] = &partWork{req: r}
		eligible, why := b.eligible(r)
		works[i].reasons = why
		cands[i] = make([]candidate, len(eligible))
		settled := newSettle()
		for j, p := range eligible {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := candidate{provider: p}
				c.err = b.patiently(ctx, settled.done, func(actx context.Context) error {
					var err error
					c.offer, err = b.offer(actx, p, r.Spec)
					return err
				})
				if c.err == nil && c.offer.Accepted && budget.CheckPart(c.offer, r.Spec) == nil {
					settled.settle()
				}
				cands[i][j] = c
			}()
		}
	}
	wg.Wait()
	for i, w := range works {
		w.unavailable = len(cands[i]) > 0 && len(w.reasons) == 0
		for _, c := range cands[i] {
			if !transient(c.err) {
				w.unavailable = false
			}
			switch {
			case c.err != nil:
				w.reasons = append(w.reasons, b.offerFailure(c.provider, c.err))
			case !c.offer.Accepted:
				w.reasons = append(w.reasons, fmt.Sprintf("%s: %s", c.provider, nonEmpty(c.offer.Reason, "refused")))
			default:
				if err := budget.CheckPart(c.offer, w.req.Spec); err != nil {
					w.reasons = append(w.reasons, fmt.Sprintf("%s: %v", c.provider, err))
					continue
				}
				w.ok = append(w.ok, c)
			}
		}
		sort.SliceStable(w.ok, func(a, b int) bool {
			if w.ok[a].offer.PricePerDay != w.ok[b].offer.PricePerDay {
				return w.ok[a].offer.PricePerDay < w.ok[b].offer.PricePerDay
			}
			return w.ok[a].provider < w.ok[b].provider
		})
	}
	return works
}

func nonEmptyReasons(r []string) []string {
	if len(r) == 0 {
		return []string{"no provider"}
	}
	return r
}

// maxAssignSteps bounds the search for an assignment that fits when the first choice
// of every part does not: enough for any slice within the documented part limits.
const maxAssignSteps = 20_000

// assign chooses a provider for every part, given what each provider has granted to
// other slices: the cheapest that has room, preferring for each part a provider none
// of its linked parts is at. Parts with the fewest candidates choose first, so that a
// part that can go to one provider only is not crowded out by one that could go
// anywhere. When the parts' first choices do not fit together, other combinations are
// searched (a bounded depth-first search). It returns the placements in the order of
// works, or why a part cannot be placed.
func assign(works []*partWork, granted map[string]store.Hold) ([]Placement, *NoPlacementError) {
	order := make([]int, len(works))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(works[order[a]].ok) < len(works[order[b]].ok) })
	byName := map[string]int{}
	for i, w := range works {
		byName[w.req.Spec.Ref.PartID] = i
	}
	used := make(map[string]store.Hold, len(granted))
	for p, g := range granted {
		used[p] = g
	}
	at := make([]int, len(works)) // index into works[i].ok, -1 while unplaced
	for i := range at {
		at[i] = -1
	}
	steps := 0
	// colocated counts the placed parts linked to part i at provider p.
	colocated := func(i int, p string) int {
		n := 0
		for _, other := range works[i].req.Linked {
			if j, ok := byName[other]; ok && at[j] >= 0 && works[j].ok[at[j]].provider == p {
				n++
			}
		}
		return n
	}
	var place func(k int) bool
	place = func(k int) bool {
		if k == len(order) {
			return true
		}
		i := order[k]
		w := works[i]
		choices := make([]int, len(w.ok))
		for c := range choices {
			choices[c] = c
		}
		// Cheapest first (w.ok is sorted so), then fewest linked parts alongside.
		sort.SliceStable(choices, func(a, b int) bool {
			return colocated(i, w.ok[choices[a]].provider) < colocated(i, w.ok[choices[b]].provider)
		})
		for _, c := range choices {
			if steps++; steps > maxAssignSteps {
				return false
			}
			cand := w.ok[c]
			amount := store.Hold{Resources: cand.offer.Requested}
			if store.Fits(used[cand.provider], amount, store.Hold{Resources: cand.offer.Capacity}) != nil {
				continue
			}
			prev := used[cand.provider]
			used[cand.provider], at[i] = prev.Add(amount), c
			if place(k + 1) {
				return true
			}
			used[cand.provider], at[i] = prev, -1
		}
		return false
	}
	if place(0) {
		out := make([]Placement, len(works))
		for i, w := range works {
			c := w.ok[at[i]]
			out[i] = Placement{Part: w.req.Spec.Ref.PartID, Provider: c.provider, Offer: c.offer}
		}
		return out, nil
	}
	return nil, &NoPlacementError{Refusals: noRoom(works, order, granted)}
}

// noRoom says why the parts do not fit: for each part that finds no room once the parts
// before it (in order) took their cheapest room, what each of its providers lacks, and
// whether the room went to other slices or to this slice's own parts.
func noRoom(works []*partWork, order []int, granted map[string]store.Hold) []Refusal {
	used := make(map[string]store.Hold, len(granted))
	for p, g := range granted {
		used[p] = g
	}
	var out []Refusal
	for _, i := range order {
		w := works[i]
		reasons := append([]string(nil), w.reasons...)
		placed := false
		for _, c := range w.ok {
			amount, capacity := store.Hold{Resources: c.offer.Requested}, store.Hold{Resources: c.offer.Capacity}
			err := store.Fits(used[c.provider], amount, capacity)
			if err == nil {
				used[c.provider] = used[c.provider].Add(amount)
				placed = true
				break
			}
			why := strings.TrimPrefix(err.Error(), store.ErrNoRoom.Error()+": ")
			switch {
			case store.Fits(store.Hold{}, amount, capacity) != nil:
				reasons = append(reasons, fmt.Sprintf("%s: %s (more than the provider has)", c.provider, why))
			case store.Fits(granted[c.provider], amount, capacity) == nil:
				reasons = append(reasons, fmt.Sprintf("%s: %s (taken by this slice's other parts)", c.provider, why))
			default:
				reasons = append(reasons, fmt.Sprintf("%s: %s (reserved by other slices)", c.provider, why))
			}
		}
		if !placed {
			out = append(out, Refusal{Part: w.req.Spec.Ref.PartID, Reasons: nonEmptyReasons(reasons)})
		}
	}
	if len(out) == 0 {
		// Every part fits alone in this order, yet the search found no combination in
		// its bounds: say so rather than nothing.
		for _, i := range order {
			out = append(out, Refusal{Part: works[i].req.Spec.Ref.PartID,
				Reasons: []string{"the parts do not fit together at the providers that could host them"}})
		}
	}
	return out
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

// offer asks one provider for an offer (ctx bounds the call: see patiently).
func (b *Broker) offer(ctx context.Context, provider string, spec sdk.PartSpec) (sdk.Offer, error) {
	vim, err := b.plugins.VIM(ctx, provider)
	if err != nil {
		return sdk.Offer{}, err
	}
	return vim.Offer(ctx, sdk.OfferRequest{Part: spec})
}

// ReleasePart drops a part's reservation.
func (b *Broker) ReleasePart(ctx context.Context, sliceID, part, provider string) error {
	return b.store.Release(ctx, provider, holder(sliceID, part))
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

// LinkPlacement is who builds a link; Provider is empty for a link no WAN provider can
// build.
type LinkPlacement struct {
	Link     string
	Provider string
	Offer    sdk.LinkOffer
}

// NoWANProvider is why a link is refused by a catalogue without any WAN provider.
const NoWANProvider = "no WAN provider in the catalogue builds links"

// PlaceLinks picks, for every link, the cheapest WAN provider that joins both ends'
// sites, accepts the link and fits the budget. When some link finds none, the error is
// a *NoPlacementError naming each such link and why, and the placements are returned
// all the same, with no provider for those links (for a tenant who accepts links not
// built); any other error returns no placements.
func (b *Broker) PlaceLinks(ctx context.Context, reqs []LinkRequest, budget Budget) ([]LinkPlacement, error) {
	var wans []providers.Provider
	for _, p := range b.cat.Providers {
		if p.WAN != nil {
			wans = append(wans, p)
		}
	}
	out := make([]LinkPlacement, len(reqs))
	if len(wans) == 0 {
		refusals := make([]Refusal, len(reqs))
		for i, r := range reqs {
			out[i] = LinkPlacement{Link: r.Spec.Ref.LinkID}
			refusals[i] = Refusal{Part: r.Spec.Ref.LinkID, Reasons: []string{NoWANProvider}, Link: true}
		}
		if len(reqs) == 0 {
			return out, nil
		}
		return out, &NoPlacementError{Refusals: refusals}
	}
	type result struct {
		provider string
		offer    sdk.LinkOffer
		err      error
	}
	results := make([][]result, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		settled := newSettle()
		for _, p := range wans {
			if !p.WAN.Joins(r.Spec.End1.Site, r.Spec.End2.Site) || (r.WIM != "" && p.WAN.WIM != "" && !strings.EqualFold(p.WAN.WIM, r.WIM)) {
				continue
			}
			j := len(results[i])
			results[i] = append(results[i], result{provider: p.Name})
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := result{provider: p.Name}
				res.err = b.patiently(ctx, settled.done, func(actx context.Context) error {
					wan, err := b.plugins.WAN(actx, res.provider)
					if err == nil {
						res.offer, err = wan.OfferLink(actx, sdk.OfferLinkRequest{Link: r.Spec})
					}
					return err
				})
				if res.err == nil && res.offer.Accepted && budget.check(res.offer.PricePerDay, "per link per day") == nil {
					settled.settle()
				}
				results[i][j] = res
			}()
		}
	}
	wg.Wait()
	var refusals []Refusal
	for i, r := range reqs {
		var reasons []string
		best := -1
		unavailable := len(results[i]) > 0
		for j, res := range results[i] {
			if !transient(res.err) {
				unavailable = false
			}
			switch {
			case res.err != nil:
				reasons = append(reasons, b.offerFailure(res.provider, res.err))
			case !res.offer.Accepted:
				reasons = append(reasons, fmt.Sprintf("%s: %s", res.provider, nonEmpty(res.offer.Reason, "refused")))
			default:
				if err := budget.check(res.offer.PricePerDay, "per link per day"); err != nil {
					reasons = append(reasons, fmt.Sprintf("%s: %v", res.provider, err))
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
			refusals = append(refusals, Refusal{Part: r.Spec.Ref.LinkID, Reasons: reasons, Link: true, Unavailable: unavailable})
			out[i] = LinkPlacement{Link: r.Spec.Ref.LinkID}
			continue
		}
		out[i] = LinkPlacement{Link: r.Spec.Ref.LinkID, Provider: results[i][best].provider, Offer: results[i][best].offer}
	}
	if len(refusals) > 0 {
		return out, &NoPlacementError{Refusals: refusals}
	}
	return out, nil
}

// settle is closed once a part or link has an acceptable offer: the providers that have
// not answered are then not asked again.
type settle struct {
	once sync.Once
	done chan struct{}
}

func newSettle() *settle { return &settle{done: make(chan struct{})} }

func (s *settle) settle() { s.once.Do(func() { close(s.done) }) }

// transient reports whether an offer failed for want of an answer (the plugin down,
// restarting, or too slow), rather than by the provider's decision.
func transient(err error) bool {
	switch sdk.CodeOf(err) {
	case sdk.CodeUnavailable, sdk.CodeDeadlineExceeded:
		return true
	}
	return false
}

// patiently runs ask, each attempt bounded by OfferTimeout, and asks again, pausing
// longer each time, while it fails transiently, settled is open, ctx lives and
// OfferPatience has not passed since the first attempt. It returns the last error.
func (b *Broker) patiently(ctx context.Context, settled <-chan struct{}, ask func(context.Context) error) error {
	deadline := time.Now().Add(b.OfferPatience)
	pause := b.retryPause
	if pause <= 0 {
		pause = maxRetryPause
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, b.OfferTimeout)
		err := ask(actx)
		cancel()
		if !transient(err) || ctx.Err() != nil {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		b.log.Debug("offer not answered, asking again", "attempt", attempt, "in", min(pause, left), "error", err)
		t := time.NewTimer(min(pause, left))
		select {
		case <-t.C:
		case <-settled:
			t.Stop()
			return err
		case <-ctx.Done():
			t.Stop()
			return err
		}
		pause = min(2*pause, maxRetryPause)
	}
}
