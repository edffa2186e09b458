package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// sameEtcd is another necosd's store on the etcd of s: its own view of the VNIs, the
// same records.
func sameEtcd(s *Store) *Store {
	return &Store{cli: s.cli, prefix: s.prefix, logger: s.logger, sealer: s.sealer, idemTTL: s.idemTTL,
		close: func() error { return nil }}
}

// heldVNIs reads every VNI record and checks that the holder index says the same.
func heldVNIs(t *testing.T, s *Store) map[uint32]string {
	t.Helper()
	ctx := context.Background()
	held := map[uint32]string{}
	err := s.list(ctx, s.key("vnis")+"/", func(key string, _ int64, raw []byte) error {
		n, err := strconv.ParseUint(trimKey(s.key("vnis")+"/", key), 10, 32)
		if err != nil {
			return err
		}
		var h string
		if err := json.Unmarshal(raw, &h); err != nil {
			return err
		}
		held[uint32(n)] = h
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	indexed := 0
	err = s.list(ctx, s.vniHolderKey(""), func(key string, _ int64, raw []byte) error {
		var vni uint32
		if err := json.Unmarshal(raw, &vni); err != nil {
			return err
		}
		if h := trimKey(s.vniHolderKey(""), key); held[vni] != h {
			t.Errorf("the index gives VNI %d to %s, its record to %q", vni, h, held[vni])
		}
		indexed++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if indexed != len(held) {
		t.Errorf("%d VNIs held, %d indexed", len(held), indexed)
	}
	return held
}

func allocate(t *testing.T, s *Store, holder string, min, max uint32) uint32 {
	t.Helper()
	v, err := s.AllocateVNI(context.Background(), holder, min, max)
	if err != nil {
		t.Fatalf("allocate for %s: %v", holder, err)
	}
	if v < min || v > max {
		t.Fatalf("VNI %d for %s is out of [%d, %d]", v, holder, min, max)
	}
	return v
}

// Concurrent allocations for one holder (a plan retried while the first still runs) give
// it one VNI, and hold no other.
func TestVNIOfOneHolderUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	got := make([]uint32, 10)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.AllocateVNI(ctx, "s1/l", 100, 200)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	wg.Wait()
	for _, v := range got {
		if v != got[0] {
			t.Fatalf("one holder given several VNIs: %v", got)
		}
	}
	if held := heldVNIs(t, s); len(held) != 1 || held[got[0]] != "s1/l" {
		t.Fatalf("held: %v", held)
	}
}

// A full range is refused with ErrNoRoom; a VNI released is given again; a slice's
// release frees its links' VNIs and no other slice's.
func TestVNIReleaseThenReuse(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	for i := 0; i < 5; i++ {
		allocate(t, s, fmt.Sprintf("s%d/l", i), 100, 104)
	}
	if _, err := s.AllocateVNI(ctx, "s9/l", 100, 104); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("full range: got %v, want ErrNoRoom", err)
	}
	if v := allocate(t, s, "s2/l", 100, 104); v != 102 {
		t.Fatalf("a holder of a full range asks again: got %d, want its 102", v)
	}
	if err := s.ReleaseVNI(ctx, "s2/l"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseVNI(ctx, "s2/l"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if v := allocate(t, s, "s9/l", 100, 104); v != 102 {
		t.Fatalf("released VNI 102 not reused: got %d", v)
	}

	// Slices a, ab (a prefix of its ID) and b, with two, one and one links.
	for _, h := range []string{"a/x", "a/y", "ab/x", "b/x"} {
		allocate(t, s, h, 200, 300)
	}
	if held, err := s.SliceVNIs(ctx, "a"); err != nil || len(held) != 2 || held["a/x"] == 0 || held["a/y"] == 0 {
		t.Fatalf("slice a holds %v, %v", held, err)
	}
	if err := s.ReleaseSliceVNIs(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseSliceVNIs(ctx, "a"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	held := heldVNIs(t, s)
	left := map[string]bool{}
	for _, h := range held {
		left[h] = true
	}
	if left["a/x"] || left["a/y"] || !left["ab/x"] || !left["b/x"] || len(held) != 7 {
		t.Fatalf("after releasing slice a: %v", held)
	}
}

// Two necosds on one etcd never hand out the same VNI, even when each one's view of the
// used VNIs is stale: taken ones are found by the conditional create, released ones
// before a range is declared full.
func TestVNIsOfTwoEngines(t *testing.T) {
	ctx := context.Background()
	a := openEmbedded(t, t.TempDir())
	b := sameEtcd(a)
	for i := 0; i < 5; i++ {
		allocate(t, a, fmt.Sprintf("a%d/l", i), 100, 109)
	}
	// b reads the VNIs now; a's view misses what b takes next.
	for i := 0; i < 5; i++ {
		allocate(t, b, fmt.Sprintf("b%d/l", i), 100, 109)
	}
	if err := b.ReleaseSliceVNIs(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := b.ReleaseVNI(ctx, "b3/l"); err != nil {
		t.Fatal(err)
	}
	// a's view holds none of b's and still counts b's released: it finds both out.
	allocate(t, a, "a5/l", 100, 109)
	allocate(t, a, "a6/l", 100, 109)
	if _, err := a.AllocateVNI(ctx, "a7/l", 100, 109); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("full range: got %v, want ErrNoRoom", err)
	}
	if held := heldVNIs(t, a); len(held) != 10 {
		t.Fatalf("held: %v", held)
	}

	// Both at once, many holders each.
	allocateAtOnce(t, 40, 1000, 1059, func(i int) (*Store, string) {
		if i%2 == 1 {
			return b, fmt.Sprintf("x%d/l", i)
		}
		return a, fmt.Sprintf("x%d/l", i)
	})
	heldVNIs(t, a)
}

// TestSchemaOfVNIHolders: a store of version 2 holds VNI records without their holder
// index. Opening it writes the index, after which the holders find their VNIs, slices
// release theirs, and a new holder is given none of them.
func TestSchemaOfVNIHolders(t *testing.T) {
	if SchemaVersion < 3 {
		t.Fatalf("SchemaVersion is %d: the VNI holder index came with version 3", SchemaVersion)
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := openEmbedded(t, dir)
	// A store as a necosd of version 2 left it, including a holder that got two VNIs
	// from two racing allocations.
	old := map[uint32]string{100: "s1/a", 101: "s1/b", 102: "s2/a", 103: "s3/a", 104: "s3/a"}
	if _, err := s.cli.Put(ctx, s.key("schema"), `{"version":2}`); err != nil {
		t.Fatal(err)
	}
	for vni, h := range old {
		if _, err := s.cli.Put(ctx, s.vniKey(vni), strconv.Quote(h)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	s = openEmbedded(t, dir)
	var rec schemaRecord
	if _, err := s.get(ctx, s.key("schema"), &rec); err != nil || rec.Version != SchemaVersion {
		t.Fatalf("a store of version 2 opens at version %d: got %+v, %v", SchemaVersion, rec, err)
	}
	r, err := s.cli.Get(ctx, s.vniHolderKey(""), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || r.Count != 4 {
		t.Fatalf("%d holders indexed, want 4: %v", r.Count, err)
	}
	for _, h := range []string{"s1/a", "s1/b", "s2/a"} {
		if v := allocate(t, s, h, 100, 200); old[v] != h {
			t.Errorf("%s holds %d after the migration, before it %v", h, v, old)
		}
	}
	if v := allocate(t, s, "s3/a", 100, 200); v != 103 {
		t.Errorf("a holder of two VNIs: the index gives %d, want the lower, 103", v)
	}
	// Running it again (a crash before the version was raised) changes nothing.
	if err := indexVNIHolders(ctx, s); err != nil {
		t.Fatal(err)
	}
	if v := allocate(t, s, "new/a", 100, 200); v <= 104 {
		t.Fatalf("a new holder was given %d, held before the migration", v)
	}
	if err := s.ReleaseSliceVNIs(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	held, err := s.SliceVNIs(ctx, "s1")
	if err != nil || len(held) != 0 {
		t.Fatalf("slice s1 after its release: %v, %v", held, err)
	}
	for _, vni := range []uint32{100, 101} {
		if r, err := s.cli.Get(ctx, s.vniKey(vni), clientv3.WithCountOnly()); err != nil || r.Count != 0 {
			t.Fatalf("VNI %d of s1 still held: %v", vni, err)
		}
	}

	// A necosd of version 2 refuses the store.
	if _, err := s.checkSchemaAt(ctx, 2); !errors.Is(err, ErrSchema) {
		t.Fatalf("a necosd of version 2 on a store of version %d: got %v, want ErrSchema", SchemaVersion, err)
	}
}

// allocateAtOnce makes n allocations at once in [min, max], the i-th on the store and
// for the holder at(i) gives, and fails the test when two holders get the same VNI.
func allocateAtOnce(t *testing.T, n int, min, max uint32, at func(i int) (*Store, string)) {
	t.Helper()
	var mu sync.Mutex
	seen := map[uint32]string{}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, holder := at(i)
			v, err := s.AllocateVNI(context.Background(), holder, min, max)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if other, dup := seen[v]; dup {
				t.Errorf("VNI %d given to %s and %s", v, other, holder)
			}
			seen[v] = holder
		}()
	}
	wg.Wait()
}
