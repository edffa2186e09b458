package xenvim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/necos/necos/sdk"
)

// The key directory is private but the directories above it are not: they may hold the
// storage pool, which QEMU's user must traverse to start a guest.
func TestKeyDirectoryParentsStayTraversable(t *testing.T) {
	base := filepath.Join(t.TempDir(), "vim-xen")
	s := &settings{keyDir: filepath.Join(base, "keys")}
	s.provider.Name = "BR"
	ref := sdk.PartRef{SliceID: "s1", PartID: "core"}
	if err := writePartKey(s, ref, "secret"); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]os.FileMode{
		base:                          0o755,
		s.keyDir:                      0o700,
		filepath.Dir(keyPath(s, ref)): 0o700,
	} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm() &^ 0o022; got != want&^0o022 {
			t.Errorf("%s: mode %o, want %o", dir, fi.Mode().Perm(), want)
		}
	}
	if got, err := readPartKey(s, ref); err != nil || got != "secret" {
		t.Fatalf("read back %q, %v", got, err)
	}
}

// A provider's key directory goes with its last part's key, and a key written after
// that makes it again.
func TestKeyDirectoryGoesWithItsLastKey(t *testing.T) {
	s := &settings{keyDir: filepath.Join(t.TempDir(), "keys")}
	s.provider.Name = "BR"
	a, b := sdk.PartRef{SliceID: "s1", PartID: "core"}, sdk.PartRef{SliceID: "s2", PartID: "edge"}
	dir := filepath.Dir(keyPath(s, a))
	for _, ref := range []sdk.PartRef{a, b} {
		if err := writePartKey(s, ref, "secret"); err != nil {
			t.Fatal(err)
		}
	}
	if err := deletePartKey(s, a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the directory went while it held a key: %v", err)
	}
	if err := deletePartKey(s, b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the directory stayed after its last key: %v", err)
	}
	if err := writePartKey(s, a, "again"); err != nil {
		t.Fatal(err)
	}
	if got, err := readPartKey(s, a); err != nil || got != "again" {
		t.Fatalf("read back %q, %v", got, err)
	}
}
