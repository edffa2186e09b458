package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// freeStore writes about 4 MB under a prefix, deletes it, and compacts it away: the
// pages stay in the file, free.
func freeStore(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	v := strings.Repeat("x", 8<<10)
	for i := 0; i < 500; i++ {
		if _, err := s.cli.Put(ctx, fmt.Sprintf("%sfill/%04d", s.prefix, i), v); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.cli.Delete(ctx, s.prefix+"fill/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Compact(ctx, r.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
}

func dbSize(t *testing.T, s *Store) (size, inUse int64) {
	t.Helper()
	st, err := s.cli.Status(context.Background(), s.embeddedEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	return st.DbSize, st.DbSizeInUse
}

// TestDefragmentWhenMostlyFree: a file at least half free is rewritten smaller, by the
// running store's periodic check; one with little free is left alone.
func TestDefragmentWhenMostlyFree(t *testing.T) {
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), defragMinFree: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if did, err := s.maybeDefragment(context.Background()); err != nil || did {
		t.Fatalf("a new store defragmented: %v %v", did, err)
	}
	freeStore(t, s)
	before, inUse := dbSize(t, s)
	if 2*(before-inUse) < before {
		t.Fatalf("the test's store is not half free: %d of %d in use", inUse, before)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.defragLoop(ctx, tick)
	}()
	tick <- time.Now()
	tick <- time.Now() // the first check has ended once the loop takes the second
	cancel()
	<-done
	after, _ := dbSize(t, s)
	if after >= before/2 {
		t.Fatalf("database %d bytes after the check, %d before", after, before)
	}
	if did, err := s.maybeDefragment(context.Background()); err != nil || did {
		t.Fatalf("defragmented again: %v %v", did, err)
	}
}

// TestDefragmentAtOpen: a store closed with its file mostly free is rewritten when it
// opens, before anything is served.
func TestDefragmentAtOpen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), Options{Dir: dir, defragMinFree: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	freeStore(t, s)
	before, _ := dbSize(t, s)
	s.Close()
	s, err = Open(context.Background(), Options{Dir: dir, defragMinFree: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if after, _ := dbSize(t, s); after >= before/2 {
		t.Fatalf("database %d bytes after reopening, %d before", after, before)
	}
}
