package store

import (
	"context"
	"fmt"
	"time"

	"github.com/necos/necos/sdk"
)

// ServiceState is where a service deployment is.
type ServiceState string

// Service states. A deployment goes Deploying → Deployed, Applied (workloads not ready yet) or Failed; Undeploying is set
// while its parts are being cleared, after which the record is gone.
const (
	ServiceDeploying ServiceState = "Deploying"
	ServiceDeployed  ServiceState = "Deployed"
	// ServiceApplied is a deployment whose steps all succeeded while some workloads were
	// not ready yet (pods pending) when the deploy's wait ended; the message says what
	// they wait for.
	ServiceApplied     ServiceState = "Applied"
	ServiceFailed      ServiceState = "Failed"
	ServiceUndeploying ServiceState = "Undeploying"
)

// Terminal reports whether a deployment in this state has ended.
func (s ServiceState) Terminal() bool {
	return s == ServiceDeployed || s == ServiceFailed || s == ServiceApplied
}

// Service is a tenant's service deployed onto a slice: the document, and the progress of
// its last deployment part by part, node by node, step by step.
type Service struct {
	SliceID string `json:"slice_id"`
	// ID is unique within the slice.
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	// Doc is the service document (deploy_service YAML) as the tenant sent it.
	Doc     string       `json:"doc"`
	State   ServiceState `json:"state"`
	Message string       `json:"message,omitempty"`
	// Warnings are problems of the document that did not stop the deployment.
	Warnings []string `json:"warnings,omitempty"`
	// Generation counts the deployments of the service: 1 for the first.
	Generation int `json:"generation"`
	// Parts are the parts the service deploys onto, in the document's order.
	Parts []ServicePart `json:"parts"`
	// Policies are the names of the elasticity policies the document registered.
	Policies   []string  `json:"policies,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
	Rev        int64     `json:"-"`
}

// Part returns the named part's progress.
func (s *Service) Part(name string) (*ServicePart, bool) {
	for i := range s.Parts {
		if s.Parts[i].Name == name {
			return &s.Parts[i], true
		}
	}
	return nil, false
}

// ServicePart is a service's deployment onto one part.
type ServicePart struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	// State is one of the sdk.Deploy* states.
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	// Nodes are the part's nodes with their steps, as the part's deployer reports them.
	Nodes []ServiceNode `json:"nodes,omitempty"`
}

// ServiceNode is a service's steps on one node of a part (or, for a deployer that works
// per VDU or per part, on that VDU or part).
type ServiceNode struct {
	Node string `json:"node"`
	// VDU is the VDU the node belongs to, when known.
	VDU string `json:"vdu,omitempty"`
	// State is one of the sdk.Deploy* states.
	State string           `json:"state"`
	Steps []sdk.StepResult `json:"steps,omitempty"`
}

func (s *Store) serviceKey(slice, id string) string { return s.key("services", slice, id) }

// PutService creates or replaces a service record, with events in the same transaction.
func (s *Store) PutService(ctx context.Context, svc *Service, evs ...Event) error {
	now := time.Now().UTC()
	if svc.CreatedAt.IsZero() {
		svc.CreatedAt = now
	}
	svc.UpdatedAt = now
	ops := append([]op{{key: s.serviceKey(svc.SliceID, svc.ID), v: svc, rev: anyRev}}, s.eventOps(svc.SliceID, evs)...)
	rev, err := s.commit(ctx, ops...)
	if err != nil {
		return fmt.Errorf("service %s/%s: %w", svc.SliceID, svc.ID, err)
	}
	svc.Rev = rev
	return nil
}

// GetService reads one service.
func (s *Store) GetService(ctx context.Context, slice, id string) (*Service, error) {
	var svc Service
	rev, err := s.get(ctx, s.serviceKey(slice, id), &svc)
	if err != nil {
		return nil, fmt.Errorf("service %s/%s: %w", slice, id, err)
	}
	svc.Rev = rev
	return &svc, nil
}

// ListServices lists a slice's services by id; slice "" lists every slice's.
func (s *Store) ListServices(ctx context.Context, slice string) ([]*Service, error) {
	prefix := s.key("services") + "/"
	if slice != "" {
		prefix = s.key("services", slice) + "/"
	}
	var out []*Service
	err := s.list(ctx, prefix, func(key string, rev int64, raw []byte) error {
		var svc Service
		if err := jsonUnmarshal(key, raw, &svc); err != nil {
			return err
		}
		svc.Rev = rev
		out = append(out, &svc)
		return nil
	})
	return out, err
}

// UpdateService changes a service with fn (retried on concurrent writes) and records
// the events fn returns in the same transaction.
func (s *Store) UpdateService(ctx context.Context, slice, id string, fn func(*Service) ([]Event, error)) (*Service, error) {
	svc, err := update(ctx, s, s.serviceKey(slice, id), func(svc *Service) ([]op, error) {
		evs, err := fn(svc)
		if err != nil {
			return nil, err
		}
		svc.UpdatedAt = time.Now().UTC()
		return s.eventOps(slice, evs), nil
	})
	if err != nil {
		return nil, fmt.Errorf("service %s/%s: %w", slice, id, err)
	}
	return &svc, nil
}

// DeleteService removes a service record; removing an unknown one is not an error.
func (s *Store) DeleteService(ctx context.Context, slice, id string, evs ...Event) error {
	ops := append([]op{{key: s.serviceKey(slice, id), rev: anyRev}}, s.eventOps(slice, evs)...)
	_, err := s.commit(ctx, ops...)
	if err != nil {
		return fmt.Errorf("delete service %s/%s: %w", slice, id, err)
	}
	return nil
}
