package store

import (
	"context"
	"fmt"
	"time"

	"github.com/necos/necos/core/spec"
)

// Policy is an elasticity policy registered on a slice.
type Policy struct {
	SliceID string `json:"slice_id"`
	// Name is unique within the slice.
	Name string `json:"name"`
	// Source says who registered it: "api", or "service:<id>" for a service file.
	Source    string      `json:"source"`
	Spec      spec.Policy `json:"spec"`
	CreatedAt time.Time   `json:"created_at"`
	Rev       int64       `json:"-"`
}

func (s *Store) policyKey(slice, name string) string { return s.key("policies", slice, name) }

// PutPolicy registers (or replaces) a policy of a slice.
func (s *Store) PutPolicy(ctx context.Context, p *Policy, evs ...Event) error {
	if p.CreatedAt.IsZero() {
		p.CreatedAt = time.Now().UTC()
	}
	ops := append([]op{{key: s.policyKey(p.SliceID, p.Name), v: p, rev: anyRev}}, s.eventOps(p.SliceID, evs)...)
	rev, err := s.commit(ctx, ops...)
	if err != nil {
		return fmt.Errorf("policy %s/%s: %w", p.SliceID, p.Name, err)
	}
	p.Rev = rev
	return nil
}

// GetPolicy reads one policy.
func (s *Store) GetPolicy(ctx context.Context, slice, name string) (*Policy, error) {
	var p Policy
	rev, err := s.get(ctx, s.policyKey(slice, name), &p)
	if err != nil {
		return nil, fmt.Errorf("policy %s/%s: %w", slice, name, err)
	}
	p.Rev = rev
	return &p, nil
}

// ListPolicies lists a slice's policies by name; slice "" lists every slice's.
func (s *Store) ListPolicies(ctx context.Context, slice string) ([]*Policy, error) {
	prefix := s.key("policies") + "/"
	if slice != "" {
		prefix = s.key("policies", slice) + "/"
	}
	var out []*Policy
	err := s.list(ctx, prefix, func(key string, rev int64, raw []byte) error {
		var p Policy
		if err := jsonUnmarshal(key, raw, &p); err != nil {
			return err
		}
		p.Rev = rev
		out = append(out, &p)
		return nil
	})
	return out, err
}

// DeletePolicy removes a policy; removing an unknown one is not an error.
func (s *Store) DeletePolicy(ctx context.Context, slice, name string, evs ...Event) error {
	ops := append([]op{{key: s.policyKey(slice, name), rev: anyRev}}, s.eventOps(slice, evs)...)
	_, err := s.commit(ctx, ops...)
	return err
}
