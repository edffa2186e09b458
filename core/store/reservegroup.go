package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// maxGroupOps bounds the writes of one group's transaction below etcd's default limit
// of 128 operations a transaction (--max-txn-ops).
const maxGroupOps = 120

// reserveReq is one ReserveAll call waiting for a group to take it.
type reserveReq struct {
	providers, holders   []string
	isProvider, isHolder map[string]bool
	choose               func(granted map[string]Hold) ([]Claim, error)
	done                 chan error // buffered: the group never waits for the caller
	cancelled            atomic.Bool
}

// reservations is the queue of ReserveAll calls; one goroutine at a time (running)
// takes them in groups.
type reservations struct {
	mu      sync.Mutex
	pending []*reserveReq
	running bool
}

// reserveLoop takes the pending calls in groups until none is left.
func (s *Store) reserveLoop(ctx context.Context) {
	for {
		s.resv.mu.Lock()
		var group []*reserveReq
		held := map[string]bool{}
		rest := s.resv.pending[:0:0]
		reads := 0
		for _, r := range s.resv.pending {
			// The group's read takes each provider's total and each holder's hold
			// there: etcd refuses a transaction of more than 128 operations.
			cost := len(r.providers) * (len(r.holders) + 1)
			switch {
			case r.cancelled.Load():
				continue
			case overlaps(held, r.holders), len(group) > 0 && reads+cost > maxGroupOps:
				// Two calls for one holder (a slice placed twice at once) go one after
				// the other, each seeing what the other committed.
				rest = append(rest, r)
				continue
			}
			reads += cost
			for _, h := range r.holders {
				held[h] = true
			}
			group = append(group, r)
		}
		s.resv.pending = rest
		if len(group) == 0 {
			s.resv.running = false
			s.resv.mu.Unlock()
			return
		}
		s.resv.mu.Unlock()
		deferred := s.reserveGroup(ctx, group)
		if len(deferred) > 0 {
			s.resv.mu.Lock()
			s.resv.pending = append(deferred, s.resv.pending...)
			s.resv.mu.Unlock()
		}
	}
}

func overlaps(held map[string]bool, holders []string) bool {
	for _, h := range holders {
		if held[h] {
			return true
		}
	}
	return false
}

// reserveGroup commits the claims of group's calls in one transaction, from ledgers read
// once at one revision: each call's choose sees the providers' totals with the claims
// of the calls before it in the group, so the group never overbooks a provider, and the
// transaction's conditions on every total and hold read make it lose, and every call of
// it start again, when anything else (another necosd, a release) wrote one of them in
// between. A call refused while earlier calls of its group claimed something is
// returned to the queue: its refusal must rest on holds committed whole, as one call
// alone would see them. So are calls that would make the transaction too large.
func (s *Store) reserveGroup(ctx context.Context, group []*reserveReq) (deferred []*reserveReq) {
	for attempt := 0; attempt < maxReserveAttempts; attempt++ {
		var providers, holders []string
		seenP := map[string]bool{}
		for _, r := range group {
			for _, p := range r.providers {
				if !seenP[p] {
					seenP[p] = true
					providers = append(providers, p)
				}
			}
			holders = append(holders, r.holders...)
		}
		snap, err := s.readLedgers(ctx, providers, holders)
		if err != nil {
			for _, r := range group {
				r.done <- err
			}
			return deferred
		}
		totals := make(map[string]Hold, len(snap.totals))
		for p, t := range snap.totals {
			totals[p] = t.hold
		}
		touched := map[string]bool{}
		var ops []op
		var taken []*reserveReq
		var next []*reserveReq // what the group retries with after a lost commit
		for _, r := range group {
			rops, newTotals, err := r.ops(s, snap, totals)
			switch {
			case err != nil && len(taken) > 0:
				deferred = append(deferred, r)
				continue
			case err != nil:
				r.done <- err
				continue
			case len(rops) == 0:
				r.done <- nil
				continue
			}
			grow := len(rops)
			for p := range newTotals {
				if !touched[p] {
					grow++
				}
			}
			if len(taken) > 0 && len(ops)+len(touched)+grow > maxGroupOps {
				deferred = append(deferred, r)
				continue
			}
			ops = append(ops, rops...)
			for p, t := range newTotals {
				totals[p], touched[p] = t, true
			}
			taken = append(taken, r)
			next = append(next, r)
		}
		if len(taken) == 0 {
			return deferred
		}
		for p := range touched {
			ops = append(ops, op{key: s.ledgerTotalKey(p), v: totals[p], rev: snap.totals[p].rev})
		}
		_, err = s.commit(ctx, ops...)
		if err == nil || (!errors.Is(err, ErrConflict) && !errors.Is(err, ErrExists)) {
			for _, r := range taken {
				r.done <- err
			}
			return deferred
		}
		// Lost to a write from elsewhere: wait a little, at random, so that the losers
		// of one round do not all meet again in the next.
		group = next[:0]
		for _, r := range next {
			if !r.cancelled.Load() {
				group = append(group, r)
			}
		}
		if len(group) == 0 {
			return deferred
		}
		time.Sleep(time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 5))))
	}
	err := fmt.Errorf("reserve: gave up after %d rounds: %w", maxReserveAttempts, ErrConflict)
	for _, r := range group {
		r.done <- err
	}
	return deferred
}

// ops asks r's choose for its claims, given totals (the group's so far), and returns
// the writes of its holds (each conditional on the hold as read) and its providers' new
// totals; the claims that do not fit are refused here too: choose is trusted with the
// decision, not with the ledger.
func (r *reserveReq) ops(s *Store, snap *ledgerSnapshot, totals map[string]Hold) ([]op, map[string]Hold, error) {
	granted := make(map[string]Hold, len(r.providers))
	for _, p := range r.providers {
		g := totals[p]
		for h, v := range snap.holds[p] {
			if r.isHolder[h] {
				g = g.sub(v.hold)
			}
		}
		granted[p] = g
	}
	view := make(map[string]Hold, len(granted))
	for p, g := range granted {
		view[p] = g
	}
	claims, err := r.choose(view)
	if err != nil {
		return nil, nil, err
	}
	claimed := map[[2]string]bool{}
	newTotals := map[string]Hold{}
	var ops []op
	for _, c := range claims {
		switch k := [2]string{c.Provider, c.Holder}; {
		case !r.isProvider[c.Provider]:
			return nil, nil, fmt.Errorf("reserve: claim at provider %s, which was not read", c.Provider)
		case !r.isHolder[c.Holder]:
			return nil, nil, fmt.Errorf("reserve: claim for holder %s, which was not read", c.Holder)
		case claimed[k]:
			return nil, nil, fmt.Errorf("reserve: two claims for %s at %s", c.Holder, c.Provider)
		default:
			claimed[k] = true
		}
		if err := fits(granted[c.Provider], c.Amount, c.Capacity); err != nil {
			return nil, nil, fmt.Errorf("provider %s: %w", c.Provider, err)
		}
		granted[c.Provider] = granted[c.Provider].add(c.Amount)
		newTotals[c.Provider] = granted[c.Provider]
		ops = append(ops, op{key: s.holdKey(c.Provider, c.Holder), v: c.Amount, rev: snap.holds[c.Provider][c.Holder].rev})
	}
	for _, p := range r.providers {
		for h, v := range snap.holds[p] {
			if r.isHolder[h] && !claimed[[2]string{p, h}] {
				newTotals[p] = granted[p]
				ops = append(ops, op{key: s.holdKey(p, h), rev: v.rev})
			}
		}
	}
	return ops, newTotals, nil
}
