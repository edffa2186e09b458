package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Term is one term of leadership won by Campaign. Done closes when the lead is lost (the
// session's lease expired or the store was unreachable too long); Resign gives it up.
type Term struct {
	sess *concurrency.Session
	el   *concurrency.Election
	// TookOver says the term began by revoking a previous run of the same identity
	// (one killed before it could resign).
	TookOver bool
}

// Done closes when the term ends.
func (t *Term) Done() <-chan struct{} { return t.sess.Done() }

// Resign gives the lead up (the next candidate takes it at once) and ends the term.
func (t *Term) Resign(ctx context.Context) error {
	err := t.el.Resign(ctx)
	if cerr := t.sess.Close(); err == nil {
		err = cerr
	}
	return err
}

// Campaign waits until identity leads among the processes sharing this store, or ctx
// ends. identity must differ between the replicas and stay the same across restarts of
// one: a lead still held under identity is this replica's previous run, killed before it
// resigned, and is taken over at once instead of waiting ttlSeconds for its lease to
// expire.
func (s *Store) Campaign(ctx context.Context, identity string, ttlSeconds int) (*Term, error) {
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(ttlSeconds), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("election session: %w", err)
	}
	el := concurrency.NewElection(sess, s.prefix+"leader")
	t := &Term{sess: sess, el: el}
	if resp, err := el.Leader(ctx); err == nil && len(resp.Kvs) > 0 {
		kv := resp.Kvs[0]
		if string(kv.Value) == identity && clientv3.LeaseID(kv.Lease) != sess.Lease() {
			if _, err := s.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
				t.TookOver = true
			}
		}
	}
	if err := el.Campaign(ctx, identity); err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("campaign: %w", err)
	}
	return t, nil
}
