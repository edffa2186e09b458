package kubenode

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
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

// Nodes of one process share the directories above their roots where a hierarchy lacks
// them (the own memory cgroup's path, made in the other hierarchies). Each such directory
// is counted, so that it is made once, and removed by the last node that leaves it, not by
// the first while a sibling still lives below it.
var (
	sharedMu   sync.Mutex
	sharedDirs = map[string]int{}
)

func makeCgroupRoot(name string) (*cgroupRoot, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	if len(mounts) == 0 {
		return nil, errors.New("no cgroup v1 hierarchy is mounted")
	}
	r := &cgroupRoot{path: filepath.Join(ownMemoryCgroup(), name)}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, m := range mounts {
		dir := m
		for _, part := range strings.Split(strings.Trim(r.path, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if sharedDirs[dir] > 0 {
				sharedDirs[dir]++
				r.created = append(r.created, dir)
				continue
			}
			if _, err := os.Stat(dir); err == nil {
				continue
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				r.removeLocked()
				return nil, fmt.Errorf("cgroup %s: %w", dir, err)
			}
			sharedDirs[dir] = 1
			r.created = append(r.created, dir)
			// A new cpuset takes no task until it has CPUs and memory nodes: its parent's.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
						r.removeLocked()
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
func (r *cgroupRoot) remove() error {
	if r == nil {
		return nil
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	return r.removeLocked()
}

func (r *cgroupRoot) removeLocked() error {
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
		if sharedDirs[d]--; sharedDirs[d] > 0 {
			continue // a sibling node still lives below it
		}
		delete(sharedDirs, d)
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	r.created = nil
	return errors.Join(errs...)
}
