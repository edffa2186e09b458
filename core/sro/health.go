package sro

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// checkHealth describes every Ready part of a Ready or Degraded slice at its provider. A
// part the provider no longer has (a plugin that restarted and lost its state, a domain
// destroyed behind necos's back) makes the slice Degraded, with the reason, and stops its
// monitoring; once every part is back the slice is Ready again and announced anew. A
// provider that does not answer says nothing about its parts: the state stays.
func (e *Engine) checkHealth(ctx context.Context, sl *store.Slice) error {
	parts, err := e.store.ListParts(ctx, sl.ID)
	if err != nil {
		return err
	}
	var lost []string
	data := map[string]string{}
	for _, p := range parts {
		if p.State != store.PartReady && p.State != store.PartLost {
			continue // being added or removed: the operation at work owns it
		}
		// A part with a change pending (one the reconciler could not finish yet) may
		// look short of nodes or stopped: it is described once the change is settled.
		if p.Change != nil {
			continue
		}
		why, err := e.partLost(ctx, p)
		if err != nil {
			e.log.Warn("describe part", "slice", sl.ID, "part", p.Name, "provider", p.Provider, "error", err)
			continue
		}
		if why != "" {
			lost = append(lost, fmt.Sprintf("part %s: %s", p.Name, why))
			data[p.Name] = why
		}
		if err := e.markPart(ctx, p, why); err != nil {
			return err
		}
	}
	var ev store.Event
	next, err := e.store.UpdateSlice(ctx, sl.ID, func(s *store.Slice) ([]store.Event, error) {
		if s.Deleting || (s.State != store.SliceReady && s.State != store.SliceDegraded) {
			return nil, errNoChange
		}
		switch {
		case len(lost) > 0:
			msg := strings.Join(lost, "; ")
			if s.State == store.SliceDegraded && s.Message == msg {
				return nil, errNoChange
			}
			s.State, s.Message = store.SliceDegraded, msg
			ev = store.Event{Type: EvDegraded, Message: msg, Data: data}
		case s.State == store.SliceDegraded:
			s.State, s.Message = store.SliceReady, ""
			ev = store.Event{Type: EvRecovered, Message: "every part is back at its provider"}
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
	if sl.State == store.SliceDegraded {
		if e.wasAnnounced(sl.ID) {
			e.log.Warn("slice degraded: its monitoring and elasticity stop until its parts are back", "slice", sl.ID, "reason", sl.Message)
		} else {
			e.log.Warn("slice degraded", "slice", sl.ID, "reason", sl.Message)
		}
		e.forgetReady(sl.ID)
		e.notifyGone(sl.ID)
		return nil
	}
	e.log.Info("slice recovered: every part is back", "slice", sl.ID)
	e.announceReady(ctx, sl)
	return nil
}

// partLost says why a provider no longer has part p as recorded ("" when it does), or
// returns an error when the provider could not be asked.
func (e *Engine) partLost(ctx context.Context, p *store.Part) (string, error) {
	live, err := e.callVIM(ctx, p.Provider, "describe", func(ctx context.Context, vim sdk.VIM) (sdk.Part, error) {
		return vim.Describe(ctx, p.Ref())
	})
	if sdk.CodeOf(err) == sdk.CodeNotFound {
		return fmt.Sprintf("not found at provider %s", p.Provider), nil
	}
	if err != nil {
		return "", err
	}
	have := map[string]sdk.Node{}
	for _, n := range live.Nodes {
		have[n.Name] = n
	}
	if p.Observed == nil {
		return "", nil
	}
	var gone []string
	for _, n := range p.Observed.Nodes {
		got, ok := have[n.Name]
		switch {
		case !ok:
			gone = append(gone, fmt.Sprintf("node %s not found", n.Name))
		case got.State == sdk.StateStopped || got.State == sdk.StateFailed || got.State == sdk.StateDeleting:
			gone = append(gone, fmt.Sprintf("node %s is %s", n.Name, got.State))
		}
	}
	if len(gone) > 0 {
		return strings.Join(gone, ", ") + " at provider " + p.Provider, nil
	}
	return "", nil
}

func (e *Engine) wasAnnounced(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.announced[id]
}

// markPart records part p Lost with why, or Ready again when why is empty.
func (e *Engine) markPart(ctx context.Context, p *store.Part, why string) error {
	state := store.PartReady
	if why != "" {
		state = store.PartLost
	}
	if p.State == state && p.Message == why {
		return nil
	}
	_, err := e.store.UpdatePart(ctx, p.SliceID, p.Name, func(x *store.Part) ([]store.Event, error) {
		if x.State != store.PartReady && x.State != store.PartLost {
			return nil, errNoChange
		}
		x.State, x.Message = state, why
		return nil, nil
	})
	if errors.Is(err, errNoChange) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
