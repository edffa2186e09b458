package plugintest

import (
	"path/filepath"
	"testing"

	"github.com/necos/necos/sdk/lease"
)

// LeaseDir holds the leases of tests that own objects outliving their process (guests,
// network namespaces): see [TakeLease].
const LeaseDir = "/run/necos/test-leases"

// TakeLease records that this test process owns what data describes (a test's provider
// and site, say), under kind and a unique id, until the test ends: a lease (package
// lease) removed by the test's clean-up. A test binary killed before its clean-ups ran
// (at its -timeout, or by a signal) leaves it unlocked: the next test of the same kind
// finds it with [DeadLeases] and removes what it names.
func TakeLease(t testing.TB, kind, id string, data []byte) {
	t.Helper()
	if kind == "" || filepath.Base(kind) != kind {
		t.Fatalf("lease: kind: expected a plain name, got %q", kind)
	}
	l, err := lease.Take(filepath.Join(LeaseDir, kind), id, data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Release)
}

// Lease is the lease of a test process that died before its clean-up.
type Lease = lease.Lease

// DeadLeases returns the leases of kind whose process died, each locked by this process
// until it is released or kept.
func DeadLeases(kind string) ([]*Lease, error) {
	return lease.Dead(filepath.Join(LeaseDir, kind))
}
