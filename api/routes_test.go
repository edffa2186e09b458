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

// openAPI is the part of the OpenAPI document the tests read.
type openAPI struct {
	OpenAPI string                    `yaml:"openapi"`
	Paths   map[string]map[string]any `yaml:"paths"`
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIRoutes checks the OpenAPI document against the router: every route is
// documented with its methods, and every documented operation is routed.
func TestOpenAPIRoutes(t *testing.T) {
	var doc openAPI
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi: %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for key := range item {
			if slices.Contains(httpMethods, key) {
				documented[strings.ToUpper(key)+" "+path] = true
			}
		}
	}

	// The router alone: an engine that never runs is enough to build it.
	h := api.New(api.Options{Engine: sro.New(sro.Options{})}).(*api.Handler)
	routed := map[string]bool{}
	err := h.Router().Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s accepts any method: give it Methods()", tpl)
			return nil
		}
		for _, m := range methods {
			routed[m+" "+tpl] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for op := range routed {
		if !documented[op] {
			t.Errorf("route %s is not in openapi.yaml", op)
		}
	}
	for op := range documented {
		if !routed[op] {
			t.Errorf("openapi.yaml documents %s, which no route serves", op)
		}
	}
	if len(routed) < 12 {
		t.Errorf("only %d routes walked: %v", len(routed), routed)
	}
}

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
