// Package lease records, on the machine, which process owns objects that outlive it
// (network namespaces, guests, mounts): a lease is a file locked (flock) while its
// process lives. The kernel drops the lock when the process dies, however it dies, so the
// next process to look finds the lease unlocked and may remove what it names.
package lease

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Lease is a lease held by this process: its own, from [Take], or one whose owner died,
// from [Dead].
type Lease struct {
	// ID is the lease's name in its directory.
	ID string
	// Data is what the owner recorded: what to remove should it die.
	Data []byte
	f    *os.File
	path string
}

// Take creates and locks the lease id under dir (made 0700 if missing), recording data.
// It fails if the lease exists.
func Take(dir, id string, data []byte) (*Lease, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") {
		return nil, fmt.Errorf("lease: id: expected a plain name, got %q", id)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	path := filepath.Join(dir, id)
	// Go opens files close-on-exec: the processes the owner starts do not inherit the lock.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	// Blocking: a Dead of another process may hold the new file for an instant.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("lease: lock %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("lease: %w", err)
	}
	return &Lease{ID: id, Data: data, f: f, path: path}, nil
}

// Release removes the lease: its owner is done, or what a dead owner left is gone.
// A nil lease is a no-op.
func (l *Lease) Release() {
	if l == nil {
		return
	}
	_ = os.Remove(l.path)
	_ = l.f.Close()
}

// Keep gives up a dead owner's lease without removing it (what it names could not be
// removed: a later look tries again).
func (l *Lease) Keep() { _ = l.f.Close() }

// Dead returns the leases under dir whose owner died, each locked by this process until
// it is released or kept. A lease being taken (no data written yet) is skipped.
func Dead(dir string) ([]*Lease, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("leases in %s: %w", dir, err)
	}
	var out []*Lease
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // its owner lives
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
