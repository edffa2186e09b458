package store

import (
	"context"
	"strings"
	"time"

	"github.com/necos/necos/sdk"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PartsUpdate is one step of WatchParts.
type PartsUpdate struct {
	// Reset says Parts is every part in the store at revision Rev: forget every part
	// known before (but those known at a later revision).
	Reset bool
	Rev   int64
	// Parts are the parts listed (Reset) or written since the last update, as stored
	// now (without their secrets).
	Parts []*Part
	// Deleted are the parts removed since the last update.
	Deleted []sdk.PartRef
}

// WatchParts sends every part of every slice, then each change of one as it is
// committed, until ctx ends; the channel closes only then. Whoever keeps parts in
// memory follows the store this way instead of reading each slice's parts again and
// again. A watch the store drops (a leader change, a connection lost, a revision
// compacted away) is resumed by listing every part again, sent as a Reset.
func (s *Store) WatchParts(ctx context.Context) <-chan PartsUpdate {
	out := make(chan PartsUpdate, 16)
	prefix := s.key("parts") + "/"
	go func() {
		defer close(out)
		send := func(u PartsUpdate) bool {
			select {
			case out <- u:
				return true
			case <-ctx.Done():
				return false
			}
		}
		pause := false
		for {
			if pause {
				select {
				case <-ctx.Done():
					return
				case <-time.After(watchResumePause):
				}
			}
			pause = true
			var listed []*Part
			rev, err := s.listAt(ctx, prefix, func(key string, rev int64, raw []byte) error {
				if p, err := decodePart(key, rev, raw); err == nil {
					listed = append(listed, p)
				}
				return nil
			})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.logger.Debug("part watch: list", "error", err)
				continue
			}
			if !send(PartsUpdate{Reset: true, Rev: rev, Parts: listed}) {
				return
			}
			if s.afterPartsList != nil {
				s.afterPartsList()
			}
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			wch := s.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
			for resp := range wch {
				if resp.CompactRevision != 0 || resp.Err() != nil {
					pause = resp.CompactRevision == 0
					break
				}
				var u PartsUpdate
				for _, e := range resp.Events {
					key := string(e.Kv.Key)
					if e.Type == clientv3.EventTypeDelete {
						u.Deleted = append(u.Deleted, deletedRef(prefix, key, e.PrevKv))
						continue
					}
					if p, err := decodePart(key, e.Kv.ModRevision, e.Kv.Value); err == nil {
						u.Parts = append(u.Parts, p)
					}
				}
				if !send(u) {
					cancel()
					return
				}
			}
			cancel()
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return out
}

// deletedRef names the part a delete removed: from its last value, else from its key
// ("<slice>/<part>": slice ids hold no slash).
func deletedRef(prefix, key string, prev *mvccpb.KeyValue) sdk.PartRef {
	if prev != nil {
		var p Part
		if jsonUnmarshal(key, prev.GetValue(), &p) == nil && p.SliceID != "" {
			return p.Ref()
		}
	}
	slice, name, _ := strings.Cut(trimKey(prefix, key), "/")
	return sdk.PartRef{SliceID: slice, PartID: name}
}
