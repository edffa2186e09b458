package sro

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/necos/necos/core/store"
)

// Orphan holds. Every hold in a provider's ledger belongs to a part ("<slice>/<part>",
// holderOf): its placement takes it, its removal releases it, and the health pass sets
// it to the part's recorded size (checkHold). A hold whose part is gone is released by
// nothing: a record deleted by hand, a crash between a part's removal and its hold's
// release, a hold taken at another provider than the one the part was recorded at. It
// would keep the provider's capacity from every later slice, so the leader sweeps the
// ledgers at every health interval (sweepLoop) and releases such holds.
//
// A hold is kept whenever its slice may still take or release holds itself: a slice
// being planned (Pending: its placement reserves before any part is recorded), created,
// rolled back or decommissioned, and a part with a change under way (an add-part is
// recorded before it is placed). The release is one transaction guarded by the
// revisions of the hold, the slice and the part as judged (store.ReleaseOrphan), so a
// placement or a change that writes any of them meanwhile keeps its hold.

// EvHoldReleased: a ledger hold that no part owns was released; data.provider,
// data.holder and data.freed say which and how much.
const EvHoldReleased = "part.hold-released"

// SweepHolds releases the orphan holds of every provider of the catalogue and returns
// how many it released. The leader calls it at every health interval; it is exported
// for tests and tools. A hold whose judgement is overtaken (its slice or part changed
// meanwhile) is left to the next sweep.
func (e *Engine) SweepHolds(ctx context.Context) (int, error) {
	slices := map[string]*sliceParts{}
	released := 0
	var errs []error
	for _, pr := range e.cat.Providers {
		holds, err := e.store.Holds(ctx, pr.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, h := range holds {
			o, why, err := e.judgeHold(ctx, pr.Name, h, slices)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if why == "" {
				continue
			}
			ok, err := e.releaseOrphan(ctx, o, why)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if ok {
				released++
			}
		}
	}
	return released, errors.Join(errs...)
}

// sliceParts is what a sweep judges a slice's holds by (exists false: the slice does not
// exist), read once per sweep. Only that is kept, not the records: a sweep holds one for
// every slice with a hold, and whole records (their specs) of 10,000 slices were half
// of necosd's heap while it ran.
type sliceParts struct {
	exists   bool
	rev      int64
	state    store.SliceState
	deleting bool
	parts    map[string]partHold
}

// partHold is what judgeHold needs of a part.
type partHold struct {
	rev      int64
	changing bool
	provider string
	state    store.PartState
}

// judgeHold says why hold h at provider is an orphan ("" when it is not), with what the
// judgement read for the release's guard.
func (e *Engine) judgeHold(ctx context.Context, provider string, h store.HoldRecord, cache map[string]*sliceParts) (store.Orphan, string, error) {
	sliceID, part, ok := strings.Cut(h.Holder, "/")
	if !ok || sliceID == "" || part == "" {
		return store.Orphan{}, "", nil // not a part's hold: not the engine's to judge
	}
	sp, err := e.readSliceParts(ctx, sliceID, cache)
	if err != nil {
		return store.Orphan{}, "", err
	}
	o := store.Orphan{Provider: provider, HoldRecord: h, SliceID: sliceID, Part: part}
	if !sp.exists {
		return o, fmt.Sprintf("slice %s no longer exists", sliceID), nil
	}
	o.SliceRev = sp.rev
	switch sp.state {
	case store.SliceReady, store.SliceDegraded, store.SliceFailed:
		if sp.deleting {
			return o, "", nil // its decommission releases the slice's holds
		}
	default:
		return o, "", nil // being planned, created or rolled back: it owns its holds
	}
	p, ok := sp.parts[part]
	if !ok {
		return o, fmt.Sprintf("slice %s has no part %s", sliceID, part), nil
	}
	o.PartRev = p.rev
	if !p.changing && p.provider != "" && p.provider != provider && (p.state == store.PartReady || p.state == store.PartLost) {
		return o, fmt.Sprintf("part %s of slice %s is at provider %s", part, sliceID, p.provider), nil
	}
	return o, "", nil
}

func (e *Engine) readSliceParts(ctx context.Context, sliceID string, cache map[string]*sliceParts) (*sliceParts, error) {
	if sp, ok := cache[sliceID]; ok {
		return sp, nil
	}
	sp := &sliceParts{}
	sl, err := e.store.GetSlice(ctx, sliceID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		sp.exists, sp.rev, sp.state, sp.deleting = true, sl.Rev, sl.State, sl.Deleting
		parts, err := e.store.ListParts(ctx, sliceID)
		if err != nil {
			return nil, err
		}
		sp.parts = make(map[string]partHold, len(parts))
		for _, p := range parts {
			sp.parts[p.Name] = partHold{rev: p.Rev, changing: p.Change != nil, provider: p.Provider, state: p.State}
		}
	}
	cache[sliceID] = sp
	return sp, nil
}

// releaseOrphan releases orphan o, judged so because why, with an event on its slice
// when the slice exists and a log line in any case. It reports whether the hold was
// released: false when its judgement was overtaken.
func (e *Engine) releaseOrphan(ctx context.Context, o store.Orphan, why string) (bool, error) {
	freed := resources(o.Hold.Resources)
	if o.Hold.BandwidthBps > 0 {
		freed += fmt.Sprintf(", %d bit/s", o.Hold.BandwidthBps)
	}
	ev := store.Event{Type: EvHoldReleased, Part: o.Part,
		Message: fmt.Sprintf("the ledger of %s held %s for %s, which no part owns (%s); released", o.Provider, freed, o.Holder, why),
		Data:    map[string]string{"provider": o.Provider, "holder": o.Holder, "freed": freed}}
	err := e.store.ReleaseOrphan(ctx, o, []store.Event{ev})
	if errors.Is(err, store.ErrConflict) {
		e.log.Debug("orphan hold changed while judged: left to the next sweep", "provider", o.Provider, "holder", o.Holder, "error", err)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	e.log.Warn("orphan ledger hold released", "provider", o.Provider, "holder", o.Holder, "freed", freed, "reason", why)
	return true, nil
}
