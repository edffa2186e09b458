package main

import "math"

// DefaultMemoryLimitMB is necosd's soft memory limit unless configured otherwise.
//
// Without a limit the Go runtime keeps much of the memory a burst freed: the garbage
// collector lets the heap grow to twice what is live, and idle memory goes back to the
// system only slowly. After a fill of 10,000 slices necosd held 246 MB of anonymous
// memory for a heap of 73-90 MB live; with this limit, 183 MB, at the same fill rate.
// Past the limit the runtime collects sooner and returns idle memory at once. It is
// soft: a heap that needs more still gets it, but the collector then runs nearly all the
// time (up to half the CPU; 150 MiB with a 110 MB live peak halved the fill's rate), so
// the limit should stay about twice the live heap, which grows by ~5-7 MB per 1,000
// slices. The store's memory-mapped file is not the runtime's and does not count.
const DefaultMemoryLimitMB = 200

// applyMemoryLimit sets the runtime's soft memory limit to limitMB MiB (none when 0),
// unless GOMEMLIMIT is set: the runtime read that at start, and an operator's setting wins
// over the default. It returns the limit in force in bytes (math.MaxInt64: none) and
// where it comes from.
func applyMemoryLimit(limitMB int, getenv func(string) string, set func(int64) int64) (int64, string) {
	if getenv("GOMEMLIMIT") != "" {
		return set(-1), "GOMEMLIMIT"
	}
	if limitMB <= 0 {
		set(math.MaxInt64)
		return math.MaxInt64, "none"
	}
	limit := int64(limitMB) << 20
	set(limit)
	return limit, "memory_limit_mb"
}
