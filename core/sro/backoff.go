package sro

import (
	"strings"
	"sync"
	"time"
)

// driftBackoff spaces out the repairs of a part's drift that keep failing. A repair the
// VIM refuses (no room, beyond a node's maximum) usually keeps being refused until
// something else changes at the provider; retried at every health pass it costs a
// reservation, a VIM call and a rollback each time, for every such part. So after the
// n-th failure in a row of the same repairs of a part, the next attempt waits n-1
// doublings of the health interval, up to a cap; the passes in between report the
// drift as last found, without calling the VIM. A part whose drift clears, or differs
// (other repairs: the part or its provider changed), or that gets a change, is tried at
// once again. The state is the leader's own: a new leader tries every drift at once.
type driftBackoff struct {
	mu    sync.Mutex
	base  time.Duration
	limit time.Duration
	// parts by holderOf(slice, part).
	parts map[string]*partBackoff
}

// partBackoff is the failed repairs of one part.
type partBackoff struct {
	// sig names the repairs that failed; other repairs start afresh.
	sig      string
	failures int
	next     time.Time
	// why each repair failed, by its drift, for the passes that do not try it.
	why map[string]string
}

func newDriftBackoff(base, limit time.Duration) *driftBackoff {
	return &driftBackoff{base: base, limit: limit, parts: map[string]*partBackoff{}}
}

// delay is the wait after failures failed attempts in a row (failures >= 1).
func (b *driftBackoff) delay(failures int) time.Duration {
	d := b.base
	for i := 1; i < failures && d < b.limit; i++ {
		d *= 2
	}
	return min(d, b.limit)
}

// repairsSig names a part's repairs by the drift each repairs.
func repairsSig(rs []repair) string {
	whats := make([]string, len(rs))
	for i, r := range rs {
		whats[i] = r.what
	}
	return strings.Join(whats, "\n")
}

// due reports whether the repairs named sig of part key are to be tried at now; when
// they are not, it returns why each failed last time (by its drift).
func (b *driftBackoff) due(key, sig string, now time.Time) (bool, map[string]string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	pb := b.parts[key]
	if pb == nil || pb.sig != sig || !now.Before(pb.next) {
		return true, nil
	}
	return false, pb.why
}

// failed records that the repairs named sig of part key failed at now, each for why
// (by its drift), and returns when they are next tried.
func (b *driftBackoff) failed(key, sig string, now time.Time, why map[string]string) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	pb := b.parts[key]
	if pb == nil || pb.sig != sig {
		pb = &partBackoff{sig: sig}
		b.parts[key] = pb
	}
	pb.failures++
	pb.next, pb.why = now.Add(b.delay(pb.failures)), why
	return pb.next
}

// clear forgets part key's failures: its next drift is tried at once.
func (b *driftBackoff) clear(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.parts, key)
}

// clearSlice forgets the failures of every part of a slice.
func (b *driftBackoff) clearSlice(sliceID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for key := range b.parts {
		if strings.HasPrefix(key, sliceID+"/") {
			delete(b.parts, key)
		}
	}
}
