package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func openEmbedded(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newSlice(tenant, name string) *Slice {
	return &Slice{ID: NewID("s-"), Name: name, Tenant: tenant, State: SlicePending, Spec: "slices: {}"}
}

// A new slice whose id another slice has is told so (ErrIDTaken), not that its name is
// taken: the name is free, and the caller draws another id.
func TestCreateSliceIDTaken(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	a := newSlice("alice", "cdn")
	if err := s.CreateSlice(ctx, a, Event{Type: "slice.accepted"}); err != nil {
		t.Fatal(err)
	}
	b := newSlice("bob", "iot")
	b.ID = a.ID
	err := s.CreateSlice(ctx, b, Event{Type: "slice.accepted"})
	if !errors.Is(err, ErrIDTaken) || errors.Is(err, ErrExists) {
		t.Fatalf("a second slice with the first's id: got %v, want ErrIDTaken (and not ErrExists)", err)
	}
	if _, err := s.SliceIDByName(ctx, "bob", "iot"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the refused slice's name was stored: %v", err)
	}
	if got, err := s.GetSlice(ctx, a.ID); err != nil || got.Tenant != "alice" {
		t.Fatalf("the first slice: %+v %v", got, err)
	}
	b.ID = NewID("s-")
	if err := s.CreateSlice(ctx, b, Event{Type: "slice.accepted"}); err != nil {
		t.Fatalf("with another id: %v", err)
	}
	// Both taken: the name is the answer the tenant can act on.
	c := newSlice("alice", "cdn")
	c.ID = b.ID
	var ex *SliceExistsError
	if err := s.CreateSlice(ctx, c, Event{}); errors.Is(err, ErrIDTaken) || !errors.As(err, &ex) || ex.ID != a.ID {
		t.Fatalf("name and id both taken: got %v, want the name's SliceExistsError naming %s", err, a.ID)
	}
}

// A write that fails on a revision is a conflict, even when it also creates a record:
// only a record that exists is ErrExists, and the error names it.
func TestCommitNamesWhatFailed(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	if _, err := s.commit(ctx, op{key: s.key("t", "old"), v: 1, rev: 0}); err != nil {
		t.Fatal(err)
	}
	_, err := s.commit(ctx, op{key: s.key("t", "new"), v: 1, rev: 0}, op{key: s.key("t", "old"), v: 2, rev: 1})
	if !errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) {
		t.Fatalf("stale revision beside a new key: got %v, want ErrConflict", err)
	}
	_, err = s.commit(ctx, op{key: s.key("t", "new"), v: 1, rev: 0}, op{key: s.key("t", "old"), v: 2, rev: 0})
	var ex *ExistsError
	if !errors.As(err, &ex) || ex.Key != "t/old" {
		t.Fatalf("an existing key after a new one: got %v, want ExistsError naming t/old", err)
	}
}

func TestSliceLifecycleAndNames(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	a := newSlice("alice", "cdn")
	if err := s.CreateSlice(ctx, a, Event{Type: "slice.accepted"}); err != nil {
		t.Fatal(err)
	}
	err := s.CreateSlice(ctx, newSlice("alice", "cdn"), Event{})
	var ex *SliceExistsError
	if !errors.Is(err, ErrExists) || !errors.As(err, &ex) || ex.ID != a.ID {
		t.Fatalf("second slice with the same name: got %v, want ErrExists naming %s", err, a.ID)
	}
	if err := s.CreateSlice(ctx, newSlice("bob", "cdn"), Event{}); err != nil {
		t.Fatalf("another tenant may use the name: %v", err)
	}
	id, err := s.SliceIDByName(ctx, "alice", "cdn")
	if err != nil || id != a.ID {
		t.Fatalf("by name: %q %v", id, err)
	}
	parts := []*Part{{SliceID: a.ID, Name: "core", State: PartPlanned}, {SliceID: a.ID, Name: "edge", State: PartPlanned}}
	links := []*Link{{SliceID: a.ID, Name: "core-edge", State: LinkPlanned}}
	if err := s.SavePlan(ctx, a, parts, links, SliceCreating, Event{Type: "slice.planned"}); err != nil {
		t.Fatal(err)
	}
	stale := *a
	stale.Rev--
	if err := s.SavePlan(ctx, &stale, parts, links, SliceCreating); !errors.Is(err, ErrConflict) {
		t.Fatalf("plan on a stale slice: got %v, want ErrConflict", err)
	}
	got, _ := s.ListParts(ctx, a.ID)
	if len(got) != 2 || got[0].Name != "core" {
		t.Fatalf("parts: %+v", got)
	}
	evs, _ := s.Events(ctx, a.ID)
	if len(evs) != 2 || evs[0].Type != "slice.accepted" || evs[1].Type != "slice.planned" {
		t.Fatalf("events: %+v", evs)
	}
	if err := s.DeleteSlice(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSlice(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted slice: %v", err)
	}
	if got, _ := s.ListParts(ctx, a.ID); len(got) != 0 {
		t.Fatalf("parts left: %d", len(got))
	}
	if err := s.CreateSlice(ctx, newSlice("alice", "cdn"), Event{}); err != nil {
		t.Fatalf("name is free again after delete: %v", err)
	}
}

// Concurrent read-modify-write on one record never loses an update.
func TestConcurrentUpdatesNeverLost(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	sl := newSlice("t", "counter")
	if err := s.CreateSlice(ctx, sl, Event{}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := s.UpdateSlice(ctx, sl.ID, func(x *Slice) ([]Event, error) {
					x.Message += "x"
					return nil, nil
				}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got, _ := s.GetSlice(ctx, sl.ID)
	if len(got.Message) != writers*each {
		t.Fatalf("lost updates: %d of %d", len(got.Message), writers*each)
	}
}

// 50 concurrent reservations against room for 10 yield exactly 10.
func TestReservationsAreAtomic(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	capacity := Hold{Resources: sdk.Resources{CPUs: 20, MemoryMB: 20 * 1024}}
	part := Hold{Resources: sdk.Resources{CPUs: 2, MemoryMB: 1024, Nodes: 1}}
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Reserve(ctx, "p1", fmt.Sprintf("s%d/core", i), part, capacity)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrNoRoom):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 10 || refused.Load() != 40 {
		t.Fatalf("granted %d refused %d, want 10 and 40", ok.Load(), refused.Load())
	}
	l, _ := s.GetLedger(ctx, "p1")
	if got := l.Total().Resources.CPUs; got != 20 {
		t.Fatalf("ledger holds %d CPUs", got)
	}
	// Reserving again for the same holder replaces, it does not add.
	h := l.Holders()[0]
	if err := s.Reserve(ctx, "p1", h, part, capacity); err != nil {
		t.Fatalf("re-reserve same holder: %v", err)
	}
	if err := s.Release(ctx, "p1", h); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, "p1", h); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if err := s.Reserve(ctx, "p1", "new/part", part, capacity); err != nil {
		t.Fatalf("room after release: %v", err)
	}
}

func TestVNIsAreUnique(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	allocateAtOnce(t, 20, 100, 200, func(i int) (*Store, string) { return s, fmt.Sprintf("s%d/l", i) })
	v1, _ := s.AllocateVNI(ctx, "s1/l", 100, 200)
	v2, _ := s.AllocateVNI(ctx, "s1/l", 100, 200)
	if v1 != v2 {
		t.Fatalf("allocation is not idempotent: %d then %d", v1, v2)
	}
	if err := s.ReleaseVNI(ctx, "s1/l"); err != nil {
		t.Fatal(err)
	}
	if held, err := s.SliceVNIs(ctx, "s1"); err != nil || len(held) != 0 {
		t.Fatalf("s1 after its release: %v, %v", held, err)
	}
}

func TestEmbeddedDataSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	sl := newSlice("t", "persist")
	if err := s.CreateSlice(ctx, sl, Event{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openEmbedded(t, dir)
	if _, err := s2.GetSlice(ctx, sl.ID); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	tok := NewToken()
	if err := s.AddToken(ctx, "demo", tok); err != nil {
		t.Fatal(err)
	}
	if got, err := s.TenantByToken(ctx, tok); err != nil || got != "demo" {
		t.Fatalf("token lookup: %q %v", got, err)
	}
	if _, err := s.TenantByToken(ctx, tok+"x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
}

func TestWatchEventsAndWaitSlice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := openEmbedded(t, t.TempDir())
	sl := newSlice("t", "watch")
	if err := s.CreateSlice(ctx, sl, Event{Type: "slice.accepted"}); err != nil {
		t.Fatal(err)
	}
	evs := s.WatchEvents(ctx, sl.ID, 0)
	done := make(chan *Slice, 1)
	go func() {
		got, err := s.WaitSlice(ctx, sl.ID, func(x *Slice) bool { return x.State.Terminal() })
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	for _, st := range []SliceState{SliceCreating, SliceReady} {
		if _, err := s.UpdateSlice(ctx, sl.ID, func(x *Slice) ([]Event, error) {
			x.State = st
			return []Event{{Type: "slice." + string(st)}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"slice.Creating", "slice.Ready"} {
		select {
		case ev := <-evs:
			if ev.Type != want {
				t.Fatalf("event %q, want %q", ev.Type, want)
			}
		case <-ctx.Done():
			t.Fatalf("no event %s", want)
		}
	}
	if got := <-done; got == nil || got.State != SliceReady {
		t.Fatalf("WaitSlice returned %+v", got)
	}
}

// The same code runs against an existing etcd server (here etcd built for the Kubernetes
// tests, started as a separate process).
func TestExternalEtcd(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	bin := filepath.Join(assets, "etcd")
	if _, err := os.Stat(bin); assets == "" || err != nil {
		plugintest.NeedBackend(t, "KUBEBUILDER_ASSETS with an etcd binary (scripts/kube-binaries.sh)")
	}
	client, peer := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "--data-dir", t.TempDir(), "--name", "ext",
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "ext=http://"+peer, "--log-level", "error")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ctx := context.Background()
	var s *Store
	var err error
	for i := 0; i < 50; i++ {
		if s, err = Open(ctx, Options{Endpoints: []string{"http://" + client}, Prefix: "/test/", DialTimeout: time.Second, SecretKey: testKey(7)}); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("open external etcd: %v", err)
	}
	defer s.Close()
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.Reserve(ctx, "p", fmt.Sprint(i), Hold{Resources: sdk.Resources{CPUs: 1}}, Hold{Resources: sdk.Resources{CPUs: 5}}) == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 5 {
		t.Fatalf("external etcd: %d reservations granted, want 5", ok.Load())
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Events of one transaction get their own numbers, in order, and a watch resumed after
// any of them delivers exactly the ones that follow.
func TestEventSequence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := openEmbedded(t, t.TempDir())
	sl := newSlice("t", "seq")
	if err := s.CreateSlice(ctx, sl, Event{Type: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvents(ctx, sl.ID, Event{Type: "b"}, Event{Type: "c"}, Event{Type: "d"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvents(ctx, sl.ID, Event{Type: "e"}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	var types string
	for i, ev := range evs {
		types += ev.Type
		if i > 0 && ev.Seq <= evs[i-1].Seq {
			t.Fatalf("events out of order: %+v", evs)
		}
	}
	if types != "abcde" {
		t.Fatalf("events %q, want abcde", types)
	}
	// Resume after "c", in the middle of the b-c-d transaction.
	w := s.WatchEvents(ctx, sl.ID, evs[2].Seq)
	for _, want := range []string{"d", "e"} {
		select {
		case ev := <-w:
			if ev.Type != want || ev.Seq != evs[strings.Index(types, want)].Seq {
				t.Fatalf("resumed with %+v, want %s", ev, want)
			}
		case <-ctx.Done():
			t.Fatalf("no event %s", want)
		}
	}
}

// TestIdempotencyKeys: a tenant's key stands for the first document it came with, for
// IdempotencyTTL, then expires by itself; keys are per tenant; keys claimed together
// share a lease; a released key (its request failed) is gone, the lease stays for the
// others.
func TestIdempotencyKeys(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	d1, d2 := Digest([]byte("one")), Digest([]byte("two"))
	if prev, err := s.ClaimIdempotencyKey(ctx, "alice", "k", d1); err != nil || prev != nil {
		t.Fatalf("first claim: %+v %v", prev, err)
	}
	if prev, err := s.ClaimIdempotencyKey(ctx, "alice", "k", d2); err != nil || prev == nil || prev.Digest != d1 || prev.SliceID != "" {
		t.Fatalf("second claim: %+v %v", prev, err)
	}
	if prev, err := s.ClaimIdempotencyKey(ctx, "bob", "k", d2); err != nil || prev != nil {
		t.Fatalf("another tenant's key: %+v %v", prev, err)
	}
	if err := s.SetIdempotencyKey(ctx, "alice", "k", Idempotency{Digest: d1, SliceID: "s-1"}); err != nil {
		t.Fatal(err)
	}
	if prev, err := s.ClaimIdempotencyKey(ctx, "alice", "k", d1); err != nil || prev == nil || prev.SliceID != "s-1" {
		t.Fatalf("after set: %+v %v", prev, err)
	}
	// The key lives as long as IdempotencyTTL, the set kept its lease.
	r, err := s.cli.Get(ctx, s.idemKey("alice", "k"))
	if err != nil || len(r.Kvs) != 1 || r.Kvs[0].Lease == 0 {
		t.Fatalf("stored key: %+v %v", r, err)
	}
	ttl, err := s.cli.TimeToLive(ctx, clientv3.LeaseID(r.Kvs[0].Lease))
	want := int64((IdempotencyTTL + IdempotencyTTL/60) / time.Second)
	if err != nil || ttl.GrantedTTL != want || ttl.TTL < int64(IdempotencyTTL/time.Second) {
		t.Fatalf("lease %+v %v, want %v and the span it is shared over", ttl, err, IdempotencyTTL)
	}
	bob, err := s.cli.Get(ctx, s.idemKey("bob", "k"))
	if err != nil || len(bob.Kvs) != 1 || bob.Kvs[0].Lease != r.Kvs[0].Lease {
		t.Fatalf("bob's key %+v %v: not on alice's lease %x", bob, err, r.Kvs[0].Lease)
	}
	// Released: the key is gone, the others keep the lease; the key may be claimed anew.
	if err := s.ReleaseIdempotencyKey(ctx, "bob", "k"); err != nil {
		t.Fatal(err)
	}
	if r, err := s.cli.Get(ctx, s.idemKey("bob", "k")); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("bob's key after release: %+v %v", r, err)
	}
	if r, err := s.cli.Get(ctx, s.idemKey("alice", "k")); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("alice's key after bob's release: %+v %v", r, err)
	}
	if leases, err := s.cli.Leases(ctx); err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases after release: %+v %v", leases, err)
	}
	if prev, err := s.ClaimIdempotencyKey(ctx, "bob", "k", d1); err != nil || prev != nil {
		t.Fatalf("claim after release: %+v %v", prev, err)
	}
	// The shared lease revoked by hand: the next claim takes another.
	if _, err := s.cli.Revoke(ctx, clientv3.LeaseID(r.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	if prev, err := s.ClaimIdempotencyKey(ctx, "dave", "k", d1); err != nil || prev != nil {
		t.Fatalf("claim after the lease was revoked: %+v %v", prev, err)
	}
	// A key expires by itself (etcd's shortest lease here is about 2 s).
	s.idemTTL = time.Second
	if prev, err := s.ClaimIdempotencyKey(ctx, "carol", "k", d1); err != nil || prev != nil {
		t.Fatalf("claim: %+v %v", prev, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := s.cli.Get(ctx, s.idemKey("carol", "k"))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key did not expire")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if prev, err := s.ClaimIdempotencyKey(ctx, "carol", "k", d2); err != nil || prev != nil {
		t.Fatalf("claim after expiry: %+v %v", prev, err)
	}
}
