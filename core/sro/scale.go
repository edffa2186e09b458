package sro

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/builder"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Elasticity operations change a Ready slice: a part's nodes grow (ResizePart), a VDU
// gets more nodes (ScalePart), a copy of a part is added at another provider and linked
// in (AddPart) or such a copy is removed again (RemovePart). Each is an intent the
// reconciler converges (change.go); this file holds what they share. The store, the
// providers' ledgers and the backends stay consistent — the reservation is taken before
// the backend is asked, given back when the backend refuses — and events are recorded.

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
	EvPartRemoveFailed = "part.remove-failed"
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

// readyView returns a slice that is Ready and not being decommissioned, with its parts
// and links.
func (e *Engine) readyView(ctx context.Context, sliceID string) (*View, error) {
	sl, err := e.readySlice(ctx, sliceID)
	if err != nil {
		return nil, err
	}
	return e.view(ctx, sl)
}

// readySlice returns a slice that is Ready and not being decommissioned.
func (e *Engine) readySlice(ctx context.Context, sliceID string) (*store.Slice, error) {
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
	return sl, nil
}

// readyPart returns a Ready part of a Ready slice.
func (e *Engine) readyPart(ctx context.Context, sliceID, name string) (*store.Part, error) {
	if _, err := e.readySlice(ctx, sliceID); err != nil {
		return nil, err
	}
	p, err := e.store.GetPart(ctx, sliceID, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("slice %s has no part %q: %w", sliceID, name, ErrNotFound)
	}
	if err != nil {
		return nil, err
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

// currentHold is what the part holds at its provider (its spec's resources when the
// ledger has no hold for it).
func (e *Engine) currentHold(ctx context.Context, p *store.Part) (sdk.Resources, error) {
	h, had, err := e.store.GetHold(ctx, p.Provider, holderOf(p.SliceID, p.Name))
	if err != nil {
		return sdk.Resources{}, err
	}
	if !had {
		return p.Spec.Resources(), nil
	}
	return h.Resources, nil
}

func (e *Engine) callOffer(ctx context.Context, provider string, ps sdk.PartSpec) (sdk.Offer, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	start := time.Now()
	vim, err := e.opts.Plugins.VIM(cctx, provider)
	if err != nil {
		return sdk.Offer{}, err
	}
	o, err := vim.Offer(cctx, sdk.OfferRequest{Part: ps})
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

func linkOther(l *store.Link, part string) string {
	if l.Spec.End1.Part == part {
		return l.Spec.End2.Part
	}
	return l.Spec.End1.Part
}

// nextPartName returns "<template>-h<n>" with the lowest n no part of the slice uses.
func nextPartName(v *View, template string) string {
	for n := 1; ; n++ {
		name := spec.CopyName(template, n)
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

// planNewLink places and records link name between part to and the new part np the way
// planLinks plans a new slice's links (bandwidth and WIM as the template's link to the
// same part, unless bwGB is set); the add connects it once the part exists.
func (e *Engine) planNewLink(ctx context.Context, v *View, s *spec.Slice, plan *builder.Plan, template string, np *store.Part, to, name string, bwGB float64) (*store.Link, error) {
	target, ok := v.Part(to)
	if !ok {
		return nil, fmt.Errorf("link-to: slice has no part %q", to)
	}
	bw, wim := builder.BandwidthBps(bwGB), ""
	for _, l := range v.Links {
		ends := [2]string{l.Spec.End1.Part, l.Spec.End2.Part}
		if ends == [2]string{template, to} || ends == [2]string{to, template} {
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

// partEvent records an event, logging (not returning) a failure: the operation's own
// result matters more than its note.
func (e *Engine) partEvent(ctx context.Context, sliceID string, ev store.Event) {
	cctx, cancel := e.cleanupCtx(ctx)
	defer cancel()
	if err := e.store.AddEvents(cctx, sliceID, ev); err != nil {
		e.log.Warn("record event", "slice", sliceID, "type", ev.Type, "error", err)
	}
}
