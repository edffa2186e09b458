package api

import (
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/gorilla/mux"
	v1 "github.com/necos/necos/api/v1"
	"gopkg.in/yaml.v3"
)

// OpenAPI is the API's OpenAPI 3 document, served at /v1/openapi.yaml. It is written by
// hand; Handler.CheckOpenAPI keeps it and the router in step.
//
//go:embed openapi.yaml
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(OpenAPI)
}

var healthOK = v1.Health{Status: "ok"}

func writeUnready(w http.ResponseWriter, reason string) {
	WriteJSON(w, http.StatusServiceUnavailable, v1.Health{Status: "unavailable", Error: reason})
}

// CheckOpenAPI compares the router, routes added through Options.Extra included, with
// the OpenAPI document: every route must be documented with each of its methods, and
// every documented operation must be routed. The error lists every difference. Tests of
// packages that add routes call it with their Extra.
func (h *Handler) CheckOpenAPI() error {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI, &doc); err != nil {
		return fmt.Errorf("openapi.yaml: %w", err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for key := range item {
			switch key {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				documented[strings.ToUpper(key)+" "+path] = true
			}
		}
	}
	var problems []string
	routed := map[string]bool{}
	err := h.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, err := route.GetMethods()
		if err != nil {
			problems = append(problems, fmt.Sprintf("route %s accepts any method: give it Methods()", tpl))
			return nil
		}
		for _, m := range methods {
			routed[m+" "+tpl] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk routes: %w", err)
	}
	for op := range routed {
		if !documented[op] {
			problems = append(problems, fmt.Sprintf("route %s is not in openapi.yaml", op))
		}
	}
	for op := range documented {
		if !routed[op] {
			problems = append(problems, fmt.Sprintf("openapi.yaml documents %s, which no route serves", op))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return errors.New(strings.Join(problems, "\n"))
}

// Routes lists the router's operations as "METHOD /path/{template}", sorted.
func (h *Handler) Routes() []string {
	var out []string
	_ = h.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, _ := route.GetMethods()
		for _, m := range methods {
			out = append(out, m+" "+tpl)
		}
		return nil
	})
	sort.Strings(out)
	return out
}
