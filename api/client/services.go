package client

import (
	"context"
	"net/http"
	"net/url"

	v1 "github.com/necos/necos/api/v1"
)

func servicesPath(sliceID string) string { return slicePath(sliceID) + "/services" }

func servicePath(sliceID, id string) string { return servicesPath(sliceID) + "/" + url.PathEscape(id) }

// DeployService deploys a service document (YAML or JSON as contentType says) onto a
// slice. name names the service (empty: the server derives it from the document).
// Without wait it returns as soon as the deployment has started (state Deploying);
// with wait, once every step has run or failed (state Deployed or Failed).
func (c *Client) DeployService(ctx context.Context, sliceID string, doc []byte, contentType, name string, wait bool) (*v1.Service, error) {
	q := waitQuery(wait)
	if name != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("name", name)
	}
	var s v1.Service
	if _, err := c.call(ctx, request{method: http.MethodPost, path: servicesPath(sliceID), query: q, body: doc, contentType: contentType}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListServices returns a slice's services, without their steps.
func (c *Client) ListServices(ctx context.Context, sliceID string) ([]v1.Service, error) {
	var l v1.ServiceList
	if _, err := c.call(ctx, request{method: http.MethodGet, path: servicesPath(sliceID)}, &l); err != nil {
		return nil, err
	}
	return l.Services, nil
}

// GetService returns a service with every step of its last deployment.
func (c *Client) GetService(ctx context.Context, sliceID, id string) (*v1.Service, error) {
	var s v1.Service
	if _, err := c.call(ctx, request{method: http.MethodGet, path: servicePath(sliceID, id)}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// DeleteService undeploys a service.
func (c *Client) DeleteService(ctx context.Context, sliceID, id string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: servicePath(sliceID, id)}, nil)
	return err
}

// DeployServiceNECOS deploys a service document through the NECOS route
// (/service_orchestrator/deploy_service) and returns the YAML answer once every step
// has run or failed.
func (c *Client) DeployServiceNECOS(ctx context.Context, doc []byte) ([]byte, error) {
	return c.raw(ctx, request{method: http.MethodPost, path: "/service_orchestrator/deploy_service", body: doc, contentType: YAML, accept: YAML})
}
