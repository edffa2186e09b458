package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// requestInfo collects, while a request is served, what its log line and metrics need
// but only inner handlers learn: the route matched, the tenant, the error.
type requestInfo struct {
	route  string
	tenant string
	err    error
	// done runs once the request has been answered (releases what it held).
	done []func()
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey{}).(*requestInfo)
	return info
}

// unmatched labels requests no route matched, so that random paths cannot blow up the
// metrics' cardinality.
const unmatched = "unmatched"

// statusClientGone is logged and counted for requests whose client left before an
// answer (nginx's convention): nothing was sent, but the request still took time.
const statusClientGone = 499

// recorder remembers the status and size of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines (event streams).
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe serves r with next, then logs it and records its metrics.
func (h *Handler) observe(w http.ResponseWriter, r *http.Request, next http.Handler) {
	start := time.Now()
	info := &requestInfo{route: unmatched}
	rec := &recorder{ResponseWriter: w}
	ctx := withMaxBody(context.WithValue(r.Context(), infoKey{}, info), h.opts.MaxBody)
	ctx = context.WithValue(ctx, bodyGateKey{}, h.bodies)
	next.ServeHTTP(rec, r.WithContext(ctx))
	for _, f := range info.done {
		f()
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
		if r.Context().Err() != nil {
			status = statusClientGone
		}
	}
	took := time.Since(start)
	h.metrics.observe(r.Method, info.route, status, took)

	args := []any{"method", r.Method, "route", info.route, "path", r.URL.Path, "status", status,
		"duration", took, "bytes", rec.bytes}
	if info.tenant != "" {
		args = append(args, "tenant", info.tenant)
	}
	level := hclog.Info
	switch {
	case status >= 500:
		level = hclog.Error
	case info.route == "/healthz" || info.route == "/readyz" || info.route == "/metrics":
		// Probes and scrapes come every few seconds: only worth seeing when debugging.
		level = hclog.Debug
	}
	if info.err != nil && (status >= 500 || h.log.IsDebug()) {
		args = append(args, "error", info.err)
	}
	h.log.Log(level, "request", args...)
}

// routeLabel records the template of the matched route ("/v1/slices/{id}").
func (h *Handler) routeLabel(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := infoFrom(r.Context()); info != nil {
			if route := mux.CurrentRoute(r); route != nil {
				if tpl, err := route.GetPathTemplate(); err == nil {
					info.route = tpl
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

type tenantKey struct{}

// TenantFrom returns the tenant a request authenticated as (behind Auth), or "".
func TenantFrom(ctx context.Context) string {
	t, _ := ctx.Value(tenantKey{}).(string)
	return t
}

// WithTenant returns ctx authenticated as tenant, as Auth leaves it: for tests of
// handlers added through Options.Extra.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// Auth lets a request through only with a tenant's bearer token (Authorization: Bearer
// <token>); TenantFrom then names the tenant. Without one, or with an unknown one, it
// answers 401 with a WWW-Authenticate challenge, before anything of the body is read.
func (h *Handler) Auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse := func(e *Error) {
			if !hasBody(r) {
				WriteError(w, r, e)
				return
			}
			// The body of a refused request is never read: the connection closes after
			// the answer, rather than waiting for a body that a hostile client may send a
			// byte at a time (net/http would otherwise drain up to 256 KiB of it, for as
			// long as ReadTimeout allows).
			w.Header().Set("Connection", "close")
			WriteError(w, r, e)
			_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
		}
		token, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			refuse(&Error{Status: http.StatusUnauthorized,
				Message:  "missing bearer token",
				Problems: []v1.Problem{{Path: "header Authorization", Message: "expected \"Bearer <token>\""}}})
			return
		}
		tenant, err := h.records.TenantByToken(r.Context(), token)
		if errors.Is(err, store.ErrNotFound) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="necos", error="invalid_token"`)
			refuse(&Error{Status: http.StatusUnauthorized, Message: "invalid bearer token",
				Problems: []v1.Problem{{Path: "header Authorization", Message: "unknown token"}}})
			return
		}
		if err != nil {
			refuse(&Error{Status: http.StatusServiceUnavailable, Message: "cannot check the token now", Cause: err})
			return
		}
		if info := infoFrom(r.Context()); info != nil {
			info.tenant = tenant
		}
		next.ServeHTTP(w, r.WithContext(WithTenant(r.Context(), tenant)))
	})
}

// bearer extracts the token of an Authorization header; the scheme is case-insensitive
// (RFC 7235).
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// httpMetrics are the API's Prometheus collectors.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "necos", Subsystem: "http", Name: "requests_total",
			Help: "API requests by method, route template and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "necos", Subsystem: "http", Name: "request_duration_seconds",
			Help: "API request latency by method, route template and status code (synchronous creates and event streams last long).",
			// From a token check to a synchronous slice create of several minutes.
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 16),
		}, []string{"method", "route", "code"}),
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	return m
}

// register registers c with reg, or returns the collector already registered there
// under the same name: a second API over one registry (tests, a restart in process)
// shares the first one's series instead of panicking.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("api: register metrics: " + err.Error())
	}
	return c
}

func (m *httpMetrics) observe(method, route string, status int, took time.Duration) {
	code := strconv.Itoa(status)
	m.requests.WithLabelValues(method, route, code).Inc()
	m.duration.WithLabelValues(method, route, code).Observe(took.Seconds())
}

func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
