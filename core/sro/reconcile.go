package sro

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/builder"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Event types the engine records.
const (
	EvAccepted    = "slice.accepted"
	EvPlanned     = "slice.planned"
	EvRefused     = "slice.refused"
	EvPartCreate  = "part.creating"
	EvPartReady   = "part.ready"
	EvPartFailed  = "part.failed"
	EvPartDeleted = "part.deleted"
	EvLinkCreate  = "link.connecting"
	EvLinkReady   = "link.ready"
	EvLinkFailed  = "link.failed"
	EvLinkNoWAN   = "link.not-built"
	EvLinkDeleted = "link.deleted"
	EvReady       = "slice.ready"
	EvRollingBack = "slice.rolling-back"
	EvFailed      = "slice.failed"
	EvDeleting    = "slice.deleting"
	// EvDecommissionRequested: the tenant asked for the slice's decommission.
	EvDecommissionRequested = "slice.decommission-requested"
	EvDeleted               = "slice.deleted"
	// EvDegraded: parts of a Ready slice are gone at their provider; EvRecovered: they
	// are back and the slice is Ready again.
	EvDegraded  = "slice.degraded"
	EvRecovered = "slice.recovered"
	// EvUnavailable: the slice was refused because the providers that could host some
	// of it did not answer (down or overloaded) for the broker's OfferPatience; asking
	// again later may succeed.
	EvUnavailable = "slice.unavailable"
)

// Result says when to reconcile a slice again, as controller-runtime's reconcile.Result
// does: a slice that waits for time to pass asks for it, no periodic resync is needed.
type Result struct {
	// RequeueAfter, when > 0, reconciles the slice again after that long.
	RequeueAfter time.Duration
}

// Reconcile takes the next steps of slice id towards what is asked of it: plan and build
// a new slice, roll back a failed one, decommission one being deleted, converge the
// elasticity changes of a Ready one, describe its parts and repair their drift (again
// after HealthInterval).
// An error asks for a retry (with back-off); Run's workers call it, one slice at a time.
func (e *Engine) Reconcile(ctx context.Context, id string) (Result, error) {
	sl, err := e.store.GetSlice(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, nil
	}
	if err != nil {
		return Result{}, err
	}
	if sl.Deleting {
		return Result{}, e.decommission(ctx, sl)
	}
	switch sl.State {
	case store.SlicePending:
		if err := e.plan(ctx, sl); err != nil {
			return Result{}, err
		}
		if sl.State != store.SliceCreating {
			return Result{}, nil
		}
		return e.afterBuild(ctx, sl, e.build(ctx, sl))
	case store.SliceCreating:
		return e.afterBuild(ctx, sl, e.build(ctx, sl))
	case store.SliceRollingBack:
		return Result{}, e.rollback(ctx, sl)
	case store.SliceReady, store.SliceDegraded:
		n, err := e.convergeChanges(ctx, sl)
		if err != nil {
			return Result{}, err
		}
		if n > 0 {
			// The parts were just called: their health round waits, and the next
			// change of the slice is not held up by describing every part.
			return Result{RequeueAfter: e.opts.HealthInterval}, nil
		}
		if err := e.checkHealth(ctx, sl); err != nil {
			return Result{}, err
		}
		return Result{RequeueAfter: e.opts.HealthInterval}, nil
	}
	return Result{}, nil
}

// afterBuild asks for the health round of a slice the build made Ready.
func (e *Engine) afterBuild(ctx context.Context, sl *store.Slice, err error) (Result, error) {
	if err != nil || sl.State != store.SliceReady {
		return Result{}, err
	}
	return Result{RequeueAfter: e.opts.HealthInterval}, nil
}

// plan places the slice's parts and links at providers (reserving them) and records the
// plan, moving the slice to Creating; a slice nothing can host ends Failed with the
// reasons.
func (e *Engine) plan(ctx context.Context, sl *store.Slice) error {
	start := time.Now()
	s, err := StoredSpec(sl)
	if err != nil {
		e.recordCorrupt(sl, err)
		return e.finish(ctx, sl, store.SliceFailed, EvRefused, fmt.Sprintf("spec no longer valid: %v", err))
	}
	p := builder.New(sl.ID, sl.Tenant, s)
	// A plan interrupted before it was recorded may have left reservations behind.
	if err := e.releaseAll(ctx, sl.ID); err != nil {
		return err
	}
	placed, err := e.broker.PlaceParts(ctx, sl.ID, p.Requests(), p.DCBudget)
	var refused *broker.NoPlacementError
	if errors.As(err, &refused) {
		return e.refuse(ctx, sl, refused)
	}
	if err != nil {
		return fmt.Errorf("place parts: %w", err)
	}
	at := map[string]broker.Placement{}
	for _, pl := range placed {
		at[pl.Part] = pl
	}
	links, lerr := e.planLinks(ctx, sl, p, at, linksOptional(s))
	if lerr != nil {
		if err := e.releaseAll(ctx, sl.ID); err != nil {
			return err
		}
		if errors.As(lerr, &refused) {
			return e.refuse(ctx, sl, refused)
		}
		return lerr
	}
	// Parts go straight to Creating: every part is created right after the plan is
	// recorded, and a part in Creating or Planned is rolled back the same way.
	var parts []*store.Part
	data := map[string]string{}
	evs := []store.Event{{}}
	for _, pp := range p.Parts {
		pl := at[pp.Spec.Ref.PartID]
		parts = append(parts, &store.Part{SliceID: sl.ID, Name: pp.Spec.Name, UUID: store.NewUUID(),
			Provider: pl.Provider, Spec: pp.Spec, PricePerDay: pl.Offer.PricePerDay, State: store.PartCreating})
		data[pp.Spec.Name] = pl.Provider
		evs = append(evs, store.Event{Type: EvPartCreate, Part: pp.Spec.Name, Message: "at " + pl.Provider})
	}
	for _, l := range links {
		if l.State == store.LinkNotBuilt {
			evs = append(evs, store.Event{Type: EvLinkNoWAN, Link: l.Name, Message: l.Message})
		}
	}
	evs[0] = store.Event{Type: EvPlanned, Message: planMessage(parts, links), Data: data}
	wrote := e.own.begin(sl.ID) // the build goes on from this write
	err = e.store.SavePlan(ctx, sl, parts, links, store.SliceCreating, evs...)
	if err != nil {
		wrote(0)
		cur, gerr := e.store.GetSlice(ctx, sl.ID)
		if gerr == nil && cur.State == store.SlicePending {
			if rerr := e.releaseAll(ctx, sl.ID); rerr != nil {
				e.log.Warn("release after failed plan", "slice", sl.ID, "error", rerr)
			}
		}
		return err
	}
	wrote(sl.Rev)
	e.opts.Metrics.observe("plan", start)
	return nil
}

func planMessage(parts []*store.Part, links []*store.Link) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s at %s", p.Name, p.Provider)
	}
	for _, l := range links {
		if l.Provider != "" {
			fmt.Fprintf(&b, ", %s by %s", l.Name, l.Provider)
		} else {
			fmt.Fprintf(&b, ", %s not built", l.Name)
		}
	}
	return b.String()
}

// planLinks gives each link its ends (the parts' bridges at their providers' sites), a
// VNI, and a WAN provider; a link none can build refuses the slice, or, when the tenant
// accepts links not built, is recorded NotBuilt with the reason.
func (e *Engine) planLinks(ctx context.Context, sl *store.Slice, p *builder.Plan, at map[string]broker.Placement, optional bool) ([]*store.Link, error) {
	if len(p.Links) == 0 {
		return nil, nil
	}
	lp, err := e.placeLinks(ctx, sl.ID, p.Links, at, p.NetBudget, optional)
	if err != nil {
		return nil, err
	}
	// Each link's VNI is allocated at once (a store round trip each); what a failure
	// leaves allocated the caller releases with the slice's other reservations.
	out := make([]*store.Link, len(p.Links))
	errs := make([]error, len(p.Links))
	var wg sync.WaitGroup
	for i, l := range p.Links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = e.record(ctx, lp, i, sl.ID, l.Name, false)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func vniHolder(slice, link string) string { return slice + "/" + link }

func (e *Engine) linkEnd(sliceID, part string, at map[string]broker.Placement) (sdk.LinkEnd, error) {
	pl, ok := at[part]
	if !ok {
		return sdk.LinkEnd{}, fmt.Errorf("part %s is not in this slice", part)
	}
	pr, ok := e.cat.Provider(pl.Provider)
	if !ok || pr.Site == nil {
		return sdk.LinkEnd{}, fmt.Errorf("provider %s of part %s has no WAN site in the catalogue", pl.Provider, part)
	}
	return builder.LinkEnd(sliceID, part, pr.Name, pr.Site.Underlay, pr.Site.Netns), nil
}

// releaseAll drops every reservation and VNI the slice holds.
func (e *Engine) releaseAll(ctx context.Context, sliceID string) error {
	prefix := sliceID + "/"
	// One store round trip per provider, all at once: a plan starts with this, and one
	// after another they cost as much as the rest of the plan.
	errs := make([]error, len(e.cat.Providers)+1)
	var wg sync.WaitGroup
	for i, pr := range e.cat.Providers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.store.ReleasePrefix(ctx, pr.Name, prefix); err != nil {
				errs[i] = fmt.Errorf("release reservations of %s at %s: %w", sliceID, pr.Name, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The VNIs' holders are vniHolder(sliceID, link): the store reads this slice's only.
		if err := e.store.ReleaseSliceVNIs(ctx, sliceID); err != nil {
			errs[len(errs)-1] = err
		}
	}()
	wg.Wait()
	return errors.Join(errs...)
}

// refuse ends a slice no provider can host, recording the reasons per part (or link)
// in the event's data so that the API can name each part.
func (e *Engine) refuse(ctx context.Context, sl *store.Slice, refused *broker.NoPlacementError) error {
	data := map[string]string{}
	for _, r := range refused.Refusals {
		data[r.Part] = strings.Join(r.Reasons, "; ")
	}
	typ := EvRefused
	if refused.Unavailable() {
		typ = EvUnavailable
	}
	return e.finishWith(ctx, sl, store.SliceFailed, store.Event{Type: typ, Message: refused.Error(), Data: data})
}

// finish moves a slice to a final state with an event.
func (e *Engine) finish(ctx context.Context, sl *store.Slice, state store.SliceState, evType, msg string) error {
	return e.finishWith(ctx, sl, state, store.Event{Type: evType, Message: msg})
}

func (e *Engine) finishWith(ctx context.Context, sl *store.Slice, state store.SliceState, ev store.Event) error {
	msg := ev.Message
	next, err := e.store.UpdateSlice(ctx, sl.ID, func(s *store.Slice) ([]store.Event, error) {
		s.State, s.Message = state, msg
		return []store.Event{ev}, nil
	})
	if err != nil {
		return err
	}
	*sl = *next
	e.log.Info("slice "+string(state), "slice", sl.ID, "message", msg)
	return nil
}

// build creates every part not yet Ready in parallel, then connects the links, then
// declares the slice Ready; any failure rolls the slice back.
func (e *Engine) build(ctx context.Context, sl *store.Slice) error {
	start := time.Now()
	parts, err := e.store.ListParts(ctx, sl.ID)
	if err != nil {
		return err
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		if p.State == store.PartReady {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.createPart(ctx, p)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := errors.Join(errs...); err != nil {
		return e.startRollback(ctx, sl, err)
	}
	e.opts.Metrics.observe("parts", start)

	if cur, err := e.store.GetSlice(ctx, sl.ID); err != nil || cur.Deleting {
		return err // the tenant gave up on the slice: decommission takes over
	}
	lstart := time.Now()
	links, err := e.store.ListLinks(ctx, sl.ID)
	if err != nil {
		return err
	}
	lerrs := make([]error, len(links))
	for i, l := range links {
		if l.Provider == "" || l.State == store.LinkReady {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lerrs[i] = e.connectLink(ctx, l)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := errors.Join(lerrs...); err != nil {
		return e.startRollback(ctx, sl, err)
	}
	e.opts.Metrics.observe("links", lstart)

	wrote := e.own.begin(sl.ID) // Reconcile asks for the health round after HealthInterval
	next, err := e.store.UpdateSlice(ctx, sl.ID, func(s *store.Slice) ([]store.Event, error) {
		if s.State != store.SliceCreating || s.Deleting {
			return nil, errNoChange
		}
		s.State, s.Message, s.ReadyAt = store.SliceReady, "", time.Now().UTC()
		return []store.Event{{Type: EvReady, Message: fmt.Sprintf("%d parts, %d links", len(parts), len(links))}}, nil
	})
	if err != nil {
		wrote(0)
		if errors.Is(err, errNoChange) {
			return nil
		}
		return err
	}
	*sl = *next
	wrote(sl.Rev)
	e.opts.Metrics.observe("create", sl.CreatedAt)
	e.log.Info("slice ready", "slice", sl.ID, "parts", len(parts), "links", len(links), "took", time.Since(sl.CreatedAt))
	e.announceReady(ctx, sl)
	return nil
}

var errNoChange = errors.New("no change")

// siteSpec is the part's spec as its provider's VIM gets it: with the namespace of the
// provider's site (where links join the part's bridge), which only placement knows.
func (e *Engine) siteSpec(p *store.Part) sdk.PartSpec {
	s := p.Spec
	if pr, ok := e.cat.Provider(p.Provider); ok && pr.Site != nil && s.Netns == "" {
		s.Netns = pr.Site.Netns
	}
	return s
}

func (e *Engine) createPart(ctx context.Context, p *store.Part) error {
	if p.State != store.PartCreating {
		if _, err := e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
			x.State, x.Message = store.PartCreating, ""
			return []store.Event{{Type: EvPartCreate, Part: p.Name, Message: "at " + p.Provider}}, nil
		}); err != nil {
			return err
		}
	}
	obs, err := e.callVIM(ctx, p.Provider, "create", func(ctx context.Context, vim sdk.VIM) (sdk.Part, error) {
		return vim.Create(ctx, sdk.CreateRequest{Part: e.siteSpec(p)})
	})
	if err != nil {
		err = fmt.Errorf("part %s at %s: %w", p.Name, p.Provider, err)
		if _, uerr := e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
			x.State, x.Message = store.PartFailed, err.Error()
			return []store.Event{{Type: EvPartFailed, Part: p.Name, Message: err.Error()}}, nil
		}); uerr != nil {
			e.log.Warn("record part failure", "part", p.Name, "error", uerr)
		}
		return err
	}
	_, err = e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
		x.State, x.Message, x.Observed = store.PartReady, "", &obs
		return []store.Event{{Type: EvPartReady, Part: p.Name, Message: fmt.Sprintf("%s at %s", nodeCount(len(obs.Nodes)), p.Provider)}}, nil
	})
	return err
}

func (e *Engine) callVIM(ctx context.Context, provider, call string, f func(context.Context, sdk.VIM) (sdk.Part, error)) (sdk.Part, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	start := time.Now()
	vim, err := e.opts.Plugins.VIM(cctx, provider)
	if err != nil {
		return sdk.Part{}, err
	}
	p, err := f(cctx, vim)
	e.opts.Metrics.observePlugin("vim", call, start)
	return p, err
}

func (e *Engine) connectLink(ctx context.Context, l *store.Link) error {
	if _, err := e.store.UpdateLink(ctx, l.SliceID, l.Name, func(x *store.Link) ([]store.Event, error) {
		x.State, x.Message = store.LinkCreating, ""
		return []store.Event{{Type: EvLinkCreate, Link: l.Name, Message: "by " + l.Provider}}, nil
	}); err != nil {
		return err
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	start := time.Now()
	wan, err := e.opts.Plugins.WAN(cctx, l.Provider)
	var obs sdk.Link
	if err == nil {
		obs, err = wan.Connect(cctx, sdk.ConnectRequest{Link: l.Spec})
	}
	e.opts.Metrics.observePlugin("wan", "connect", start)
	if err != nil {
		err = fmt.Errorf("link %s by %s: %w", l.Name, l.Provider, err)
		if _, uerr := e.store.UpdateLink(ctx, l.SliceID, l.Name, func(x *store.Link) ([]store.Event, error) {
			x.State, x.Message = store.LinkFailed, err.Error()
			return []store.Event{{Type: EvLinkFailed, Link: l.Name, Message: err.Error()}}, nil
		}); uerr != nil {
			e.log.Warn("record link failure", "link", l.Name, "error", uerr)
		}
		return err
	}
	_, err = e.store.UpdateLink(ctx, l.SliceID, l.Name, func(x *store.Link) ([]store.Event, error) {
		x.State, x.Message, x.Observed = store.LinkReady, "", &obs
		return []store.Event{{Type: EvLinkReady, Link: l.Name, Message: fmt.Sprintf("VNI %d between %s and %s", obs.VNI, obs.End1.Underlay, obs.End2.Underlay)}}, nil
	})
	return err
}

func (e *Engine) startRollback(ctx context.Context, sl *store.Slice, cause error) error {
	msg := cause.Error()
	next, err := e.store.UpdateSlice(ctx, sl.ID, func(s *store.Slice) ([]store.Event, error) {
		if s.State != store.SliceCreating {
			return nil, errNoChange
		}
		s.State, s.Message = store.SliceRollingBack, msg
		return []store.Event{{Type: EvRollingBack, Message: msg}}, nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return err
	}
	*sl = *next
	if sl.Deleting {
		return nil // decommission takes over on the next reconcile
	}
	return e.rollback(ctx, sl)
}

// rollback removes whatever a failed create made, then marks the slice Failed (the record
// stays, with the reason, until the tenant deletes it).
func (e *Engine) rollback(ctx context.Context, sl *store.Slice) error {
	start := time.Now()
	if err := e.teardown(ctx, sl); err != nil {
		return err
	}
	e.opts.Metrics.observe("rollback", start)
	return e.finish(ctx, sl, store.SliceFailed, EvFailed, sl.Message)
}

// decommission removes every link, then every part, then the slice's record.
func (e *Engine) decommission(ctx context.Context, sl *store.Slice) error {
	start := time.Now()
	e.forgetReady(sl.ID)
	e.notifyGone(sl.ID)
	e.drift.clearSlice(sl.ID)
	if sl.State != store.SliceDeleting {
		next, err := e.store.UpdateSlice(ctx, sl.ID, func(s *store.Slice) ([]store.Event, error) {
			s.State = store.SliceDeleting
			return []store.Event{{Type: EvDeleting}}, nil
		})
		if err != nil {
			return err
		}
		*sl = *next
	}
	if err := e.teardown(ctx, sl); err != nil {
		return err
	}
	if err := e.store.AddEvents(ctx, sl.ID, store.Event{Type: EvDeleted}); err != nil {
		return err
	}
	if err := e.store.DeleteSlice(ctx, sl); err != nil {
		return err
	}
	e.opts.Metrics.observe("decommission", start)
	e.log.Info("slice decommissioned", "slice", sl.ID, "took", time.Since(start))
	return nil
}

// teardown disconnects every link and then deletes every part, in parallel, removing
// each record (and its reservation or VNI) once its backend confirmed. Idempotent.
func (e *Engine) teardown(ctx context.Context, sl *store.Slice) error {
	links, err := e.store.ListLinks(ctx, sl.ID)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	lerrs := make([]error, len(links))
	for i, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lerrs[i] = e.disconnectLink(ctx, l)
		}()
	}
	wg.Wait()
	if err := errors.Join(lerrs...); err != nil {
		return err // parts stay until their links are gone
	}
	parts, err := e.store.ListParts(ctx, sl.ID)
	if err != nil {
		return err
	}
	perrs := make([]error, len(parts))
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			perrs[i] = e.deletePart(ctx, p)
		}()
	}
	wg.Wait()
	if err := errors.Join(perrs...); err != nil {
		return err
	}
	return e.releaseAll(ctx, sl.ID)
}

func (e *Engine) disconnectLink(ctx context.Context, l *store.Link) error {
	if l.Provider != "" {
		cctx, cancel := e.callCtx(ctx)
		defer cancel()
		start := time.Now()
		wan, err := e.opts.Plugins.WAN(cctx, l.Provider)
		if err == nil {
			err = wan.Disconnect(cctx, sdk.DisconnectRequest{Ref: l.Ref()})
		}
		e.opts.Metrics.observePlugin("wan", "disconnect", start)
		if err != nil {
			return fmt.Errorf("disconnect link %s by %s: %w", l.Name, l.Provider, err)
		}
		if err := e.store.ReleaseVNI(ctx, vniHolder(l.SliceID, l.Name)); err != nil {
			return err
		}
	}
	return e.store.DeleteLink(ctx, l.SliceID, l.Name, store.Event{Type: EvLinkDeleted, Link: l.Name})
}

func (e *Engine) deletePart(ctx context.Context, p *store.Part) error {
	if p.Provider == "" {
		// An added part not yet placed, or placed without the record saying where.
		if err := e.releaseHolder(ctx, p.SliceID, p.Name); err != nil {
			return err
		}
		return e.store.DeletePart(ctx, p.SliceID, p.Name, store.Event{Type: EvPartDeleted, Part: p.Name})
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	start := time.Now()
	vim, err := e.opts.Plugins.VIM(cctx, p.Provider)
	if err == nil {
		err = vim.Delete(cctx, sdk.DeleteRequest{Ref: p.Ref()})
	}
	e.opts.Metrics.observePlugin("vim", "delete", start)
	if err != nil {
		return fmt.Errorf("delete part %s at %s: %w", p.Name, p.Provider, err)
	}
	if err := e.broker.ReleasePart(ctx, p.SliceID, p.Name, p.Provider); err != nil {
		return err
	}
	return e.store.DeletePart(ctx, p.SliceID, p.Name, store.Event{Type: EvPartDeleted, Part: p.Name})
}
