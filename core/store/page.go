package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SliceRecords is a slice with its parts and links as read together.
type SliceRecords struct {
	Slice *Slice
	Parts []*Part
	Links []*Link
}

// PageCursor marks where a page of slices ended: the store revision at which the last
// slice on it was created. Zero starts from the oldest slice.
type PageCursor int64

// ErrBadCursor is returned for a cursor that no page could have given.
var ErrBadCursor = errors.New("invalid page cursor")

// pageTxnSlices is how many slices one read transaction covers: each costs three
// operations, and etcd refuses transactions of more than 128 (its default --max-txn-ops,
// which an external store may keep).
const pageTxnSlices = 40

// pageReaders is how many of those transactions a page runs at once.
const pageReaders = 4

// PageSlices returns up to limit slices of a tenant (tenant "": of every tenant), oldest
// first, created after cursor, with their parts and links, and the cursor of the next
// page (0 when this page is the last). limit <= 0 returns every slice after cursor.
//
// Its cost is independent of how many other slices the store holds: the tenant's name
// index is read in one range (a slice and its name key are written in one transaction,
// so the key's create revision is the slice's creation order), then the page's records
// in a few transactions of range reads, instead of three reads per slice.
func (s *Store) PageSlices(ctx context.Context, tenant string, cursor PageCursor, limit int) ([]SliceRecords, PageCursor, error) {
	if cursor < 0 {
		return nil, 0, fmt.Errorf("%w: %d", ErrBadCursor, cursor)
	}
	prefix := s.key("names") + "/"
	if tenant != "" {
		prefix = s.nameKey(tenant, "")
	}
	opts := []clientv3.OpOption{clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend),
		clientv3.WithMinCreateRev(int64(cursor) + 1)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)+1))
	}
	rctx, cancel := withTimeout(ctx)
	r, err := s.cli.Get(rctx, prefix, opts...)
	cancel()
	if err != nil {
		return nil, 0, fmt.Errorf("list slice names: %w", err)
	}
	kvs := r.Kvs
	var next PageCursor
	if limit > 0 && len(kvs) > limit {
		kvs = kvs[:limit]
		next = PageCursor(kvs[len(kvs)-1].CreateRevision)
	}
	ids := make([]string, len(kvs))
	for i, kv := range kvs {
		if err := jsonUnmarshal(string(kv.Key), kv.Value, &ids[i]); err != nil {
			return nil, 0, err
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
		return nil, 0, firstErr
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
