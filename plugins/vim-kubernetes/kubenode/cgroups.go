package kubenode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// The machine mounts cgroup v1 hierarchies, which are left as they are. A kubelet on
// cgroupfs puts its pods under its cgroup root, a path that must exist in every
// hierarchy. Each node gets its own root, below the memory cgroup this process runs in
// (so that the pods count where this process counts), made in every hierarchy and
// removed bottom-up when the node stops.

// cgroupMounts returns the mount points of the cgroup v1 hierarchies.
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superoptions
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && fields[i+1] == "cgroup" && len(fields) > 4 {
				out = append(out, fields[4])
			}
		}
	}
	return out, sc.Err()
}

// ownMemoryCgroup is the memory cgroup of this process ("/" when at the top).
func ownMemoryCgroup() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "/"
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ",memory,") {
			return parts[2]
		}
	}
	return "/"
}

// cgroupRoot is a kubelet's cgroup root made in every v1 hierarchy.
type cgroupRoot struct {
	path    string   // as the kubelet sees it, e.g. /process_api/x/necos-ab12-n1
	created []string // directories made or shared, in order of creation
}

// Nodes share the directories above their roots where a hierarchy lacks them (the own
// memory cgroup's path, made in the other hierarchies), and so do nodes of other
// processes in the same memory cgroup (test binaries run side by side). Which of those
// directories necos made is kept in a machine-wide registry, read and written under an
// exclusive lock, so that a directory is made once, removed by whichever node leaves it
// last (a removal that finds a sibling still below is no error), and a directory necos
// did not make is never removed.
const cgroupRegistry = "/run/necos/kubenode-cgroups"

// registry is the set of cgroup directories necos made, locked while held.
type registry struct {
	f    *os.File
	dirs map[string]bool
}

func openRegistry() (*registry, error) {
	if err := os.MkdirAll(filepath.Dir(cgroupRegistry), 0o700); err != nil {
		return nil, fmt.Errorf("cgroup registry: %w", err)
	}
	f, err := os.OpenFile(cgroupRegistry, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cgroup registry: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("cgroup registry: lock: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cgroup registry: %w", err)
	}
	r := &registry{f: f, dirs: map[string]bool{}}
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			r.dirs[l] = true
		}
	}
	return r, nil
}

// close writes the set back and releases the lock.
func (r *registry) close() error {
	defer r.f.Close() // closing releases the lock
	lines := make([]string, 0, len(r.dirs))
	for d := range r.dirs {
		lines = append(lines, d+"\n")
	}
	sort.Strings(lines)
	if err := r.f.Truncate(0); err != nil {
		return fmt.Errorf("cgroup registry: %w", err)
	}
	if _, err := r.f.WriteAt([]byte(strings.Join(lines, "")), 0); err != nil {
		return fmt.Errorf("cgroup registry: %w", err)
	}
	return nil
}

func makeCgroupRoot(name string) (_ *cgroupRoot, err error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	if len(mounts) == 0 {
		return nil, errors.New("no cgroup v1 hierarchy is mounted")
	}
	reg, err := openRegistry()
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, reg.close()) }()
	r := &cgroupRoot{path: filepath.Join(ownMemoryCgroup(), name)}
	for _, m := range mounts {
		dir := m
		for _, part := range strings.Split(strings.Trim(r.path, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if _, err := os.Stat(dir); err == nil {
				if reg.dirs[dir] {
					r.created = append(r.created, dir) // made by necos: shared
				}
				continue
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				r.removeWith(reg)
				return nil, fmt.Errorf("cgroup %s: %w", dir, err)
			}
			reg.dirs[dir] = true
			r.created = append(r.created, dir)
			// A new cpuset takes no task until it has CPUs and memory nodes: its parent's.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
						r.removeWith(reg)
						return nil, fmt.Errorf("cgroup %s: %s: %w", dir, f, err)
					}
				}
			}
		}
	}
	return r, nil
}

// remove deletes every cgroup below the root and the directories makeCgroupRoot made,
// deepest first. A cgroup that still holds a process stays, and is reported.
func (r *cgroupRoot) remove() (err error) {
	if r == nil {
		return nil
	}
	reg, err := openRegistry()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.close()) }()
	return r.removeWith(reg)
}

func (r *cgroupRoot) removeWith(reg *registry) error {
	mounts, _ := cgroupMounts()
	var dirs []string
	for _, m := range append(mounts, "/sys/fs/cgroup/unified") {
		top := filepath.Join(m, r.path)
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	for i := len(r.created) - 1; i >= 0; i-- {
		d := r.created[i]
		switch err := os.Remove(d); {
		case err == nil || os.IsNotExist(err):
			delete(reg.dirs, d)
		case errors.Is(err, syscall.EBUSY):
			// Another node, maybe of another process, still lives below: it removes
			// the directory when it leaves. The node's own root, if busy, was reported
			// above.
		default:
			errs = append(errs, err)
		}
	}
	r.created = nil
	return errors.Join(errs...)
}
