package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SliceRecords is a slice with its parts and links as read together.
type SliceRecords struct {
	Slice *Slice
	Parts []*Part
	Links []*Link
}

// PageCursor marks where a page of slices ended: its last slice's place in the
// creation order (the key of its order record, under the prefix's "order/"). "" starts
// from the oldest slice.
type PageCursor string

// ErrBadCursor is returned for a cursor that no page could have given.
var ErrBadCursor = errors.New("invalid page cursor")

// pageTxnSlices is how many slices one read transaction covers: each costs three
// operations, and etcd refuses transactions of more than 128 (its default --max-txn-ops,
// which an external store may keep).
const pageTxnSlices = 40

// pageReaders is how many of those transactions a page runs at once.
const pageReaders = 4

// orderKey is a slice's order record, order/<tenant>/<created, ns, 20 digits>-<id> →
// id: a tenant's slices in key order are its slices in creation order, so that a page is
// a range read of its own length. (Reading the name index sorted by creation revision
// made etcd read, sort and drop every one of the tenant's keys for each page: half a
// page's time with 10,000 slices, and growing with them.) The time is the wall clock's:
// a clock set back orders the slices made meanwhile before older ones.
func (s *Store) orderKey(tenant string, created time.Time, id string) string {
	return s.key("order", tenant, fmt.Sprintf("%020d-%s", created.UnixNano(), id))
}

// PageSlices returns up to limit slices of a tenant, oldest first, created after cursor,
// with their parts and links, and the cursor of the next page ("" when this page is
// the last). limit <= 0 returns every slice after cursor. Tenant "" pages through every
// tenant's slices, tenant by tenant.
//
// Its cost is that of the page, however many slices the store or the tenant hold: the
// page's order records are one range read, and the page's records a few transactions of
// range reads.
func (s *Store) PageSlices(ctx context.Context, tenant string, cursor PageCursor, limit int) ([]SliceRecords, PageCursor, error) {
	base := s.key("order") + "/"
	prefix := base
	if tenant != "" {
		prefix = s.key("order", tenant) + "/"
	}
	start := prefix
	if cursor != "" {
		if !validCursor(base, prefix, cursor) {
			return nil, "", fmt.Errorf("%w: %q", ErrBadCursor, cursor)
		}
		start = base + string(cursor) + "\x00" // the first key after the cursor's
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)+1))
	}
	rctx, cancel := withTimeout(ctx)
	r, err := s.cli.Get(rctx, start, opts...)
	cancel()
	if err != nil {
		return nil, "", fmt.Errorf("list slices in creation order: %w", err)
	}
	kvs := r.Kvs
	var next PageCursor
	if limit > 0 && len(kvs) > limit {
		kvs = kvs[:limit]
		next = PageCursor(strings.TrimPrefix(string(kvs[len(kvs)-1].Key), base))
	}
	ids := make([]string, len(kvs))
	for i, kv := range kvs {
		if err := jsonUnmarshal(string(kv.Key), kv.Value, &ids[i]); err != nil {
			return nil, "", err
		}
	}
	out := make([]SliceRecords, len(ids))
	found := make([]bool, len(ids))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, pageReaders)
	)
	for start := 0; start < len(ids); start += pageTxnSlices {
		end := min(start+pageTxnSlices, len(ids))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.readSlices(ctx, ids[start:end], out[start:end], found[start:end]); err != nil {
				mu.Lock()
				firstErr = errors.Join(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, "", firstErr
	}
	// A slice decommissioned between the two reads is left out.
	page := out[:0]
	for i := range out {
		if found[i] {
			page = append(page, out[i])
		}
	}
	return page, next, nil
}

// validCursor reports whether cursor names an order record under prefix (the tenant's,
// or every tenant's): <tenant>/<20 digits>-<id>.
func validCursor(base, prefix string, cursor PageCursor) bool {
	key := base + string(cursor)
	if !strings.HasPrefix(key, prefix) {
		return false
	}
	i := strings.LastIndexByte(string(cursor), '/')
	rest := string(cursor)[i+1:]
	if i < 0 || len(rest) < 22 || rest[20] != '-' {
		return false
	}
	for _, c := range rest[:20] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// readSlices reads the records of ids in one transaction into out, marking found those
// whose slice record still exists.
func (s *Store) readSlices(ctx context.Context, ids []string, out []SliceRecords, found []bool) error {
	ops := make([]clientv3.Op, 0, 3*len(ids))
	for _, id := range ids {
		ops = append(ops,
			clientv3.OpGet(s.sliceKey(id)),
			clientv3.OpGet(s.key("parts", id)+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
			clientv3.OpGet(s.key("links", id)+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)))
	}
	tctx, cancel := withTimeout(ctx)
	defer cancel()
	r, err := s.cli.Txn(tctx).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("read slices: %w", err)
	}
	for i := range ids {
		sr, pr, lr := r.Responses[3*i].GetResponseRange(), r.Responses[3*i+1].GetResponseRange(), r.Responses[3*i+2].GetResponseRange()
		if len(sr.Kvs) == 0 {
			continue
		}
		var sl Slice
		if err := jsonUnmarshal(string(sr.Kvs[0].Key), sr.Kvs[0].Value, &sl); err != nil {
			return err
		}
		sl.Rev = sr.Kvs[0].ModRevision
		rec := SliceRecords{Slice: &sl}
		for _, kv := range pr.Kvs {
			p, err := decodePart(string(kv.Key), kv.ModRevision, kv.Value)
			if err != nil {
				return err
			}
			rec.Parts = append(rec.Parts, p)
		}
		for _, kv := range lr.Kvs {
			l, err := decodeLink(string(kv.Key), kv.ModRevision, kv.Value)
			if err != nil {
				return err
			}
			rec.Links = append(rec.Links, l)
		}
		out[i], found[i] = rec, true
	}
	return nil
}
