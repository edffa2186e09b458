package sro

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Drift repair. A Ready (or Lost) part is recorded three times: its record says what
// necos made (the spec's VDUs and node counts, the nodes' sizes as last set), its
// provider's VIM describes what it holds, and the broker's ledger what is reserved for
// it. Each health pass compares them for every part without a pending change:
//
//   - The ledger's hold differs from the recorded size (bigger, smaller, missing): the
//     hold is set to the recorded size (store.CorrectHold, guarded by the part's
//     revision, with a part.hold-corrected event saying from what to what). No capacity
//     is checked: the ledger must say what the part holds.
//   - The provider holds another number of a VDU's nodes than recorded (a node deleted,
//     or one necos did not make), or a node of another size: a change toward the
//     recorded size is written on the part's record (PartChange with Drift set: Scale to
//     the recorded count, Resize of a node, or of the whole VDU when all of its nodes
//     differ, which also restores the VIM's template for the VDU's new nodes) and
//     converged at once by the path elastic changes take — reserve, call the VIM,
//     record — so a repair is crash-safe and evented (part.scaled or part.resized,
//     data.drift). Such a change is not checked against the budget (it restores what was
//     granted) nor against the provider's capacity in the ledger (the part holds it).
//     Resizes come first, then scales.
//   - What cannot be repaired — the VIM refuses (no room, beyond a node's maximum), or no
//     VIM call can (nodes of the right number but other names, a VDU the part lacks) —
//     is recorded on the part (store.PartDrift) with a part.drift event, and the slice's
//     message names it while the slice is Ready. The repair is tried again with
//     back-off (backoff.go: the wait doubles from the health interval up to
//     Options.DriftBackoffMax); a pass that finds the same drift records no new
//     event, one that finds it gone clears it (part.drift-cleared). A node still missing after its repair failed
//     makes the part Lost and the slice Degraded, as nodes stopped or failed at the
//     provider (which no VIM call restarts) always do.

// Event types of drift repair.
const (
	// EvHoldCorrected: the ledger's hold for a part was set to the part's recorded size.
	EvHoldCorrected = "part.hold-corrected"
	// EvDrift: a part differs at its provider from its record and could not be repaired.
	EvDrift = "part.drift"
	// EvDriftCleared: a part's unrepaired drift is gone.
	EvDriftCleared = "part.drift-cleared"
)

// errSkipped: a change of the part was written since the pass read it; the change owns
// the part until it ends, and the next pass looks at it again.
var errSkipped = errors.New("part changed during the health pass")

// recordedNodes are the nodes of VDU v as necos made them: the part's observed nodes of
// v, sized as necos last set them. When the record holds another number of them than
// the spec asks, they are the spec's count, named as VIMs name nodes, sized as recorded
// where recorded, else as the spec says.
func recordedNodes(p *store.Part, v sdk.VDUSpec) []sdk.Node {
	var obs []sdk.Node
	if p.Observed != nil {
		obs = p.Observed.NodesOf(v.Name)
	}
	if len(obs) == v.Instances {
		return obs
	}
	by := map[string]sdk.Node{}
	for _, n := range obs {
		by[n.Name] = n
	}
	out := make([]sdk.Node, v.Instances)
	for i := range out {
		name := sdk.NodeName(v.Name, i+1)
		n, ok := by[name]
		if !ok {
			n = sdk.Node{Name: name, VDU: v.Name, CPUs: v.CPUs, MemoryMB: v.MemoryMB, StorageGB: v.StorageGB}
		}
		out[i] = n
	}
	return out
}

// recordedSize is what part p holds at its provider by its record: what the ledger must
// hold for it.
func recordedSize(p *store.Part) sdk.Resources {
	var r sdk.Resources
	for _, v := range p.Spec.VDUs {
		for _, n := range recordedNodes(p, v) {
			r.CPUs += n.CPUs
			r.MemoryMB += n.MemoryMB
			r.StorageGB += v.StorageGB
			r.Nodes++
		}
	}
	return r
}

// repair is a change that brings a part back to its recorded size.
type repair struct {
	change store.PartChange // Kind, VDU, Node and the recorded size only
	what   string           // the drift it repairs
	// missing are the recorded nodes the provider lacks until the repair lands.
	missing []string
}

// stuck is a drift no VIM call repairs.
type stuck struct {
	what, why string
	missing   []string
}

// goneNode is a recorded node the provider lacks (state "") or holds stopped or failed.
type goneNode struct {
	name, state string
}

// drift is how a part differs from its record at its provider.
type drift struct {
	gone    []goneNode
	repairs []repair
	stuck   []stuck
}

// compareNodes compares part p's record with live, its provider's description.
func compareNodes(p *store.Part, live sdk.Part) drift {
	var d drift
	at := map[string]sdk.Node{}
	for _, n := range live.Nodes {
		at[n.Name] = n
	}
	var resizes, scales []repair
	known := map[string]bool{}
	for _, v := range p.Spec.VDUs {
		known[v.Name] = true
		rec := recordedNodes(p, v)
		have := live.NodesOf(v.Name)
		recorded := map[string]bool{}
		var missing, extra []string
		var differ []sdk.Node
		for _, n := range rec {
			recorded[n.Name] = true
			l, ok := at[n.Name]
			switch {
			case !ok || l.VDU != v.Name:
				missing = append(missing, n.Name)
				d.gone = append(d.gone, goneNode{name: n.Name})
				continue
			case l.State == sdk.StateStopped || l.State == sdk.StateFailed || l.State == sdk.StateDeleting:
				d.gone = append(d.gone, goneNode{name: n.Name, state: l.State})
			}
			if l.CPUs != n.CPUs || l.MemoryMB != n.MemoryMB {
				differ = append(differ, n)
			}
		}
		for _, n := range have {
			if !recorded[n.Name] {
				extra = append(extra, n.Name)
			}
		}
		switch what := countWhat(v, len(have), missing, extra); {
		case len(have) != v.Instances:
			scales = append(scales, repair{change: store.PartChange{Kind: store.ChangeScale, VDU: v.Name, Instances: v.Instances},
				what: what, missing: missing})
		case what != "":
			d.stuck = append(d.stuck, stuck{what: what, missing: missing,
				why: "the VIM sets a VDU's number of nodes, it cannot choose which nodes remain"})
		}
		if len(differ) == 0 {
			continue
		}
		if present := len(rec) - len(missing); len(differ) == present && allSized(rec, v) && sameSize(differ, at) {
			// Every node of the VDU is off the same way: one VDU-wide resize, which also
			// gives the VIM's template for the VDU's new nodes back its recorded size.
			l := at[differ[0].Name]
			resizes = append(resizes, repair{
				change: store.PartChange{Kind: store.ChangeResize, VDU: v.Name, CPUs: v.CPUs, MemoryMB: v.MemoryMB},
				what:   fmt.Sprintf("every node of VDU %s has %s at the provider, %s recorded", v.Name, size(l.CPUs, l.MemoryMB), size(v.CPUs, v.MemoryMB))})
			continue
		}
		for _, n := range differ {
			l := at[n.Name]
			resizes = append(resizes, repair{
				change: store.PartChange{Kind: store.ChangeResize, VDU: v.Name, Node: n.Name, CPUs: n.CPUs, MemoryMB: n.MemoryMB},
				what:   fmt.Sprintf("node %s of VDU %s has %s at the provider, %s recorded", n.Name, v.Name, size(l.CPUs, l.MemoryMB), size(n.CPUs, n.MemoryMB))})
		}
	}
	for _, n := range live.Nodes {
		if !known[n.VDU] {
			d.stuck = append(d.stuck, stuck{what: fmt.Sprintf("node %s of VDU %s, which the part does not have, is at the provider", n.Name, n.VDU),
				why: "the part's record has no such VDU to scale"})
		}
	}
	// Resizes first: a VDU-wide one restores the template a scale's new nodes take.
	d.repairs = append(resizes, scales...)
	return d
}

// countWhat says how a VDU's nodes at the provider differ from the record ("" when they
// do not).
func countWhat(v sdk.VDUSpec, have int, missing, extra []string) string {
	var b strings.Builder
	if have != v.Instances {
		fmt.Fprintf(&b, "VDU %s has %s at the provider, %d recorded", v.Name, nodeCount(have), v.Instances)
	} else if len(missing) == 0 && len(extra) == 0 {
		return ""
	} else {
		fmt.Fprintf(&b, "VDU %s has other nodes at the provider than recorded", v.Name)
	}
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, strings.Join(missing, ", ")+" not found")
	}
	if len(extra) > 0 {
		parts = append(parts, strings.Join(extra, ", ")+" not recorded")
	}
	if len(parts) > 0 {
		b.WriteString(" (" + strings.Join(parts, "; ") + ")")
	}
	return b.String()
}

func nodeCount(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

func size(cpus int, memMB int64) string { return fmt.Sprintf("%d vCPUs and %d MB", cpus, memMB) }

// allSized reports whether every recorded node of v has the VDU's size.
func allSized(rec []sdk.Node, v sdk.VDUSpec) bool {
	for _, n := range rec {
		if n.CPUs != v.CPUs || n.MemoryMB != v.MemoryMB {
			return false
		}
	}
	return true
}

// sameSize reports whether the provider holds nodes all of one size.
func sameSize(nodes []sdk.Node, at map[string]sdk.Node) bool {
	for _, n := range nodes[1:] {
		if at[n.Name].CPUs != at[nodes[0].Name].CPUs || at[n.Name].MemoryMB != at[nodes[0].Name].MemoryMB {
			return false
		}
	}
	return true
}

// partCheck is what a health pass found of one part.
type partCheck struct {
	part *store.Part
	// lost says why the part is Lost ("" when it is not).
	lost string
	// drift is the drift left unrepaired (nil when none).
	drift *store.PartDrift
}

// checkPart corrects part p's hold, describes p at its provider and repairs what can be
// repaired. errSkipped when a change of the part was written meanwhile; any other error
// is the store's (the pass is retried).
func (e *Engine) checkPart(ctx context.Context, sl *store.Slice, p *store.Part) (partCheck, error) {
	if err := e.checkHold(ctx, p); err != nil {
		return partCheck{}, err
	}
	live, err := e.callVIM(ctx, p.Provider, "describe", func(ctx context.Context, vim sdk.VIM) (sdk.Part, error) {
		return vim.Describe(ctx, sdk.DescribeRequest{Ref: p.Ref()})
	})
	if sdk.CodeOf(err) == sdk.CodeNotFound {
		// Nothing to resize or scale: the part is Lost until its provider has it again.
		return partCheck{part: p, lost: fmt.Sprintf("not found at provider %s", p.Provider), drift: p.Drift}, nil
	}
	if err != nil {
		e.log.Warn("describe part", "slice", sl.ID, "part", p.Name, "provider", p.Provider, "error", err)
		return partCheck{}, errSkipped // a provider that does not answer says nothing of its parts
	}
	d := compareNodes(p, live)
	var whats, whys []string
	unrepaired := map[string]bool{}
	key, sig, now := holderOf(p.SliceID, p.Name), repairsSig(d.repairs), e.opts.Now()
	if len(d.repairs) == 0 {
		e.drift.clear(key)
	} else if due, why := e.drift.due(key, sig, now); !due {
		// The same repairs failed lately: the drift stands as found then, untried.
		for _, r := range d.repairs {
			whats, whys = append(whats, r.what), append(whys, nonEmptyString(why[r.what], "not tried again yet: the part's last repairs failed"))
			for _, n := range r.missing {
				unrepaired[n] = true
			}
		}
		d.repairs = nil
	}
	failed := map[string]string{}
	for _, r := range d.repairs {
		failure, err := e.repairDrift(ctx, sl, p, r)
		if err != nil {
			return partCheck{}, err
		}
		if failure != nil {
			whats, whys = append(whats, r.what), append(whys, failure.Error())
			failed[r.what] = failure.Error()
			for _, n := range r.missing {
				unrepaired[n] = true
			}
		}
		// The repair wrote the part's record: the next one starts from it.
		if p, err = e.store.GetPart(ctx, p.SliceID, p.Name); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return partCheck{}, errSkipped
			}
			return partCheck{}, err
		}
	}
	switch {
	case len(failed) > 0:
		next := e.drift.failed(key, sig, now, failed)
		e.log.Warn("drift repair failed: next attempt after back-off", "slice", p.SliceID, "part", p.Name,
			"provider", p.Provider, "next_attempt", next.UTC().Format(time.RFC3339), "wait", next.Sub(now))
	case len(d.repairs) > 0:
		e.drift.clear(key) // every repair tried landed
	}
	for _, s := range d.stuck {
		whats, whys = append(whats, s.what), append(whys, s.why)
		for _, n := range s.missing {
			unrepaired[n] = true
		}
	}
	out := partCheck{part: p}
	if len(whats) > 0 {
		out.drift = &store.PartDrift{What: strings.Join(whats, "; "), Why: strings.Join(whys, "; ")}
	}
	var gone []string
	for _, g := range d.gone {
		switch {
		case g.state != "":
			gone = append(gone, fmt.Sprintf("node %s is %s", g.name, g.state))
		case unrepaired[g.name]:
			gone = append(gone, fmt.Sprintf("node %s not found", g.name))
		}
	}
	if len(gone) > 0 {
		out.lost = strings.Join(gone, ", ") + " at provider " + p.Provider
	}
	return out, nil
}

// checkHold sets the ledger's hold for part p to p's recorded size when it holds
// anything else.
func (e *Engine) checkHold(ctx context.Context, p *store.Part) error {
	holder := holderOf(p.SliceID, p.Name)
	want := recordedSize(p)
	h, had, err := e.store.GetHold(ctx, p.Provider, holder)
	if err != nil {
		return err
	}
	if had && h.Resources == want {
		return nil
	}
	amount := store.Hold{Resources: want, BandwidthBps: h.BandwidthBps}
	var was store.Hold
	var wasHeld bool
	changed, err := e.store.CorrectHold(ctx, p, p.Provider, holder, amount, func(old store.Hold, had bool) []store.Event {
		was, wasHeld = old, had
		from := "nothing"
		if had {
			from = resources(old.Resources)
		}
		return []store.Event{{Type: EvHoldCorrected, Part: p.Name,
			Message: fmt.Sprintf("the ledger of %s held %s for the part; corrected to its recorded %s", p.Provider, from, resources(want)),
			Data:    map[string]string{"provider": p.Provider, "from": from, "to": resources(want)}}}
	})
	if errors.Is(err, store.ErrConflict) {
		return nil // the part changed since it was read: the next pass looks again
	}
	if err != nil {
		return err
	}
	if changed {
		e.log.Warn("ledger hold corrected to the part's recorded size", "slice", p.SliceID, "part", p.Name, "provider", p.Provider,
			"held", wasHeld, "from", resources(was.Resources), "to", resources(want))
	}
	return nil
}

func resources(r sdk.Resources) string {
	return fmt.Sprintf("%d vCPUs, %d MB, %d GB on %s", r.CPUs, r.MemoryMB, r.StorageGB, nodeCount(r.Nodes))
}

// repairDrift writes repair r as a change of part p and converges it at once (a crash
// in between leaves the change to the next reconcile, as any other). It returns why the
// repair failed (nil when it landed), or, as err, an error of the store or errSkipped.
func (e *Engine) repairDrift(ctx context.Context, sl *store.Slice, p *store.Part, r repair) (failure, err error) {
	hold, err := e.currentHold(ctx, p)
	if err != nil {
		return nil, err
	}
	c := r.change
	c.ID, c.CreatedAt, c.Drift = store.NewID("c-"), time.Now().UTC(), r.what
	c.Hold, c.Want = store.AmountOf(hold), store.AmountOf(recordedSize(p))
	w := e.register(c.ID)
	defer e.unregister(c.ID)
	np, err := e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
		if x.Change != nil || !x.UpdatedAt.Equal(p.UpdatedAt) || (x.State != store.PartReady && x.State != store.PartLost) {
			return nil, errSkipped
		}
		x.Change = &c
		return nil, nil
	})
	if errors.Is(err, errSkipped) || errors.Is(err, store.ErrNotFound) {
		return nil, errSkipped
	}
	if err != nil {
		return nil, err
	}
	e.log.Warn("part drifted at its provider: repairing", "slice", p.SliceID, "part", p.Name, "provider", p.Provider, "drift", r.what)
	if err := e.convergeSize(ctx, sl, np); err != nil {
		return nil, err
	}
	select {
	case <-w.done:
		// The change's own error names the part and the repair; the drift says those.
		if w.err != nil {
			if cause := errors.Unwrap(w.err); cause != nil {
				return cause, nil
			}
		}
		return w.err, nil
	default:
		// Settled elsewhere (the change was cleared under it): the next pass tells.
		return nil, errSkipped
	}
}
