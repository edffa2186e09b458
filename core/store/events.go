package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Event is one thing that happened to a slice, for tenants (server-sent events) and
// operators.
type Event struct {
	// Seq numbers a slice's events in the order they were recorded (see seqPerRevision).
	Seq   int64     `json:"seq"`
	Time  time.Time `json:"time"`
	Slice string    `json:"slice"`
	// Type says what happened, e.g. "part.ready", "slice.failed", "elastic.fired".
	Type    string            `json:"type"`
	Part    string            `json:"part,omitempty"`
	Link    string            `json:"link,omitempty"`
	Message string            `json:"message,omitempty"`
	Data    map[string]string `json:"data,omitempty"`
}

func (s *Store) eventKey(slice string, t time.Time) string {
	return s.key("events", slice, fmt.Sprintf("%020d-%s", t.UnixNano(), NewID("")[:6]))
}

func (s *Store) eventOp(ev Event) op {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	return op{key: s.eventKey(ev.Slice, ev.Time), v: ev, rev: anyRev}
}

func (s *Store) eventOps(slice string, evs []Event) []op {
	ops := make([]op, 0, len(evs))
	for _, ev := range evs {
		ev.Slice = slice
		ops = append(ops, s.eventOp(ev))
	}
	return ops
}

// AddEvents records events of a slice.
func (s *Store) AddEvents(ctx context.Context, slice string, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	_, err := s.commit(ctx, s.eventOps(slice, evs)...)
	return err
}

// seqPerRevision spaces the sequence numbers of the events one transaction writes: an
// event's Seq is its store revision times this, plus its place among that revision's
// events (in key order), so that every event of a slice has its own Seq and Seq follows
// the order in which events were committed.
const seqPerRevision = 1 << 16

// stored is an event as the store holds it.
type stored struct {
	key string
	rev int64
	ev  Event
}

// sequence orders events by revision, then key, and numbers them.
func sequence(evs []stored) []Event {
	sort.SliceStable(evs, func(i, j int) bool {
		if evs[i].rev != evs[j].rev {
			return evs[i].rev < evs[j].rev
		}
		return evs[i].key < evs[j].key
	})
	out := make([]Event, len(evs))
	for i, e := range evs {
		idx := int64(0)
		if i > 0 && evs[i-1].rev == e.rev {
			idx = out[i-1].Seq - e.rev*seqPerRevision + 1
		}
		e.ev.Seq = e.rev*seqPerRevision + idx
		out[i] = e.ev
	}
	return out
}

// Events lists a slice's events in the order they were recorded.
func (s *Store) Events(ctx context.Context, slice string) ([]Event, error) {
	evs, _, err := s.eventsAt(ctx, slice)
	return evs, err
}

// eventsAt lists a slice's events and the store revision they were read at.
func (s *Store) eventsAt(ctx context.Context, slice string) ([]Event, int64, error) {
	var evs []stored
	rev, err := s.listAt(ctx, s.key("events", slice)+"/", func(key string, rev int64, raw []byte) error {
		var ev Event
		if err := jsonUnmarshal(key, raw, &ev); err != nil {
			return err
		}
		evs = append(evs, stored{key: key, rev: rev, ev: ev})
		return nil
	})
	return sequence(evs), rev, err
}

// WatchEvents sends a slice's events recorded after the event numbered since (0: from
// now), in order, until ctx ends; the channel closes only then. A watch the store drops
// (a leader change, a connection lost, a revision compacted away) is resumed by itself:
// the events recorded meanwhile are read from the record, then the watch goes on from
// there, so a follower neither misses an event nor sees one twice.
func (s *Store) WatchEvents(ctx context.Context, slice string, since int64) <-chan Event {
	out := make(chan Event, 64)
	prefix := s.key("events", slice) + "/"
	watch := func(rev int64) (clientv3.WatchChan, context.CancelFunc) {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithFilterDelete()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		return s.cli.Watch(wctx, prefix, opts...), cancel
	}
	// From since's own revision: its transaction may hold later events.
	wch, cancel := watch(since / seqPerRevision)
	go func() {
		defer close(out)
		defer func() { cancel() }()
		send := func(ev Event) bool {
			if ev.Seq <= since {
				return true
			}
			select {
			case out <- ev:
				since = ev.Seq
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			compacted := false
			for resp := range wch {
				if resp.CompactRevision != 0 || resp.Err() != nil {
					compacted = resp.CompactRevision != 0
					break
				}
				// A response holds whole revisions: number each revision's events together.
				var evs []stored
				for _, e := range resp.Events {
					var ev Event
					if json.Unmarshal(e.Kv.Value, &ev) != nil {
						continue
					}
					evs = append(evs, stored{key: string(e.Kv.Key), rev: e.Kv.ModRevision, ev: ev})
				}
				for _, ev := range sequence(evs) {
					if !send(ev) {
						return
					}
				}
			}
			cancel()
			// Resume: at once after a compaction (the store is fine), after a pause
			// otherwise (it may be down, or electing a leader).
			for {
				if !compacted {
					select {
					case <-ctx.Done():
						return
					case <-time.After(watchResumePause):
					}
				}
				evs, rev, err := s.eventsAt(ctx, slice)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					s.logger.Debug("event watch: catch up", "slice", slice, "error", err)
					compacted = false
					continue
				}
				for _, ev := range evs {
					if !send(ev) {
						return
					}
				}
				wch, cancel = watch(rev + 1)
				break
			}
		}
	}()
	return out
}

// watchResumePause spaces attempts to resume an event watch the store dropped.
const watchResumePause = time.Second

// SliceWrite is a write (or the delete) of a slice's record: its id and the store
// revision of the write.
type SliceWrite struct {
	ID  string
	Rev int64
}

// WatchSlices reports every slice written or deleted from now on, until ctx ends.
// Reconcilers use it to learn of work.
func (s *Store) WatchSlices(ctx context.Context) <-chan SliceWrite {
	out := make(chan SliceWrite, 256)
	prefix := s.key("slices") + "/"
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithPrevKV())
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, e := range resp.Events {
				select {
				case out <- SliceWrite{ID: trimKey(prefix, string(e.Kv.Key)), Rev: e.Kv.ModRevision}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// WaitSlice waits until a slice satisfies done (checked on every write of it) or is
// deleted (then it returns ErrNotFound), or ctx ends.
//
// The watch is made first, from the store's current revision, and the slice read once
// it is in place: a watch from a past revision (the slice's own, read first) is one
// etcd catches up in a loop that runs every 100 ms, which made every wait at least that
// long once anything else had been written meanwhile (a 1-part create answered in
// ~100 ms, of which the build took 5).
func (s *Store) WaitSlice(ctx context.Context, id string, done func(*Slice) bool) (*Slice, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := s.cli.Watch(clientv3.WithRequireLeader(wctx), s.sliceKey(id), clientv3.WithCreatedNotify())
	select {
	case resp, ok := <-wch:
		if !ok {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("watch slice %s: closed", id)
		}
		if err := resp.Err(); err != nil {
			return nil, fmt.Errorf("watch slice %s: %w", id, err)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Every write after the watch's revision reaches the watch; the read sees at least
	// up to it.
	sl, err := s.GetSlice(ctx, id)
	if err != nil {
		return nil, err
	}
	if done(sl) {
		return sl, nil
	}
	for resp := range wch {
		if err := resp.Err(); err != nil {
			return nil, fmt.Errorf("watch slice %s: %w", id, err)
		}
		for _, e := range resp.Events {
			if e.Kv.ModRevision <= sl.Rev {
				continue // the read saw it already
			}
			if e.Type == clientv3.EventTypeDelete {
				return nil, fmt.Errorf("slice %s: %w", id, ErrNotFound)
			}
			var next Slice
			if err := json.Unmarshal(e.Kv.Value, &next); err != nil {
				return nil, fmt.Errorf("decode slice %s: %w", id, err)
			}
			next.Rev = e.Kv.ModRevision
			if done(&next) {
				return &next, nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("watch slice %s: closed", id)
}
