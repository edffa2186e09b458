package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/necos/necos/sdk"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNoRoom: a reservation does not fit in the provider's capacity.
var ErrNoRoom = errors.New("no room")

// Hold is what one part (or link) holds at a provider.
type Hold struct {
	Resources    sdk.Resources `json:"resources"`
	BandwidthBps uint64        `json:"bandwidth_bps,omitempty"`
}

func (h Hold) add(o Hold) Hold {
	return Hold{Resources: h.Resources.Add(o.Resources), BandwidthBps: h.BandwidthBps + o.BandwidthBps}
}

func (h Hold) sub(o Hold) Hold {
	bps := uint64(0)
	if h.BandwidthBps > o.BandwidthBps {
		bps = h.BandwidthBps - o.BandwidthBps
	}
	return Hold{Resources: h.Resources.Sub(o.Resources), BandwidthBps: bps}
}

// Ledger is what necos has granted at one provider. Reservations are checked and taken
// atomically against the provider's total, so concurrent slice requests never
// double-book a provider. The total is one small record and each hold another, so a
// reservation costs the same however many parts a provider already holds.
type Ledger struct {
	Provider string `json:"provider"`
	// Holds by holder ("slice/part" or "slice/link").
	Holds map[string]Hold `json:"holds"`
}

// Total sums the holds.
func (l *Ledger) Total() Hold {
	var t Hold
	for _, h := range l.Holds {
		t = t.add(h)
	}
	return t
}

// Holders lists the holders at a provider, sorted.
func (l *Ledger) Holders() []string {
	out := make([]string, 0, len(l.Holds))
	for h := range l.Holds {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

func (s *Store) ledgerTotalKey(provider string) string { return s.key("ledgers", provider, "total") }
func (s *Store) holdsPrefix(provider string) string    { return s.key("ledgers", provider, "holds") + "/" }
func (s *Store) holdKey(provider, holder string) string {
	return s.holdsPrefix(provider) + holder
}

// GetLedger reads a provider's holds (empty when none yet).
func (s *Store) GetLedger(ctx context.Context, provider string) (*Ledger, error) {
	l := &Ledger{Provider: provider, Holds: map[string]Hold{}}
	prefix := s.holdsPrefix(provider)
	err := s.list(ctx, prefix, func(key string, _ int64, raw []byte) error {
		var h Hold
		if err := jsonUnmarshal(key, raw, &h); err != nil {
			return err
		}
		l.Holds[strings.TrimPrefix(key, prefix)] = h
		return nil
	})
	return l, err
}

// LedgerSummary returns what a provider has granted in all and to how many holders, in
// one read that costs the same however many holds there are (GetLedger reads them all).
func (s *Store) LedgerSummary(ctx context.Context, provider string) (Hold, int, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	r, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.ledgerTotalKey(provider)),
		clientv3.OpGet(s.holdsPrefix(provider), clientv3.WithPrefix(), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return Hold{}, 0, fmt.Errorf("ledger of %s: %w", provider, err)
	}
	var total Hold
	if kvs := r.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := jsonUnmarshal(string(kvs[0].Key), kvs[0].Value, &total); err != nil {
			return Hold{}, 0, err
		}
	}
	return total, int(r.Responses[1].GetResponseRange().Count), nil
}

// GetHold reads one holder's hold at a provider.
func (s *Store) GetHold(ctx context.Context, provider, holder string) (Hold, bool, error) {
	var h Hold
	_, err := s.get(ctx, s.holdKey(provider, holder), &h)
	if errors.Is(err, ErrNotFound) {
		return Hold{}, false, nil
	}
	return h, err == nil, err
}

// getOr reads a JSON record and its revision; a missing record is the zero value at
// revision 0 (which commit reads as "must not exist").
func getOr[T any](ctx context.Context, s *Store, key string) (T, int64, error) {
	var v T
	rev, err := s.get(ctx, key, &v)
	if errors.Is(err, ErrNotFound) {
		return v, 0, nil
	}
	return v, rev, err
}

// Reserve takes hold of amount at provider for holder, provided the provider's granted
// total plus amount stays within capacity (a zero capacity field is not checked).
// Reserving again for the same holder replaces its hold. It returns ErrNoRoom, wrapped
// with which resource is short, when it does not fit.
func (s *Store) Reserve(ctx context.Context, provider, holder string, amount Hold, capacity Hold) error {
	tkey, hkey := s.ledgerTotalKey(provider), s.holdKey(provider, holder)
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		total, trev, err := getOr[Hold](ctx, s, tkey)
		if err != nil {
			return err
		}
		old, hrev, err := getOr[Hold](ctx, s, hkey)
		if err != nil {
			return err
		}
		others := total.sub(old)
		if err := fits(others, amount, capacity); err != nil {
			return fmt.Errorf("provider %s: %w", provider, err)
		}
		_, err = s.commit(ctx, op{key: tkey, v: others.add(amount), rev: trev}, op{key: hkey, v: amount, rev: hrev})
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) {
			continue
		}
		return err
	}
	return fmt.Errorf("reserve at %s: %w", provider, ErrConflict)
}

func fits(granted, want, capacity Hold) error {
	g, w, c := granted.Resources, want.Resources, capacity.Resources
	switch {
	case c.CPUs > 0 && g.CPUs+w.CPUs > c.CPUs:
		return fmt.Errorf("%w: not enough CPUs: need %d, %d of %d free", ErrNoRoom, w.CPUs, c.CPUs-g.CPUs, c.CPUs)
	case c.MemoryMB > 0 && g.MemoryMB+w.MemoryMB > c.MemoryMB:
		return fmt.Errorf("%w: not enough memory: need %d MB, %d of %d MB free", ErrNoRoom, w.MemoryMB, c.MemoryMB-g.MemoryMB, c.MemoryMB)
	case c.StorageGB > 0 && g.StorageGB+w.StorageGB > c.StorageGB:
		return fmt.Errorf("%w: not enough storage: need %d GB, %d of %d GB free", ErrNoRoom, w.StorageGB, c.StorageGB-g.StorageGB, c.StorageGB)
	case c.Nodes > 0 && g.Nodes+w.Nodes > c.Nodes:
		return fmt.Errorf("%w: not enough nodes: need %d, %d of %d free", ErrNoRoom, w.Nodes, c.Nodes-g.Nodes, c.Nodes)
	case capacity.BandwidthBps > 0 && granted.BandwidthBps+want.BandwidthBps > capacity.BandwidthBps:
		return fmt.Errorf("%w: not enough bandwidth: need %d bit/s, %d free", ErrNoRoom, want.BandwidthBps, capacity.BandwidthBps-granted.BandwidthBps)
	}
	return nil
}

// CorrectHold sets the hold of holder at provider to amount for part p, provided p's
// record is still at revision p.Rev, and commits the events evs returns (given the hold
// as it was, and whether there was one) in the same transaction. It returns whether the
// hold changed; ErrConflict when the part changed since it was read (a change written
// since reserves for itself and must not be overridden: read the part again).
//
// Unlike Reserve it checks no capacity: it makes the ledger say what the part holds at
// its provider, which the part holds whether or not the ledger has room for it.
func (s *Store) CorrectHold(ctx context.Context, p *Part, provider, holder string, amount Hold, evs func(was Hold, had bool) []Event) (bool, error) {
	if p.Rev <= 0 {
		return false, fmt.Errorf("correct hold of %s at %s: part %s/%s was not read from the store (revision %d)", holder, provider, p.SliceID, p.Name, p.Rev)
	}
	pkey, tkey, hkey := s.partKey(p.SliceID, p.Name), s.ledgerTotalKey(provider), s.holdKey(provider, holder)
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		old, hrev, err := getOr[Hold](ctx, s, hkey)
		if err != nil {
			return false, err
		}
		if hrev != 0 && old == amount {
			return false, nil
		}
		total, trev, err := getOr[Hold](ctx, s, tkey)
		if err != nil {
			return false, err
		}
		ops := []op{{key: pkey, rev: p.Rev, check: true},
			{key: tkey, v: total.sub(old).add(amount), rev: trev}, {key: hkey, v: amount, rev: hrev}}
		ops = append(ops, s.eventOps(p.SliceID, evs(old, hrev != 0))...)
		_, err = s.commit(ctx, ops...)
		if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrExists) {
			return err == nil, err
		}
		// Lost to another writer: of the ledger (read it again), or of the part (stop).
		var cur Part
		rev, gerr := s.get(ctx, pkey, &cur)
		if gerr != nil && !errors.Is(gerr, ErrNotFound) {
			return false, gerr
		}
		if rev != p.Rev {
			return false, fmt.Errorf("correct hold of %s at %s: part %s/%s changed since it was read: %w", holder, provider, p.SliceID, p.Name, ErrConflict)
		}
	}
	return false, fmt.Errorf("correct hold of %s at %s: %w", holder, provider, ErrConflict)
}

// Release drops a holder's hold at a provider; releasing what is not held is a no-op.
func (s *Store) Release(ctx context.Context, provider, holder string) error {
	tkey, hkey := s.ledgerTotalKey(provider), s.holdKey(provider, holder)
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		old, hrev, err := getOr[Hold](ctx, s, hkey)
		if err != nil || hrev == 0 {
			return err
		}
		total, trev, err := getOr[Hold](ctx, s, tkey)
		if err != nil {
			return err
		}
		_, err = s.commit(ctx, op{key: tkey, v: total.sub(old), rev: trev}, op{key: hkey, rev: hrev})
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) {
			continue
		}
		return err
	}
	return fmt.Errorf("release at %s: %w", provider, ErrConflict)
}

// ReleasePrefix drops every hold at provider whose holder starts with prefix (e.g. all
// holds of one slice, "<slice>/", left over by an interrupted placement).
func (s *Store) ReleasePrefix(ctx context.Context, provider, prefix string) error {
	var holders []string
	hp := s.holdsPrefix(provider)
	err := s.list(ctx, hp+prefix, func(key string, _ int64, _ []byte) error {
		holders = append(holders, strings.TrimPrefix(key, hp))
		return nil
	})
	if err != nil {
		return err
	}
	for _, h := range holders {
		if err := s.Release(ctx, provider, h); err != nil {
			return err
		}
	}
	return nil
}

// HoldRecord is one hold as read from a provider's ledger, with the revision that
// ReleaseOrphan's guard compares.
type HoldRecord struct {
	Holder string
	Hold   Hold
	Rev    int64
}

// Holds lists the holds at provider, by holder, each with its revision.
func (s *Store) Holds(ctx context.Context, provider string) ([]HoldRecord, error) {
	var out []HoldRecord
	prefix := s.holdsPrefix(provider)
	err := s.list(ctx, prefix, func(key string, rev int64, raw []byte) error {
		var h Hold
		if err := jsonUnmarshal(key, raw, &h); err != nil {
			return err
		}
		out = append(out, HoldRecord{Holder: strings.TrimPrefix(key, prefix), Hold: h, Rev: rev})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("holds at %s: %w", provider, err)
	}
	return out, nil
}

// Orphan is a hold judged to belong to no part, with what it was judged on: the hold,
// the slice's and the part's records at the revisions read (0: the record did not
// exist).
type Orphan struct {
	Provider string
	HoldRecord
	SliceID  string
	SliceRev int64
	Part     string
	PartRev  int64
}

// ReleaseOrphan drops orphan o's hold, and commits evs on o's slice in the same
// transaction (evs are dropped when the slice does not exist: there is no log to hold
// them). It does so only while the hold, the slice's record and the part's record are
// all still as they were when o was judged, so that a hold a placement or a change took
// since (which rewrites one of them) is never released; else it returns ErrConflict.
func (s *Store) ReleaseOrphan(ctx context.Context, o Orphan, evs []Event) error {
	tkey, hkey := s.ledgerTotalKey(o.Provider), s.holdKey(o.Provider, o.Holder)
	skey, pkey := s.sliceKey(o.SliceID), s.partKey(o.SliceID, o.Part)
	if o.Rev <= 0 {
		return fmt.Errorf("release orphan hold %s at %s: the hold was not read from the store (revision %d)", o.Holder, o.Provider, o.Rev)
	}
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		total, trev, err := getOr[Hold](ctx, s, tkey)
		if err != nil {
			return err
		}
		ops := []op{{key: skey, rev: o.SliceRev, check: true}, {key: pkey, rev: o.PartRev, check: true},
			{key: tkey, v: total.sub(o.Hold), rev: trev}, {key: hkey, rev: o.Rev}}
		if o.SliceRev > 0 {
			ops = append(ops, s.eventOps(o.SliceID, evs)...)
		}
		_, err = s.commit(ctx, ops...)
		if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrExists) {
			return err
		}
		// Lost to another writer: of the total alone (read it again), or of what the
		// hold was judged on (stop: the next judgement reads them again).
		same, err := s.revsAre(ctx, map[string]int64{hkey: o.Rev, skey: o.SliceRev, pkey: o.PartRev})
		if err != nil {
			return err
		}
		if !same {
			return fmt.Errorf("release orphan hold %s at %s: the hold, its slice or its part changed since they were read: %w", o.Holder, o.Provider, ErrConflict)
		}
	}
	return fmt.Errorf("release orphan hold %s at %s: %w", o.Holder, o.Provider, ErrConflict)
}

// revsAre reports whether every key is at its revision (0: does not exist).
func (s *Store) revsAre(ctx context.Context, want map[string]int64) (bool, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	for key, rev := range want {
		r, err := s.cli.Get(ctx, key, clientv3.WithKeysOnly())
		if err != nil {
			return false, fmt.Errorf("get %s: %w", key, err)
		}
		got := int64(0)
		if len(r.Kvs) > 0 {
			got = r.Kvs[0].ModRevision
		}
		if got != rev {
			return false, nil
		}
	}
	return true, nil
}
