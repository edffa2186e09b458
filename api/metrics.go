package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/monitoring"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/sdk"
)

// Extra is the type of Options.Extra: it adds routes to the API's router; auth wraps a
// handler so that it needs a tenant's token.
type Extra = func(r *mux.Router, auth func(http.Handler) http.Handler)

// Extras combines several Options.Extra into one, applied in order, e.g.
//
//	api.Options{Extra: api.Extras(api.ServiceRoutes(orch),
//		api.MetricsRoutes(engine, collector), api.PolicyRoutes(engine, engine.Store()))}
func Extras(extras ...Extra) Extra {
	return func(r *mux.Router, auth func(http.Handler) http.Handler) {
		for _, x := range extras {
			if x != nil {
				x(r, auth)
			}
		}
	}
}

// SliceFinder finds a tenant's slice, another tenant's being sro.ErrNotFound;
// *sro.Engine is one.
type SliceFinder interface {
	Get(ctx context.Context, tenant, id string) (*sro.View, error)
}

// MetricsService stores and reads a slice's metrics; *monitoring.Collector is one.
type MetricsService interface {
	Query(ctx context.Context, sliceID string, q sdk.Query) ([]sdk.Point, error)
	Push(ctx context.Context, sliceID string, points []sdk.Point) (int, error)
}

// Bounds of GET /v1/slices/{id}/metrics.
const (
	// DefaultMetricsLast is the number of points per series answered when the query
	// gives neither last nor since.
	DefaultMetricsLast = 100
	// MaxMetricsLast bounds last.
	MaxMetricsLast = 10000
	// MaxMetricsPoints bounds the points of one answer; beyond, it is truncated (and
	// says so).
	MaxMetricsPoints = 100000
)

// MetricsRoutes returns an Options.Extra adding a slice's metrics routes over slices
// and metrics:
//
//   - GET /v1/slices/{id}/metrics?metric=&part=&node=&node-type=&source=&last=&since=&until=
//     reads the points the monitoring stored for the slice (every node, tagged slice,
//     part, ResourceID, node-type) and those pushed to it, series by series;
//   - POST /v1/slices/{id}/metrics stores points a tenant or a probe inside the slice
//     pushes: InfluxDB line protocol (text/plain, ?precision=ns|us|ms|s) or JSON
//     (application/json), only to the caller's own slice and its own parts and nodes.
//
// Another tenant's slice is not found (404). Without a monitor plugin both answer 503.
func MetricsRoutes(slices SliceFinder, metrics MetricsService) Extra {
	m := &metricsRoutes{slices: slices, metrics: metrics}
	return func(r *mux.Router, auth func(http.Handler) http.Handler) {
		r.Handle("/v1/slices/{id}/metrics", auth(http.HandlerFunc(m.query))).Methods(http.MethodGet)
		r.Handle("/v1/slices/{id}/metrics", auth(http.HandlerFunc(m.push))).Methods(http.MethodPost)
	}
}

type metricsRoutes struct {
	slices  SliceFinder
	metrics MetricsService
}

// MetricSeries is one series of a metrics answer: a metric's points with one set of
// tags, oldest first.
type MetricSeries struct {
	Metric string            `json:"metric"`
	Tags   map[string]string `json:"tags"`
	Points []MetricPoint     `json:"points"`
}

// MetricPoint is one value at one time.
type MetricPoint struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}

// MetricsAnswer answers GET /v1/slices/{id}/metrics.
type MetricsAnswer struct {
	Slice  string         `json:"slice"`
	Series []MetricSeries `json:"series"`
	// Truncated says that more points matched than MaxMetricsPoints.
	Truncated bool `json:"truncated,omitempty"`
}

// PushAnswer answers POST /v1/slices/{id}/metrics.
type PushAnswer struct {
	Slice  string `json:"slice"`
	Stored int    `json:"stored"`
}

// findSlice returns the caller's slice named by the route, or the error to answer.
func findSlice(slices SliceFinder, r *http.Request) (*sro.View, error) {
	if slices == nil {
		return nil, errorf(http.StatusServiceUnavailable, "slices are not served here")
	}
	return slices.Get(r.Context(), TenantFrom(r.Context()), mux.Vars(r)["id"])
}

func metricsError(err error) error {
	if errors.Is(err, providers.ErrNoMonitor) {
		return &Error{Status: http.StatusServiceUnavailable, Message: "no monitoring: the catalogue names no monitor plugin", Cause: err}
	}
	return err
}

func (m *metricsRoutes) query(w http.ResponseWriter, r *http.Request) {
	v, err := findSlice(m.slices, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	q, err := metricsQuery(r.URL.Query(), time.Now())
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if m.metrics == nil {
		WriteError(w, r, metricsError(providers.ErrNoMonitor))
		return
	}
	pts, err := m.metrics.Query(r.Context(), v.Slice.ID, q)
	if err != nil {
		if sdk.CodeOf(err) == sdk.CodeInvalidArgument {
			err = &Error{Status: http.StatusBadRequest, Message: err.Error(), Problems: []v1.Problem{{Path: "query", Message: err.Error()}}}
		}
		WriteError(w, r, metricsError(err))
		return
	}
	ans := MetricsAnswer{Slice: v.Slice.ID, Series: []MetricSeries{}}
	if len(pts) > MaxMetricsPoints {
		pts, ans.Truncated = pts[:MaxMetricsPoints], true
	}
	var cur *MetricSeries
	key := ""
	for _, p := range pts {
		if k := p.Metric + "\x00" + seriesTags(p.Tags); cur == nil || k != key {
			ans.Series = append(ans.Series, MetricSeries{Metric: p.Metric, Tags: p.Tags})
			cur, key = &ans.Series[len(ans.Series)-1], k
		}
		cur.Points = append(cur.Points, MetricPoint{Time: p.Time.UTC(), Value: p.Value})
	}
	WriteJSON(w, http.StatusOK, ans)
}

func seriesTags(tags map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(tags) {
		b.WriteString(k + "=" + tags[k] + ",")
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// metricsQuery reads the query parameters of GET /v1/slices/{id}/metrics; every bad
// one is named.
func metricsQuery(params map[string][]string, now time.Time) (sdk.Query, error) {
	get := func(k string) string {
		if v := params[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	q := sdk.Query{Metric: get("metric"), Tags: map[string]string{}}
	for param, tag := range map[string]string{"part": sdk.TagPart, "node": sdk.TagResourceID,
		"node-type": sdk.TagNodeType, "source": monitoring.TagSource} {
		if v := get(param); v != "" {
			q.Tags[tag] = v
		}
	}
	var problems []v1.Problem
	bad := func(param, format string, args ...any) {
		problems = append(problems, v1.Problem{Path: "query " + param, Message: fmt.Sprintf(format, args...)})
	}
	if s := get("last"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > MaxMetricsLast {
			bad("last", "must be an integer from 0 (all points) to %d, got %q", MaxMetricsLast, s)
		}
		q.Last = n
	}
	for _, x := range []struct {
		param string
		at    *time.Time
	}{{"since", &q.Start}, {"until", &q.End}} {
		s := get(x.param)
		if s == "" {
			continue
		}
		t, err := parseWhen(s, now)
		if err != nil {
			bad(x.param, "must be a time (RFC 3339, e.g. 2026-01-02T15:04:05Z) or a duration ago (e.g. 10m), got %q", s)
		}
		*x.at = t
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.End.Before(q.Start) {
		bad("until", "is before since")
	}
	if len(problems) > 0 {
		msg := problems[0].Path + ": " + problems[0].Message
		if len(problems) > 1 {
			msg = fmt.Sprintf("%d bad query parameters", len(problems))
		}
		return sdk.Query{}, &Error{Status: http.StatusBadRequest, Message: msg, Problems: problems}
	}
	if get("last") == "" && q.Start.IsZero() {
		q.Last = DefaultMetricsLast
	}
	return q, nil
}

// parseWhen reads a time: RFC 3339, or a duration meaning that long before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("bad time %q", s)
	}
	return now.Add(-d), nil
}

func (m *metricsRoutes) push(w http.ResponseWriter, r *http.Request) {
	v, err := findSlice(m.slices, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	body, err := readBody(w, r, "points")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	pts, err := monitoring.ParsePoints(r.Header.Get("Content-Type"), r.URL.Query().Get("precision"), body, time.Now())
	if err != nil {
		WriteError(w, r, pushError(err))
		return
	}
	if m.metrics == nil {
		WriteError(w, r, metricsError(providers.ErrNoMonitor))
		return
	}
	n, err := m.metrics.Push(r.Context(), v.Slice.ID, pts)
	if err != nil {
		WriteError(w, r, pushError(metricsError(err)))
		return
	}
	WriteJSON(w, http.StatusOK, PushAnswer{Slice: v.Slice.ID, Stored: n})
}

// pushError names the header or parameter a problem of ParsePoints concerns the way the
// API names them, and answers an unknown media type with 415.
func pushError(err error) error {
	e := asError(err)
	if e.Status != http.StatusBadRequest {
		return err
	}
	for i, p := range e.Problems {
		switch p.Path {
		case "Content-Type":
			e.Status = http.StatusUnsupportedMediaType
			e.Problems[i].Path = "header Content-Type"
		case "precision":
			e.Problems[i].Path = "query precision"
		}
	}
	if len(e.Problems) == 1 {
		e.Message = e.Problems[0].Path + ": " + e.Problems[0].Message
	}
	return e
}
