package kubenode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/necos/necos/sdk/lease"
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

// takeLease locks the lease of data plane id, recording dir.
func takeLease(id, dir string) (*lease.Lease, error) {
	l, err := lease.Take(leaseDir, id, []byte(dir))
	if err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	return l, nil
}

// sweepLeases removes what data planes whose process died left: their namespaces and
// the mounts under their state directories.
func sweepLeases() (removed []string, err error) {
	dead, err := lease.Dead(leaseDir)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, l := range dead {
		if err := removeDataPlaneLeft(l.ID, string(l.Data)); err != nil {
			errs = append(errs, err)
			l.Keep()
			continue
		}
		removed = append(removed, l.ID)
		l.Release()
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
