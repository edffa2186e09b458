package store

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/necos/necos/sdk"
)

// ErrNoRoom: a reservation does not fit in the provider's capacity.
var ErrNoRoom = errors.New("no room")

// Hold is what one part (or link) holds at a provider.
type Hold struct {
	Resources    sdk.Resources `json:"resources"`
	BandwidthBps uint64        `json:"bandwidth_bps,omitempty"`
}

// Ledger is what necos has granted at one provider. Reservations are checked and taken
// here, atomically, so concurrent slice requests never double-book a provider.
type Ledger struct {
	Provider string `json:"provider"`
	// Holds by holder ("slice/part" or "slice/link").
	Holds map[string]Hold `json:"holds"`
}

// Total sums the holds.
func (l *Ledger) Total() Hold {
	var t Hold
	for _, h := range l.Holds {
		t.Resources = t.Resources.Add(h.Resources)
		t.BandwidthBps += h.BandwidthBps
	}
	return t
}

func (s *Store) ledgerKey(provider string) string { return s.key("ledgers", provider) }

// GetLedger reads a provider's ledger (empty when none yet).
func (s *Store) GetLedger(ctx context.Context, provider string) (*Ledger, error) {
	l := Ledger{Provider: provider, Holds: map[string]Hold{}}
	if _, err := s.get(ctx, s.ledgerKey(provider), &l); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if l.Holds == nil {
		l.Holds = map[string]Hold{}
	}
	return &l, nil
}

// Reserve takes hold of amount at provider for holder, provided the provider's granted
// total plus amount stays within capacity (a zero capacity field is not checked).
// Reserving again for the same holder replaces its hold. It returns ErrNoRoom, wrapped
// with which resource is short, when it does not fit.
func (s *Store) Reserve(ctx context.Context, provider, holder string, amount Hold, capacity Hold) error {
	key := s.ledgerKey(provider)
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		l := Ledger{Provider: provider, Holds: map[string]Hold{}}
		rev, err := s.get(ctx, key, &l)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if l.Holds == nil {
			l.Holds = map[string]Hold{}
		}
		delete(l.Holds, holder)
		if err := fits(l.Total(), amount, capacity); err != nil {
			return fmt.Errorf("provider %s: %w", provider, err)
		}
		l.Holds[holder] = amount
		if _, err := s.commit(ctx, op{key: key, v: &l, rev: rev}); err != nil {
			if errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) {
				continue
			}
			return err
		}
		return nil
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

// Release drops a holder's hold at a provider; releasing what is not held is a no-op.
func (s *Store) Release(ctx context.Context, provider, holder string) error {
	key := s.ledgerKey(provider)
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		var l Ledger
		rev, err := s.get(ctx, key, &l)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, ok := l.Holds[holder]; !ok {
			return nil
		}
		delete(l.Holds, holder)
		if _, err := s.commit(ctx, op{key: key, v: &l, rev: rev}); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return err
		}
		return nil
	}
	return fmt.Errorf("release at %s: %w", provider, ErrConflict)
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

// ReleaseMatching drops every hold at provider whose holder satisfies match (e.g. all
// holds of one slice, left over by an interrupted placement).
func (s *Store) ReleaseMatching(ctx context.Context, provider string, match func(holder string) bool) error {
	l, err := s.GetLedger(ctx, provider)
	if err != nil {
		return err
	}
	for _, h := range l.Holders() {
		if match(h) {
			if err := s.Release(ctx, provider, h); err != nil {
				return err
			}
		}
	}
	return nil
}
