package api

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/mux"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
)

// PolicyRoutes returns an Options.Extra adding a slice's elasticity policy routes, the
// policies kept in st (the elasticity engine evaluates what is there):
//
//   - GET /v1/slices/{id}/policies: the slice's policies, from the API and from its
//     services' documents;
//   - POST /v1/slices/{id}/policies: one policy (YAML or the same structure as JSON,
//     {policy: {...}} or the mapping alone, naming its part; docs/elasticity.md),
//     checked and checked against the slice, registered: 201, or 200 when it replaces
//     the policy of that name the API registered before; one a service registered is a
//     409;
//   - GET /v1/slices/{id}/policies/{name}, DELETE /v1/slices/{id}/policies/{name} (204):
//     one policy; a deleted policy stops being evaluated.
//
// Another tenant's slice is not found (404).
func PolicyRoutes(slices SliceFinder, st elastic.Policies) Extra {
	p := &policyRoutes{slices: slices, policies: st}
	return func(r *mux.Router, auth func(http.Handler) http.Handler) {
		r.Handle("/v1/slices/{id}/policies", auth(http.HandlerFunc(p.list))).Methods(http.MethodGet)
		r.Handle("/v1/slices/{id}/policies", auth(http.HandlerFunc(p.create))).Methods(http.MethodPost)
		r.Handle("/v1/slices/{id}/policies/{name}", auth(http.HandlerFunc(p.get))).Methods(http.MethodGet)
		r.Handle("/v1/slices/{id}/policies/{name}", auth(http.HandlerFunc(p.remove))).Methods(http.MethodDelete)
	}
}

type policyRoutes struct {
	slices   SliceFinder
	policies elastic.Policies
}

// PolicyView is a registered policy as the API shows it.
type PolicyView struct {
	Name string `json:"name"`
	Part string `json:"part"`
	// Source says who registered it: "api", or "service:<id>".
	Source string `json:"source"`
	// Condition describes when it fires, e.g. "cpu-high: PERCENT_CPU_UTILIZATION > 80
	// on worker nodes for 3 points".
	Condition string      `json:"condition"`
	CreatedAt time.Time   `json:"created_at"`
	Policy    spec.Policy `json:"policy"`
}

// PolicyList answers GET /v1/slices/{id}/policies.
type PolicyList struct {
	Policies []PolicyView `json:"policies"`
}

func policyView(p *store.Policy) PolicyView {
	return PolicyView{Name: p.Name, Part: p.Spec.Part, Source: p.Source, Condition: p.Spec.String(),
		CreatedAt: p.CreatedAt, Policy: p.Spec}
}

func policyPath(slice, name string) string {
	return "/v1/slices/" + url.PathEscape(slice) + "/policies/" + url.PathEscape(name)
}

func (p *policyRoutes) list(w http.ResponseWriter, r *http.Request) {
	v, err := findSlice(p.slices, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	pols, err := p.policies.ListPolicies(r.Context(), v.Slice.ID)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	out := PolicyList{Policies: make([]PolicyView, 0, len(pols))}
	for _, pol := range pols {
		out.Policies = append(out.Policies, policyView(pol))
	}
	WriteJSON(w, http.StatusOK, out)
}

func (p *policyRoutes) create(w http.ResponseWriter, r *http.Request) {
	v, err := findSlice(p.slices, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	doc, err := ReadDocument(w, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	pol, err := spec.ParsePolicy(doc)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if v.Slice.Deleting {
		WriteError(w, r, errorf(http.StatusConflict, "slice %s is being decommissioned", v.Slice.ID))
		return
	}
	_, gerr := p.policies.GetPolicy(r.Context(), v.Slice.ID, pol.Name)
	replaced := gerr == nil
	rec, err := elastic.Install(r.Context(), p.policies, v, pol, elastic.SourceAPI)
	if errors.Is(err, elastic.ErrOwned) {
		WriteError(w, r, &Error{Status: http.StatusConflict, Message: err.Error(),
			Problems: []v1.Problem{{Path: "policy.name", Message: "used by a policy registered by a service: change it there, or choose another name"}}})
		return
	}
	if err != nil {
		WriteError(w, r, err)
		return
	}
	status := http.StatusCreated
	if replaced {
		status = http.StatusOK
	}
	w.Header().Set("Location", policyPath(v.Slice.ID, rec.Name))
	WriteJSON(w, status, policyView(rec))
}

func (p *policyRoutes) get(w http.ResponseWriter, r *http.Request) {
	v, err := findSlice(p.slices, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	name := mux.Vars(r)["name"]
	pol, err := p.policies.GetPolicy(r.Context(), v.Slice.ID, name)
	if err != nil {
		WriteError(w, r, policyError(err, v.Slice.ID, name))
		return
	}
	WriteJSON(w, http.StatusOK, policyView(pol))
}

func (p *policyRoutes) remove(w http.ResponseWriter, r *http.Request) {
	v, err := findSlice(p.slices, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	name := mux.Vars(r)["name"]
	if err := elastic.Remove(r.Context(), p.policies, v.Slice.ID, name); err != nil {
		WriteError(w, r, policyError(err, v.Slice.ID, name))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// policyError says which policy is missing, rather than "slice not found".
func policyError(err error, slice, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Message: "slice " + slice + " has no policy " + name, Cause: err}
	}
	return err
}
