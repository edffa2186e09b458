package store

import (
	"context"
	"encoding/json"
	"fmt"

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
// Concurrent calls in this process share their transactions (see reserveGroup): every
// reservation writes its providers' totals, so one at a time they conflicted at each
// commit (three rounds a slice, 16 slices placed at once) and a provider granted one
// reservation per store round trip.
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
	r := &reserveReq{providers: providers, holders: holders, choose: choose,
		isProvider: map[string]bool{}, isHolder: map[string]bool{}, done: make(chan error, 1)}
	for _, p := range providers {
		r.isProvider[p] = true
	}
	for _, h := range holders {
		r.isHolder[h] = true
	}
	s.resv.mu.Lock()
	s.resv.pending = append(s.resv.pending, r)
	lead := !s.resv.running
	s.resv.running = true
	s.resv.mu.Unlock()
	if lead {
		go s.reserveLoop(context.WithoutCancel(ctx))
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		// A group that already took it may still commit its holds: the caller's
		// retry releases what its slice holds before placing it again.
		r.cancelled.Store(true)
		return fmt.Errorf("reserve: %w", ctx.Err())
	}
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
		gets = append(gets, clientv3.OpGet(s.ledgerTotalKey(p)))
		for _, h := range holders {
			keys = append(keys, key{p, h})
			gets = append(gets, clientv3.OpGet(s.holdKey(p, h)))
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

// Add returns the sum of two holds.
func (h Hold) Add(o Hold) Hold { return h.add(o) }
