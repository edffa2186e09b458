package api

import (
	_ "embed"
	"net/http"

	v1 "github.com/necos/necos/api/v1"
)

// OpenAPI is the API's OpenAPI 3 document, served at /v1/openapi.yaml. It is written by
// hand; TestOpenAPIRoutes keeps it and the router in step.
//
//go:embed openapi.yaml
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(OpenAPI)
}

var healthOK = v1.Health{Status: "ok"}

func writeUnready(w http.ResponseWriter, reason string) {
	WriteJSON(w, http.StatusServiceUnavailable, v1.Health{Status: "unavailable", Error: reason})
}
