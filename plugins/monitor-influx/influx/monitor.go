// Package influx is the necos Monitor plugin for InfluxDB: it stores the metrics of every
// slice node the way the NECOS MUSTS demo did (database E2E_SLICE, one measurement per
// metric, tag ResourceID = node name, field "value") and reads them back for the
// elasticity engine.
//
// It speaks InfluxDB's v2 HTTP API through influxdb-client-go: InfluxDB 1.8 with
// flux-enabled = true (bucket "database/retention_policy", token "user:password"), or
// 2.x with a DBRP mapping. Writes are queued and sent in batches by a background
// goroutine; queries are Flux programs.
package influx

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	"github.com/necos/necos/sdk"
)

// Name and Version identify the plugin.
const (
	Name    = "monitor-influx"
	Version = "0.1.0"
)

// closeTimeout bounds how long Close waits for queued points to be sent.
const closeTimeout = 10 * time.Second

// Plugin is the InfluxDB Monitor plugin. Its zero value is not usable: call New.
type Plugin struct {
	log hclog.Logger

	mu sync.RWMutex
	st *state // nil until Configure
}

// state is what one Configure sets up.
type state struct {
	cfg     Config
	http    *http.Client
	client  influxdb2.Client
	query   api.QueryAPI
	enc     encoder
	batcher *batcher
}

var (
	_ sdk.Plugin  = (*Plugin)(nil)
	_ sdk.Monitor = (*Plugin)(nil)
)

// New returns an unconfigured plugin logging to logger (nil: the SDK's plugin logger).
func New(logger hclog.Logger) *Plugin {
	if logger == nil {
		logger = sdk.Logger(Name)
	}
	return &Plugin{log: logger}
}

// Info says who the plugin is.
func (p *Plugin) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:        Name,
		Version:     Version,
		Description: "stores and reads slice metrics in InfluxDB (1.8 with Flux, or 2.x)",
		Kinds:       []sdk.Kind{sdk.KindMonitor},
	}, nil
}

// ConfigSchema returns Schema.
func (p *Plugin) ConfigSchema(context.Context) (sdk.ConfigSchema, error) { return Schema, nil }

// Configure connects to InfluxDB as cfg says and, with create_database, creates the
// database. Without it InfluxDB is not contacted: the plugin configures while InfluxDB
// is still starting, and Health tells when it answers. A second Configure replaces the
// first after sending what the first had queued.
func (p *Plugin) Configure(ctx context.Context, cfg sdk.Config) error {
	c, err := ParseConfig(cfg.JSON)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: c.timeout()}
	if c.CreateDatabase {
		if err := createDatabase(ctx, hc, c); err != nil {
			return err
		}
		rp, err := setRetention(ctx, hc, c)
		if err != nil {
			return err
		}
		p.log.Info("database ready", "url", c.URL, "database", c.Database, "retention_policy", rp,
			"retention_days", *c.RetentionDays)
	}
	opts := influxdb2.DefaultOptions().
		SetHTTPClient(hc).
		SetPrecision(c.precision()).
		SetApplicationName("necos-" + Name + "/" + Version)
	client := influxdb2.NewClientWithOptions(c.URL, c.token(), opts)
	// Organisation: InfluxDB 1.8 ignores it; 2.x finds the bucket through its DBRP mapping.
	writer := client.WriteAPIBlocking("", c.Bucket())
	st := &state{
		cfg:    c,
		http:   hc,
		client: client,
		query:  client.QueryAPI(""),
		enc:    encoder{precision: c.precision(), now: time.Now},
	}
	st.batcher = newBatcher(func(ctx context.Context, lines []string) error {
		return writer.WriteRecord(ctx, lines...)
	}, p.log, c)

	p.mu.Lock()
	old := p.st
	p.st = st
	p.mu.Unlock()
	if old != nil {
		p.closeState(old)
	}
	p.log.Info("configured", "url", c.URL, "bucket", c.Bucket(), "precision", c.Precision,
		"batch_size", c.BatchSize, "flush_interval_ms", c.FlushIntervalMS, "auth", c.Username != "")
	return nil
}

// createDatabase creates c.Database through InfluxDB 1.x's /query endpoint: the v2 API
// has no call for it. CREATE DATABASE does nothing when the database exists.
func createDatabase(ctx context.Context, hc *http.Client, c Config) error {
	_, err := influxQL(ctx, hc, c, "create database "+c.Database, "CREATE DATABASE "+influxQLIdent(c.Database))
	return err
}

// setRetention makes the retention policy the plugin writes to (retention_policy, else
// the database's default) keep points for c.RetentionDays: it is created with that
// duration when missing, its duration changed otherwise. Zero days is forever.
func setRetention(ctx context.Context, hc *http.Client, c Config) (string, error) {
	what := "set retention of " + c.Database
	out, err := influxQL(ctx, hc, c, what, "SHOW RETENTION POLICIES ON "+influxQLIdent(c.Database))
	if err != nil {
		return "", err
	}
	var ans struct {
		Results []struct {
			Series []struct {
				Columns []string `json:"columns"`
				Values  [][]any  `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &ans); err != nil {
		return "", sdk.Errorf(sdk.CodeFailedPrecondition, "%s: SHOW RETENTION POLICIES answered %.200q: %v", what, out, err)
	}
	rp, exists := c.RetentionPolicy, false
	for _, r := range ans.Results {
		for _, s := range r.Series {
			name, def := slices.Index(s.Columns, "name"), slices.Index(s.Columns, "default")
			if name < 0 || def < 0 {
				continue
			}
			for _, v := range s.Values {
				n, _ := v[name].(string)
				isDefault, _ := v[def].(bool)
				if (c.RetentionPolicy == "" && isDefault) || (c.RetentionPolicy != "" && n == c.RetentionPolicy) {
					rp, exists = n, true
				}
			}
		}
	}
	if rp == "" {
		return "", sdk.Errorf(sdk.CodeFailedPrecondition, "%s: the database has no default retention policy: set retention_policy", what)
	}
	// A shard group is dropped whole once all of it is older than the duration, so its
	// span is what points may outlive it by: a day, or InfluxDB's own choice for forever.
	dur := "INF"
	shard := ""
	if days := *c.RetentionDays; days > 0 {
		dur = fmt.Sprintf("%dd", days)
		shard = " SHARD DURATION 1d"
	}
	q := fmt.Sprintf("ALTER RETENTION POLICY %s ON %s DURATION %s%s", influxQLIdent(rp), influxQLIdent(c.Database), dur, shard)
	if !exists {
		q = fmt.Sprintf("CREATE RETENTION POLICY %s ON %s DURATION %s REPLICATION 1%s", influxQLIdent(rp), influxQLIdent(c.Database), dur, shard)
	}
	_, err = influxQL(ctx, hc, c, what, q)
	return rp, err
}

// influxQL runs one InfluxQL statement through InfluxDB 1.x's /query endpoint and
// returns its answer; what names the step in errors.
func influxQL(ctx context.Context, hc *http.Client, c Config, what, q string) ([]byte, error) {
	form := url.Values{"q": {q}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "%s: %v", what, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.Username != "" {
		req.SetBasicAuth(c.Username, c.Password)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeUnavailable, "%s at %s: %v", what, c.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	// 1.x answers 200 with {"results":[{"statement_id":0}]}, or an "error" inside.
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, sdk.Errorf(sdk.CodePermissionDenied, "%s at %s: %s: %s", what, c.URL, resp.Status, body)
	case resp.StatusCode != http.StatusOK:
		code := sdk.CodeFailedPrecondition
		if resp.StatusCode >= 500 {
			code = sdk.CodeUnavailable
		}
		return nil, sdk.Errorf(code, "%s at %s (needs InfluxDB 1.x's /query): %s: %s", what, c.URL, resp.Status, body)
	case strings.Contains(string(body), `"error"`):
		code := sdk.CodeFailedPrecondition
		if strings.Contains(string(body), "authoriz") {
			code = sdk.CodePermissionDenied
		}
		return nil, sdk.Errorf(code, "%s at %s: %s", what, c.URL, body)
	}
	return body, nil
}

// influxQLIdent quotes an InfluxQL identifier.
func influxQLIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func (p *Plugin) state() (*state, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.st == nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "%s is not configured", Name)
	}
	return p.st, nil
}

// Write validates and queues points, and returns without waiting for InfluxDB. A point
// without a time is stamped now. When a background write failed since the last Write
// or Flush, its error is returned instead and nothing of this call is queued; so is a
// call that would overflow queue_size (ResourceExhausted) or holds a bad point
// (InvalidArgument). A refused call may be retried as is: rewriting a point (same
// metric, tags and time) replaces it.
func (p *Plugin) Write(ctx context.Context, req sdk.WriteRequest) error {
	points := req.Points
	st, err := p.state()
	if err != nil {
		return err
	}
	if len(points) == 0 {
		return nil
	}
	lines, err := st.enc.encode(points)
	if err != nil {
		return err
	}
	return st.batcher.add(lines)
}

// Flush waits until every point queued before it is stored, and returns the error of
// any background write that failed since the last Write or Flush.
func (p *Plugin) Flush(ctx context.Context) error {
	st, err := p.state()
	if err != nil {
		return err
	}
	return st.batcher.flush(ctx)
}

// Query reads the points of q.Metric through Flux: the value field of the series whose
// tags hold q.Tags, inside [q.Start, q.End), the last q.Last of each series when set.
// Points come series by series (ordered by their tags), oldest first within a series.
// It reads what InfluxDB holds: points still queued are not seen until Flush.
func (p *Plugin) Query(ctx context.Context, q sdk.Query) ([]sdk.Point, error) {
	st, err := p.state()
	if err != nil {
		return nil, err
	}
	start, stop, empty := window(q)
	if empty {
		return nil, nil
	}
	flux := buildFlux(st.cfg.Bucket(), q, start, stop)
	begin := time.Now()
	res, err := st.query.Query(ctx, flux)
	if err != nil {
		return nil, wrap(err, "query %s from %s", q.Metric, st.cfg.Bucket())
	}
	defer res.Close()
	var points []sdk.Point
	for res.Next() {
		rec := res.Record()
		v, err := toFloat(rec.Value())
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeInternal, "query %s: point at %s: %v", q.Metric, rec.Time(), err)
		}
		tags := map[string]string{}
		for k, val := range rec.Values() {
			if s, ok := val.(string); ok && s != "" && !resultColumns[k] {
				tags[k] = s
			}
		}
		points = append(points, sdk.Point{Metric: q.Metric, Tags: tags, Value: v, Time: rec.Time().UTC()})
	}
	if err := res.Err(); err != nil {
		return nil, wrap(err, "query %s from %s", q.Metric, st.cfg.Bucket())
	}
	sortSeries(points)
	p.log.Debug("query", "metric", q.Metric, "tags", len(q.Tags), "last", q.Last, "points", len(points),
		"took", time.Since(begin))
	return points, nil
}

// sortSeries orders points by series (their tags) and time: InfluxDB returns tables in
// an order of its own.
func sortSeries(points []sdk.Point) {
	keys := make([]string, len(points))
	for i, pt := range points {
		keys[i] = seriesKey(pt.Tags)
	}
	idx := make([]int, len(points))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ia, ib := idx[a], idx[b]
		if keys[ia] != keys[ib] {
			return keys[ia] < keys[ib]
		}
		return points[ia].Time.Before(points[ib].Time)
	})
	sorted := make([]sdk.Point, len(points))
	for i, j := range idx {
		sorted[i] = points[j]
	}
	copy(points, sorted)
}

func seriesKey(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		// Control characters cannot be in tags, so \x00 and \x01 separate unambiguously.
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(tags[k])
		b.WriteByte(1)
	}
	return b.String()
}

// Health reports whether InfluxDB answers its /ping.
func (p *Plugin) Health(ctx context.Context) error {
	st, err := p.state()
	if err != nil {
		return err
	}
	if _, err := st.client.Ping(ctx); err != nil {
		return sdk.Errorf(sdk.CodeUnavailable, "InfluxDB at %s does not answer /ping: %v", st.cfg.URL, err)
	}
	return nil
}

// Close sends what is queued (waiting at most 10 s) and releases the client. Serve calls
// it when the plugin process ends.
func (p *Plugin) Close() error {
	p.mu.Lock()
	st := p.st
	p.st = nil
	p.mu.Unlock()
	if st == nil {
		return nil
	}
	return p.closeState(st)
}

func (p *Plugin) closeState(st *state) error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := st.batcher.close(ctx)
	st.client.Close()
	if err != nil {
		p.log.Error("queued points lost at close", "error", err)
		return fmt.Errorf("%s: %w", Name, err)
	}
	return nil
}
