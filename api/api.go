// Package api is necos's tenant-facing REST API: the NECOS-compatible routes of the
// original demo (/slice_activator/..., YAML in and out) and the native /v1 routes (JSON,
// described by the OpenAPI document served at /v1/openapi.yaml), over one slice engine.
//
// Tenants authenticate with bearer tokens (store.AddToken); each sees only its own
// slices, and another tenant's slice is reported as not found. /healthz, /readyz,
// /metrics and /v1/openapi.yaml are open.
//
// # Adding routes
//
// Other packages add their routes through Options.Extra, which receives the router and
// the authentication middleware, or through Handler.Router. Their handlers use
// TenantFrom for the caller, ReadDocument for bodies, and WriteJSON and WriteError for
// answers, so that every route shares the limits, error format, logs and metrics.
// Every route added must also be described in openapi.yaml: a test that builds the
// handler with the same Extra and calls Handler.CheckOpenAPI keeps the two in step, as
// TestOpenAPIRoutes does for the API's own routes.
package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// DefaultMaxBody is the default request size limit: a slice spec is a few kilobytes.
const DefaultMaxBody = 1 << 20

// DefaultMaxBodiesInFlight holds 32 bodies of the largest size at once.
const DefaultMaxBodiesInFlight = 32 * DefaultMaxBody

// Options configure the API.
type Options struct {
	// Engine is the slice engine (*sro.Engine).
	Engine Slices
	// Records is the store the API reads events, tokens, secrets and idempotency keys
	// from; nil means the engine's own (sro.Engine.Store).
	Records Records
	// Plugins lists the plugin instances running for the providers (the registry's
	// plugin host); nil (in tests) lists none.
	Plugins PluginLister
	Logger  hclog.Logger
	// Metrics is where the HTTP metrics are registered; nil means a private registry.
	Metrics prometheus.Registerer
	// Gatherer is what /metrics serves; nil means Metrics when it is a Gatherer (as a
	// *prometheus.Registry is), else the private registry.
	Gatherer prometheus.Gatherer
	// MaxBody limits request bodies, in bytes; 0 means DefaultMaxBody.
	MaxBody int64
	// Limits bound the size of the slices tenants may create (parts, links, VDU
	// instances); zero fields take spec's defaults.
	Limits spec.Limits
	// MaxBodiesInFlight bounds the bytes of request bodies held at once, from their
	// reading to their answer; 0 means DefaultMaxBodiesInFlight. Requests beyond it wait
	// (within the server's read timeout) before their body is read.
	MaxBodiesInFlight int64
	// Ready is asked by /readyz after the store; nil means always ready.
	Ready func() error
	// Extra adds routes after the API's own: r is the API's router (its middleware logs,
	// measures and limits them too) and auth wraps a handler so that it needs a
	// tenant's token (TenantFrom then names the tenant).
	Extra func(r *mux.Router, auth func(http.Handler) http.Handler)
}

// Handler serves the API. New returns one as an http.Handler.
type Handler struct {
	opts    Options
	engine  Slices
	records Records
	log     hclog.Logger
	router  *mux.Router
	metrics *httpMetrics
	// bodies bounds the bytes of request bodies held at once.
	bodies *semaphore.Weighted
	// heartbeat spaces the comments that keep an idle event stream open through proxies.
	heartbeat time.Duration
}

// New returns the API handler for opts. It panics when opts.Engine is nil, or when
// opts.Records is nil and the engine has no store: necosd cannot serve anything
// without them.
func New(opts Options) http.Handler {
	return newHandler(opts)
}

func newHandler(opts Options) *Handler {
	if opts.Engine == nil {
		panic("api.New: Options.Engine is nil")
	}
	if opts.Records == nil {
		if e, ok := opts.Engine.(interface{ Store() *store.Store }); ok {
			opts.Records = e.Store()
		}
	}
	if opts.Records == nil {
		panic("api.New: Options.Records is nil and the engine has no store")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.MaxBodiesInFlight <= 0 {
		opts.MaxBodiesInFlight = DefaultMaxBodiesInFlight
	}
	opts.MaxBodiesInFlight = max(opts.MaxBodiesInFlight, opts.MaxBody)
	reg, gath := opts.Metrics, opts.Gatherer
	if reg == nil {
		private := prometheus.NewRegistry()
		reg = private
		if gath == nil {
			gath = private
		}
	}
	if gath == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			gath = g
		} else {
			gath = prometheus.NewRegistry()
		}
	}
	h := &Handler{
		opts:      opts,
		engine:    opts.Engine,
		records:   opts.Records,
		log:       opts.Logger,
		router:    mux.NewRouter(),
		metrics:   newHTTPMetrics(reg),
		bodies:    semaphore.NewWeighted(opts.MaxBodiesInFlight),
		heartbeat: 15 * time.Second,
	}
	h.routes(gath)
	if opts.Extra != nil {
		opts.Extra(h.router, h.Auth)
	}
	return h
}

// Router returns the API's router, for adding routes (see Options.Extra).
func (h *Handler) Router() *mux.Router { return h.router }

// ServeHTTP logs and measures every request, matched or not, around the router.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.observe(w, r, h.router)
}

func (h *Handler) routes(gath prometheus.Gatherer) {
	r := h.router
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, errorf(http.StatusNotFound, "no route %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
	})
	// Runs once a route matched: its template labels logs and metrics.
	r.Use(h.routeLabel)

	r.Handle("/healthz", http.HandlerFunc(h.healthz)).Methods(http.MethodGet)
	r.Handle("/readyz", http.HandlerFunc(h.readyz)).Methods(http.MethodGet)
	r.Handle("/metrics", metricsHandler(gath)).Methods(http.MethodGet)
	r.Handle("/v1/openapi.yaml", http.HandlerFunc(serveOpenAPI)).Methods(http.MethodGet)

	necos := func(f http.HandlerFunc) http.Handler { return YAMLErrors(h.Auth(f)) }
	r.Handle("/slice_activator/create_slice", necos(h.necosCreate)).Methods(http.MethodPost)
	r.Handle("/slice_activator/delete_slice", necos(h.necosDelete)).Methods(http.MethodPost)

	auth := func(f http.HandlerFunc) http.Handler { return h.Auth(f) }
	r.Handle("/v1/slices", auth(h.createSlice)).Methods(http.MethodPost)
	r.Handle("/v1/slices", auth(h.listSlices)).Methods(http.MethodGet)
	r.Handle("/v1/slices/{id}", auth(h.getSlice)).Methods(http.MethodGet)
	r.Handle("/v1/slices/{id}", auth(h.deleteSlice)).Methods(http.MethodDelete)
	r.Handle("/v1/slices/{id}/events", auth(h.events)).Methods(http.MethodGet)
	r.Handle("/v1/providers", auth(h.providers)).Methods(http.MethodGet)
	r.Handle("/v1/plugins", auth(h.plugins)).Methods(http.MethodGet)
}

// readyTimeout bounds the store probe of /readyz.
const readyTimeout = 3 * time.Second

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, healthOK)
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := h.probeStore(ctx); err != nil {
		h.log.Warn("not ready: store", "error", err)
		writeUnready(w, "store: "+err.Error())
		return
	}
	if h.opts.Ready != nil {
		if err := h.opts.Ready(); err != nil {
			writeUnready(w, err.Error())
			return
		}
	}
	WriteJSON(w, http.StatusOK, healthOK)
}

// probeStore makes one linearizable read, which needs a working etcd quorum: the same
// thing every API call needs.
func (h *Handler) probeStore(ctx context.Context) error {
	return h.records.Ping(ctx)
}
