package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Claim is one hold to take at a provider: Amount for Holder, within Capacity.
type Claim struct {
	Provider string
	Holder   string
	Amount   Hold
	Capacity Hold
}

// Fits returns nil when want fits in capacity beside what is granted, else ErrNoRoom
// wrapped with the resource that is short (a zero capacity field is not checked).
func Fits(granted, want, capacity Hold) error { return fits(granted, want, capacity) }

// maxReserveAttempts bounds ReserveAll's rounds. Each lost round means another
// reservation committed at one of the same providers, so rounds are bounded by the
// reservations competing; this only stops a runaway.
const maxReserveAttempts = 1000

// ReserveAll takes, in one transaction, every hold that choose returns, or none.
//
// choose is given, for each of providers, what is granted there to others than
// holders, all read at one revision, and returns the claims (each at one of providers,
// for one of holders); an error from choose (such as a refusal) is returned as is.
// When another reservation commits at a provider claimed from in between, ReserveAll
// reads again and asks choose again, so that no provider is ever overbooked and a
// refusal is only ever based on holds that were committed whole: a slice whose parts
// are placed together never keeps a part of a placement while another part fails.
// Holds the holders already had at providers are replaced: kept as claimed again,
// dropped when not.
func (s *Store) ReserveAll(ctx context.Context, providers, holders []string, choose func(granted map[string]Hold) ([]Claim, error)) error {
	isProvider := map[string]bool{}
	for _, p := range providers {
		isProvider[p] = true
	}
	isHolder := map[string]bool{}
	for _, h := range holders {
		isHolder[h] = true
	}
	for attempt := 0; attempt < maxReserveAttempts; attempt++ {
		snap, err := s.readLedgers(ctx, providers, holders)
		if err != nil {
			return err
		}
		claims, err := choose(snap.granted())
		if err != nil {
			return err
		}
		ops, err := snap.ops(s, claims, isProvider, isHolder)
		if err != nil {
			return err
		}
		if len(ops) == 0 {
			return nil
		}
		_, err = s.commit(ctx, ops...)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrExists) {
			return err
		}
		// Lost to another reservation: wait a little, at random, so that the losers
		// of one round do not all meet again in the next.
		wait := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 5)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("reserve: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
	return fmt.Errorf("reserve at %v: gave up after %d rounds: %w", providers, maxReserveAttempts, ErrConflict)
}

// ledgerSnapshot is the ledgers of some providers at one revision: each total and the
// holds of some holders.
type ledgerSnapshot struct {
	totals map[string]versioned
	// holds by provider, then holder.
	holds map[string]map[string]versioned
}

type versioned struct {
	hold Hold
	rev  int64 // 0: the record does not exist
}

// readLedgers reads the providers' totals and the holders' holds there in one
// transaction, so that they are consistent with each other.
func (s *Store) readLedgers(ctx context.Context, providers, holders []string) (*ledgerSnapshot, error) {
	type key struct{ provider, holder string } // holder "" is the total
	var keys []key
	var gets []clientv3.Op
	for _, p := range providers {
		keys = append(keys, key{p, ""})
		gets = append(gets, s.opGet(s.ledgerTotalKey(p)))
		for _, h := range holders {
			keys = append(keys, key{p, h})
			gets = append(gets, s.opGet(s.holdKey(p, h)))
		}
	}
	tctx, cancel := withTimeout(ctx)
	defer cancel()
	r, err := s.cli.Txn(tctx).Then(gets...).Commit()
	if err != nil {
		return nil, fmt.Errorf("read ledgers of %v: %w", providers, err)
	}
	snap := &ledgerSnapshot{totals: map[string]versioned{}, holds: map[string]map[string]versioned{}}
	for i, resp := range r.Responses {
		k := keys[i]
		var v versioned
		if kvs := resp.GetResponseRange().GetKvs(); len(kvs) > 0 {
			if err := json.Unmarshal(kvs[0].Value, &v.hold); err != nil {
				return nil, fmt.Errorf("decode %s: %w", kvs[0].Key, err)
			}
			v.rev = kvs[0].ModRevision
		}
		if k.holder == "" {
			snap.totals[k.provider] = v
			continue
		}
		if v.rev == 0 {
			continue
		}
		if snap.holds[k.provider] == nil {
			snap.holds[k.provider] = map[string]versioned{}
		}
		snap.holds[k.provider][k.holder] = v
	}
	return snap, nil
}

// granted is, per provider, the total less the holders' own holds there.
func (l *ledgerSnapshot) granted() map[string]Hold {
	out := make(map[string]Hold, len(l.totals))
	for p, t := range l.totals {
		g := t.hold
		for _, h := range l.holds[p] {
			g = g.sub(h.hold)
		}
		out[p] = g
	}
	return out
}

// ops are the writes that replace the holders' holds by claims, each conditional on
// the record being as read. Claims that do not fit are refused here too: choose is
// trusted with the decision, not with the ledger.
func (l *ledgerSnapshot) ops(s *Store, claims []Claim, isProvider, isHolder map[string]bool) ([]op, error) {
	granted := l.granted()
	claimed := map[[2]string]bool{}
	touched := map[string]bool{}
	var ops []op
	for _, c := range claims {
		switch k := [2]string{c.Provider, c.Holder}; {
		case !isProvider[c.Provider]:
			return nil, fmt.Errorf("reserve: claim at provider %s, which was not read", c.Provider)
		case !isHolder[c.Holder]:
			return nil, fmt.Errorf("reserve: claim for holder %s, which was not read", c.Holder)
		case claimed[k]:
			return nil, fmt.Errorf("reserve: two claims for %s at %s", c.Holder, c.Provider)
		default:
			claimed[k] = true
		}
		if err := fits(granted[c.Provider], c.Amount, c.Capacity); err != nil {
			return nil, fmt.Errorf("provider %s: %w", c.Provider, err)
		}
		granted[c.Provider] = granted[c.Provider].add(c.Amount)
		touched[c.Provider] = true
		ops = append(ops, op{key: s.holdKey(c.Provider, c.Holder), v: c.Amount, rev: l.holds[c.Provider][c.Holder].rev})
	}
	for p, hs := range l.holds {
		for h, v := range hs {
			if !claimed[[2]string{p, h}] {
				touched[p] = true
				ops = append(ops, op{key: s.holdKey(p, h), rev: v.rev})
			}
		}
	}
	for p := range touched {
		ops = append(ops, op{key: s.ledgerTotalKey(p), v: granted[p], rev: l.totals[p].rev})
	}
	return ops, nil
}

// Add returns the sum of two holds.
func (h Hold) Add(o Hold) Hold { return h.add(o) }
