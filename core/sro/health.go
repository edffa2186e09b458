package sro

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/necos/necos/core/store"
)

// checkHealth describes every Ready part of a Ready or Degraded slice at its provider,
// and repairs its drift (drift.go). A part the provider no longer has (a plugin that
// restarted and lost its state, a domain destroyed behind necos's back), or has with
// nodes stopped or failed, or with nodes missing that could not be made again, makes the
// slice Degraded, with the reason, and stops its monitoring; once every part is back the
// slice is Ready again and announced anew. A drift left unrepaired on a Ready slice is
// named in its message. A provider that does not answer says nothing about its parts:
// the state stays.
func (e *Engine) checkHealth(ctx context.Context, sl *store.Slice) error {
	parts, err := e.store.ListParts(ctx, sl.ID)
	if err != nil {
		return err
	}
	var lost, drifts []string
	data := map[string]string{}
	for _, p := range parts {
		if p.State != store.PartReady && p.State != store.PartLost {
			continue // being added or removed: the operation at work owns it
		}
		// A part with a change pending (one the reconciler could not finish yet) may
		// look short of nodes or stopped: it is described once the change is settled.
		if p.Change != nil {
			// Its drift, if any is left once the change settles, is a new one.
			e.drift.clear(holderOf(p.SliceID, p.Name))
			continue
		}
		pc, err := e.checkPart(ctx, sl, p)
		if errors.Is(err, errSkipped) {
			if p.Drift != nil {
				drifts = append(drifts, fmt.Sprintf("part %s: %s", p.Name, p.Drift.What))
			}
			continue
		}
		if err != nil {
			return err
		}
		if pc.lost != "" {
			lost = append(lost, fmt.Sprintf("part %s: %s", p.Name, pc.lost))
			data[p.Name] = pc.lost
		}
		if pc.drift != nil {
			drifts = append(drifts, fmt.Sprintf("part %s: %s", p.Name, pc.drift.What))
		}
		if err := e.markPart(ctx, pc.part, pc.lost, pc.drift); err != nil {
			return err
		}
	}
	// A Ready slice's message names the drift left unrepaired (only what differs, which
	// a pass finds the same again, so that the record is not rewritten at every pass).
	driftMsg := ""
	if len(drifts) > 0 {
		driftMsg = "drift not repaired: " + strings.Join(drifts, "; ")
	}
	var ev store.Event
	recovered := false
	next, err := e.store.UpdateSlice(ctx, sl.ID, func(s *store.Slice) ([]store.Event, error) {
		if s.Deleting || (s.State != store.SliceReady && s.State != store.SliceDegraded) {
			return nil, errNoChange
		}
		recovered = false
		switch {
		case len(lost) > 0:
			msg := strings.Join(lost, "; ")
			if s.State == store.SliceDegraded && s.Message == msg {
				return nil, errNoChange
			}
			s.State, s.Message = store.SliceDegraded, msg
			ev = store.Event{Type: EvDegraded, Message: msg, Data: data}
		case s.State == store.SliceDegraded:
			s.State, s.Message, recovered = store.SliceReady, driftMsg, true
			ev = store.Event{Type: EvRecovered, Message: "every part is back at its provider"}
		case s.Message != driftMsg:
			s.Message = driftMsg // the parts' drift events say it
			return nil, nil
		default:
			return nil, errNoChange
		}
		return []store.Event{ev}, nil
	})
	if errors.Is(err, errNoChange) {
		if len(lost) == 0 {
			e.announceReady(ctx, sl)
		}
		return nil
	}
	if err != nil {
		return err
	}
	*sl = *next
	switch {
	case sl.State == store.SliceDegraded:
		if e.wasAnnounced(sl.ID) {
			e.log.Warn("slice degraded: its monitoring and elasticity stop until its parts are back", "slice", sl.ID, "reason", sl.Message)
		} else {
			e.log.Warn("slice degraded", "slice", sl.ID, "reason", sl.Message)
		}
		e.forgetReady(sl.ID)
		e.notifyGone(sl.ID)
		return nil
	case recovered:
		e.log.Info("slice recovered: every part is back", "slice", sl.ID)
	}
	e.announceReady(ctx, sl)
	return nil
}

func (e *Engine) wasAnnounced(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.announced[id]
}

// markPart records part p Lost with why, or Ready again when why is empty, and d as its
// unrepaired drift (nil: none), with an event when the drift is new or gone; a drift
// found again as it was records nothing new but why its repair failed this time.
func (e *Engine) markPart(ctx context.Context, p *store.Part, why string, d *store.PartDrift) error {
	state := store.PartReady
	if why != "" {
		state = store.PartLost
	}
	if p.State == state && p.Message == why && sameDrift(p.Drift, d) {
		return nil
	}
	_, err := e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
		if x.State != store.PartReady && x.State != store.PartLost {
			return nil, errNoChange
		}
		x.State, x.Message = state, why
		switch {
		case d == nil && x.Drift != nil:
			ev := store.Event{Type: EvDriftCleared, Part: p.Name, Message: fmt.Sprintf("no longer at %s: %s", p.Provider, x.Drift.What),
				Data: map[string]string{"provider": p.Provider}}
			x.Drift = nil
			return []store.Event{ev}, nil
		case d != nil && (x.Drift == nil || x.Drift.What != d.What):
			x.Drift = &store.PartDrift{What: d.What, Why: d.Why, Since: time.Now().UTC()}
			return []store.Event{{Type: EvDrift, Part: p.Name, Message: fmt.Sprintf("%s (provider %s), not repaired: %s", d.What, p.Provider, d.Why),
				Data: map[string]string{"provider": p.Provider}}}, nil
		case d != nil:
			x.Drift.Why = d.Why
		}
		return nil, nil
	})
	if errors.Is(err, errNoChange) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func sameDrift(a, b *store.PartDrift) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.What == b.What && a.Why == b.Why
}
