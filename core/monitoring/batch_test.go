package monitoring

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

const perMetric = "{granularity-secs: 1, metrics: [{metric: {name: PERCENT_CPU_UTILIZATION}}, " +
	"{metric: {name: MEMORY_USED_MB, granularity-secs: 5}}]}"

// refsOf lists the parts of a batch call, with their metric names, sorted.
func refsOf(reqs []sdk.MetricsRequest) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = fmt.Sprint(r.Ref, r.Names)
	}
	sort.Strings(out)
	return out
}

func TestCollectorBatchesPerProviderAndPeriod(t *testing.T) {
	r := newRig(t, nil)
	r.mon.keep = true
	one := r.slice("one", partSpec{"core", "P1", ""})
	two := r.slice("two", partSpec{"core", "P1", ""}, partSpec{"edge", "P2", ""})
	three := r.slice("three", partSpec{"core", "P1", perMetric})

	// Every part is measured as it joins, and its first stored measurements recorded.
	want := map[string]map[string]int{one: {"core@10s": 1}, two: {"core@10s": 1, "edge@10s": 1},
		three: {"core@1s": 1, "core@5s": 1}}
	eventually(t, "every part's start recorded", func() error {
		for id, w := range want {
			if got := r.started(id); !reflect.DeepEqual(got, w) {
				return fmt.Errorf("%s: %v, want %v", id, got, w)
			}
		}
		return nil
	})
	mon := r.col.Monitored()
	if !reflect.DeepEqual(mon[three], []string{"core@1s", "core@5s"}) || !reflect.DeepEqual(mon[two], []string{"core@10s", "edge@10s"}) {
		t.Errorf("monitored: %v", mon)
	}
	r.vim.calls()
	r.mon.take()
	r.takeStored()

	for _, tc := range []struct {
		key    loopKey
		refs   []string
		nodes  int      // points = nodes × metrics
		stored []string // the slices the elasticity engine is told of
	}{
		{loopKey{"P1", 10 * time.Second}, []string{one + "/core []", two + "/core []"}, 2 * 3 * 2, []string{one, two}},
		{loopKey{"P2", 10 * time.Second}, []string{two + "/edge []"}, 3 * 2, []string{two}},
		{loopKey{"P1", time.Second}, []string{three + "/core [PERCENT_CPU_UTILIZATION]"}, 3, []string{three}},
		{loopKey{"P1", 5 * time.Second}, []string{three + "/core [MEMORY_USED_MB]"}, 3, []string{three}},
	} {
		r.tick(tc.key)
		if got := r.takeStored(); !reflect.DeepEqual(got, [][]string{tc.stored}) {
			t.Errorf("%v: OnStored told of %v, want once of %v", tc.key, got, tc.stored)
		}
		// Told only once the points can be read: a policy judged then must see them.
		r.mu.Lock()
		unflushed := r.unflushed
		r.mu.Unlock()
		if unflushed != 0 {
			t.Errorf("%v: OnStored was called with %d points written but not flushed", tc.key, unflushed)
		}
		calls := r.vim.calls()
		if len(calls) != 1 || !reflect.DeepEqual(refsOf(calls[0]), tc.refs) {
			t.Errorf("%v: calls %v, want one of %v", tc.key, calls, tc.refs)
		}
		writes, pts := r.mon.take()
		if writes != 1 || len(pts) != tc.nodes {
			t.Errorf("%v: %d writes of %d points, want one of %d", tc.key, writes, len(pts), tc.nodes)
		}
		for _, p := range pts {
			node := p.Tags[sdk.TagResourceID]
			typ := sdk.NodeWorker
			if node == "master-1" {
				typ = sdk.NodeMaster
			}
			if len(p.Tags) != 4 || p.Tags[sdk.TagNodeType] != typ || p.Tags[sdk.TagPart] == "" || p.Time.IsZero() ||
				(p.Tags[sdk.TagSlice] != one && p.Tags[sdk.TagSlice] != two && p.Tags[sdk.TagSlice] != three) {
				t.Errorf("%v: point %+v", tc.key, p)
			}
		}
	}
	for id, w := range want {
		if got := r.started(id); !reflect.DeepEqual(got, w) {
			t.Errorf("%s: starts %v after more periods, want %v (once per part and period)", id, got, w)
		}
	}
}

func TestCollectorFollowsTheStoresParts(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	id := r.slice("elastic", partSpec{"core", "P1", perMetric})
	eventually(t, "core's start recorded", func() error {
		if got := r.started(id); len(got) != 2 {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	setState := func(name string, st store.PartState) {
		t.Helper()
		if _, err := r.st.UpdatePart(ctx, id, name, func(p *store.Part) ([]store.Event, error) {
			p.State = st
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	monitored := func(want ...string) func() error {
		return func() error {
			if got := r.col.Monitored()[id]; !slices.Equal(got, want) {
				return fmt.Errorf("%v, want %v", got, want)
			}
			return nil
		}
	}

	// A part added by elasticity, at another provider: measured once Ready, with the
	// parameters of the part it copies.
	if err := r.st.CreatePart(ctx, r.part(id, "core-h1", "P2", store.PartCreating)); err != nil {
		t.Fatal(err)
	}
	setState("core-h1", store.PartReady)
	eventually(t, "the added part joins", monitored("core-h1@1s", "core-h1@5s", "core@1s", "core@5s"))
	eventually(t, "the added part's start recorded", func() error {
		if got := r.started(id); got["core-h1@1s"] != 1 || got["core-h1@5s"] != 1 {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	r.vim.calls()
	r.tick(loopKey{"P2", time.Second})
	if calls := r.vim.calls(); len(calls) != 1 || !reflect.DeepEqual(refsOf(calls[0]), []string{id + "/core-h1 [PERCENT_CPU_UTILIZATION]"}) {
		t.Errorf("P2 every second: %v", calls)
	}

	// Leaving Ready stops it, and its provider's loops with it.
	setState("core-h1", store.PartDeleting)
	eventually(t, "the removed part leaves", monitored("core@1s", "core@5s"))
	r.col.mu.Lock()
	for k := range r.col.loops {
		if k.provider == "P2" {
			t.Errorf("loop %v still runs without members", k)
		}
	}
	r.col.mu.Unlock()

	// A part lost at its provider stops, and comes back when it is back.
	setState("core", store.PartLost)
	eventually(t, "a lost part stops", monitored())
	setState("core", store.PartReady)
	eventually(t, "a part back is measured again", monitored("core@1s", "core@5s"))

	// With its parts' records gone, the slice is gone, and with the last slice the
	// watch ends.
	for _, name := range []string{"core-h1", "core"} {
		if err := r.st.DeletePart(ctx, id, name); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the slice is forgotten", func() error {
		r.col.mu.Lock()
		defer r.col.mu.Unlock()
		if len(r.col.slices) != 0 || len(r.col.loops) != 0 || r.col.watchStop != nil {
			return fmt.Errorf("slices %d, loops %d, watching %v", len(r.col.slices), len(r.col.loops), r.col.watchStop != nil)
		}
		return nil
	})
}

// The engine announces slices while it leads and says each is gone when its lead ends:
// the collector then stops every loop and its watch, and starts again on the next
// announcement (as on a necosd that leads again), recording the start again.
func TestCollectorStopsWithItsSlices(t *testing.T) {
	r := newRig(t, nil)
	a := r.slice("a", partSpec{"core", "P1", ""})
	b := r.slice("b", partSpec{"core", "P1", ""})
	eventually(t, "both started", func() error {
		if r.started(a)["core@10s"] != 1 || r.started(b)["core@10s"] != 1 {
			return errors.New("not yet")
		}
		return nil
	})
	r.col.SliceGone(a)
	r.col.mu.Lock()
	if len(r.col.slices) != 1 || len(r.col.loops) != 1 || r.col.watchStop == nil {
		t.Errorf("with one slice left: slices %d, loops %d, watching %v", len(r.col.slices), len(r.col.loops), r.col.watchStop != nil)
	}
	r.col.mu.Unlock()
	r.vim.calls()
	r.tick(loopKey{"P1", 10 * time.Second})
	if calls := r.vim.calls(); len(calls) != 1 || !reflect.DeepEqual(refsOf(calls[0]), []string{b + "/core []"}) {
		t.Errorf("after a is gone: %v", calls)
	}
	r.col.SliceGone(b)
	r.col.mu.Lock()
	if len(r.col.slices) != 0 || len(r.col.loops) != 0 || r.col.watchStop != nil || len(r.col.parts) != 0 {
		t.Errorf("with no slice: slices %d, loops %d, watching %v, parts of %d slices", len(r.col.slices),
			len(r.col.loops), r.col.watchStop != nil, len(r.col.parts))
	}
	r.col.mu.Unlock()
	if m := r.col.Monitored(); len(m) != 0 {
		t.Errorf("monitored: %v", m)
	}

	sl, err := r.st.GetSlice(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := r.st.ListParts(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	r.col.SliceReady(viewOf(sl, parts))
	eventually(t, "b monitored again, its start recorded again", func() error {
		if got := r.started(b)["core@10s"]; got != 2 {
			return fmt.Errorf("%d starts", got)
		}
		return nil
	})
}

// One part's failure does not fail the others; a batch that fails stores nothing and
// records no start; both are measured again the next period.
func TestCollectorFailures(t *testing.T) {
	r := newRig(t, nil)
	r.mon.keep = true
	r.vim.mu.Lock()
	r.vim.down = sdk.Errorf(sdk.CodeUnavailable, "provider unreachable")
	r.vim.mu.Unlock()
	a := r.slice("a", partSpec{"core", "P1", ""})
	b := r.slice("b", partSpec{"core", "P1", ""})
	key := loopKey{"P1", 10 * time.Second}
	r.tick(key)
	if w, _ := r.mon.take(); w != 0 || len(r.started(a))+len(r.started(b)) != 0 {
		t.Fatalf("a failed batch: %d writes, starts %v %v", w, r.started(a), r.started(b))
	}
	if m := r.col.Monitored(); len(m) != 2 {
		t.Errorf("failures stop nothing: %v", m)
	}

	r.vim.mu.Lock()
	r.vim.down = nil
	r.vim.fail[sdk.PartRef{SliceID: a, PartID: "core"}] = sdk.Errorf(sdk.CodeUnavailable, "agent down")
	r.vim.mu.Unlock()
	r.tick(key)
	_, pts := r.mon.take()
	for _, p := range pts {
		if p.Tags[sdk.TagSlice] != b {
			t.Errorf("point of the failing part: %+v", p)
		}
	}
	if len(pts) != 6 || r.started(b)["core@10s"] != 1 || len(r.started(a)) != 0 {
		t.Errorf("one part failing: %d points, starts %v %v", len(pts), r.started(a), r.started(b))
	}

	r.vim.mu.Lock()
	clear(r.vim.fail)
	r.vim.mu.Unlock()
	r.tick(key)
	if _, pts := r.mon.take(); len(pts) != 12 || r.started(a)["core@10s"] != 1 || r.started(b)["core@10s"] != 1 {
		t.Errorf("recovered: %d points, starts %v %v", len(pts), r.started(a), r.started(b))
	}
}

// A VIM client that is no MetricsBatcher (a plugin built before MetricsBatch, behind a
// client that does not batch) is measured part by part, in the same round.
func TestCollectorWithoutBatcher(t *testing.T) {
	r := newRig(t, func(v *fakeVIM, m *fakeMonitor) Plugins {
		return fakePlugins{vim: struct{ sdk.VIM }{v}, mon: m}
	})
	r.mon.keep = true
	for i := range 3 {
		r.slice(fmt.Sprint("s", i), partSpec{"core", "P1", ""})
	}
	eventually(t, "every part measured once", func() error {
		r.vim.mu.Lock()
		defer r.vim.mu.Unlock()
		if r.vim.singles < 3 {
			return fmt.Errorf("%d Metrics calls", r.vim.singles)
		}
		return nil
	})
	r.mon.take()
	r.vim.mu.Lock()
	r.vim.singles = 0
	r.vim.mu.Unlock()
	r.tick(loopKey{"P1", 10 * time.Second})
	writes, pts := r.mon.take()
	r.vim.mu.Lock()
	singles, batches := r.vim.singles, len(r.vim.batches)
	r.vim.mu.Unlock()
	if singles != 3 || batches != 0 || writes != 1 || len(pts) != 18 {
		t.Errorf("%d Metrics and %d MetricsBatch calls, %d writes of %d points; want 3, 0, one of 18", singles, batches, writes, len(pts))
	}
}
