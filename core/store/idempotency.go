package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// IdempotencyTTL is how long an Idempotency-Key is remembered.
const IdempotencyTTL = 24 * time.Hour

// Idempotency is what a tenant's Idempotency-Key stands for: the document it was first
// sent with (its digest) and the slice that document made (empty while it is made).
type Idempotency struct {
	Digest  string `json:"digest"`
	SliceID string `json:"slice_id,omitempty"`
}

// Digest returns the digest of a document, as Idempotency records it.
func Digest(doc []byte) string {
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:])
}

// Idempotency keys claimed close together share one lease, granted for IdempotencyTTL
// and the span it is shared over, so that each key lives at least IdempotencyTTL. A lease
// per key cost etcd a lease record and its in-memory state for every create (10,000
// leases, ~7 MB of necosd's heap after 10,000 creates, rebuilt at every start); shared
// over a sixtieth of the TTL there are at most ~60 a day.
type idemLease struct {
	mu      sync.Mutex
	id      clientv3.LeaseID
	ttl     time.Duration
	granted time.Time
}

// idemLeaseFor returns the lease a key claimed now takes.
func (s *Store) idemLeaseFor(ctx context.Context) (clientv3.LeaseID, error) {
	l := &s.idemLease
	l.mu.Lock()
	defer l.mu.Unlock()
	share := s.idemTTL / 60
	if l.id != 0 && l.ttl == s.idemTTL && time.Since(l.granted) < share {
		return l.id, nil
	}
	granted := time.Now()
	r, err := s.cli.Grant(ctx, int64((s.idemTTL+share+time.Second-1)/time.Second))
	if err != nil {
		return 0, err
	}
	l.id, l.ttl, l.granted = r.ID, s.idemTTL, granted
	return l.id, nil
}

// forgetIdemLease drops the shared lease if it is id (etcd no longer knows it).
func (s *Store) forgetIdemLease(id clientv3.LeaseID) {
	s.idemLease.mu.Lock()
	if s.idemLease.id == id {
		s.idemLease.id = 0
	}
	s.idemLease.mu.Unlock()
}

// The key is hashed: a tenant's header makes no key path of its own.
func (s *Store) idemKey(tenant, key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.key("idempotency", tenant, hex.EncodeToString(sum[:16]))
}

// ClaimIdempotencyKey records that a tenant's key stands for a document (digest), for
// at least IdempotencyTTL (an etcd lease: the key expires by itself), unless the key
// already stands for something: then that is returned (and nothing is written).
func (s *Store) ClaimIdempotencyKey(ctx context.Context, tenant, key, digest string) (*Idempotency, error) {
	k := s.idemKey(tenant, key)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	b, _ := json.Marshal(Idempotency{Digest: digest})
	var r *clientv3.TxnResponse
	for try := 0; ; try++ {
		lease, err := s.idemLeaseFor(ctx)
		if err != nil {
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		r, err = s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, string(b), clientv3.WithLease(lease))).
			Else(clientv3.OpGet(k)).Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && try == 0 {
			s.forgetIdemLease(lease) // revoked by hand: grant another
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		break
	}
	if r.Succeeded {
		return nil, nil
	}
	kvs := r.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, fmt.Errorf("idempotency key: %w", ErrConflict) // expired meanwhile
	}
	var idem Idempotency
	if err := json.Unmarshal(kvs[0].Value, &idem); err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	return &idem, nil
}

// SetIdempotencyKey records the slice a tenant's key made, keeping the key's lease.
func (s *Store) SetIdempotencyKey(ctx context.Context, tenant, key string, idem Idempotency) error {
	k := s.idemKey(tenant, key)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	b, _ := json.Marshal(idem)
	if _, err := s.cli.Put(ctx, k, string(b), clientv3.WithIgnoreLease()); err != nil {
		return fmt.Errorf("idempotency key: %w", err)
	}
	return nil
}

// ReleaseIdempotencyKey forgets a tenant's key (its request failed: a retry may run
// anew). Only the key goes: its lease is shared with other keys (one from an earlier
// version, with a lease of its own, leaves that lease to expire, holding nothing).
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, tenant, key string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := s.cli.Delete(ctx, s.idemKey(tenant, key)); err != nil {
		return fmt.Errorf("idempotency key: %w", err)
	}
	return nil
}
