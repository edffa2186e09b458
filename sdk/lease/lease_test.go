package lease

import (
	"os"
	"path/filepath"
	"testing"
)

// A live lease is never returned as dead; once its holder lets go of the lock (as the
// kernel does when a process dies), Dead returns it with its data, and Release removes it.
func TestDeadOnlyOnceTheOwnerLetsGo(t *testing.T) {
	dir := t.TempDir()
	l, err := Take(dir, "a", []byte("what to remove"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Take(dir, "a", []byte("x")); err == nil {
		t.Fatal("a lease taken twice")
	}
	if _, err := Take(dir, "../b", nil); err == nil {
		t.Fatal("a lease id with a slash was accepted")
	}
	if dead, err := Dead(dir); err != nil || len(dead) != 0 {
		t.Fatalf("a live lease is dead: %v %v", dead, err)
	}
	l.Keep() // the lock goes, the file stays: as after the owner's death
	dead, err := Dead(dir)
	if err != nil || len(dead) != 1 || dead[0].ID != "a" || string(dead[0].Data) != "what to remove" {
		t.Fatalf("dead leases %+v %v", dead, err)
	}
	dead[0].Release()
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Fatalf("released lease still there: %v", err)
	}
	if dead, err := Dead(filepath.Join(dir, "none")); err != nil || dead != nil {
		t.Fatalf("missing directory: %v %v", dead, err)
	}
}
