package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// fillSlices creates n slices of tenant, each with parts parts and one link, and
// returns their ids in creation order.
func fillSlices(tb testing.TB, s *Store, tenant string, n, parts int) []string {
	tb.Helper()
	ctx := context.Background()
	ids := make([]string, 0, n)
	for range n {
		sl := newSlice(tenant, NewID("n-")) // names sort randomly against creation order
		if err := s.CreateSlice(ctx, sl, Event{Type: "slice.accepted"}); err != nil {
			tb.Fatal(err)
		}
		var ps []*Part
		for j := range parts {
			ps = append(ps, &Part{SliceID: sl.ID, Name: fmt.Sprintf("p%d", j), State: PartReady, PricePerDay: 1})
		}
		ls := []*Link{{SliceID: sl.ID, Name: "l", State: LinkPlanned, PricePerDay: 0.5}}
		if err := s.SavePlan(ctx, sl, ps, ls, SliceReady); err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, sl.ID)
	}
	return ids
}

func TestPageSlices(t *testing.T) {
	ctx := context.Background()
	s := openEmbedded(t, t.TempDir())
	alice := fillSlices(t, s, "alice", 97, 2)
	// Another tenant's slices, created in between, never show in alice's pages.
	bob := fillSlices(t, s, "bob", 5, 1)
	alice = append(alice, fillSlices(t, s, "alice", 3, 2)...)
	// A tenant whose name extends alice's is another tenant.
	fillSlices(t, s, "alice2", 2, 1)

	for _, limit := range []int{1, 7, 40, 41, 100, 1000} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			var got []string
			var cursor PageCursor
			pages := 0
			for {
				page, next, err := s.PageSlices(ctx, "alice", cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if len(page) > limit {
					t.Fatalf("page of %d slices with limit %d", len(page), limit)
				}
				for _, r := range page {
					if r.Slice.Tenant != "alice" {
						t.Fatalf("slice %s of tenant %q in alice's page", r.Slice.ID, r.Slice.Tenant)
					}
					if len(r.Parts) != 2 || len(r.Links) != 1 || r.Parts[0].Name != "p0" {
						t.Fatalf("slice %s: %d parts, %d links", r.Slice.ID, len(r.Parts), len(r.Links))
					}
					got = append(got, r.Slice.ID)
				}
				if next == "" {
					break
				}
				if next <= cursor {
					t.Fatalf("cursor went from %q to %q", cursor, next)
				}
				cursor = next
			}
			if fmt.Sprint(got) != fmt.Sprint(alice) {
				t.Fatalf("slices in creation order:\n got %v\nwant %v", got, alice)
			}
			if want := (len(alice) + limit - 1) / limit; pages != want && pages != want+1 {
				t.Fatalf("%d pages for %d slices at %d a page", pages, len(alice), limit)
			}
		})
	}

	all, next, err := s.PageSlices(ctx, "alice", "", 0)
	if err != nil || next != "" || len(all) != len(alice) {
		t.Fatalf("no limit: %d slices, next %q, %v; want %d", len(all), next, err, len(alice))
	}
	every, _, err := s.PageSlices(ctx, "", "", 0)
	if err != nil || len(every) != len(alice)+len(bob)+2 {
		t.Fatalf("every tenant: %d slices, %v", len(every), err)
	}

	// A decommissioned slice leaves the pages; the others keep their order.
	if err := s.DeleteSlice(ctx, all[1].Slice); err != nil {
		t.Fatal(err)
	}
	page, aliceNext, err := s.PageSlices(ctx, "alice", "", 3)
	if err != nil || len(page) != 3 || page[0].Slice.ID != alice[0] || page[1].Slice.ID != alice[2] {
		t.Fatalf("after a delete: %v %v", page, err)
	}
	if got, err := s.ListSlices(ctx, ""); err != nil || len(got) != len(every)-1 {
		t.Fatalf("slices after the delete: %d, %v", len(got), err)
	}
	if r, err := s.cli.Get(ctx, s.key("order")+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || r.Count != int64(len(every)-1) {
		t.Fatalf("order records after the delete: %v, %v; want one a slice (%d)", r, err, len(every)-1)
	}
	// A cursor that is not a page's, or is another tenant's, is refused: a range from it
	// would reach into another tenant's records.
	_, bobCursor, err := s.PageSlices(ctx, "bob", "", 1)
	if err != nil || bobCursor == "" {
		t.Fatalf("bob's first page: %q %v", bobCursor, err)
	}
	for _, bad := range []PageCursor{"-1", "alice/", "alice/123", "a", bobCursor, "alice/" + PageCursor(strings.Repeat("x", 20)) + "-id"} {
		if _, _, err := s.PageSlices(ctx, "alice", bad, 3); !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", bad, err)
		}
	}
	if _, _, err := s.PageSlices(ctx, "alice", aliceNext, 3); err != nil {
		t.Errorf("alice's own cursor: %v", err)
	}
	if page, next, err := s.PageSlices(ctx, "nobody", "", 10); err != nil || len(page) != 0 || next != "" {
		t.Fatalf("tenant without slices: %v %q %v", page, next, err)
	}
}

// TestSchemaOfSliceOrder: a store of version 5 has no order records; it opens at version
// 6 with one for every slice, pages list its slices in creation order, and a necosd of
// version 5 refuses it afterwards.
func TestSchemaOfSliceOrder(t *testing.T) {
	if SchemaVersion < 6 {
		t.Fatalf("SchemaVersion is %d: order records came with version 6", SchemaVersion)
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := openEmbedded(t, dir)
	ids := fillSlices(t, s, "alice", 5, 1)
	// As a necosd of version 5 left it: no order records.
	if _, err := s.cli.Delete(ctx, s.key("order")+"/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Put(ctx, s.key("schema"), `{"version":5}`); err != nil {
		t.Fatal(err)
	}
	if page, _, err := s.PageSlices(ctx, "alice", "", 0); err != nil || len(page) != 0 {
		t.Fatalf("before the migration: %d slices, %v", len(page), err)
	}
	s.Close()

	s = openEmbedded(t, dir)
	page, _, err := s.PageSlices(ctx, "alice", "", 0)
	if err != nil || len(page) != len(ids) {
		t.Fatalf("after the migration: %d slices, %v; want %d", len(page), err, len(ids))
	}
	for i, r := range page {
		if r.Slice.ID != ids[i] {
			t.Fatalf("slice %d is %s, want %s (creation order)", i, r.Slice.ID, ids[i])
		}
	}
	if _, err := s.checkSchemaAt(ctx, 5); !errors.Is(err, ErrSchema) {
		t.Fatalf("a necosd of version 5 on a store of version 6: got %v, want ErrSchema", err)
	}
}

// BenchmarkPageSlices reads one page of 100 slices (4 parts, 1 link each) of a tenant
// while the store holds n slices of other tenants: the cost must not grow with n.
func BenchmarkPageSlices(b *testing.B) {
	for _, n := range []int{0, 2000} {
		b.Run(fmt.Sprintf("others=%d", n), func(b *testing.B) {
			s := openEmbedded(b, b.TempDir())
			fillSlices(b, s, "alice", 100, 4)
			for t := range n / 100 {
				fillSlices(b, s, fmt.Sprintf("t%03d", t), 100, 4)
			}
			ctx := context.Background()
			b.Run("page", func(b *testing.B) {
				for b.Loop() {
					page, _, err := s.PageSlices(ctx, "alice", "", 100)
					if err != nil || len(page) != 100 {
						b.Fatalf("%d slices, %v", len(page), err)
					}
				}
			})
			// What the list route did before pages: list every slice, then read each
			// of the tenant's one by one.
			b.Run("per-slice", func(b *testing.B) {
				for b.Loop() {
					all, err := s.ListSlices(ctx, "alice")
					if err != nil || len(all) != 100 {
						b.Fatalf("%d slices, %v", len(all), err)
					}
					for _, sl := range all {
						if _, err := s.GetSlice(ctx, sl.ID); err != nil {
							b.Fatal(err)
						}
						if _, err := s.ListParts(ctx, sl.ID); err != nil {
							b.Fatal(err)
						}
						if _, err := s.ListLinks(ctx, sl.ID); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		})
	}
}

// BenchmarkPageOwnSlices reads the second page of 100 of a tenant that has n slices:
// the cost must not grow with n. (Read from the name index sorted by creation, a page
// cost what the tenant's every slice did.)
func BenchmarkPageOwnSlices(b *testing.B) {
	for _, n := range []int{200, 2000} {
		b.Run(fmt.Sprintf("own=%d", n), func(b *testing.B) {
			s := openEmbedded(b, b.TempDir())
			fillSlices(b, s, "alice", n, 1)
			ctx := context.Background()
			_, cursor, err := s.PageSlices(ctx, "alice", "", 100)
			if err != nil || cursor == "" {
				b.Fatalf("first page: %q %v", cursor, err)
			}
			for b.Loop() {
				page, _, err := s.PageSlices(ctx, "alice", cursor, 100)
				if err != nil || len(page) != 100 {
					b.Fatalf("%d slices, %v", len(page), err)
				}
			}
		})
	}
}
