package pluginhost

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// BinaryPrefix starts the file name of every plugin executable: the plugin "vim-xen" is
// the file "necos-plugin-vim-xen" in the plugin directory.
const BinaryPrefix = "necos-plugin-"

// DefaultLockFile is the lock file's name inside the plugin directory.
const DefaultLockFile = "plugins.lock"

// lockVersion is the version of the lock file format this package reads and writes.
const lockVersion = 1

// relockHint tells an operator how to trust a binary; it ends every verification error.
const relockHint = `if the binary is trusted, lock it with "necosctl plugins lock"`

var (
	// ErrNotLocked is returned (wrapped) when a plugin binary is not listed in the lock
	// file: it is never run.
	ErrNotLocked = errors.New("plugin binary is not in the lock file")
	// ErrHashMismatch is returned (wrapped) when a plugin binary's SHA-256 differs from
	// the one the lock file records: it is never run.
	ErrHashMismatch = errors.New("plugin binary does not match the lock file")
)

// BinaryStatus says how a discovered binary compares with the lock file.
type BinaryStatus string

// Binary statuses.
const (
	// BinaryOK: the binary's SHA-256 is the one the lock file records.
	BinaryOK BinaryStatus = "ok"
	// BinaryUnlisted: the lock file does not list the binary.
	BinaryUnlisted BinaryStatus = "unlisted"
	// BinaryMismatch: the lock file records another SHA-256.
	BinaryMismatch BinaryStatus = "mismatch"
	// BinaryUnusable: the file cannot be run (not executable, unreadable...); see Err.
	BinaryUnusable BinaryStatus = "unusable"
)

// Binary is a plugin executable found in the plugin directory.
type Binary struct {
	// Name is the plugin's name: the file name without BinaryPrefix.
	Name string `json:"name"`
	// Path is the executable's absolute path.
	Path string `json:"path"`
	// SHA256 is the hex SHA-256 of the file as it is now (empty when unreadable).
	SHA256 string `json:"sha256,omitempty"`
	// LockedSHA256 is the hex SHA-256 the lock file records (empty when unlisted).
	LockedSHA256 string `json:"locked_sha256,omitempty"`
	// Status compares the file with the lock.
	Status BinaryStatus `json:"status"`
	// Err says why the host would refuse to run the binary; nil when Status is BinaryOK.
	Err error `json:"-"`
}

// Change says what [Host.Lock] did to a plugin's lock entry.
type Change string

// Lock changes.
const (
	LockAdded     Change = "added"
	LockUpdated   Change = "updated"
	LockUnchanged Change = "unchanged"
	LockRemoved   Change = "removed"
)

// LockChange is one entry of the lock file as [Host.Lock] left it.
type LockChange struct {
	// Name is the plugin's name.
	Name string `json:"name"`
	// Path is the executable's path.
	Path string `json:"path"`
	// Old is the SHA-256 recorded before (empty when added); New the one recorded now
	// (empty when removed).
	Old    string `json:"old,omitempty"`
	New    string `json:"new,omitempty"`
	Change Change `json:"change"`
}

// lockFile is the lock file's JSON form:
//
//	{"version": 1, "plugins": {"vim-xen": {"sha256": "9f86d0..."}}}
type lockFile struct {
	Version int                  `json:"version"`
	Plugins map[string]lockEntry `json:"plugins"`
}

type lockEntry struct {
	SHA256 string `json:"sha256"`
}

// readLock reads the lock file. A missing file is an empty lock: every binary is then
// unlisted, which is the safe reading.
func readLock(path string) (lockFile, error) {
	lf := lockFile{Version: lockVersion, Plugins: map[string]lockEntry{}}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return lf, nil
	}
	if err != nil {
		return lf, fmt.Errorf("read lock file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lf); err != nil {
		return lf, fmt.Errorf("lock file %s: %w", path, err)
	}
	if lf.Version != lockVersion {
		return lf, fmt.Errorf("lock file %s: version: expected %d, got %d", path, lockVersion, lf.Version)
	}
	if lf.Plugins == nil {
		lf.Plugins = map[string]lockEntry{}
	}
	var problems []string
	for name, e := range lf.Plugins {
		if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != sha256.Size {
			problems = append(problems, fmt.Sprintf("plugins.%s.sha256: expected 64 hex digits, got %q", name, e.SHA256))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return lf, fmt.Errorf("lock file %s: %s", path, strings.Join(problems, "; "))
	}
	return lf, nil
}

// writeLock replaces the lock file atomically, so a host launching a plugin meanwhile
// reads either the old or the new lock, never half of one.
func writeLock(path string, lf lockFile) error {
	raw, err := json.MarshalIndent(lf, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lock file: %w", err)
	}
	raw = append(raw, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write lock file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(raw); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write lock file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write lock file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write lock file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write lock file %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write lock file: %w", err)
	}
	return nil
}

// hashFile returns the hex SHA-256 of a file.
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// validPluginName rejects names that could point outside the plugin directory.
func validPluginName(name string) error {
	if name == "" {
		return errors.New("plugin name is empty")
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("plugin name %q: only letters, digits, '-', '_' and '.' are allowed", name)
		}
	}
	if name[0] == '.' {
		return fmt.Errorf("plugin name %q: must not start with '.'", name)
	}
	return nil
}

// binaryPath returns the executable of the named plugin.
func (h *Host) binaryPath(name string) string {
	return filepath.Join(h.dir, BinaryPrefix+name)
}

// Discover lists the plugin executables of the plugin directory, sorted by name, each
// compared with the lock file. It hashes every binary, so it reads them whole. A missing
// lock file leaves every binary unlisted; an unreadable directory or a corrupt lock file
// is an error.
func (h *Host) Discover() ([]Binary, error) {
	lf, err := readLock(h.lockPath)
	if err != nil {
		return nil, err
	}
	found, err := h.scan()
	if err != nil {
		return nil, err
	}
	for i := range found {
		b := &found[i]
		if b.Err != nil {
			continue
		}
		b.LockedSHA256 = lf.Plugins[b.Name].SHA256
		sum, err := hashFile(b.Path)
		if err != nil {
			b.Status, b.Err = BinaryUnusable, err
			continue
		}
		b.SHA256 = sum
		switch {
		case b.LockedSHA256 == "":
			b.Status, b.Err = BinaryUnlisted, h.notLockedError(b.Name, b.Path)
		case b.LockedSHA256 != sum:
			b.Status, b.Err = BinaryMismatch, h.mismatchError(b.Path, sum, b.LockedSHA256)
		default:
			b.Status = BinaryOK
		}
	}
	return found, nil
}

// scan lists the candidate files without hashing them. Files that cannot be plugins
// (not executable, not regular) are returned as BinaryUnusable so that an operator sees
// why a plugin they dropped in is ignored.
func (h *Host) scan() ([]Binary, error) {
	entries, err := os.ReadDir(h.dir)
	if err != nil {
		return nil, fmt.Errorf("plugin directory: %w", err)
	}
	var out []Binary
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), BinaryPrefix)
		if !ok || name == "" {
			continue
		}
		b := Binary{Name: name, Path: filepath.Join(h.dir, e.Name())}
		// Stat follows symlinks: a link to a binary elsewhere is a plugin too, and its
		// target is what gets hashed and executed.
		fi, err := os.Stat(b.Path)
		switch {
		case err != nil:
			b.Status, b.Err = BinaryUnusable, err
		case fi.IsDir():
			continue
		case validPluginName(name) != nil:
			b.Status, b.Err = BinaryUnusable, validPluginName(name)
		case !fi.Mode().IsRegular():
			b.Status, b.Err = BinaryUnusable, fmt.Errorf("%s: not a regular file", b.Path)
		case fi.Mode().Perm()&0o111 == 0:
			b.Status, b.Err = BinaryUnusable, fmt.Errorf("%s: not executable", b.Path)
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Lock records the SHA-256 of plugin binaries in the lock file (creating it if needed)
// and returns what changed, sorted by name. This is what "necosctl plugins lock" runs:
// locking is how an operator says "I trust these binaries".
//
// Without names, every executable of the plugin directory is locked and the entries of
// binaries that are gone are removed. With names, only those plugins are (re)locked,
// each must exist, and the other entries are kept as they are.
//
// Running instances are not affected; a relaunch verifies against the new lock.
func (h *Host) Lock(names ...string) ([]LockChange, error) {
	h.lockMu.Lock()
	defer h.lockMu.Unlock()
	lf, err := readLock(h.lockPath)
	if err != nil {
		return nil, err
	}
	var targets []Binary
	if len(names) == 0 {
		found, err := h.scan()
		if err != nil {
			return nil, err
		}
		for _, b := range found {
			if b.Err == nil {
				targets = append(targets, b)
			}
		}
	} else {
		for _, name := range names {
			if err := validPluginName(name); err != nil {
				return nil, fmt.Errorf("lock: %w", err)
			}
			path := h.binaryPath(name)
			fi, err := os.Stat(path)
			if err != nil {
				return nil, fmt.Errorf("lock plugin %s: %w", name, err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
				return nil, fmt.Errorf("lock plugin %s: %s is not an executable file", name, path)
			}
			targets = append(targets, Binary{Name: name, Path: path})
		}
	}
	var changes []LockChange
	next := lockFile{Version: lockVersion, Plugins: map[string]lockEntry{}}
	if len(names) > 0 {
		for k, v := range lf.Plugins {
			next.Plugins[k] = v
		}
	}
	seen := map[string]bool{}
	for _, b := range targets {
		sum, err := hashFile(b.Path)
		if err != nil {
			return nil, fmt.Errorf("lock plugin %s: %w", b.Name, err)
		}
		seen[b.Name] = true
		old := lf.Plugins[b.Name].SHA256
		c := LockChange{Name: b.Name, Path: b.Path, Old: old, New: sum, Change: LockUnchanged}
		switch {
		case old == "":
			c.Change = LockAdded
		case old != sum:
			c.Change = LockUpdated
		}
		next.Plugins[b.Name] = lockEntry{SHA256: sum}
		changes = append(changes, c)
	}
	if len(names) == 0 {
		for name, e := range lf.Plugins {
			if !seen[name] {
				changes = append(changes, LockChange{Name: name, Path: h.binaryPath(name), Old: e.SHA256, Change: LockRemoved})
			}
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
	if err := writeLock(h.lockPath, next); err != nil {
		return nil, err
	}
	for _, c := range changes {
		if c.Change != LockUnchanged {
			h.log.Info("plugin lock changed", "plugin", c.Name, "change", c.Change, "sha256", c.New)
		}
	}
	return changes, nil
}

// lockedHash returns the SHA-256 the lock file records for a plugin, or an error naming
// the file when the plugin cannot be run. The lock is read afresh at every launch, so a
// relaunch honours a re-lock (and refuses a binary swapped since).
func (h *Host) lockedHash(name string) (string, error) {
	if err := validPluginName(name); err != nil {
		return "", err
	}
	path := h.binaryPath(name)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("plugin %s: no binary %s (%w): build it into the plugin directory (make build does for the project's plugins), or correct the provider's plugin name in the catalogue",
			name, path, fs.ErrNotExist)
	}
	if err != nil {
		return "", fmt.Errorf("plugin %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("plugin %s: %s is not an executable file", name, path)
	}
	lf, err := readLock(h.lockPath)
	if err != nil {
		return "", err
	}
	e, ok := lf.Plugins[name]
	if !ok {
		return "", h.notLockedError(name, path)
	}
	return e.SHA256, nil // validated by readLock
}

func (h *Host) notLockedError(name, path string) error {
	return fmt.Errorf("%w: %s (plugin %q) is not listed in %s; %s", ErrNotLocked, path, name, h.lockPath, relockHint)
}

func (h *Host) mismatchError(path, got, want string) error {
	return fmt.Errorf("%w: %s has SHA-256 %s but %s records %s; refusing to run it (%s)",
		ErrHashMismatch, path, got, h.lockPath, want, relockHint)
}
