package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A held VNI is two keys, written and deleted in one transaction:
//
//   - <prefix>vnis/<vni> → its holder (a JSON string). Creating it only where it does not
//     exist is what keeps two links, of this engine or another sharing the etcd, from
//     ever holding the same VNI.
//   - <prefix>vniholders/<holder> → the VNI (a JSON number): the index by holder, so that
//     finding a holder's VNI, or every VNI of a slice (holders are <sliceID>/<link>),
//     reads those keys only, however many VNIs other slices hold.

// maxVNIConflicts is how many VNIs in a row this process may find taken by another engine
// before it reads the used VNIs again instead of trying its stale view's candidates one
// round trip each.
const maxVNIConflicts = 8

// maxVNIHoldersPerTxn is how many holders one release (or migration) transaction writes
// (two operations each, within etcd's default limit of 128 per transaction).
const maxVNIHoldersPerTxn = 64

// vniState is this process's view of the VNIs, which only chooses the candidates an
// allocation tries: the conditional create decides. It may miss VNIs another engine took
// (the create fails and the VNI is marked used) or still hold ones another engine
// released (read again before a range is declared full), so it never needs a listing of
// every VNI per call: one when first needed, and then only in those two cases.
type vniState struct {
	loaded bool
	// used: the VNIs held, as far as this process knows.
	used map[uint32]bool
	// trying: the VNIs this process is committing right now, which its other allocations
	// skip instead of all racing for the same one.
	trying map[uint32]bool
	// next is where the search resumes: after the last VNI given, wrapping around from
	// max to min, so that an allocation costs no scan of the VNIs below it, and a VNI
	// just released is given again only once the rest of the range was used.
	next uint32
}

func (s *Store) vniKey(vni uint32) string {
	return s.key("vnis", strconv.FormatUint(uint64(vni), 10))
}

func (s *Store) vniHolderKey(holder string) string { return s.key("vniholders", holder) }

// AllocateVNI takes a free VXLAN network identifier in [min, max] for holder (idempotent
// per holder) and records it, so that links never share a VNI even when several engines
// allocate at once. Its cost does not depend on how many VNIs are held.
func (s *Store) AllocateVNI(ctx context.Context, holder string, min, max uint32) (uint32, error) {
	vni, _, err := s.heldVNI(ctx, holder)
	if err == nil {
		return vni, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	if err := s.loadVNIs(ctx, false); err != nil {
		return 0, err
	}
	reloaded, conflicts := false, 0
	for {
		vni, ok := s.tryVNI(min, max)
		if !ok {
			if reloaded {
				return 0, fmt.Errorf("no free VNI in [%d, %d]: %w", min, max, ErrNoRoom)
			}
			// Another engine may have released some since this process last read them.
			if err := s.loadVNIs(ctx, true); err != nil {
				return 0, err
			}
			reloaded, conflicts = true, 0
			continue
		}
		_, err := s.commit(ctx,
			op{key: s.vniKey(vni), v: holder, rev: 0},
			op{key: s.vniHolderKey(holder), v: vni, rev: 0})
		if err == nil {
			s.doneVNI(vni, true)
			return vni, nil
		}
		if !errors.Is(err, ErrExists) {
			s.doneVNI(vni, false)
			return 0, fmt.Errorf("allocate VNI %d to %s: %w", vni, holder, err)
		}
		// Either the holder got a VNI meanwhile (a concurrent call for it: that one is
		// the holder's), or the VNI was taken by another engine.
		held, _, herr := s.heldVNI(ctx, holder)
		if herr == nil {
			s.doneVNI(vni, false)
			return held, nil
		}
		s.doneVNI(vni, true)
		if !errors.Is(herr, ErrNotFound) {
			return 0, herr
		}
		if conflicts++; conflicts >= maxVNIConflicts {
			if err := s.loadVNIs(ctx, true); err != nil {
				return 0, err
			}
			reloaded, conflicts = true, 0
		}
	}
}

// heldVNI returns holder's VNI and the revision of its index key, or ErrNotFound.
func (s *Store) heldVNI(ctx context.Context, holder string) (uint32, int64, error) {
	var vni uint32
	rev, err := s.get(ctx, s.vniHolderKey(holder), &vni)
	return vni, rev, err
}

// loadVNIs reads which VNIs are held into this process's view: once, or again when
// reload is set. Concurrent first allocations wait for one listing rather than each
// making their own.
func (s *Store) loadVNIs(ctx context.Context, reload bool) error {
	s.vniLoadMu.Lock()
	defer s.vniLoadMu.Unlock()
	s.vniMu.Lock()
	loaded := s.vni.loaded
	s.vniMu.Unlock()
	if loaded && !reload {
		return nil
	}
	prefix := s.key("vnis") + "/"
	lctx, cancel := withTimeout(ctx)
	defer cancel()
	r, err := s.cli.Get(lctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	used := make(map[uint32]bool, len(r.Kvs))
	for _, kv := range r.Kvs {
		if n, err := strconv.ParseUint(trimKey(prefix, string(kv.Key)), 10, 32); err == nil {
			used[uint32(n)] = true
		}
	}
	s.vniMu.Lock()
	s.vni.used, s.vni.loaded = used, true
	s.vniMu.Unlock()
	return nil
}

// tryVNI returns the first VNI of [min, max] from where the last search stopped that is
// neither used nor being committed by another allocation of this process, and marks it
// as being committed: concurrent allocations (the links of many slices planned at once)
// each try a different VNI rather than all committing the same one and all but one
// failing, one etcd round trip each. It scans at most the VNIs held plus one, and
// usually one.
func (s *Store) tryVNI(min, max uint32) (uint32, bool) {
	if max < min {
		return 0, false
	}
	s.vniMu.Lock()
	defer s.vniMu.Unlock()
	st := &s.vni
	if st.trying == nil {
		st.trying = map[uint32]bool{}
	}
	start := st.next
	if start < min || start > max {
		start = min
	}
	for vni := start; ; {
		if !st.used[vni] && !st.trying[vni] {
			st.trying[vni] = true
			st.next = vni + 1 // past max (or wrapped to 0): the next search starts at min
			return vni, true
		}
		if vni == max {
			vni = min
		} else {
			vni++
		}
		if vni == start {
			return 0, false
		}
	}
}

// doneVNI ends a commit of vni that tryVNI started, recording whether vni is now held.
func (s *Store) doneVNI(vni uint32, used bool) {
	s.vniMu.Lock()
	defer s.vniMu.Unlock()
	delete(s.vni.trying, vni)
	if used {
		if s.vni.used == nil {
			s.vni.used = map[uint32]bool{}
		}
		s.vni.used[vni] = true
	}
}

// freedVNIs records VNIs released by this process, for its later allocations.
func (s *Store) freedVNIs(vnis ...uint32) {
	s.vniMu.Lock()
	defer s.vniMu.Unlock()
	for _, v := range vnis {
		delete(s.vni.used, v)
	}
}

// heldBy is one holder's VNI as read from the index, with the index key's revision.
type heldBy struct {
	holder string
	vni    uint32
	rev    int64
}

// releaseHeld frees the VNIs of hs in one transaction, each holder's two keys together.
// Each index key must still be at the revision read: since both keys change together,
// the VNI record then still names that holder (and not one that took the VNI after a
// release in between). ErrConflict otherwise.
func (s *Store) releaseHeld(ctx context.Context, hs []heldBy) error {
	ops := make([]op, 0, 2*len(hs))
	vnis := make([]uint32, 0, len(hs))
	for _, h := range hs {
		ops = append(ops, op{key: s.vniHolderKey(h.holder), rev: h.rev}, op{key: s.vniKey(h.vni), rev: anyRev})
		vnis = append(vnis, h.vni)
	}
	if _, err := s.commit(ctx, ops...); err != nil {
		return err
	}
	s.freedVNIs(vnis...)
	return nil
}

// ReleaseVNI frees the VNI held by holder, if any.
func (s *Store) ReleaseVNI(ctx context.Context, holder string) error {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		vni, rev, err := s.heldVNI(ctx, holder)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		err = s.releaseHeld(ctx, []heldBy{{holder: holder, vni: vni, rev: rev}})
		if errors.Is(err, ErrConflict) {
			continue // reallocated or released meanwhile: read it again
		}
		if err != nil {
			return fmt.Errorf("release VNI %d of %s: %w", vni, holder, err)
		}
		return nil
	}
	return fmt.Errorf("release VNI of %s: gave up after %d conflicting writers: %w", holder, maxCASAttempts, ErrConflict)
}

// SliceVNIs returns the VNIs held by the links of a slice (holders <sliceID>/<link>), by
// holder, reading that slice's index keys only.
func (s *Store) SliceVNIs(ctx context.Context, sliceID string) (map[string]uint32, error) {
	hs, err := s.sliceVNIs(ctx, sliceID)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint32, len(hs))
	for _, h := range hs {
		out[h.holder] = h.vni
	}
	return out, nil
}

func (s *Store) sliceVNIs(ctx context.Context, sliceID string) ([]heldBy, error) {
	var hs []heldBy
	prefix := s.vniHolderKey("")
	err := s.list(ctx, s.vniHolderKey(sliceID+"/"), func(key string, rev int64, raw []byte) error {
		var vni uint32
		if err := jsonUnmarshal(key, raw, &vni); err != nil {
			return err
		}
		hs = append(hs, heldBy{holder: trimKey(prefix, key), vni: vni, rev: rev})
		return nil
	})
	return hs, err
}

// ReleaseSliceVNIs frees every VNI held by the links of a slice (holders
// <sliceID>/<link>), reading that slice's index keys only.
func (s *Store) ReleaseSliceVNIs(ctx context.Context, sliceID string) error {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		hs, err := s.sliceVNIs(ctx, sliceID)
		if err != nil {
			return err
		}
		conflict := false
		for len(hs) > 0 {
			n := min(len(hs), maxVNIHoldersPerTxn)
			err := s.releaseHeld(ctx, hs[:n])
			if errors.Is(err, ErrConflict) {
				conflict = true // one of them changed meanwhile: list them again
				break
			}
			if err != nil {
				return fmt.Errorf("release VNIs of %s: %w", sliceID, err)
			}
			hs = hs[n:]
		}
		if !conflict {
			return nil
		}
	}
	return fmt.Errorf("release VNIs of %s: gave up after %d conflicting writers: %w", sliceID, maxCASAttempts, ErrConflict)
}

// indexVNIHolders is the migration from schema version 2 to 3: it writes the holder index
// of every VNI record a necosd of version 2 left without one. Safe to run again, and
// alongside a necosd of version 3 (one that migrated first): a holder already indexed,
// or a VNI record changed since it was listed, is left to that necosd, which keeps both
// keys together.
func indexVNIHolders(ctx context.Context, s *Store) error {
	prefix := s.key("vnis") + "/"
	byHolder := map[string]heldBy{} // rev: the VNI record's
	err := s.list(ctx, prefix, func(key string, rev int64, raw []byte) error {
		n, err := strconv.ParseUint(trimKey(prefix, key), 10, 32)
		if err != nil {
			return nil // not a VNI record (version 2 skipped these too)
		}
		var holder string
		if err := jsonUnmarshal(key, raw, &holder); err != nil {
			return err
		}
		h := heldBy{holder: holder, vni: uint32(n), rev: rev}
		if other, dup := byHolder[holder]; dup {
			// Version 2 could give one holder two VNIs when two allocations for it
			// raced. The index names one; the other stays held (never given twice).
			keep, drop := other, h
			if h.vni < other.vni {
				keep, drop = h, other
			}
			s.logger.Warn("a VNI holder holds two VNIs: the index keeps the lower, the other stays held", "holder", holder, "kept", keep.vni, "left", drop.vni)
			h = keep
		}
		byHolder[holder] = h
		return nil
	})
	if err != nil {
		return err
	}
	holders := make([]string, 0, len(byHolder))
	for h := range byHolder {
		holders = append(holders, h)
	}
	sort.Strings(holders)
	indexOps := func(h heldBy) []op {
		return []op{
			{key: s.vniHolderKey(h.holder), v: h.vni, rev: 0},
			{key: s.vniKey(h.vni), v: h.holder, rev: h.rev},
		}
	}
	// Batches of holders, one transaction each (thousands of VNIs take seconds one by
	// one); a batch that fails a condition is written holder by holder.
	for len(holders) > 0 {
		n := min(len(holders), maxVNIHoldersPerTxn)
		var ops []op
		for _, holder := range holders[:n] {
			ops = append(ops, indexOps(byHolder[holder])...)
		}
		_, err := s.commit(ctx, ops...)
		if errors.Is(err, ErrExists) || errors.Is(err, ErrConflict) {
			for _, holder := range holders[:n] {
				_, err := s.commit(ctx, indexOps(byHolder[holder])...)
				if err != nil && !errors.Is(err, ErrExists) && !errors.Is(err, ErrConflict) {
					return fmt.Errorf("index the VNI of %s: %w", holder, err)
				}
			}
		} else if err != nil {
			return fmt.Errorf("index VNI holders: %w", err)
		}
		holders = holders[n:]
	}
	return nil
}
