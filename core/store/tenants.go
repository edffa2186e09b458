package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Tenant is an account that owns slices.
type Tenant struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Tokens are random 256-bit values, so a plain SHA-256 is enough to store them safely: no
// dictionary to guess from, and lookups stay one key read per request.
func tokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewToken returns a fresh bearer token.
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "necos_" + hex.EncodeToString(b)
}

// EnsureTenant creates a tenant if it does not exist.
func (s *Store) EnsureTenant(ctx context.Context, name string) error {
	_, err := s.commit(ctx, op{key: s.key("tenants", name), v: Tenant{Name: name, CreatedAt: time.Now().UTC()}, rev: 0})
	if errors.Is(err, ErrExists) {
		return nil
	}
	return err
}

// ListTenants lists tenants.
func (s *Store) ListTenants(ctx context.Context) ([]Tenant, error) {
	var out []Tenant
	err := s.list(ctx, s.key("tenants")+"/", func(key string, _ int64, raw []byte) error {
		var t Tenant
		if err := jsonUnmarshal(key, raw, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// AddToken lets token authenticate as tenant. Only its digest is stored.
func (s *Store) AddToken(ctx context.Context, tenant, token string) error {
	if err := s.EnsureTenant(ctx, tenant); err != nil {
		return err
	}
	_, err := s.commit(ctx, op{key: s.key("tokens", tokenDigest(token)), v: tenant, rev: anyRev})
	return err
}

// TenantByToken returns the tenant a bearer token authenticates, or ErrNotFound.
func (s *Store) TenantByToken(ctx context.Context, token string) (string, error) {
	var tenant string
	if _, err := s.get(ctx, s.key("tokens", tokenDigest(token)), &tenant); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return tenant, nil
}
