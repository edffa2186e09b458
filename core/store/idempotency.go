package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// The key is hashed: a tenant's header makes no key path of its own.
func (s *Store) idemKey(tenant, key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.key("idempotency", tenant, hex.EncodeToString(sum[:16]))
}

// ClaimIdempotencyKey records that a tenant's key stands for a document (digest), for
// IdempotencyTTL (an etcd lease: the key expires by itself), unless the key already stands for something: then that is returned
// (and nothing is written).
func (s *Store) ClaimIdempotencyKey(ctx context.Context, tenant, key, digest string) (*Idempotency, error) {
	k := s.idemKey(tenant, key)
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	lease, err := s.cli.Grant(ctx, int64(s.idemTTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	b, _ := json.Marshal(Idempotency{Digest: digest})
	r, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(b), clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	if r.Succeeded {
		return nil, nil
	}
	_, _ = s.cli.Revoke(ctx, lease.ID)
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
// anew). The key's lease goes with it, so that failed requests leave nothing behind for
// IdempotencyTTL.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, tenant, key string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	r, err := s.cli.Get(ctx, s.idemKey(tenant, key))
	if err != nil {
		return fmt.Errorf("idempotency key: %w", err)
	}
	for _, kv := range r.Kvs {
		if kv.Lease == 0 {
			_, err = s.cli.Delete(ctx, string(kv.Key))
		} else {
			_, err = s.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease))
		}
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("idempotency key: %w", err)
		}
	}
	return nil
}
