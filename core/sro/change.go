package sro

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/builder"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Elasticity is declarative: ResizePart, ScalePart, AddPart and RemovePart check the
// request, write it as an intent to the store (store.PartChange on the part's record; a
// new part's record for an add) and enqueue the slice; the reconciler converges the
// intent with the steps creation uses — reserve or place, ask the backend, record — and
// rolls it back when a step fails. Every step is recorded before the next, so a necosd
// killed at any point resumes the change, or finishes its rollback, when it leads again.
// The callers wait for the change's outcome (read back from its events when another
// necosd converged it), so their answers keep their form.

var (
	errBusy  = errors.New("a change of the part is pending")
	errStale = errors.New("the part changed since it was read")
)

// changePoll is how often a caller whose change another necosd converges looks at it.
const changePoll = 250 * time.Millisecond

// waiter is a caller in this process waiting for a change's outcome.
type waiter struct {
	done chan struct{}
	err  error
}

func (e *Engine) register(id string) *waiter {
	w := &waiter{done: make(chan struct{})}
	e.mu.Lock()
	if e.waiters == nil {
		e.waiters = map[string]*waiter{}
	}
	e.waiters[id] = w
	e.mu.Unlock()
	return w
}

func (e *Engine) unregister(id string) {
	e.mu.Lock()
	delete(e.waiters, id)
	e.mu.Unlock()
}

// settle hands a change's outcome to its waiter in this process, if any.
func (e *Engine) settle(id string, err error) {
	e.mu.Lock()
	w := e.waiters[id]
	delete(e.waiters, id)
	e.mu.Unlock()
	if w != nil {
		w.err = err
		close(w.done)
	}
}

// changeFailure is a failed change's error as its record or event tells it, when the
// original error (with its chain) is in another process.
type changeFailure struct {
	msg    string
	full   bool
	budget bool
	code   sdk.Code
}

func (c *changeFailure) Error() string { return c.msg }

func (c *changeFailure) Unwrap() []error {
	var out []error
	if c.full {
		out = append(out, ErrProviderFull)
	}
	if c.budget {
		out = append(out, broker.ErrOverBudget)
	}
	if c.code != sdk.CodeOK && c.code != sdk.CodeUnknown {
		out = append(out, &sdk.Error{Code: c.code, Message: c.msg})
	}
	return out
}

func failureData(err error) map[string]string {
	return map[string]string{"full": strconv.FormatBool(IsProviderFull(err)),
		"budget": strconv.FormatBool(errors.Is(err, broker.ErrOverBudget)), "code": strconv.Itoa(int(sdk.CodeOf(err)))}
}

func failureOf(msg string, data map[string]string) error {
	code, _ := strconv.Atoi(data["code"])
	return &changeFailure{msg: msg, full: data["full"] == "true", budget: data["budget"] == "true", code: sdk.Code(code)}
}

// request writes the change build returns for a Ready part of a Ready slice (after any
// change pending on the part ends), enqueues the slice and waits for the outcome.
func (e *Engine) request(ctx context.Context, sliceID, part, what string, build func(*store.Part) (*store.PartChange, error)) error {
	for {
		p, err := e.readyPart(ctx, sliceID, part)
		if err != nil {
			return fmt.Errorf("%s part %s/%s: %w", what, sliceID, part, err)
		}
		if p.Change != nil {
			// One change of a part at a time: this one waits its turn.
			if err := e.awaitFree(ctx, sliceID, part, p.Change.ID); err != nil {
				return fmt.Errorf("%s part %s/%s: %w", what, sliceID, part, err)
			}
			continue
		}
		c, err := build(p)
		if err != nil {
			return err
		}
		c.ID, c.CreatedAt = store.NewID("c-"), time.Now().UTC()
		w := e.register(c.ID)
		_, err = e.store.UpdatePart(ctx, sliceID, part, func(x *store.Part) ([]store.Event, error) {
			switch {
			case x.Change != nil:
				return nil, errBusy
			case !x.UpdatedAt.Equal(p.UpdatedAt):
				return nil, errStale
			case x.State != store.PartReady:
				return nil, fmt.Errorf("part is %s: %w", x.State, ErrNotReady)
			}
			x.Change = c
			return nil, nil
		})
		if errors.Is(err, errBusy) || errors.Is(err, errStale) {
			e.unregister(c.ID)
			continue
		}
		if err != nil {
			e.unregister(c.ID)
			return fmt.Errorf("%s part %s/%s: %w", what, sliceID, part, err)
		}
		e.kick(ctx, sliceID)
		return e.await(ctx, sliceID, part, c, w)
	}
}

// kick makes the leader reconcile the slice: this engine's queue, and, when another
// necosd leads, a write of the slice's record that its watch sees.
func (e *Engine) kick(ctx context.Context, sliceID string) {
	e.queue.Add(sliceID)
	if e.IsLeader() {
		return
	}
	if _, err := e.store.UpdateSlice(ctx, sliceID, func(*store.Slice) ([]store.Event, error) { return nil, nil }); err != nil {
		e.log.Warn("touch slice for the leader", "slice", sliceID, "error", err)
	}
}

// awaitFree waits until the part no longer has change id pending.
func (e *Engine) awaitFree(ctx context.Context, sliceID, part, id string) error {
	t := time.NewTicker(changePoll / 5)
	defer t.Stop()
	for {
		p, err := e.store.GetPart(ctx, sliceID, part)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (p.Change == nil || p.Change.ID != id)) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// await waits for change c of a part to end: converged (nil) or rolled back (why).
func (e *Engine) await(ctx context.Context, sliceID, part string, c *store.PartChange, w *waiter) error {
	defer e.unregister(c.ID)
	t := time.NewTicker(changePoll)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return w.err
		case <-ctx.Done():
			return fmt.Errorf("%s of part %s/%s is still under way, left to the reconciler: %w", c.Kind, sliceID, part, ctx.Err())
		case <-t.C:
		}
		p, err := e.store.GetPart(ctx, sliceID, part)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err == nil && p.Change != nil && p.Change.ID == c.ID {
			sl, err := e.store.GetSlice(ctx, sliceID)
			if errors.Is(err, store.ErrNotFound) || (err == nil && sl.Deleting) {
				return fmt.Errorf("%s of part %s/%s: slice is being decommissioned: %w", c.Kind, sliceID, part, ErrNotReady)
			}
			continue
		}
		// The change ended in another process (or this one's settle is on its way).
		select {
		case <-w.done:
			return w.err
		default:
		}
		return e.outcome(ctx, sliceID, part, c, err == nil)
	}
}

// outcome reads a change's outcome from its slice's events.
func (e *Engine) outcome(ctx context.Context, sliceID, part string, c *store.PartChange, partExists bool) error {
	evs, err := e.store.Events(ctx, sliceID)
	if err != nil {
		return err
	}
	for i := len(evs) - 1; i >= 0; i-- {
		ev := evs[i]
		if ev.Data["change"] != c.ID {
			continue
		}
		switch ev.Type {
		case EvPartResized, EvPartScaled, EvPartAdded, EvPartRemoved:
			return nil
		case EvPartResizeFailed, EvPartScaleFailed, EvPartAddFailed, EvPartRemoveFailed:
			return failureOf(ev.Message, ev.Data)
		}
	}
	if c.Kind == store.ChangeRemove && !partExists {
		return nil
	}
	if sl, err := e.store.GetSlice(ctx, sliceID); errors.Is(err, store.ErrNotFound) || (err == nil && sl.Deleting) {
		return fmt.Errorf("%s of part %s/%s: slice is being decommissioned: %w", c.Kind, sliceID, part, ErrNotReady)
	}
	return fmt.Errorf("%s of part %s/%s ended without an outcome", c.Kind, sliceID, part)
}

// ResizePart sets the vCPUs and/or memory (zero leaves a value as it is) of the nodes of
// a VDU of a part, or of one node of it when node is set (vertical elasticity). A part
// that grows is priced by its provider's offer against the slice's DC budget, as at
// creation (broker.ErrOverBudget when the new price breaks it). The new size is
// reserved at the provider first (ErrProviderFull when it does not fit), then
// the VIM resizes, then the part's observed state (and, for a VDU-wide change, its
// spec) is recorded. A refusal gives the reservation back. It returns once the change
// is converged or rolled back.
func (e *Engine) ResizePart(ctx context.Context, sliceID, part, vdu, node string, cpus int, memMB int64) error {
	if cpus < 0 || memMB < 0 || (cpus == 0 && memMB == 0) {
		return sdk.Errorf(sdk.CodeInvalidArgument, "resize part %s/%s: cpus and memory_mb must be >= 0 and one of them > 0, got %d and %d", sliceID, part, cpus, memMB)
	}
	return e.request(ctx, sliceID, part, "resize", func(p *store.Part) (*store.PartChange, error) {
		v, ok := p.Spec.VDU(vdu)
		if !ok {
			return nil, fmt.Errorf("resize part %s/%s: no VDU %q: %w", sliceID, part, vdu, ErrNotFound)
		}
		var delta sdk.Resources
		targets := 0
		for _, n := range nodesOf(p, v) {
			if node != "" && n.Name != node {
				continue
			}
			targets++
			if cpus > 0 {
				delta.CPUs += cpus - n.CPUs
			}
			if memMB > 0 {
				delta.MemoryMB += memMB - n.MemoryMB
			}
		}
		if node != "" && targets == 0 {
			return nil, fmt.Errorf("resize part %s/%s: no node %q in VDU %s: %w", sliceID, part, node, vdu, ErrNotFound)
		}
		hold, err := e.currentHold(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("resize part %s/%s: %w", sliceID, part, err)
		}
		return &store.PartChange{Kind: store.ChangeResize, VDU: vdu, Node: node, CPUs: cpus, MemoryMB: memMB,
			Hold: store.AmountOf(hold), Want: store.AmountOf(hold.Add(delta))}, nil
	})
}

// ScalePart sets the number of nodes of a VDU of a part (vertical elasticity: one more
// worker). A part that grows is priced against the slice's DC budget as ResizePart's
// is. The nodes added are reserved at the provider first (ErrProviderFull when they
// do not fit), then the VIM scales, then the part's spec and observed state are
// recorded. A refusal gives the reservation back. It returns once the change is
// converged or rolled back.
func (e *Engine) ScalePart(ctx context.Context, sliceID, part, vdu string, instances int) error {
	if instances < 0 {
		return sdk.Errorf(sdk.CodeInvalidArgument, "scale part %s/%s: instances must be >= 0, got %d", sliceID, part, instances)
	}
	return e.request(ctx, sliceID, part, "scale", func(p *store.Part) (*store.PartChange, error) {
		v, ok := p.Spec.VDU(vdu)
		if !ok {
			return nil, fmt.Errorf("scale part %s/%s: no VDU %q: %w", sliceID, part, vdu, ErrNotFound)
		}
		d := instances - len(nodesOf(p, v))
		delta := sdk.Resources{CPUs: d * v.CPUs, MemoryMB: int64(d) * v.MemoryMB, StorageGB: int64(d) * v.StorageGB, Nodes: d}
		hold, err := e.currentHold(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("scale part %s/%s: %w", sliceID, part, err)
		}
		return &store.PartChange{Kind: store.ChangeScale, VDU: vdu, Instances: instances,
			Hold: store.AmountOf(hold), Want: store.AmountOf(hold.Add(delta))}, nil
	})
}

// AddPart adds a copy of the part template to a Ready slice (horizontal elasticity):
// the same VIM and VDUs — as the tenant's spec describes the template, or as the store
// holds it for a part that is itself elastic — under a new name, placed by the broker at
// another provider than the template's (location from opts, budget from the slice's
// cost.dc-model), created, and linked to the core part through the WAN provider the
// broker picks (VNI from the store; a link no WAN provider can build fails the add, or
// is recorded NotBuilt when the slice accepts links not built, as slice creation does).
// The part and its link are recorded with Elastic set, so they show in the slice's
// record and its monitoring and go with its decommission.
//
// The new part's record, with its intent, is written first; the reconciler places,
// links, creates and connects it. On any failure everything made for the new part is
// removed again — link, domains, reservation, VNI, records — and the error says why (a
// *broker.NoPlacementError in its chain when no provider could take the part).
func (e *Engine) AddPart(ctx context.Context, sliceID, template string, opts AddPartOptions) (*store.Part, error) {
	for {
		v, err := e.readyView(ctx, sliceID)
		if err != nil {
			return nil, fmt.Errorf("add part to %s: %w", sliceID, err)
		}
		tp, ok := v.Part(template)
		if !ok {
			return nil, fmt.Errorf("add part to %s: no template part %q: %w", sliceID, template, ErrNotFound)
		}
		s, err := v.Spec()
		if err != nil {
			return nil, fmt.Errorf("add part to %s: %w", sliceID, err)
		}
		name := opts.Name
		if name == "" {
			name = nextPartName(v, template)
		} else if _, taken := v.Part(name); taken {
			return nil, sdk.Errorf(sdk.CodeAlreadyExists, "add part to %s: part %q exists", sliceID, name)
		}
		ps, vimName := e.copySpec(s, tp, sliceID, v.Slice.Tenant, name)
		if opts.Location != "" {
			ps.Location = opts.Location
		}
		c := &store.PartChange{ID: store.NewID("c-"), Kind: store.ChangeAdd, Template: template, Exclude: tp.Provider,
			VIM: vimName, BandwidthGB: opts.BandwidthGB, Reason: opts.Reason, CreatedAt: time.Now().UTC()}
		to := opts.LinkTo
		if to == "" {
			to = corePart(s)
		}
		if to != "" && to != name {
			if _, ok := v.Part(to); !ok {
				return nil, fmt.Errorf("add part %s to %s: link-to: slice has no part %q: %w", name, sliceID, to, ErrNotFound)
			}
			c.LinkTo, c.Link = to, fmt.Sprintf("%s-to-%s", to, name)
			for i := 2; hasLink(v, c.Link); i++ {
				c.Link = fmt.Sprintf("%s-to-%s-%d", to, name, i)
			}
		}
		np := &store.Part{SliceID: sliceID, Name: name, UUID: store.NewUUID(), Spec: ps,
			State: store.PartPlanned, Elastic: true, Change: c}
		w := e.register(c.ID)
		// Recorded before anything is reserved or built: a crash from here on leaves a
		// record that the reconciler resumes or rolls back, never an orphan.
		err = e.store.CreatePart(ctx, np)
		if errors.Is(err, store.ErrExists) && opts.Name == "" {
			e.unregister(c.ID) // another add took the name meanwhile: take the next
			continue
		}
		if err != nil {
			e.unregister(c.ID)
			if errors.Is(err, store.ErrExists) {
				return nil, sdk.Errorf(sdk.CodeAlreadyExists, "add part to %s: part %q exists", sliceID, name)
			}
			return nil, fmt.Errorf("add part %s to %s: %w", name, sliceID, err)
		}
		e.kick(ctx, sliceID)
		if err := e.await(ctx, sliceID, name, c, w); err != nil {
			return nil, err
		}
		return e.store.GetPart(ctx, sliceID, name)
	}
}

// RemovePart removes a part that AddPart added, with its links, from a Ready slice
// (scaling back in). Parts of the tenant's spec are refused: the slice's decommission
// removes those. A removal that fails is retried by the reconciler (a part half
// disconnected cannot be put back); the caller gets the first failure.
func (e *Engine) RemovePart(ctx context.Context, sliceID, part string) error {
	return e.request(ctx, sliceID, part, "remove", func(p *store.Part) (*store.PartChange, error) {
		if !p.Elastic {
			return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "remove part %s/%s: only parts added by elasticity can be removed from a slice", sliceID, part)
		}
		return &store.PartChange{Kind: store.ChangeRemove}, nil
	})
}

// convergeChanges converges (or rolls back) every change pending on the slice's parts
// and says how many there were. It returns an error only for what a retry may fix (the
// store, a lost leadership).
func (e *Engine) convergeChanges(ctx context.Context, sl *store.Slice) (int, error) {
	parts, err := e.store.ListParts(ctx, sl.ID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range parts {
		if p.Change == nil {
			continue
		}
		var err error
		switch p.Change.Kind {
		case store.ChangeResize, store.ChangeScale:
			err = e.convergeSize(ctx, sl, p)
		case store.ChangeAdd:
			err = e.convergeAdd(ctx, sl, p)
		case store.ChangeRemove:
			err = e.convergeRemove(ctx, p)
		default:
			err = e.clearChange(ctx, p, nil)
		}
		n++
		if err != nil {
			return n, err
		}
		if cur, err := e.store.GetSlice(ctx, sl.ID); err != nil || cur.Deleting {
			return n, err // decommission takes over
		}
	}
	return n, nil
}

// clearChange removes p's change from its record with the events given.
func (e *Engine) clearChange(ctx context.Context, p *store.Part, f func(*store.Part) []store.Event) error {
	id := p.Change.ID
	_, err := e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
		if x.Change == nil || x.Change.ID != id {
			return nil, errNoChange
		}
		var evs []store.Event
		if f != nil {
			evs = f(x)
		}
		x.Change = nil
		return evs, nil
	})
	if errors.Is(err, errNoChange) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// markFailed records why change c failed, with its failure event, before the rollback.
func (e *Engine) markFailed(ctx context.Context, p *store.Part, err error, ev store.Event) error {
	id := p.Change.ID
	ev.Message = err.Error()
	ev.Data["change"] = id
	for k, v := range failureData(err) {
		ev.Data[k] = v
	}
	_, uerr := e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
		if x.Change == nil || x.Change.ID != id {
			return nil, errNoChange
		}
		x.Change.Failed = err.Error()
		if x.Change.Drift != "" {
			// A repair is tried again at every health pass: its failure is recorded as
			// the part's drift, with an event only when that drift is new.
			return nil, nil
		}
		return []store.Event{ev}, nil
	})
	if errors.Is(uerr, errNoChange) {
		return nil
	}
	if uerr != nil {
		return uerr
	}
	p.Change.Failed = err.Error()
	e.mu.Lock()
	if e.failures == nil {
		e.failures = map[string]error{}
	}
	e.failures[id] = err
	e.mu.Unlock()
	return nil
}

// failure returns the error a rolled back change failed with: the original when this
// process failed it, else as its record tells.
func (e *Engine) failure(c *store.PartChange) error {
	e.mu.Lock()
	err := e.failures[c.ID]
	delete(e.failures, c.ID)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return &changeFailure{msg: c.Failed}
}

func sizeWhat(c *store.PartChange, have int) string {
	switch {
	case c.Drift != "" && c.Kind == store.ChangeScale:
		return fmt.Sprintf("VDU %s back to %d nodes, drift: %s", c.VDU, c.Instances, c.Drift)
	case c.Drift != "":
		return resizeWhat(c.VDU, c.Node, c.CPUs, c.MemoryMB) + ", drift: " + c.Drift
	case c.Kind == store.ChangeScale:
		return fmt.Sprintf("VDU %s from %d to %d nodes", c.VDU, have, c.Instances)
	}
	return resizeWhat(c.VDU, c.Node, c.CPUs, c.MemoryMB)
}

// nextSpec is the part's spec once size change c is made.
func nextSpec(ps sdk.PartSpec, c *store.PartChange) sdk.PartSpec {
	switch {
	case c.Kind == store.ChangeScale:
		return withVDU(ps, c.VDU, func(x *sdk.VDUSpec) { x.Instances = c.Instances })
	case c.Node == "":
		return withVDU(ps, c.VDU, func(x *sdk.VDUSpec) {
			if c.CPUs > 0 {
				x.CPUs = c.CPUs
			}
			if c.MemoryMB > 0 {
				x.MemoryMB = c.MemoryMB
			}
		})
	}
	return ps
}

// pricedSpec is the spec a size change is priced by (and its provider's capacity asked
// with): the part's spec once the change is made. A resize of one node leaves the spec
// as it is, so that node is set apart, as a VDU of its own at its new size: the
// provider then prices what the part will hold.
func pricedSpec(p *store.Part, c *store.PartChange) sdk.PartSpec {
	next := nextSpec(p.Spec, c)
	v, ok := p.Spec.VDU(c.VDU)
	if c.Kind != store.ChangeResize || c.Node == "" || !ok || v.Instances < 1 {
		return next
	}
	if _, taken := p.Spec.VDU(c.Node); taken {
		return next
	}
	one := v
	one.Name, one.Instances = c.Node, 1
	for _, n := range nodesOf(p, v) {
		if n.Name == c.Node {
			one.CPUs, one.MemoryMB = n.CPUs, n.MemoryMB
		}
	}
	if c.CPUs > 0 {
		one.CPUs = c.CPUs
	}
	if c.MemoryMB > 0 {
		one.MemoryMB = c.MemoryMB
	}
	out := withVDU(next, c.VDU, func(x *sdk.VDUSpec) { x.Instances-- })
	out.VDUs = append(out.VDUs, one)
	return out
}

// grows reports whether a size change asks for more of anything than the part holds:
// only such a change is checked against the budget, so that a part whose provider's
// prices rose past the budget can still shrink.
func grows(c *store.PartChange) bool {
	want, had := c.Want.Resources(), c.Hold.Resources()
	return want.Nodes > had.Nodes || want.CPUs > had.CPUs || want.MemoryMB > had.MemoryMB || want.StorageGB > had.StorageGB
}

// dcBudget is the tenant's bound on a part's price: the plan's, from the slice's stored
// spec, as the parts were placed with at creation.
func (e *Engine) dcBudget(sl *store.Slice) (broker.Budget, error) {
	s, err := StoredSpec(sl)
	if err != nil {
		e.recordCorrupt(sl, err)
		return broker.Budget{}, err
	}
	return builder.New(sl.ID, sl.Tenant, s).DCBudget, nil
}

// convergeSize makes a resize or scale: check the new size's price against the slice's
// budget, reserve the new size (recorded), ask the VIM (idempotent: it sets a size, it
// does not add to one), record the part; a failure gives the previous reservation back.
func (e *Engine) convergeSize(ctx context.Context, sl *store.Slice, p *store.Part) error {
	c := p.Change
	if c.Failed != "" {
		return e.rollbackSize(ctx, p)
	}
	have := 0
	if v, ok := p.Spec.VDU(c.VDU); ok {
		have = len(nodesOf(p, v))
	}
	what := sizeWhat(c, have)
	failType, doneType, call, verb := EvPartResizeFailed, EvPartResized, "resize", "resize"
	if c.Kind == store.ChangeScale {
		failType, doneType, call, verb = EvPartScaleFailed, EvPartScaled, "scale", "scale"
	}
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err() // not a failure of the change: resumed on the next lead
		}
		err = fmt.Errorf("%s part %s/%s (%s) at %s: %w", verb, p.SliceID, p.Name, what, p.Provider, fullErr(err))
		if merr := e.markFailed(ctx, p, err, store.Event{Type: failType, Part: p.Name,
			Data: map[string]string{"provider": p.Provider}}); merr != nil {
			return merr
		}
		return e.rollbackSize(ctx, p)
	}
	priced := pricedSpec(p, c)
	offer, oerr := e.callOffer(ctx, p.Provider, priced)
	if !c.Reserved {
		if oerr != nil {
			return fail(fmt.Errorf("capacity of %s: %w", p.Provider, oerr))
		}
		// Checked before anything is reserved, so a refusal has nothing to give back; a
		// change resumed once reserved was checked before its reservation.
		// A drift repair restores what the part was granted: the budget was checked then.
		if grows(c) && c.Drift == "" {
			budget, err := e.dcBudget(sl)
			if err != nil {
				return fail(err)
			}
			if err := budget.CheckPart(offer, priced); err != nil {
				return fail(err)
			}
		}
		// The provider's capacity comes with its offer; whether it would accept the
		// whole part again does not matter here (the part already holds most of it).
		capacity := offer.Capacity
		if c.Drift != "" {
			// The part's recorded size, which the ledger holds for it (the health pass
			// corrected the hold first) and the provider must give it back.
			capacity = sdk.Resources{}
		}
		if err := e.broker.Resize(ctx, p.SliceID, p.Name, p.Provider, c.Want.Resources(), capacity); err != nil {
			if errors.Is(err, store.ErrNoRoom) {
				err = fmt.Errorf("%w: %w", ErrProviderFull, err)
			}
			return fail(err)
		}
		if _, err := e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
			if x.Change == nil || x.Change.ID != c.ID {
				return nil, errNoChange
			}
			x.Change.Reserved = true
			return nil, nil
		}); err != nil {
			return fail(err)
		}
	}
	obs, err := e.callVIM(ctx, p.Provider, call, func(ctx context.Context, vim sdk.VIM) (sdk.Part, error) {
		if c.Kind == store.ChangeScale {
			return vim.Scale(ctx, sdk.ScaleRequest{Ref: p.Ref(), VDU: c.VDU, Instances: c.Instances})
		}
		return vim.Resize(ctx, sdk.ResizeRequest{Ref: p.Ref(), VDU: c.VDU, Node: c.Node, CPUs: c.CPUs, MemoryMB: c.MemoryMB})
	})
	if err != nil {
		return fail(err)
	}
	price := 0.0
	if oerr == nil {
		price = offer.PricePerDay
	}
	err = e.clearChange(ctx, p, func(x *store.Part) []store.Event {
		x.Observed = recordObserved(x.Observed, obs, c)
		x.Spec = nextSpec(x.Spec, c)
		if price > 0 {
			x.PricePerDay = price
		}
		data := map[string]string{"provider": p.Provider, "vdu": c.VDU, "change": c.ID}
		if c.Drift != "" {
			data["drift"] = c.Drift
		}
		if c.Kind == store.ChangeScale {
			data["instances"] = fmt.Sprint(c.Instances)
		} else {
			data["node"], data["cpus"], data["memory_mb"] = c.Node, fmt.Sprint(c.CPUs), fmt.Sprint(c.MemoryMB)
		}
		return []store.Event{{Type: doneType, Part: p.Name, Message: what + " at " + p.Provider, Data: data}}
	})
	if err != nil {
		return err
	}
	e.settle(c.ID, nil)
	e.log.Info("part "+verb+"d", "slice", p.SliceID, "part", p.Name, "what", what, "provider", p.Provider)
	return nil
}

// recordObserved is the part's Observed once size change c is made and the VIM answered
// obs: the nodes the change resized or added as obs describes them, the other nodes of
// obs at their recorded size, and recorded nodes obs lacks (of a VDU the change did not
// scale) kept. So a change records what it made and nothing of the drift of other nodes
// (another size, gone, or one necos did not make), which the health pass then repairs
// instead of finding it recorded.
func recordObserved(old *sdk.Part, obs sdk.Part, c *store.PartChange) *sdk.Part {
	if old == nil {
		return &obs
	}
	recorded := map[string]sdk.Node{}
	for _, n := range old.Nodes {
		recorded[n.Name] = n
	}
	out := obs
	out.Nodes = make([]sdk.Node, 0, len(obs.Nodes))
	seen := map[string]bool{}
	for _, n := range obs.Nodes {
		r, ok := recorded[n.Name]
		switch {
		case c.Kind == store.ChangeResize && n.VDU == c.VDU && (c.Node == "" || n.Name == c.Node):
		case c.Kind == store.ChangeScale && n.VDU == c.VDU && !ok:
		case ok:
			n.CPUs, n.MemoryMB, n.StorageGB = r.CPUs, r.MemoryMB, r.StorageGB
		default:
			continue
		}
		seen[n.Name] = true
		out.Nodes = append(out.Nodes, n)
	}
	for _, r := range old.Nodes {
		if !seen[r.Name] && (c.Kind != store.ChangeScale || r.VDU != c.VDU) {
			out.Nodes = append(out.Nodes, r)
		}
	}
	return &out
}

// rollbackSize gives a failed size change's reservation back and clears the change.
func (e *Engine) rollbackSize(ctx context.Context, p *store.Part) error {
	c := p.Change
	// A zero capacity is not checked: giving back what was held always fits.
	if err := e.broker.Resize(ctx, p.SliceID, p.Name, p.Provider, c.Hold.Resources(), sdk.Resources{}); err != nil {
		return fmt.Errorf("restore reservation of %s at %s: %w", holderOf(p.SliceID, p.Name), p.Provider, err)
	}
	if err := e.clearChange(ctx, p, nil); err != nil {
		return err
	}
	e.settle(c.ID, e.failure(c))
	return nil
}

// convergeAdd adds a part: place it (reservation), record where; plan and record its
// link (VNI); create it; connect the link; record it Ready. Each step is recorded before
// the next and is skipped when its record shows it done; a step that fails removes
// everything made for the part.
func (e *Engine) convergeAdd(ctx context.Context, sl *store.Slice, p *store.Part) error {
	c := p.Change
	if c.Failed != "" {
		return e.undoAdd(ctx, p)
	}
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = fmt.Errorf("add part %s to %s: %w", p.Name, p.SliceID, err)
		if merr := e.markFailed(ctx, p, err, store.Event{Type: EvPartAddFailed, Part: p.Name,
			Data: map[string]string{"template": c.Template}}); merr != nil {
			return merr
		}
		return e.undoAdd(ctx, p)
	}
	s, err := StoredSpec(sl)
	if err != nil {
		e.recordCorrupt(sl, err)
		return fail(err)
	}
	plan := builder.New(sl.ID, sl.Tenant, s)
	why := "copy of " + c.Template
	if c.Reason != "" {
		why += ", " + c.Reason
	}
	if p.Provider == "" {
		// A placement interrupted before it was recorded may have left a reservation.
		if err := e.releaseHolder(ctx, p.SliceID, p.Name); err != nil {
			return err
		}
		placed, err := e.broker.PlaceParts(ctx, p.SliceID, []broker.PartRequest{{Spec: p.Spec, VIM: c.VIM, Exclude: []string{c.Exclude}}}, plan.DCBudget)
		if err != nil {
			return fail(err)
		}
		pl := placed[0]
		np, err := e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
			x.Provider, x.PricePerDay = pl.Provider, pl.Offer.PricePerDay
			return []store.Event{{Type: EvPartAdding, Part: p.Name,
				Message: fmt.Sprintf("%s at %s (%s)", why, pl.Provider, p.Spec.Location),
				Data:    map[string]string{"template": c.Template, "provider": pl.Provider, "change": c.ID}}}, nil
		})
		if err != nil {
			return err // resumed: the reservation is released and the part placed again
		}
		p = np
	}
	v, err := e.view(ctx, sl)
	if err != nil {
		return err
	}
	var link *store.Link
	if c.Link != "" {
		for _, l := range v.Links {
			if l.Name == c.Link {
				link = l
			}
		}
		if link == nil {
			// A plan interrupted before its record may have left the link's VNI.
			if err := e.store.ReleaseVNI(ctx, vniHolder(p.SliceID, c.Link)); err != nil {
				return err
			}
			// The link is placed and recorded before the part is created, as slice
			// creation plans links before it builds parts: the WAN provider's offer
			// provisions the new part's site (its namespace), which the VIM needs to
			// plug the part's bridge into.
			if link, err = e.planNewLink(ctx, v, s, plan, c.Template, p, c.LinkTo, c.Link, c.BandwidthGB); err != nil {
				return fail(err)
			}
		}
	}
	if p.State != store.PartReady {
		if err := e.createPart(ctx, p); err != nil {
			return fail(err)
		}
	}
	if cur, err := e.store.GetSlice(ctx, p.SliceID); err != nil || cur.Deleting {
		return err // decommission takes over
	}
	if link != nil && link.Provider != "" && link.State != store.LinkReady && link.State != store.LinkNotBuilt {
		if err := e.connectLink(ctx, link); err != nil {
			return fail(err)
		}
		link.State = store.LinkReady
	}
	msg := fmt.Sprintf("%s at %s", why, p.Provider)
	if link != nil {
		if link.State == store.LinkReady {
			msg += fmt.Sprintf(", linked to %s by %s (VNI %d)", linkOther(link, p.Name), link.Provider, link.Spec.VNI)
		} else {
			msg += fmt.Sprintf(", link to %s recorded, %s", linkOther(link, p.Name), link.Message)
		}
	}
	if err := e.clearChange(ctx, p, func(x *store.Part) []store.Event {
		return []store.Event{{Type: EvPartAdded, Part: p.Name, Message: msg,
			Data: map[string]string{"template": c.Template, "provider": p.Provider, "change": c.ID}}}
	}); err != nil {
		return err
	}
	e.settle(c.ID, nil)
	e.log.Info("part added", "slice", p.SliceID, "part", p.Name, "template", c.Template, "provider", p.Provider)
	return nil
}

// undoAdd removes what an add made (its link first, then the part, each with its
// reservation or VNI and its record), then settles the change with its failure. A
// cleanup step that fails is retried by the reconciler.
func (e *Engine) undoAdd(ctx context.Context, p *store.Part) error {
	c := p.Change
	if c.Link != "" {
		links, err := e.store.ListLinks(ctx, p.SliceID)
		if err != nil {
			return err
		}
		found := false
		for _, l := range links {
			if l.Name == c.Link {
				found = true
				if err := e.disconnectLink(ctx, l); err != nil {
					return fmt.Errorf("undo add of %s/%s: %w", p.SliceID, p.Name, err)
				}
			}
		}
		if !found {
			if err := e.store.ReleaseVNI(ctx, vniHolder(p.SliceID, c.Link)); err != nil {
				return err
			}
		}
	}
	if err := e.deletePart(ctx, p); err != nil {
		return fmt.Errorf("undo add of %s/%s: %w", p.SliceID, p.Name, err)
	}
	e.settle(c.ID, e.failure(c))
	return nil
}

// convergeRemove disconnects a part's links and deletes it. A failure is recorded and
// retried: what was disconnected cannot be connected back with certainty.
func (e *Engine) convergeRemove(ctx context.Context, p *store.Part) error {
	c := p.Change
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = fmt.Errorf("remove part %s/%s: %w", p.SliceID, p.Name, err)
		data := failureData(err)
		data["change"] = c.ID
		e.partEvent(ctx, p.SliceID, store.Event{Type: EvPartRemoveFailed, Part: p.Name, Message: err.Error(), Data: data})
		e.settle(c.ID, err)
		return err
	}
	links, err := e.store.ListLinks(ctx, p.SliceID)
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.Spec.End1.Part == p.Name || l.Spec.End2.Part == p.Name {
			if err := e.disconnectLink(ctx, l); err != nil {
				return fail(err)
			}
		}
	}
	if err := e.deletePart(ctx, p); err != nil {
		return fail(err)
	}
	e.partEvent(ctx, p.SliceID, store.Event{Type: EvPartRemoved, Part: p.Name, Message: "from " + p.Provider,
		Data: map[string]string{"change": c.ID}})
	e.settle(c.ID, nil)
	return nil
}

// releaseHolder drops the reservation of part name at every provider (a part not yet
// placed, or placed without the record saying where).
func (e *Engine) releaseHolder(ctx context.Context, sliceID, name string) error {
	for _, pr := range e.cat.Providers {
		if err := e.broker.ReleasePart(ctx, sliceID, name, pr.Name); err != nil {
			return err
		}
	}
	return nil
}
