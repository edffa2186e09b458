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
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Elasticity operations change a Ready slice: a part's nodes grow (ResizePart), a VDU
// gets more nodes (ScalePart), a copy of a part is added at another provider and linked
// in (AddPart) or such a copy is removed again (RemovePart). Each keeps the store, the
// providers' ledgers and the backends consistent — the reservation is taken before the
// backend is asked, given back when the backend refuses — and records events.

// Event types of the elasticity operations.
const (
	EvPartResized      = "part.resized"
	EvPartResizeFailed = "part.resize-failed"
	EvPartScaled       = "part.scaled"
	EvPartScaleFailed  = "part.scale-failed"
	EvPartAdding       = "part.adding"
	EvPartAdded        = "part.added"
	EvPartAddFailed    = "part.add-failed"
	EvPartRemoved      = "part.removed"
)

var (
	// ErrProviderFull: the part's provider has no room for the change, by necos's ledger
	// (store.ErrNoRoom) or by the backend's own count (sdk.CodeResourceExhausted). Both
	// causes stay in the error's chain. Horizontal elasticity takes over on it.
	ErrProviderFull = errors.New("provider full")
	// ErrNotReady: the slice (or part) is not Ready, or is being decommissioned.
	ErrNotReady = errors.New("not ready")
)

// IsProviderFull reports whether err says the provider lacks room: ErrProviderFull,
// store.ErrNoRoom or a plugin's CodeResourceExhausted.
func IsProviderFull(err error) bool {
	return errors.Is(err, ErrProviderFull) || errors.Is(err, store.ErrNoRoom) ||
		sdk.CodeOf(err) == sdk.CodeResourceExhausted
}

// opLocks serialises the elasticity operations on one part (resize, scale) and on one
// slice (add, remove: names are chosen under it). Slice ids are unique, so one set of
// locks serves every engine of the process. Across processes only the leader acts.
var opLocks keyedMutex

type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// tryLock takes key's lock if nobody holds it; ok is false (and unlock nil) otherwise.
func (k *keyedMutex) tryLock(key string) (unlock func(), ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.m[key]; e != nil {
		return nil, false // held, or about to be
	}
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := &keyedEntry{refs: 1}
	e.mu.Lock()
	k.m[key] = e
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}, true
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// readyView returns a slice that is Ready and not being decommissioned, with its parts
// and links.
func (e *Engine) readyView(ctx context.Context, sliceID string) (*View, error) {
	sl, err := e.store.GetSlice(ctx, sliceID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", sliceID, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if sl.Deleting || sl.State != store.SliceReady {
		what := string(sl.State)
		switch {
		case sl.Deleting:
			what = "being decommissioned"
		case sl.State == store.SliceDegraded:
			what = fmt.Sprintf("%s (%s); it changes again once its parts are back", sl.State, sl.Message)
		}
		return nil, fmt.Errorf("slice %s is %s: %w", sliceID, what, ErrNotReady)
	}
	return e.view(ctx, sl)
}

// readyPart returns a Ready part of a Ready slice.
func (e *Engine) readyPart(ctx context.Context, sliceID, name string) (*store.Part, error) {
	v, err := e.readyView(ctx, sliceID)
	if err != nil {
		return nil, err
	}
	p, ok := v.Part(name)
	if !ok {
		return nil, fmt.Errorf("slice %s has no part %q: %w", sliceID, name, ErrNotFound)
	}
	if p.State != store.PartReady {
		return nil, fmt.Errorf("part %s/%s is %s: %w", sliceID, name, p.State, ErrNotReady)
	}
	return p, nil
}

// nodesOf returns the nodes of one VDU of a part as last observed, or as its spec says
// when it was never observed.
func nodesOf(p *store.Part, vdu sdk.VDUSpec) []sdk.Node {
	if p.Observed != nil {
		return p.Observed.NodesOf(vdu.Name)
	}
	out := make([]sdk.Node, vdu.Instances)
	for i := range out {
		out[i] = sdk.Node{Name: sdk.NodeName(vdu.Name, i+1), VDU: vdu.Name, CPUs: vdu.CPUs, MemoryMB: vdu.MemoryMB, StorageGB: vdu.StorageGB}
	}
	return out
}

// withVDU returns a copy of spec whose VDU vdu was changed by f.
func withVDU(ps sdk.PartSpec, vdu string, f func(*sdk.VDUSpec)) sdk.PartSpec {
	out := ps
	out.VDUs = append([]sdk.VDUSpec(nil), ps.VDUs...)
	for i := range out.VDUs {
		if out.VDUs[i].Name == vdu {
			f(&out.VDUs[i])
		}
	}
	return out
}

func holderOf(sliceID, part string) string { return sliceID + "/" + part }

// reserveChange moves the part's reservation at its provider by delta, checked against
// the capacity the provider announces for next (the part's spec after the change). It
// returns the new price per day the provider quotes for next (0 when unknown) and a
// function giving the previous reservation back. A refusal wraps ErrProviderFull.
func (e *Engine) reserveChange(ctx context.Context, p *store.Part, next sdk.PartSpec, delta sdk.Resources) (price float64, restore func(), err error) {
	old, had, err := e.store.GetHold(ctx, p.Provider, holderOf(p.SliceID, p.Name))
	if err != nil {
		return 0, nil, err
	}
	if !had {
		old = store.Hold{Resources: p.Spec.Resources()}
	}
	// The provider's capacity comes with its offer; whether it would accept the whole
	// part again does not matter here (the part already holds most of it).
	offer, err := e.callOffer(ctx, p.Provider, next)
	if err != nil {
		return 0, nil, fmt.Errorf("capacity of %s: %w", p.Provider, err)
	}
	amount := old.Resources.Add(delta)
	if err := e.broker.Resize(ctx, p.SliceID, p.Name, p.Provider, amount, offer.Capacity); err != nil {
		if errors.Is(err, store.ErrNoRoom) {
			return 0, nil, fmt.Errorf("%w: %w", ErrProviderFull, err)
		}
		return 0, nil, err
	}
	restore = func() {
		// A zero capacity is not checked: giving back what was held always fits.
		rctx, cancel := e.cleanupCtx(ctx)
		defer cancel()
		if err := e.broker.Resize(rctx, p.SliceID, p.Name, p.Provider, old.Resources, sdk.Resources{}); err != nil {
			e.log.Warn("restore reservation", "part", holderOf(p.SliceID, p.Name), "provider", p.Provider, "error", err)
		}
	}
	return offer.PricePerDay, restore, nil
}

func (e *Engine) callOffer(ctx context.Context, provider string, ps sdk.PartSpec) (sdk.Offer, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	start := time.Now()
	vim, err := e.opts.Plugins.VIM(cctx, provider)
	if err != nil {
		return sdk.Offer{}, err
	}
	o, err := vim.Offer(cctx, ps)
	e.opts.Metrics.observePlugin("vim", "offer", start)
	return o, err
}

// cleanupCtx is for undoing a change after ctx may have ended: it keeps ctx's values,
// not its cancellation, and is bounded by the call timeout.
func (e *Engine) cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), e.opts.CallTimeout)
}

// fullErr marks a backend's capacity refusal with ErrProviderFull.
func fullErr(err error) error {
	if err != nil && sdk.CodeOf(err) == sdk.CodeResourceExhausted && !errors.Is(err, ErrProviderFull) {
		return fmt.Errorf("%w: %w", ErrProviderFull, err)
	}
	return err
}

// ResizePart sets the vCPUs and/or memory (zero leaves a value as it is) of the nodes of
// a VDU of a part, or of one node of it when node is set (vertical elasticity). The new
// size is reserved at the provider first (ErrProviderFull when it does not fit), then
// the VIM resizes, then the part's observed state (and, for a VDU-wide change, its
// spec) is recorded. A refusal gives the reservation back.
func (e *Engine) ResizePart(ctx context.Context, sliceID, part, vdu, node string, cpus int, memMB int64) error {
	if cpus < 0 || memMB < 0 || (cpus == 0 && memMB == 0) {
		return sdk.Errorf(sdk.CodeInvalidArgument, "resize part %s/%s: cpus and memory_mb must be >= 0 and one of them > 0, got %d and %d", sliceID, part, cpus, memMB)
	}
	unlock := opLocks.lock(holderOf(sliceID, part))
	defer unlock()
	p, err := e.readyPart(ctx, sliceID, part)
	if err != nil {
		return fmt.Errorf("resize part %s/%s: %w", sliceID, part, err)
	}
	v, ok := p.Spec.VDU(vdu)
	if !ok {
		return fmt.Errorf("resize part %s/%s: no VDU %q: %w", sliceID, part, vdu, ErrNotFound)
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
		return fmt.Errorf("resize part %s/%s: no node %q in VDU %s: %w", sliceID, part, node, vdu, ErrNotFound)
	}
	next := p.Spec
	if node == "" {
		next = withVDU(p.Spec, vdu, func(x *sdk.VDUSpec) {
			if cpus > 0 {
				x.CPUs = cpus
			}
			if memMB > 0 {
				x.MemoryMB = memMB
			}
		})
	}
	what := resizeWhat(vdu, node, cpus, memMB)
	fail := func(err error) error {
		err = fmt.Errorf("resize part %s/%s (%s) at %s: %w", sliceID, part, what, p.Provider, err)
		e.partEvent(ctx, sliceID, store.Event{Type: EvPartResizeFailed, Part: part, Message: err.Error(),
			Data: map[string]string{"provider": p.Provider, "full": fmt.Sprint(IsProviderFull(err))}})
		return err
	}
	price, restore, err := e.reserveChange(ctx, p, next, delta)
	if err != nil {
		return fail(err)
	}
	obs, err := e.callVIM(ctx, p.Provider, "resize", func(ctx context.Context, vim sdk.VIM) (sdk.Part, error) {
		return vim.Resize(ctx, sdk.ResizeRequest{Ref: p.Ref(), VDU: vdu, Node: node, CPUs: cpus, MemoryMB: memMB})
	})
	if err != nil {
		restore()
		return fail(fullErr(err))
	}
	_, err = e.store.UpdatePart(ctx, sliceID, part, func(x *store.Part) ([]store.Event, error) {
		x.Observed = &obs
		if node == "" {
			x.Spec = withVDU(x.Spec, vdu, func(s *sdk.VDUSpec) {
				if cpus > 0 {
					s.CPUs = cpus
				}
				if memMB > 0 {
					s.MemoryMB = memMB
				}
			})
		}
		if price > 0 && node == "" {
			x.PricePerDay = price
		}
		return []store.Event{{Type: EvPartResized, Part: part, Message: what + " at " + p.Provider,
			Data: map[string]string{"provider": p.Provider, "vdu": vdu, "node": node, "cpus": fmt.Sprint(cpus), "memory_mb": fmt.Sprint(memMB)}}}, nil
	})
	if err != nil {
		return fmt.Errorf("resize part %s/%s: record: %w", sliceID, part, err)
	}
	e.log.Info("part resized", "slice", sliceID, "part", part, "what", what, "provider", p.Provider)
	return nil
}

func resizeWhat(vdu, node string, cpus int, memMB int64) string {
	var size []string
	if cpus > 0 {
		size = append(size, fmt.Sprintf("%d vCPUs", cpus))
	}
	if memMB > 0 {
		size = append(size, fmt.Sprintf("%d MB", memMB))
	}
	target := "every node of VDU " + vdu
	if node != "" {
		target = "node " + node + " of VDU " + vdu
	}
	return target + " to " + strings.Join(size, " and ")
}

// ScalePart sets the number of nodes of a VDU of a part (vertical elasticity: one more
// worker). The nodes added are reserved at the provider first (ErrProviderFull when they
// do not fit), then the VIM scales, then the part's spec and observed state are
// recorded. A refusal gives the reservation back.
func (e *Engine) ScalePart(ctx context.Context, sliceID, part, vdu string, instances int) error {
	if instances < 0 {
		return sdk.Errorf(sdk.CodeInvalidArgument, "scale part %s/%s: instances must be >= 0, got %d", sliceID, part, instances)
	}
	unlock := opLocks.lock(holderOf(sliceID, part))
	defer unlock()
	p, err := e.readyPart(ctx, sliceID, part)
	if err != nil {
		return fmt.Errorf("scale part %s/%s: %w", sliceID, part, err)
	}
	v, ok := p.Spec.VDU(vdu)
	if !ok {
		return fmt.Errorf("scale part %s/%s: no VDU %q: %w", sliceID, part, vdu, ErrNotFound)
	}
	have := len(nodesOf(p, v))
	d := instances - have
	delta := sdk.Resources{CPUs: d * v.CPUs, MemoryMB: int64(d) * v.MemoryMB, StorageGB: int64(d) * v.StorageGB, Nodes: d}
	next := withVDU(p.Spec, vdu, func(x *sdk.VDUSpec) { x.Instances = instances })
	what := fmt.Sprintf("VDU %s from %d to %d nodes", vdu, have, instances)
	fail := func(err error) error {
		err = fmt.Errorf("scale part %s/%s (%s) at %s: %w", sliceID, part, what, p.Provider, err)
		e.partEvent(ctx, sliceID, store.Event{Type: EvPartScaleFailed, Part: part, Message: err.Error(),
			Data: map[string]string{"provider": p.Provider, "full": fmt.Sprint(IsProviderFull(err))}})
		return err
	}
	price, restore, err := e.reserveChange(ctx, p, next, delta)
	if err != nil {
		return fail(err)
	}
	obs, err := e.callVIM(ctx, p.Provider, "scale", func(ctx context.Context, vim sdk.VIM) (sdk.Part, error) {
		return vim.Scale(ctx, sdk.ScaleRequest{Ref: p.Ref(), VDU: vdu, Instances: instances})
	})
	if err != nil {
		restore()
		return fail(fullErr(err))
	}
	_, err = e.store.UpdatePart(ctx, sliceID, part, func(x *store.Part) ([]store.Event, error) {
		x.Observed = &obs
		x.Spec = withVDU(x.Spec, vdu, func(s *sdk.VDUSpec) { s.Instances = instances })
		if price > 0 {
			x.PricePerDay = price
		}
		return []store.Event{{Type: EvPartScaled, Part: part, Message: what + " at " + p.Provider,
			Data: map[string]string{"provider": p.Provider, "vdu": vdu, "instances": fmt.Sprint(instances)}}}, nil
	})
	if err != nil {
		return fmt.Errorf("scale part %s/%s: record: %w", sliceID, part, err)
	}
	e.log.Info("part scaled", "slice", sliceID, "part", part, "what", what, "provider", p.Provider)
	return nil
}

// AddPartOptions say where AddPart puts the new part and how it is linked in.
type AddPartOptions struct {
	// Name is the new part's name; empty means "<template>-h<n>" with the lowest n free.
	Name string
	// Location is where the broker looks for a provider (a prefix at a dot boundary
	// matches: EUROPE finds EUROPE.GREECE); empty means the template's location.
	Location string
	// LinkTo is the part the new one is linked to; empty means the first part of type DC
	// of the tenant's spec (the core, as the original linked new edges), else its first
	// part.
	LinkTo string
	// BandwidthGB is the new link's bandwidth-GB; 0 means that of the template's link to
	// LinkTo, else 1.
	BandwidthGB float64
	// Reason says who asked (e.g. "policy cpu-high"); it goes into the events.
	Reason string
}

// AddPart adds a copy of the part template to a Ready slice (horizontal elasticity):
// the same VIM and VDUs — as the tenant's spec describes the template, or as the store
// holds it for a part that is itself elastic — under a new name, placed by the broker at
// another provider than the template's (location from opts, budget from the slice's
// cost.dc-model), created, and linked to the core part through the WAN provider the
// broker picks (VNI from the store; a link no WAN provider can build fails the add, or
// is recorded NotBuilt when the slice accepts links not built, as slice creation does). The part and its link are recorded with
// Elastic set, so they show in the slice's record and its monitoring and go with its
// decommission.
//
// On any failure everything made for the new part is removed again — link, domains,
// reservation, VNI, records — and the error says why (a *broker.NoPlacementError in
// its chain when no provider could take the part).
func (e *Engine) AddPart(ctx context.Context, sliceID, template string, opts AddPartOptions) (*store.Part, error) {
	unlock := opLocks.lock(sliceID)
	defer unlock()
	v, err := e.readyView(ctx, sliceID)
	if err != nil {
		return nil, fmt.Errorf("add part to %s: %w", sliceID, err)
	}
	tp, ok := v.Part(template)
	if !ok {
		return nil, fmt.Errorf("add part to %s: no template part %q: %w", sliceID, template, ErrNotFound)
	}
	s, err := spec.ParseSlice([]byte(v.Slice.Spec))
	if err != nil {
		return nil, fmt.Errorf("add part to %s: stored spec: %w", sliceID, err)
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
	why := "copy of " + template
	if opts.Reason != "" {
		why += ", " + opts.Reason
	}
	fail := func(err error) error {
		err = fmt.Errorf("add part %s to %s: %w", name, sliceID, err)
		e.partEvent(ctx, sliceID, store.Event{Type: EvPartAddFailed, Part: name, Message: err.Error(),
			Data: map[string]string{"template": template}})
		return err
	}
	plan := builder.New(sliceID, v.Slice.Tenant, s)
	placed, err := e.broker.PlaceParts(ctx, sliceID, []broker.PartRequest{{Spec: ps, VIM: vimName, Exclude: []string{tp.Provider}}}, plan.DCBudget)
	if err != nil {
		return nil, fail(err)
	}
	pl := placed[0]
	np := &store.Part{SliceID: sliceID, Name: name, UUID: store.NewUUID(), Provider: pl.Provider, Spec: ps,
		PricePerDay: pl.Offer.PricePerDay, State: store.PartPlanned, Elastic: true}
	// Recorded before anything is built: a crash from here on leaves a record that the
	// slice's decommission cleans up, never an orphan.
	if err := e.store.PutPart(ctx, np, store.Event{Type: EvPartAdding, Part: name,
		Message: fmt.Sprintf("%s at %s (%s)", why, pl.Provider, ps.Location),
		Data:    map[string]string{"template": template, "provider": pl.Provider}}); err != nil {
		if rerr := e.broker.ReleasePart(ctx, sliceID, name, pl.Provider); rerr != nil {
			e.log.Warn("release reservation of unrecorded part", "part", holderOf(sliceID, name), "error", rerr)
		}
		return nil, fail(err)
	}
	// The link is placed and recorded before the part is created, as slice creation
	// plans links before it builds parts: the WAN provider's offer provisions the new
	// part's site (its namespace), which the VIM needs to plug the part's bridge into.
	link, err := e.planNewLink(ctx, v, s, plan, tp, np, opts)
	if err != nil {
		return nil, fail(e.undoAdd(ctx, np, link, err))
	}
	if err := e.createPart(ctx, np); err != nil {
		return nil, fail(e.undoAdd(ctx, np, link, err))
	}
	if cur, err := e.store.GetSlice(ctx, sliceID); err != nil || cur.Deleting {
		if err == nil {
			err = fmt.Errorf("slice is being decommissioned: %w", ErrNotReady)
		}
		return nil, fail(e.undoAdd(ctx, np, link, err))
	}
	if link != nil && link.State == store.LinkPlanned {
		if err := e.connectLink(ctx, link); err != nil {
			return nil, fail(e.undoAdd(ctx, np, link, err))
		}
		link.State = store.LinkReady
	}
	msg := fmt.Sprintf("%s at %s", why, np.Provider)
	if link != nil {
		if link.State == store.LinkReady {
			msg += fmt.Sprintf(", linked to %s by %s (VNI %d)", linkOther(link, name), link.Provider, link.Spec.VNI)
		} else {
			msg += fmt.Sprintf(", link to %s recorded, %s", linkOther(link, name), link.Message)
		}
	}
	out, err := e.store.UpdatePart(ctx, sliceID, name, func(x *store.Part) ([]store.Event, error) {
		return []store.Event{{Type: EvPartAdded, Part: name, Message: msg,
			Data: map[string]string{"template": template, "provider": np.Provider}}}, nil
	})
	if err != nil {
		return nil, fail(e.undoAdd(ctx, np, link, err))
	}
	e.log.Info("part added", "slice", sliceID, "part", name, "template", template, "provider", np.Provider)
	return out, nil
}

func linkOther(l *store.Link, part string) string {
	if l.Spec.End1.Part == part {
		return l.Spec.End2.Part
	}
	return l.Spec.End1.Part
}

// nextPartName returns "<template>-h<n>" with the lowest n no part of the slice uses.
func nextPartName(v *View, template string) string {
	for n := 1; ; n++ {
		name := fmt.Sprintf("%s-h%d", template, n)
		if _, taken := v.Part(name); !taken {
			return name
		}
	}
}

// copySpec returns the spec of a copy of part tp called name, and the NECOS VIM name to
// place it with: from the tenant's spec when it describes tp (a fresh copy of what the
// tenant asked, not of what elasticity grew it to), else from the stored record.
func (e *Engine) copySpec(s *spec.Slice, tp *store.Part, sliceID, tenant, name string) (sdk.PartSpec, string) {
	var ps sdk.PartSpec
	vimName := ""
	if dp, ok := s.Part(tp.Name); ok {
		ps = builder.PartSpec(sliceID, tenant, *dp)
		vimName = dp.VIM.Name
	} else {
		ps = tp.Spec
		ps.VDUs = append([]sdk.VDUSpec(nil), tp.Spec.VDUs...)
	}
	if vimName == "" {
		if pr, ok := e.cat.Provider(tp.Provider); ok && pr.DC != nil {
			vimName = pr.DC.VIM
		}
	}
	if tp.Spec.Labels != nil {
		ps.Labels = make(map[string]string, len(tp.Spec.Labels))
		for k, val := range tp.Spec.Labels {
			ps.Labels[k] = val
		}
	}
	ps.Ref = sdk.PartRef{SliceID: sliceID, PartID: name}
	ps.Name = name
	ps.Bridge = builder.Bridge(sliceID, name)
	return ps, vimName
}

// planNewLink places and records the link of a new part to the slice's core (or
// opts.LinkTo) the way planLinks plans a new slice's links; AddPart connects it once
// the part exists. It returns the link record it made, if any, also on failure, for
// undoAdd.
func (e *Engine) planNewLink(ctx context.Context, v *View, s *spec.Slice, plan *builder.Plan, tp, np *store.Part, opts AddPartOptions) (*store.Link, error) {
	to := opts.LinkTo
	if to == "" {
		to = corePart(s)
	}
	if to == "" || to == np.Name {
		return nil, nil
	}
	target, ok := v.Part(to)
	if !ok {
		return nil, fmt.Errorf("link-to: slice has no part %q", to)
	}
	name := fmt.Sprintf("%s-to-%s", to, np.Name)
	for i := 2; ; i++ {
		if !hasLink(v, name) {
			break
		}
		name = fmt.Sprintf("%s-to-%s-%d", to, np.Name, i)
	}
	bw, wim := builder.BandwidthBps(opts.BandwidthGB), ""
	for _, l := range v.Links {
		ends := [2]string{l.Spec.End1.Part, l.Spec.End2.Part}
		if ends == [2]string{tp.Name, to} || ends == [2]string{to, tp.Name} {
			if bw == 0 {
				bw = l.Spec.BandwidthBps
			}
			if nl, ok := s.Link(l.Name); ok {
				wim = nl.WIM.Name
			}
		}
	}
	if bw == 0 {
		bw = builder.BandwidthBps(1)
	}
	at := map[string]broker.Placement{to: {Part: to, Provider: target.Provider}, np.Name: {Part: np.Name, Provider: np.Provider}}
	bl := builder.Link{Name: name, WIM: wim, Part1: to, Part2: np.Name, BandwidthBps: bw}
	lp, err := e.placeLinks(ctx, v.Slice.ID, []builder.Link{bl}, at, plan.NetBudget, linksOptional(s))
	if err != nil {
		return nil, err // a refusal names the link
	}
	rec, err := e.record(ctx, lp, 0, v.Slice.ID, name, true)
	if err != nil {
		return nil, err
	}
	if rec.State == store.LinkNotBuilt {
		if err := e.store.PutLink(ctx, rec, store.Event{Type: EvLinkNoWAN, Link: name, Message: rec.Message}); err != nil {
			return nil, err
		}
		return rec, nil
	}
	if err := e.store.PutLink(ctx, rec); err != nil {
		if rerr := e.store.ReleaseVNI(ctx, vniHolder(v.Slice.ID, name)); rerr != nil {
			e.log.Warn("release VNI of unrecorded link", "link", name, "error", rerr)
		}
		return nil, err
	}
	return rec, nil
}

// corePart names the part new parts link to by default: the first part of type DC in
// the tenant's spec, else its first part.
func corePart(s *spec.Slice) string {
	for _, p := range s.Parts {
		if strings.EqualFold(p.Type, spec.PartDC) {
			return p.Name
		}
	}
	if len(s.Parts) > 0 {
		return s.Parts[0].Name
	}
	return ""
}

func hasLink(v *View, name string) bool {
	for _, l := range v.Links {
		if l.Name == name {
			return true
		}
	}
	return false
}

// undoAdd removes what AddPart made for np (its link first, then the part, each with
// its reservation or VNI and its record) and returns cause, joined with any cleanup
// failure: a record left behind is removed by the slice's decommission.
func (e *Engine) undoAdd(ctx context.Context, np *store.Part, link *store.Link, cause error) error {
	cctx, cancel := e.cleanupCtx(ctx)
	defer cancel()
	var errs []error
	if link != nil {
		if err := e.disconnectLink(cctx, link); err != nil {
			errs = append(errs, fmt.Errorf("undo: %w", err))
		}
	}
	if len(errs) == 0 {
		if err := e.deletePart(cctx, np); err != nil {
			errs = append(errs, fmt.Errorf("undo: %w", err))
		}
	}
	if len(errs) > 0 {
		e.log.Error("undo of an added part failed; the slice's decommission will finish it",
			"slice", np.SliceID, "part", np.Name, "error", errors.Join(errs...))
		return errors.Join(append([]error{cause}, errs...)...)
	}
	return cause
}

// RemovePart removes a part that AddPart added, with its links, from a Ready slice
// (scaling back in). Parts of the tenant's spec are refused: the slice's decommission
// removes those.
func (e *Engine) RemovePart(ctx context.Context, sliceID, part string) error {
	unlock := opLocks.lock(sliceID)
	defer unlock()
	v, err := e.readyView(ctx, sliceID)
	if err != nil {
		return fmt.Errorf("remove part %s/%s: %w", sliceID, part, err)
	}
	p, ok := v.Part(part)
	if !ok {
		return fmt.Errorf("remove part %s/%s: %w", sliceID, part, ErrNotFound)
	}
	if !p.Elastic {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "remove part %s/%s: only parts added by elasticity can be removed from a slice", sliceID, part)
	}
	unlockPart := opLocks.lock(holderOf(sliceID, part))
	defer unlockPart()
	for _, l := range v.Links {
		if l.Spec.End1.Part == part || l.Spec.End2.Part == part {
			if err := e.disconnectLink(ctx, l); err != nil {
				return fmt.Errorf("remove part %s/%s: %w", sliceID, part, err)
			}
		}
	}
	if err := e.deletePart(ctx, p); err != nil {
		return fmt.Errorf("remove part %s/%s: %w", sliceID, part, err)
	}
	e.partEvent(ctx, sliceID, store.Event{Type: EvPartRemoved, Part: part, Message: "from " + p.Provider})
	return nil
}

// partEvent records an event, logging (not returning) a failure: the operation's own
// result matters more than its note.
func (e *Engine) partEvent(ctx context.Context, sliceID string, ev store.Event) {
	cctx, cancel := e.cleanupCtx(ctx)
	defer cancel()
	if err := e.store.AddEvents(cctx, sliceID, ev); err != nil {
		e.log.Warn("record event", "slice", sliceID, "type", ev.Type, "error", err)
	}
}
