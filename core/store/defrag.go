package store

import (
	"context"
	"fmt"
	"time"
)

// Compaction frees the pages of the revisions it removes for later writes, but the
// database file keeps its size, and the pages once read stay in necosd's memory (the
// file is memory-mapped). Defragmenting rewrites the file with the live data only. It
// stops every read and write of the store for as long as it takes, which grows with
// the live data (0.7 s for 97 MB here), so it runs only when the file is at least half
// free, with at least defragMinFree to gain: after many slices were deleted, not after
// a burst of updates whose pages the next writes reuse.
const (
	defragMinFree = 16 << 20
	// defragEvery is how often a running store checks for free space.
	defragEvery = 10 * time.Minute
)

// maybeDefragment defragments the embedded store's database when half of it or more is
// free (and that is at least s.defragMinFree bytes), and says whether it did.
func (s *Store) maybeDefragment(ctx context.Context) (bool, error) {
	if s.embeddedEndpoint == "" {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := s.cli.Status(ctx, s.embeddedEndpoint)
	if err != nil {
		return false, fmt.Errorf("store status: %w", err)
	}
	free := st.DbSize - st.DbSizeInUse
	if free < s.defragMinFree || 2*free < st.DbSize {
		return false, nil
	}
	start := time.Now()
	if _, err := s.cli.Defragment(ctx, s.embeddedEndpoint); err != nil {
		return false, fmt.Errorf("defragment store (%d of %d bytes free): %w", free, st.DbSize, err)
	}
	after, err := s.cli.Status(ctx, s.embeddedEndpoint)
	if err != nil {
		return true, fmt.Errorf("store status: %w", err)
	}
	s.logger.Info("store defragmented", "size_before", st.DbSize, "size_after", after.DbSize,
		"took", time.Since(start).Round(time.Millisecond))
	return true, nil
}

// defragLoop checks the embedded store at every tick (defragEvery) until ctx ends.
func (s *Store) defragLoop(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if _, err := s.maybeDefragment(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("store defragmentation", "error", err)
			}
		}
	}
}
