package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Policy is an elasticity policy registered on a slice, as GET /v1/slices/{id}/policies
// answers it.
type Policy struct {
	Name string `json:"name"`
	Part string `json:"part"`
	// Source says who registered it: "api", or "service:<id>".
	Source string `json:"source"`
	// Condition describes when it fires, e.g. "cpu-high: PERCENT_CPU_UTILIZATION > 80
	// on worker nodes for 3 points".
	Condition string    `json:"condition"`
	CreatedAt time.Time `json:"created_at"`
	// Policy is the policy as registered (docs/elasticity.md).
	Policy map[string]any `json:"policy"`
}

func policiesPath(sliceID string) string { return slicePath(sliceID) + "/policies" }

func policyPath(sliceID, name string) string {
	return policiesPath(sliceID) + "/" + url.PathEscape(name)
}

// ListPolicies returns a slice's elasticity policies, from the API and from its
// services' documents.
func (c *Client) ListPolicies(ctx context.Context, sliceID string) ([]Policy, error) {
	var l struct {
		Policies []Policy `json:"policies"`
	}
	if _, err := c.call(ctx, request{method: http.MethodGet, path: policiesPath(sliceID)}, &l); err != nil {
		return nil, err
	}
	return l.Policies, nil
}

// GetPolicy returns one policy of a slice.
func (c *Client) GetPolicy(ctx context.Context, sliceID, name string) (*Policy, error) {
	var p Policy
	if _, err := c.call(ctx, request{method: http.MethodGet, path: policyPath(sliceID, name)}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// CreatePolicy registers a policy document (YAML or JSON as contentType says) on a
// slice; replaced reports that it replaced the API-registered policy of that name.
func (c *Client) CreatePolicy(ctx context.Context, sliceID string, doc []byte, contentType string) (p *Policy, replaced bool, err error) {
	var out Policy
	status, err := c.call(ctx, request{method: http.MethodPost, path: policiesPath(sliceID), body: doc, contentType: contentType}, &out)
	if err != nil {
		return nil, false, err
	}
	return &out, status == http.StatusOK, nil
}

// DeletePolicy removes a policy: it stops being evaluated.
func (c *Client) DeletePolicy(ctx context.Context, sliceID, name string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: policyPath(sliceID, name)}, nil)
	return err
}
