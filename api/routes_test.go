package api_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/necos/necos/api"
	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/sro"
	"gopkg.in/yaml.v3"
)

// newServer serves another API handler over opts for the rest of the test.
func newServer(t *testing.T, opts api.Options) string {
	t.Helper()
	srv := httptest.NewServer(api.New(opts))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestOpenAPIRoutes checks the OpenAPI document against the router, walked: every route
// is documented with its methods, and every documented operation is routed.
func TestOpenAPIRoutes(t *testing.T) {
	// The router alone: an engine that never runs is enough to build it. necosd adds the
	// service, metrics and policy routes, which openapi.yaml documents too.
	h := api.New(api.Options{Engine: sro.New(sro.Options{}),
		Extra: api.Extras(api.ServiceRoutes(nil), api.MetricsRoutes(nil, nil), api.PolicyRoutes(nil, nil),
			api.TimingsRoutes(nil, nil, nil, nil), api.MarketplaceRoutes(nil, nil), api.SiteRoutes(nil, nil))}).(*api.Handler)
	if err := h.CheckOpenAPI(); err != nil {
		t.Errorf("openapi.yaml and the routes differ:\n%v", err)
	}
	want := []string{
		"DELETE /v1/slices/{id}", "GET /healthz", "GET /metrics", "GET /readyz", "GET /v1/openapi.yaml",
		"DELETE /v1/slices/{id}/services/{service}",
		"GET /v1/plugins", "GET /v1/providers", "GET /v1/slices", "GET /v1/slices/{id}", "GET /v1/slices/{id}/events",
		"GET /v1/slices/{id}/services", "GET /v1/slices/{id}/services/{service}",
		"POST /service_orchestrator/deploy_service",
		"POST /slice_activator/create_slice", "POST /slice_activator/delete_slice", "POST /v1/slices",
		"POST /v1/slices/{id}/services",
		"GET /v1/slices/{id}/metrics", "POST /v1/slices/{id}/metrics", "GET /v1/slices/{id}/timings", "GET /v1/marketplace", "POST /v1/sites/release",
		"GET /v1/slices/{id}/policies", "POST /v1/slices/{id}/policies",
		"GET /v1/slices/{id}/policies/{name}", "DELETE /v1/slices/{id}/policies/{name}",
	}
	slices.Sort(want)
	if got := h.Routes(); !slices.Equal(got, want) {
		t.Errorf("routes %q, want %q", got, want)
	}

	// An undocumented route, and a route without methods, are caught.
	h = api.New(api.Options{Engine: sro.New(sro.Options{}), Extra: func(r *mux.Router, _ func(http.Handler) http.Handler) {
		r.Handle("/v1/slices/{id}/undocumented", http.NotFoundHandler()).Methods(http.MethodPost)
		r.Handle("/v1/anything", http.NotFoundHandler())
	}}).(*api.Handler)
	err := h.CheckOpenAPI()
	if err == nil || !strings.Contains(err.Error(), "POST /v1/slices/{id}/undocumented is not in openapi.yaml") ||
		!strings.Contains(err.Error(), "/v1/anything accepts any method") {
		t.Errorf("undocumented routes: %v", err)
	}
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIRefs checks that every $ref of the document points at a definition, and
// that every operation says what it answers.
func TestOpenAPIRefs(t *testing.T) {
	var root map[string]any
	if err := yaml.Unmarshal(api.OpenAPI, &root); err != nil {
		t.Fatal(err)
	}
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if k == "$ref" {
					refs = append(refs, c.(string))
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(root)
	sort.Strings(refs)
	for _, ref := range slices.Compact(refs) {
		if !strings.HasPrefix(ref, "#/") {
			t.Errorf("external $ref %s", ref)
			continue
		}
		var at any = root
		for _, seg := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := at.(map[string]any)
			if !ok {
				at = nil
				break
			}
			at = m[seg]
		}
		if at == nil {
			t.Errorf("$ref %s points at nothing", ref)
		}
	}
	for path, item := range root["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			o := op.(map[string]any)
			if o["operationId"] == nil || o["responses"] == nil || o["summary"] == nil {
				t.Errorf("%s %s: operationId, summary and responses are required", method, path)
			}
		}
	}
	// The document is served as it is embedded.
	rec := httptest.NewRecorder()
	h := api.New(api.Options{Engine: sro.New(sro.Options{})})
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/openapi.yaml", nil))
	if rec.Code != 200 || rec.Body.String() != string(api.OpenAPI) {
		t.Errorf("GET /v1/openapi.yaml: %d", rec.Code)
	}
}

// TestExtra adds a route as other packages do: it shares authentication, tenants,
// error format and metrics.
func TestExtra(t *testing.T) {
	env := apitest.Start(t)
	srv := newServer(t, api.Options{Engine: env.Engine, Extra: func(r *mux.Router, auth func(http.Handler) http.Handler) {
		r.Handle("/v1/slices/{id}/policies", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			doc, err := api.ReadDocument(w, r)
			if err != nil {
				api.WriteError(w, r, err)
				return
			}
			api.WriteJSON(w, http.StatusCreated, map[string]string{"tenant": api.TenantFrom(r.Context()),
				"slice": mux.Vars(r)["id"], "doc": string(doc)})
		}))).Methods(http.MethodPost)
	}})
	var got map[string]string
	do(t, "POST", srv+"/v1/slices/s-1/policies", env.Token("bob"), []byte(`{"policy":{"name":"p"}}`),
		"Content-Type", "application/json").status(t, 201).json(t, &got)
	if got["tenant"] != "bob" || got["slice"] != "s-1" || got["doc"] != "policy:\n    name: p\n" {
		t.Errorf("extra route got %q", got)
	}
	do(t, "POST", srv+"/v1/slices/s-1/policies", "", []byte(`{}`), "Content-Type", "application/json").status(t, 401)
	var e v1.Error
	do(t, "POST", srv+"/v1/slices/s-1/policies", env.Token("bob"), []byte(`x`), "Content-Type", "image/png").
		status(t, 415).json(t, &e)
	if e.Problems[0].Path != "header Content-Type" {
		t.Errorf("415: %+v", e)
	}
}
