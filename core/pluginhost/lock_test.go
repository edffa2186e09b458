package pluginhost_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/necos/necos/core/pluginhost"
)

// fakeBinary writes an executable file; discovery and locking never run it.
func fakeBinary(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+content+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func statuses(bins []pluginhost.Binary) map[string]pluginhost.BinaryStatus {
	out := map[string]pluginhost.BinaryStatus{}
	for _, b := range bins {
		out[b.Name] = b.Status
	}
	return out
}

func TestDiscoverAndLock(t *testing.T) {
	dir := t.TempDir()
	xen := fakeBinary(t, dir, "necos-plugin-vim-xen", "xen", 0o755)
	fakeBinary(t, dir, "necos-plugin-wan", "wan", 0o755)
	fakeBinary(t, dir, "necos-plugin-readme", "not a program", 0o644)
	fakeBinary(t, dir, "notes.txt", "unrelated", 0o755)
	if err := os.Mkdir(filepath.Join(dir, "necos-plugin-somedir"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := pluginhost.New(pluginhost.Options{Dir: dir})

	// Before any lock: every binary is unlisted, the non-executable one unusable.
	bins, err := h.Discover()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]pluginhost.BinaryStatus{"vim-xen": pluginhost.BinaryUnlisted,
		"wan": pluginhost.BinaryUnlisted, "readme": pluginhost.BinaryUnusable}
	if got := statuses(bins); !equalStatus(got, want) {
		t.Fatalf("discover before lock: got %v, want %v", got, want)
	}
	for _, b := range bins {
		if b.Name == "vim-xen" {
			if !errors.Is(b.Err, pluginhost.ErrNotLocked) || !strings.Contains(b.Err.Error(), xen) {
				t.Errorf("unlisted binary's error should name %s and wrap ErrNotLocked: %v", xen, b.Err)
			}
			if b.Path != xen || len(b.SHA256) != 64 || b.LockedSHA256 != "" {
				t.Errorf("unexpected binary record %+v", b)
			}
		}
		if b.Name == "readme" && (b.Err == nil || !strings.Contains(b.Err.Error(), "not executable")) {
			t.Errorf("non-executable file: want a 'not executable' error, got %v", b.Err)
		}
	}

	// Lock: both executables are added; the lock file records their hashes.
	changes, err := h.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0].Name != "vim-xen" || changes[0].Change != pluginhost.LockAdded ||
		changes[1].Name != "wan" || changes[1].Change != pluginhost.LockAdded {
		t.Fatalf("lock changes: %+v", changes)
	}
	var lf struct {
		Version int                                `json:"version"`
		Plugins map[string]struct{ SHA256 string } `json:"plugins"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, pluginhost.DefaultLockFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &lf); err != nil {
		t.Fatalf("lock file is not JSON: %v\n%s", err, raw)
	}
	if lf.Version != 1 || lf.Plugins["vim-xen"].SHA256 != changes[0].New || len(lf.Plugins) != 2 {
		t.Fatalf("lock file content:\n%s", raw)
	}
	bins, err = h.Discover()
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]pluginhost.BinaryStatus{"vim-xen": pluginhost.BinaryOK,
		"wan": pluginhost.BinaryOK, "readme": pluginhost.BinaryUnusable}
	if got := statuses(bins); !equalStatus(got, want) {
		t.Fatalf("discover after lock: got %v, want %v", got, want)
	}

	// A changed binary is a mismatch, with an error naming the file and the cure.
	fakeBinary(t, dir, "necos-plugin-vim-xen", "xen, tampered", 0o755)
	bins, _ = h.Discover()
	for _, b := range bins {
		if b.Name != "vim-xen" {
			continue
		}
		if b.Status != pluginhost.BinaryMismatch || !errors.Is(b.Err, pluginhost.ErrHashMismatch) {
			t.Fatalf("tampered binary: %+v", b)
		}
		for _, s := range []string{xen, b.SHA256, b.LockedSHA256, "necosctl plugins lock"} {
			if !strings.Contains(b.Err.Error(), s) {
				t.Errorf("mismatch error %q should contain %q", b.Err, s)
			}
		}
	}

	// Re-locking one plugin updates it and keeps the other entry.
	changes, err = h.Lock("vim-xen")
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Change != pluginhost.LockUpdated || changes[0].Old == changes[0].New {
		t.Fatalf("relock one: %+v", changes)
	}
	if st := statuses(mustDiscover(t, h)); st["vim-xen"] != pluginhost.BinaryOK || st["wan"] != pluginhost.BinaryOK {
		t.Fatalf("after relock: %v", st)
	}

	// A binary gone is dropped by a full lock; an unchanged one is reported so.
	if err := os.Remove(filepath.Join(dir, "necos-plugin-wan")); err != nil {
		t.Fatal(err)
	}
	changes, err = h.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0].Change != pluginhost.LockUnchanged || changes[1].Name != "wan" ||
		changes[1].Change != pluginhost.LockRemoved {
		t.Fatalf("lock after removal: %+v", changes)
	}

	// Locking a plugin that does not exist, or a bad name, is an error naming it.
	if _, err := h.Lock("nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("lock of a missing plugin: %v", err)
	}
	if _, err := h.Lock("../etc"); err == nil {
		t.Errorf("lock of a path-like name should fail")
	}
}

func TestLockFileElsewhereAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	fakeBinary(t, dir, "necos-plugin-a", "a", 0o755)
	lock := filepath.Join(t.TempDir(), "custom.lock")
	h := pluginhost.New(pluginhost.Options{Dir: dir, LockFile: lock})
	if _, err := h.Lock(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, pluginhost.DefaultLockFile)); err == nil {
		t.Errorf("the default lock file was written although LockFile is set")
	}
	if st := statuses(mustDiscover(t, h)); st["a"] != pluginhost.BinaryOK {
		t.Fatalf("discover with a custom lock file: %v", st)
	}

	for _, tc := range []struct{ content, want string }{
		{`{"version": 2, "plugins": {}}`, "version: expected 1, got 2"},
		{`{"version": 1, "plugins": {"a": {"sha256": "xyz"}}}`, "plugins.a.sha256: expected 64 hex digits"},
		{`{"version": 1, "plugins": {}, "extra": 1}`, `unknown field "extra"`},
		{`not json`, "invalid character"},
	} {
		if err := os.WriteFile(lock, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := h.Discover()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), lock) {
			t.Errorf("lock %s: want an error naming %s and containing %q, got %v", tc.content, lock, tc.want, err)
		}
	}
}

func mustDiscover(t *testing.T, h *pluginhost.Host) []pluginhost.Binary {
	t.Helper()
	bins, err := h.Discover()
	if err != nil {
		t.Fatal(err)
	}
	return bins
}

func equalStatus(a, b map[string]pluginhost.BinaryStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
