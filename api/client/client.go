// Package client talks to necosd's API: the /v1 routes (slices, their events as a live
// stream, providers, plugins) and the NECOS-compatible ones. necosctl is built on it.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"gopkg.in/yaml.v3"
)

// Media types of slice specs.
const (
	YAML = "text/x-yaml"
	JSON = "application/json"
)

// Client is an API client. Its methods are safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc. A timeout on hc also
// bounds waits and event streams: prefer contexts.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithCAFile makes the client trust, for an https server, the certificate authorities
// in a PEM file (beside the system's): for a necosd serving a certificate of its own CA.
func WithCAFile(path string) (Option, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", path)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return WithHTTPClient(&http.Client{Transport: tr}), nil
}

// New returns a client of the API at server (e.g. http://127.0.0.1:8080) that
// authenticates with token (which may be empty for the open routes).
func New(server, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", server, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server %q: expected http(s)://host[:port]", server)
	}
	c := &Client{base: u, token: token, http: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Error is an error answer of the API.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Message is the server's message, or the HTTP status when it gave none.
	Message string
	// Problems name each field at fault (or, for a failed slice, each part).
	Problems []v1.Problem
	// SliceID names the slice concerned, when one was created (a create that failed).
	SliceID string
}

// Error returns the server's message followed by each problem's path and message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	for _, p := range e.Problems {
		b.WriteString("; ")
		if p.Path != "" {
			b.WriteString(p.Path + ": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// IsNotFound reports whether err is the API's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// request is one API call.
type request struct {
	method, path string
	query        url.Values
	body         []byte
	contentType  string
	accept       string
	header       http.Header
}

// do sends r and returns the response of a 2xx answer, or the API's error. The caller
// closes the body.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	u := *c.base
	u.Path += r.path
	u.RawQuery = r.query.Encode()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	accept := r.accept
	if accept == "" {
		accept = JSON
	}
	req.Header.Set("Accept", accept)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

// maxErrorBody bounds what is read of an error answer.
const maxErrorBody = 1 << 20

// readError decodes an error answer: JSON on /v1, YAML on the NECOS routes, whatever a
// proxy in between may send otherwise.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body v1.Error
	decoded := false
	switch ct := resp.Header.Get("Content-Type"); {
	case strings.HasPrefix(ct, JSON):
		decoded = json.Unmarshal(b, &body) == nil
	case strings.Contains(ct, "yaml"):
		decoded = yaml.Unmarshal(b, &body) == nil
	}
	if !decoded {
		body = v1.Error{Error: strings.TrimSpace(string(b))}
	}
	e := &Error{Status: resp.StatusCode, Message: body.Error, Problems: body.Problems, SliceID: body.SliceID}
	if e.Message == "" {
		e.Message = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return e
}

// call sends r and decodes a JSON answer into out (unless nil). It returns the status.
func (c *Client) call(ctx context.Context, r request, out any) (int, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", r.method, r.path, err)
	}
	return resp.StatusCode, nil
}

func (c *Client) raw(ctx context.Context, r request) ([]byte, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", r.method, r.path, err)
	}
	return b, nil
}

func waitQuery(wait bool) url.Values {
	if wait {
		return url.Values{"wait": {"true"}}
	}
	return nil
}

func slicePath(id string) string { return "/v1/slices/" + url.PathEscape(id) }

// CreateSlice submits a NECOS slice spec, YAML or JSON as contentType says. Without
// wait it returns the accepted slice at once; with wait, once the slice is Ready (or
// the failure, an *Error whose problems give the reason per part).
//
// A create whose connection fails before an answer is sent again, under the same
// Idempotency-Key: the server answers with the slice the first attempt made, if it
// made one, so a dropped connection never leaves a slice the caller did not hear of.
func (c *Client) CreateSlice(ctx context.Context, doc []byte, contentType string, wait bool) (*v1.Slice, error) {
	var s v1.Slice
	r := request{method: http.MethodPost, path: "/v1/slices", query: waitQuery(wait), body: doc, contentType: contentType,
		header: http.Header{IdempotencyHeader: {newIdempotencyKey()}}}
	err := c.retrying(ctx, func() error { _, err := c.call(ctx, r, &s); return err })
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// IdempotencyHeader is the header CreateSlice names its create with.
const IdempotencyHeader = "Idempotency-Key"

// createAttempts bounds how often a create is sent when its connection fails.
const createAttempts = 4

func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// retrying runs send until it succeeds, the server answers (an *Error: that answer is
// final), ctx ends, or createAttempts are spent; between attempts it waits a little
// longer each time.
func (c *Client) retrying(ctx context.Context, send func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = send()
		var apiErr *Error
		if err == nil || errors.As(err, &apiErr) || ctx.Err() != nil || attempt == createAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

// ListSlices returns the tenant's slices, oldest first, reading them a page at a time.
func (c *Client) ListSlices(ctx context.Context) ([]v1.SliceSummary, error) {
	var out []v1.SliceSummary
	token := ""
	for {
		l, err := c.ListSlicePage(ctx, listPageSize, token)
		if err != nil {
			return nil, err
		}
		out = append(out, l.Slices...)
		if l.Continue == "" {
			return out, nil
		}
		token = l.Continue
	}
}

// listPageSize is the page ListSlices asks for: large enough to need few requests,
// small enough that one answer stays well under a megabyte.
const listPageSize = 500

// ListSlicePage returns at most limit of the tenant's slices, oldest first, from the
// page that token (a previous page's Continue; "" for the first) names.
func (c *Client) ListSlicePage(ctx context.Context, limit int, token string) (*v1.SliceList, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if token != "" {
		q.Set("continue", token)
	}
	var l v1.SliceList
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/slices", query: q}, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// GetSlice returns a slice.
func (c *Client) GetSlice(ctx context.Context, id string) (*v1.Slice, error) {
	var s v1.Slice
	if _, err := c.call(ctx, request{method: http.MethodGet, path: slicePath(id)}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// GetSliceNECOS returns a slice in the NECOS YAML format, as create_slice answers it.
func (c *Client) GetSliceNECOS(ctx context.Context, id string) ([]byte, error) {
	return c.raw(ctx, request{method: http.MethodGet, path: slicePath(id), query: url.Values{"format": {"necos"}}, accept: YAML})
}

// DeleteSlice decommissions a slice. Without wait it returns the slice being
// decommissioned; with wait it returns (nil) once the slice is gone.
func (c *Client) DeleteSlice(ctx context.Context, id string, wait bool) (*v1.Slice, error) {
	var s v1.Slice
	status, err := c.call(ctx, request{method: http.MethodDelete, path: slicePath(id), query: waitQuery(wait)}, &s)
	if err != nil || status == http.StatusNoContent {
		return nil, err
	}
	return &s, nil
}

// Events returns a slice's events so far, oldest first.
func (c *Client) Events(ctx context.Context, id string) ([]v1.Event, error) {
	var l v1.EventList
	if _, err := c.call(ctx, request{method: http.MethodGet, path: slicePath(id) + "/events"}, &l); err != nil {
		return nil, err
	}
	return l.Events, nil
}

// Timings returns how long each phase of a slice's life and of each of its elastic
// actions took.
func (c *Client) Timings(ctx context.Context, id string) (*v1.Timings, error) {
	var t v1.Timings
	if _, err := c.call(ctx, request{method: http.MethodGet, path: slicePath(id) + "/timings"}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// MetricSeries is one series of GET /v1/slices/{id}/metrics.
type MetricSeries struct {
	Metric string            `json:"metric"`
	Tags   map[string]string `json:"tags"`
	Points []struct {
		Time  time.Time `json:"time"`
		Value float64   `json:"value"`
	} `json:"points"`
}

// Metrics returns a slice's stored metrics; query holds the route's parameters (metric,
// part, node, node-type, source, last, since, until).
func (c *Client) Metrics(ctx context.Context, id string, query url.Values) ([]MetricSeries, error) {
	var ans struct {
		Series []MetricSeries `json:"series"`
	}
	if _, err := c.call(ctx, request{method: http.MethodGet, path: slicePath(id) + "/metrics", query: query}, &ans); err != nil {
		return nil, err
	}
	return ans.Series, nil
}

// Marketplace returns each provider's quote for a probe node and what slices hold there.
func (c *Client) Marketplace(ctx context.Context) (*v1.Marketplace, error) {
	var m v1.Marketplace
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/marketplace"}, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// ReleaseSites removes the site namespaces WAN plugins built that no live slice uses
// (only the named sites, providers or namespaces, when any are given) and says what it
// removed and what it kept, with why.
func (c *Client) ReleaseSites(ctx context.Context, sites ...string) (*v1.SiteRelease, error) {
	var out v1.SiteRelease
	q := url.Values{}
	for _, s := range sites {
		q.Add("site", s)
	}
	if _, err := c.call(ctx, request{method: http.MethodPost, path: "/v1/sites/release", query: q}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Providers returns the federation's providers.
func (c *Client) Providers(ctx context.Context) ([]v1.Provider, error) {
	var l v1.ProviderList
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/providers"}, &l); err != nil {
		return nil, err
	}
	return l.Providers, nil
}

// Plugins returns the running plugin instances.
func (c *Client) Plugins(ctx context.Context) ([]v1.Plugin, error) {
	var l v1.PluginList
	if _, err := c.call(ctx, request{method: http.MethodGet, path: "/v1/plugins"}, &l); err != nil {
		return nil, err
	}
	return l.Plugins, nil
}

// CreateSliceNECOS creates a slice through the NECOS route and returns the created
// slice's YAML once it is Ready.
// A connection that fails before the answer is retried as CreateSlice does.
func (c *Client) CreateSliceNECOS(ctx context.Context, doc []byte) ([]byte, error) {
	var out []byte
	r := request{method: http.MethodPost, path: "/slice_activator/create_slice", body: doc, contentType: YAML, accept: YAML,
		header: http.Header{IdempotencyHeader: {newIdempotencyKey()}}}
	err := c.retrying(ctx, func() (err error) { out, err = c.raw(ctx, r); return err })
	return out, err
}

// DeleteSliceNECOS decommissions the slice whose spec id is specID through the NECOS
// route, returning once it is gone.
func (c *Client) DeleteSliceNECOS(ctx context.Context, specID string) error {
	doc, err := yaml.Marshal(map[string]any{"slices": map[string]any{"sliced": map[string]any{"id": specID}}})
	if err != nil {
		return fmt.Errorf("delete slice %s: %w", specID, err)
	}
	_, err = c.raw(ctx, request{method: http.MethodPost, path: "/slice_activator/delete_slice", body: doc, contentType: YAML, accept: YAML})
	return err
}

// Healthy asks /readyz whether the API can serve.
func (c *Client) Healthy(ctx context.Context) error {
	_, err := c.call(ctx, request{method: http.MethodGet, path: "/readyz"}, nil)
	return err
}

// StreamEvent is one server-sent event of a slice's stream: a slice event (Event set),
// or the stream's own stream.live and stream.end (State set).
type StreamEvent struct {
	// Name is the event's type: part.ready..., v1.StreamLive or v1.StreamEnd.
	Name  string
	Event *v1.Event
	State *v1.StreamState
}

// ErrStop, returned by a Watch callback, ends the watch without error.
var ErrStop = errors.New("stop watching")

// watchRetries is how many times in a row Watch reconnects a stream that broke.
const watchRetries = 5

// Watch follows a slice's events: the past ones, a v1.StreamLive event, then live ones,
// calling fn for each, until the stream ends (the slice is gone: a v1.StreamEnd event,
// then nil), fn returns an error (ErrStop: nil), or ctx ends. A stream that breaks is
// resumed after the last event received, without repeating it.
func (c *Client) Watch(ctx context.Context, id string, fn func(StreamEvent) error) error {
	var last string
	failures, connected := 0, false
	for {
		h := http.Header{}
		if last != "" {
			h.Set("Last-Event-ID", last)
		}
		resp, err := c.do(ctx, request{method: http.MethodGet, path: slicePath(id) + "/events", accept: "text/event-stream", header: h})
		if err != nil {
			// Only a stream that worked is worth resuming: an API error or a server
			// that never answered is reported at once.
			var apiErr *Error
			if errors.As(err, &apiErr) || !connected || ctx.Err() != nil {
				return err
			}
		} else {
			connected = true
			var done bool
			done, err = readStream(resp.Body, func(ev StreamEvent, id string) error {
				failures = 0
				if id != "" {
					last = id
				}
				return fn(ev)
			})
			resp.Body.Close()
			if errors.Is(err, ErrStop) {
				return nil
			}
			if done || ctx.Err() != nil {
				return err
			}
			if err != nil && !isStreamBreak(err) {
				return err
			}
		}
		failures++
		if failures > watchRetries {
			return fmt.Errorf("watch slice %s: the stream broke %d times", id, watchRetries)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(failures) * time.Second):
		}
	}
}

// streamError marks a failure of the connection, not of the callback.
type streamError struct{ err error }

func (e *streamError) Error() string { return "event stream: " + e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

func isStreamBreak(err error) bool {
	var se *streamError
	return errors.As(err, &se)
}

// readStream parses server-sent events until the stream ends; done reports a
// v1.StreamEnd event. fn's errors are returned as they are.
func readStream(body io.Reader, fn func(ev StreamEvent, id string) error) (done bool, err error) {
	r := newSSEReader(body)
	for {
		name, id, data, err := r.next()
		if err == io.EOF {
			return false, &streamError{io.ErrUnexpectedEOF}
		}
		if err != nil {
			return false, &streamError{err}
		}
		ev := StreamEvent{Name: name}
		switch name {
		case v1.StreamLive, v1.StreamEnd:
			var st v1.StreamState
			if err := json.Unmarshal([]byte(data), &st); err != nil {
				return false, fmt.Errorf("event %s: %w", name, err)
			}
			ev.State = &st
		default:
			var e v1.Event
			if err := json.Unmarshal([]byte(data), &e); err != nil {
				return false, fmt.Errorf("event %s: %w", name, err)
			}
			ev.Event = &e
			if id == "" {
				id = strconv.FormatInt(e.Seq, 10)
			}
		}
		if err := fn(ev, id); err != nil {
			return false, err
		}
		if name == v1.StreamEnd {
			return true, nil
		}
	}
}
