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
