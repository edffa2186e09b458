package kubenode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/necos/necos/sdk/nsnet"
)

// A data plane's namespaces (its hub and nodes) are removed by Stop; a process killed
// before Stop (a test binary at its timeout, a plugin killed) leaves them. So each data
// plane holds a lease while it lives: a file named for its ID under leaseDir, locked
// (flock) by the process that owns it and holding its state directory. The kernel
// releases the lock when that process dies, however it dies; the next Prepare on the
// machine finds the lease unlocked and removes what it names: the namespaces
// necos-k<ID>-*, and the mounts under the state directory.
const leaseDir = "/run/necos/kubenode-leases"

type lease struct {
	f    *os.File
	path string
}

// takeLease locks the lease of data plane id, recording dir.
func takeLease(id, dir string) (*lease, error) {
	if err := os.MkdirAll(leaseDir, 0o700); err != nil {
		return nil, fmt.Errorf("kubenode: lease: %w", err)
	}
	path := filepath.Join(leaseDir, id)
	// Go opens files close-on-exec: the nodes' processes do not inherit the lock.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kubenode: lease: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("kubenode: lease: lock: %w", err)
	}
	if _, err := f.WriteString(dir); err != nil {
		f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("kubenode: lease: %w", err)
	}
	return &lease{f: f, path: path}, nil
}

// release drops the lease once the data plane is gone.
func (l *lease) release() {
	if l == nil {
		return
	}
	_ = os.Remove(l.path)
	_ = l.f.Close()
}

// sweepLeases removes what data planes whose process died left: their namespaces and
// the mounts under their state directories. A lease still locked is a live data plane's;
// an empty one is being taken (the directory is written right after the lock).
func sweepLeases() (removed []string, err error) {
	entries, err := os.ReadDir(leaseDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(leaseDir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // its owner lives
			continue
		}
		b, _ := os.ReadFile(path)
		if len(b) == 0 {
			f.Close()
			continue
		}
		id := e.Name()
		if err := removeDataPlaneLeft(id, string(b)); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, id)
			_ = os.Remove(path)
		}
		f.Close()
	}
	return removed, errors.Join(errs...)
}

// removeDataPlaneLeft removes the namespaces of data plane id and the mounts under dir.
func removeDataPlaneLeft(id, dir string) error {
	var errs []error
	if dir != "" {
		if err := unmountUnder(dir); err != nil {
			errs = append(errs, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(nsnet.Path("x")))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "necos-k"+id+"-") {
			if err := nsnet.Remove(e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("kubenode: data plane %s left by a dead process: %w", id, errors.Join(errs...))
	}
	return nil
}
