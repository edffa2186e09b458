package plugintest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// LeaseDir holds the leases of tests that own objects outliving their process (guests,
// network namespaces): see [TakeLease].
const LeaseDir = "/run/necos/test-leases"

// TakeLease records that this test process owns what data describes (a test's provider
// and site, say), under kind and a unique id, until the test ends: a file locked (flock)
// while the process lives, removed by the test's clean-up. A test binary killed before
// its clean-ups ran (at its -timeout, or by a signal) leaves the file unlocked: the next
// test of the same kind finds it with [DeadLeases] and removes what it names.
func TakeLease(t testing.TB, kind, id string, data []byte) {
	t.Helper()
	if strings.ContainsAny(kind+id, "/\x00") || kind == "" || id == "" {
		t.Fatalf("lease: kind and id: expected plain names, got %q %q", kind, id)
	}
	dir := filepath.Join(LeaseDir, kind)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("lease: %v", err)
	}
	path := filepath.Join(dir, id)
	// Go opens files close-on-exec: processes the test starts do not inherit the lock.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	// Blocking: a DeadLeases of another process may hold it for an instant.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lease: lock %s: %v", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		t.Fatalf("lease: %v", err)
	}
	t.Cleanup(func() {
		_ = os.Remove(path)
		_ = f.Close()
	})
}

// Lease is the lease of a test process that died before its clean-up.
type Lease struct {
	ID   string
	Data []byte
	f    *os.File
	path string
}

// Release removes the lease, once what it names is gone.
func (l *Lease) Release() {
	_ = os.Remove(l.path)
	_ = l.f.Close()
}

// Keep gives the lease up without removing it (what it names could not be removed:
// a later test tries again).
func (l *Lease) Keep() { _ = l.f.Close() }

// DeadLeases returns the leases of kind whose process died, each locked by this process
// until it is released or kept. A lease being taken (no data written yet) is skipped.
func DeadLeases(kind string) ([]*Lease, error) {
	dir := filepath.Join(LeaseDir, kind)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("leases of %s: %w", kind, err)
	}
	var out []*Lease
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // its process lives
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 {
			f.Close()
			continue
		}
		out = append(out, &Lease{ID: e.Name(), Data: b, f: f, path: path})
	}
	return out, nil
}
