package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/mux"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// ServiceOrchestrator is what the service routes need; *service.Orchestrator has it.
type ServiceOrchestrator interface {
	Start(ctx context.Context, req service.Request) (*service.Record, error)
	Get(ctx context.Context, tenant, sliceID, id string) (*service.Record, error)
	List(ctx context.Context, tenant, sliceID string) ([]*service.Record, error)
	Undeploy(ctx context.Context, tenant, sliceID, id string) error
}

// ServiceRoutes returns an Options.Extra adding the service routes over orch:
//
//   - POST /service_orchestrator/deploy_service: the NECOS route, a service document in
//     (text/x-yaml), the slice named by its slices.sliced.id; answers once the
//     deployment has ended, in YAML with the state and every step: 201 for a new
//     service, 200 for one deployed again, 422 with an error beside the service when it
//     Failed;
//   - POST /v1/slices/{id}/services: the document (YAML or JSON), ?name= to name the
//     service, ?wait=true to answer once it has ended (201/200) rather than at once (202);
//   - GET /v1/slices/{id}/services, GET and DELETE /v1/slices/{id}/services/{service}.
//
// necosd wires it as api.Options{Extra: api.ServiceRoutes(orchestrator)}.
func ServiceRoutes(orch ServiceOrchestrator) func(r *mux.Router, auth func(http.Handler) http.Handler) {
	s := &serviceRoutes{orch: orch}
	return func(r *mux.Router, auth func(http.Handler) http.Handler) {
		r.Handle("/service_orchestrator/deploy_service", YAMLErrors(auth(http.HandlerFunc(s.necosDeploy)))).Methods(http.MethodPost)
		r.Handle("/v1/slices/{id}/services", auth(http.HandlerFunc(s.deploy))).Methods(http.MethodPost)
		r.Handle("/v1/slices/{id}/services", auth(http.HandlerFunc(s.list))).Methods(http.MethodGet)
		r.Handle("/v1/slices/{id}/services/{service}", auth(http.HandlerFunc(s.get))).Methods(http.MethodGet)
		r.Handle("/v1/slices/{id}/services/{service}", auth(http.HandlerFunc(s.undeploy))).Methods(http.MethodDelete)
	}
}

type serviceRoutes struct{ orch ServiceOrchestrator }

// necosService is the answer of deploy_service. Error is set when the service failed,
// so that a client reading errors finds why where it looks for it.
type necosService struct {
	Error   string     `yaml:"error,omitempty"`
	Service v1.Service `yaml:"service"`
}

func (s *serviceRoutes) necosDeploy(w http.ResponseWriter, r *http.Request) {
	ctx, tenant := r.Context(), TenantFrom(r.Context())
	doc, err := ReadDocument(w, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	rec, err := s.orch.Start(ctx, service.Request{Tenant: tenant, Doc: doc, Wait: true})
	if err != nil {
		if errors.Is(err, sro.ErrNotFound) {
			// Name the field: the slice is the one the document names.
			if svc, perr := spec.ParseService(doc); perr == nil {
				err = notFoundByName(err, spec.SliceRef{ID: svc.SliceID, Path: "slices.sliced.id"})
			}
		}
		WriteError(w, r, serviceError(err))
		return
	}
	w.Header().Set("Location", servicePath(rec.SliceID, rec.ID))
	if rec.State == store.ServiceFailed {
		// The request was understood and run, but the service did not come up: never a
		// 2xx, which the original's clients read as deployed. The steps say why.
		if info := infoFrom(ctx); info != nil {
			info.err = fmt.Errorf("service %s failed: %s", rec.ID, rec.Message)
		}
		WriteYAML(w, http.StatusUnprocessableEntity, necosService{Service: serviceView(rec, false),
			Error: fmt.Sprintf("service %s failed: %s", rec.ID, rec.Message)})
		return
	}
	WriteYAML(w, deployedStatus(rec), necosService{Service: serviceView(rec, false)})
}

func deployedStatus(rec *service.Record) int {
	if rec.State == store.ServiceApplied {
		// Applied, but its workloads are not ready yet: accepted, not deployed.
		return http.StatusAccepted
	}
	if rec.Generation > 1 {
		return http.StatusOK
	}
	return http.StatusCreated
}

func servicePath(sliceID, id string) string {
	return "/v1/slices/" + url.PathEscape(sliceID) + "/services/" + url.PathEscape(id)
}

func (s *serviceRoutes) deploy(w http.ResponseWriter, r *http.Request) {
	ctx, tenant, sliceID := r.Context(), TenantFrom(r.Context()), mux.Vars(r)["id"]
	wait, err := boolParam(r, "wait")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	doc, err := ReadDocument(w, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	rec, err := s.orch.Start(ctx, service.Request{Tenant: tenant, SliceID: sliceID, Doc: doc, ID: r.URL.Query().Get("name"), Wait: wait})
	if err != nil {
		WriteError(w, r, serviceError(err))
		return
	}
	w.Header().Set("Location", servicePath(rec.SliceID, rec.ID))
	status := http.StatusAccepted
	if wait {
		status = deployedStatus(rec)
	}
	WriteJSON(w, status, serviceView(rec, false))
}

func (s *serviceRoutes) list(w http.ResponseWriter, r *http.Request) {
	ctx, tenant, sliceID := r.Context(), TenantFrom(r.Context()), mux.Vars(r)["id"]
	recs, err := s.orch.List(ctx, tenant, sliceID)
	if err != nil {
		WriteError(w, r, serviceError(err))
		return
	}
	out := v1.ServiceList{Services: make([]v1.Service, 0, len(recs))}
	for _, rec := range recs {
		v := serviceView(rec, false)
		// A list is an overview: the steps' output is in each service's own view.
		for i := range v.Parts {
			v.Parts[i].VDUs = nil
		}
		out.Services = append(out.Services, v)
	}
	WriteJSON(w, http.StatusOK, out)
}

func (s *serviceRoutes) get(w http.ResponseWriter, r *http.Request) {
	ctx, tenant, vars := r.Context(), TenantFrom(r.Context()), mux.Vars(r)
	rec, err := s.orch.Get(ctx, tenant, vars["id"], vars["service"])
	if err != nil {
		WriteError(w, r, serviceError(err))
		return
	}
	WriteJSON(w, http.StatusOK, serviceView(rec, true))
}

func (s *serviceRoutes) undeploy(w http.ResponseWriter, r *http.Request) {
	ctx, tenant, vars := r.Context(), TenantFrom(r.Context()), mux.Vars(r)
	if err := s.orch.Undeploy(ctx, tenant, vars["id"], vars["service"]); err != nil {
		WriteError(w, r, serviceError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// serviceError gives the orchestrator's errors their statuses; the rest map as every
// error of the API does (a *spec.Error is a 400 naming each problem).
func serviceError(err error) error {
	switch {
	case errors.Is(err, service.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Message: "service not found", Cause: err}
	case errors.Is(err, service.ErrSliceNotReady), errors.Is(err, service.ErrBusy), errors.Is(err, service.ErrNoDeployer):
		// These messages name the slice, part or service and their state: nothing internal.
		return &Error{Status: http.StatusConflict, Message: err.Error(), Cause: err}
	}
	return err
}

// serviceView is the API's view of a service record.
func serviceView(rec *service.Record, withDoc bool) v1.Service {
	out := v1.Service{ID: rec.ID, SliceID: rec.SliceID, State: string(rec.State), Message: rec.Message,
		Warnings: rec.Warnings, Generation: rec.Generation, Policies: rec.Policies, CreatedAt: rec.CreatedAt,
		StartedAt: rec.StartedAt, Parts: []v1.ServicePart{}}
	if !rec.FinishedAt.IsZero() {
		t := rec.FinishedAt
		out.FinishedAt = &t
	}
	if withDoc {
		out.Document = rec.Doc
	}
	for _, sp := range rec.Parts {
		p := v1.ServicePart{Name: sp.Name, Provider: sp.Provider, State: sp.State, Message: sp.Message, VDUs: []v1.ServiceVDU{}}
		index := map[string]int{}
		for _, n := range sp.Nodes {
			vdu := n.VDU
			if vdu == "" {
				vdu = n.Node
			}
			i, ok := index[vdu]
			if !ok {
				i = len(p.VDUs)
				index[vdu] = i
				p.VDUs = append(p.VDUs, v1.ServiceVDU{Name: vdu})
			}
			node := v1.ServiceNode{Name: n.Node, State: n.State, Steps: []v1.Step{}}
			for _, st := range n.Steps {
				step := v1.Step{Index: st.Index, Kind: st.Kind, Step: st.Step, State: st.State, ExitCode: st.ExitCode,
					Stdout: st.Stdout, Stderr: st.Stderr, Error: st.Error, DurationMS: st.Duration.Milliseconds()}
				if !st.Started.IsZero() {
					t := st.Started.UTC().Truncate(time.Millisecond)
					step.Started = &t
				}
				node.Steps = append(node.Steps, step)
				count(&out.Counts, st.State)
			}
			p.VDUs[i].Nodes = append(p.VDUs[i].Nodes, node)
		}
		for i := range p.VDUs {
			p.VDUs[i].State = vduState(p.VDUs[i].Nodes)
		}
		out.Parts = append(out.Parts, p)
	}
	return out
}

func count(c *v1.ServiceCounts, state string) {
	c.Total++
	switch state {
	case sdk.DeployPending:
		c.Pending++
	case sdk.DeployRunning:
		c.Running++
	case sdk.DeploySucceeded:
		c.Succeeded++
	case sdk.DeployFailed:
		c.Failed++
	case sdk.DeploySkipped:
		c.Skipped++
	}
}

// vduState sums up the states of a VDU's nodes: failed wins, then running, then
// pending; succeeded when every node succeeded.
func vduState(nodes []v1.ServiceNode) string {
	has := map[string]bool{}
	for _, n := range nodes {
		has[n.State] = true
	}
	for _, s := range []string{sdk.DeployFailed, sdk.DeployRunning, sdk.DeployPending} {
		if has[s] {
			return s
		}
	}
	if len(nodes) > 0 && len(has) == 1 && has[sdk.DeploySucceeded] {
		return sdk.DeploySucceeded
	}
	if len(nodes) == 0 {
		return sdk.DeployPending
	}
	return sdk.DeployRunning
}
