package monitoring

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// handTicker is a loop's ticker, ticked by the test.
type handTicker struct{ c chan time.Time }

func (t handTicker) Chan() <-chan time.Time { return t.c }
func (t handTicker) Stop()                  {}

// round is one round a loop finished.
type round struct {
	key loopKey
	all bool
}

// rig is a collector over a real store and fakes, with its loops ticked by hand.
type rig struct {
	tb    testing.TB
	st    *store.Store
	vim   *fakeVIM
	mon   *fakeMonitor
	col   *Collector
	mu    sync.Mutex
	ticks map[loopKey]chan time.Time
	done  chan round
	// stored are the slices each OnStored call named, in order.
	stored [][]string
	// unflushed counts the points not yet flushed when OnStored was called.
	unflushed int
}

// takeStored returns the slices OnStored was told of since the last call.
func (r *rig) takeStored() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stored
	r.stored = nil
	return s
}

func newRig(tb testing.TB, plugins func(*fakeVIM, *fakeMonitor) Plugins) *rig {
	tb.Helper()
	st := openStore(tb)
	r := &rig{tb: tb, st: st, vim: &fakeVIM{fail: map[sdk.PartRef]error{}}, mon: &fakeMonitor{},
		ticks: map[loopKey]chan time.Time{}, done: make(chan round, 1024)}
	var p Plugins = fakePlugins{vim: r.vim, mon: r.mon}
	if plugins != nil {
		p = plugins(r.vim, r.mon)
	}
	r.col = New(Options{Store: st, Plugins: p, CallTimeout: time.Minute, OnStored: func(ids ...string) {
		pending := r.mon.pending()
		r.mu.Lock()
		r.stored = append(r.stored, ids)
		r.unflushed += pending
		r.mu.Unlock()
	}})
	r.col.newTicker = func(k loopKey) ticker {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.ticks[k] == nil {
			r.ticks[k] = make(chan time.Time)
		}
		return handTicker{r.ticks[k]}
	}
	r.col.afterRound = func(k loopKey, all bool) { r.done <- round{k, all} }
	tb.Cleanup(r.col.Close)
	return r
}

// tick ends a period of the loop of key and waits for its round.
func (r *rig) tick(key loopKey) {
	r.tb.Helper()
	r.mu.Lock()
	c := r.ticks[key]
	r.mu.Unlock()
	if c == nil {
		r.tb.Fatalf("no loop %v", key)
	}
	select {
	case c <- time.Now():
	case <-time.After(time.Minute):
		r.tb.Fatalf("loop %v takes no tick", key)
	}
	for {
		select {
		case d := <-r.done:
			if d.key == key && d.all {
				return
			}
		case <-time.After(time.Minute):
			r.tb.Fatalf("loop %v: no round within a minute", key)
		}
	}
}

// started counts the EvStarted events of a slice, by "part@every".
func (r *rig) started(slice string) map[string]int {
	r.tb.Helper()
	evs, err := r.st.Events(context.Background(), slice)
	if err != nil {
		r.tb.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range evs {
		if ev.Type == EvStarted {
			out[ev.Part+"@"+ev.Data["every"]]++
		}
	}
	return out
}

// slice stores a Ready slice of Ready parts (three nodes each) and announces it.
func (r *rig) slice(name string, parts ...partSpec) string {
	r.tb.Helper()
	v := storeSlice(r.tb, r.st, name, parts...)
	r.col.SliceReady(v)
	return v.Slice.ID
}

// part is the record of a part of three nodes.
func (r *rig) part(slice, name, provider string, state store.PartState) *store.Part {
	return partRecord(slice, name, provider, state)
}
