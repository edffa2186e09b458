package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// AllocateVNI takes the lowest free VXLAN network identifier in [min, max] for holder
// (idempotent per holder) and records it, so that links never share a VNI even when
// several engines allocate at once.
func (s *Store) AllocateVNI(ctx context.Context, holder string, min, max uint32) (uint32, error) {
	used := map[uint32]bool{}
	var mine uint32
	err := s.list(ctx, s.key("vnis")+"/", func(key string, _ int64, raw []byte) error {
		var h string
		if err := jsonUnmarshal(key, raw, &h); err != nil {
			return err
		}
		n, err := strconv.ParseUint(trimKey(s.key("vnis")+"/", key), 10, 32)
		if err != nil {
			return nil
		}
		used[uint32(n)] = true
		if h == holder {
			mine = uint32(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if mine != 0 {
		return mine, nil
	}
	for {
		vni, ok := s.tryVNI(used, min, max)
		if !ok {
			return 0, fmt.Errorf("no free VNI in [%d, %d]: %w", min, max, ErrNoRoom)
		}
		_, err := s.commit(ctx, op{key: s.key("vnis", strconv.FormatUint(uint64(vni), 10)), v: holder, rev: 0})
		s.vniMu.Lock()
		delete(s.vniTrying, vni)
		s.vniMu.Unlock()
		used[vni] = true
		if errors.Is(err, ErrExists) {
			continue // taken by another engine meanwhile
		}
		if err != nil {
			return 0, err
		}
		return vni, nil
	}
}

// tryVNI returns the lowest VNI of [min, max] neither used nor being committed by another
// allocation of this process, and marks it as being committed: concurrent allocations
// (the links of many slices planned at once) each try a different VNI rather than all
// committing the same one and all but one failing, one etcd round trip each.
func (s *Store) tryVNI(used map[uint32]bool, min, max uint32) (uint32, bool) {
	s.vniMu.Lock()
	defer s.vniMu.Unlock()
	for vni := min; vni <= max && vni >= min; vni++ {
		if used[vni] || s.vniTrying[vni] {
			continue
		}
		if s.vniTrying == nil {
			s.vniTrying = map[uint32]bool{}
		}
		s.vniTrying[vni] = true
		return vni, true
	}
	return 0, false
}

// ReleaseVNIs frees every VNI whose holder satisfies match.
func (s *Store) ReleaseVNIs(ctx context.Context, match func(holder string) bool) error {
	var release []string
	err := s.list(ctx, s.key("vnis")+"/", func(key string, _ int64, raw []byte) error {
		var h string
		if err := jsonUnmarshal(key, raw, &h); err == nil && match(h) {
			release = append(release, key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range release {
		if _, err := s.commit(ctx, op{key: k, rev: anyRev}); err != nil {
			return err
		}
	}
	return nil
}

// ReleaseVNI frees the VNI held by holder, if any.
func (s *Store) ReleaseVNI(ctx context.Context, holder string) error {
	return s.ReleaseVNIs(ctx, func(h string) bool { return h == holder })
}
