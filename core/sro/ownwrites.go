package sro

import (
	"sync"

	"github.com/necos/necos/core/store"
)

// ownWrites tells the engine's watch which slice writes the engine made and went on from
// itself (the slice's creation when it leads, the plan, the build's Ready), so that their
// events do not queue the slice again. Without it, a slice was reconciled once more right
// after its build: its parts described (a health round) moments after they were made,
// four plugin calls and a dozen store reads per 4-part slice, beside the creates of the
// slices after it.
//
// A write's revision is known only once it is committed, and the watch may report the
// write before the writer has noted that revision: begin is called before the write, and
// the watch waits for a slice's writes in flight to end before it judges an event of it.
type ownWrites struct {
	mu      sync.Mutex
	changed *sync.Cond         // a write in flight ended
	writing map[string]int     // writes in flight, by slice
	revs    map[string][]int64 // revisions of the writes made, by slice, not yet seen
}

// begin notes a write of slice id about to be made; the function it returns ends it,
// with the revision written (0: the write failed or changed nothing). It must be called.
func (o *ownWrites) begin(id string) func(rev int64) {
	o.mu.Lock()
	o.init()
	o.writing[id]++
	o.mu.Unlock()
	return func(rev int64) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.writing[id]--; o.writing[id] <= 0 {
			delete(o.writing, id)
		}
		if rev > 0 {
			revs := o.revs[id]
			if len(revs) >= 4 { // events lost (a watch restarted): keep the latest only
				revs = revs[len(revs)-3:]
			}
			o.revs[id] = append(revs, rev)
		}
		o.changed.Broadcast()
	}
}

func (o *ownWrites) init() {
	if o.writing == nil {
		o.writing, o.revs = map[string]int{}, map[string][]int64{}
		o.changed = sync.NewCond(&o.mu)
	}
}

// wroteItself reports (once) whether w is a write noted by begin, first waiting for the
// slice's writes in flight (a store call each, bounded by its timeout) to end.
func (o *ownWrites) wroteItself(w store.SliceWrite) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.init()
	for o.writing[w.ID] > 0 {
		o.changed.Wait()
	}
	revs := o.revs[w.ID]
	for i, r := range revs {
		if r == w.Rev {
			if len(revs) == 1 {
				delete(o.revs, w.ID)
			} else {
				o.revs[w.ID] = append(revs[:i:i], revs[i+1:]...)
			}
			return true
		}
	}
	return false
}

// forget drops the revisions noted for slice id.
func (o *ownWrites) forget(id string) {
	o.mu.Lock()
	delete(o.revs, id)
	o.mu.Unlock()
}

// forgetAll drops every revision noted; writes in flight still end through begin's
// function.
func (o *ownWrites) forgetAll() {
	o.mu.Lock()
	o.revs = map[string][]int64{}
	o.mu.Unlock()
}
