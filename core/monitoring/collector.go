// Package monitoring measures every node of every Ready slice into the Monitor plugin,
// as the NECOS demo monitored every node into InfluxDB, and reads the measurements back.
//
// The Collector is an sro.Listener: when a slice becomes Ready it starts, for each part,
// a loop per granularity of the part's monitoring-parameters that asks the part's VIM
// plugin for Metrics and writes them through the Monitor plugin, each point tagged
//
//	slice       the slice's id          (sdk.TagSlice)
//	part        the part's name         (sdk.TagPart)
//	ResourceID  the node's name         (sdk.TagResourceID, as NECOS named it)
//	node-type   master or worker        (sdk.TagNodeType; absent for untyped nodes)
//
// A part without monitoring-parameters, or without granularity-secs, is measured every
// Options.DefaultGranularity (10 s); without metrics, the VIM's default metrics are taken
// (all it measures: for vim-xen PERCENT_CPU_UTILIZATION, MEMORY_USED_MB and, when the
// guest reports it, PERCENT_MEMORY_UTILIZATION). A metric with its own granularity-secs
// gets a loop of its own. The slice's parts are re-read every tick of its shortest
// period, so parts added by elasticity are measured too — with the parameters of the
// part they copy when they are named "<part>-h<n>" — and removed parts stop. Everything
// stops when the slice is gone (SliceGone, or its record disappears). Failures are
// logged, never fatal: the next tick tries again.
//
// Push stores points that tenants or probes inside a slice send (a load test's CPU where
// no agent runs), forced onto their own slice; Query reads points back for the API and
// the elasticity engine.
package monitoring

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// DefaultGranularity is how often a part without granularity-secs is measured.
const DefaultGranularity = 10 * time.Second

// EvStarted is the event recorded when a part's first measurements are stored: the end
// of the slice's monitoring start, as the timings show it.
const EvStarted = "monitoring.started"

// Plugins gives the collector the plugin clients it calls; *providers.Registry is one.
type Plugins interface {
	VIM(ctx context.Context, provider string) (sdk.VIM, error)
	// Monitor returns the monitoring plugin's client, or nil when there is none.
	Monitor(ctx context.Context) (sdk.Monitor, error)
}

// Options configure a Collector.
type Options struct {
	Store   *store.Store
	Plugins Plugins
	Logger  hclog.Logger
	// DefaultGranularity is the period of parts without granularity-secs;
	// DefaultGranularity (10 s) when 0.
	DefaultGranularity time.Duration
	// CallTimeout bounds each VIM and Monitor call; 30 s when 0.
	CallTimeout time.Duration
}

// Collector measures the nodes of Ready slices into the Monitor plugin. Create it with
// New, register it with sro.Engine.AddListener, and Close it at shutdown.
type Collector struct {
	opts Options
	log  hclog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	slices map[string]*sliceRun
}

type sliceRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	loops  map[loopKey]context.CancelFunc
}

// loopKey identifies one measuring loop: a part and one period of it.
type loopKey struct {
	part  string
	every time.Duration
}

// New returns a collector; nothing runs until a slice is announced Ready.
func New(opts Options) *Collector {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.DefaultGranularity <= 0 {
		opts.DefaultGranularity = DefaultGranularity
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Collector{opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel, slices: map[string]*sliceRun{}}
}

var _ sro.Listener = (*Collector)(nil)

// SliceReady starts monitoring a slice (once; later calls for it do nothing).
func (c *Collector) SliceReady(v *sro.View) {
	id := v.Slice.ID
	// A spec that does not parse (the engine records it) leaves the slice monitored
	// with the defaults: the spec only tunes periods and metrics.
	sp, _ := v.Spec()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil || c.slices[id] != nil {
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	run := &sliceRun{cancel: cancel, done: make(chan struct{}), loops: map[loopKey]context.CancelFunc{}}
	c.slices[id] = run
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(run.done)
		c.runSlice(ctx, id, sp, run)
		c.mu.Lock()
		if c.slices[id] == run {
			delete(c.slices, id)
		}
		c.mu.Unlock()
	}()
	c.log.Info("monitoring slice", "slice", id)
}

// SliceGone stops monitoring a slice.
func (c *Collector) SliceGone(id string) {
	c.mu.Lock()
	run := c.slices[id]
	delete(c.slices, id)
	c.mu.Unlock()
	if run != nil {
		run.cancel()
		c.log.Info("monitoring stopped", "slice", id)
	}
}

// Run returns when ctx ends, having stopped every loop (Close): a component of the
// daemon's manager.
func (c *Collector) Run(ctx context.Context) error {
	<-ctx.Done()
	c.Close()
	return nil
}

// Close stops every loop and waits for them.
func (c *Collector) Close() {
	c.cancel()
	c.wg.Wait()
}

// Monitored lists the slices being monitored, each with its loops as "part@period",
// sorted (for status pages and tests).
func (c *Collector) Monitored() map[string][]string {
	c.mu.Lock()
	runs := make(map[string]*sliceRun, len(c.slices))
	for id, r := range c.slices {
		runs[id] = r
	}
	c.mu.Unlock()
	out := map[string][]string{}
	for id, r := range runs {
		r.mu.Lock()
		loops := []string{}
		for k := range r.loops {
			loops = append(loops, fmt.Sprintf("%s@%s", k.part, k.every))
		}
		r.mu.Unlock()
		sort.Strings(loops)
		out[id] = loops
	}
	return out
}

// group is what one loop measures: some metrics (nil: the VIM's default) every period.
type group struct {
	every   time.Duration
	metrics []string
}

// elasticName matches the names sro.AddPart gives copies: "<template>-h<n>".
var elasticName = regexp.MustCompile(`^(.+)-h[0-9]+$`)

// groups returns the loops a part needs, from its monitoring-parameters in the spec (or
// those of the part it copies).
func groups(sp *spec.Slice, part string, def time.Duration) []group {
	var mon *spec.Monitoring
	if sp != nil {
		dp, ok := sp.Part(part)
		for !ok {
			m := elasticName.FindStringSubmatch(part)
			if m == nil {
				break
			}
			part = m[1]
			dp, ok = sp.Part(part)
		}
		if ok {
			mon = dp.Monitoring
		}
	}
	base := def
	if mon != nil && mon.GranularitySecs > 0 {
		base = time.Duration(mon.GranularitySecs) * time.Second
	}
	if mon == nil || len(mon.Metrics) == 0 {
		return []group{{every: base}}
	}
	by := map[time.Duration][]string{}
	for _, m := range mon.Metrics {
		every := base
		if m.GranularitySecs > 0 {
			every = time.Duration(m.GranularitySecs) * time.Second
		}
		if !contains(by[every], m.Name) {
			by[every] = append(by[every], m.Name)
		}
	}
	out := make([]group, 0, len(by))
	for every, ms := range by {
		out = append(out, group{every: every, metrics: ms})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].every < out[j].every })
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runSlice keeps one loop per part and period running until ctx ends or the slice is
// gone, re-reading the slice's parts every tick of its shortest period.
func (c *Collector) runSlice(ctx context.Context, id string, sp *spec.Slice, run *sliceRun) {
	var wg sync.WaitGroup
	defer func() {
		run.mu.Lock()
		for _, stop := range run.loops {
			stop()
		}
		run.loops = map[loopKey]context.CancelFunc{}
		run.mu.Unlock()
		wg.Wait()
	}()
	noMonitor := false
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		resync := c.opts.DefaultGranularity
		mon, err := c.monitor(ctx)
		switch {
		case err != nil:
			c.log.Warn("monitor plugin unavailable", "slice", id, "error", err)
		case mon == nil:
			if !noMonitor {
				c.log.Info("not monitoring: no monitor plugin in the catalogue", "slice", id)
			}
			noMonitor = true
		default:
			noMonitor = false
			gone, every := c.syncLoops(ctx, id, sp, run, &wg)
			if gone {
				c.log.Info("monitoring stopped: slice gone", "slice", id)
				return
			}
			if every > 0 && every < resync {
				resync = every
			}
		}
		timer.Reset(resync)
	}
}

// syncLoops starts the loops of new Ready parts and stops those of parts gone. It
// reports whether the slice itself is gone, and the shortest period of its loops.
func (c *Collector) syncLoops(ctx context.Context, id string, sp *spec.Slice, run *sliceRun, wg *sync.WaitGroup) (gone bool, shortest time.Duration) {
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	sl, err := c.opts.Store.GetSlice(cctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && sl.Deleting) {
		return true, 0
	}
	if err != nil {
		c.log.Warn("monitoring: read slice", "slice", id, "error", err)
		return false, 0
	}
	parts, err := c.opts.Store.ListParts(cctx, id)
	if err != nil {
		c.log.Warn("monitoring: read parts", "slice", id, "error", err)
		return false, 0
	}
	want := map[loopKey]loop{}
	for _, p := range parts {
		if p.State != store.PartReady {
			continue
		}
		for _, g := range groups(sp, p.Name, c.opts.DefaultGranularity) {
			want[loopKey{part: p.Name, every: g.every}] = loop{ref: p.Ref(), provider: p.Provider, group: g}
			if shortest == 0 || g.every < shortest {
				shortest = g.every
			}
		}
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	for k, stop := range run.loops {
		if _, ok := want[k]; !ok {
			stop()
			delete(run.loops, k)
			c.log.Debug("part monitoring stopped", "slice", id, "part", k.part, "every", k.every)
		}
	}
	for k, l := range want {
		if _, ok := run.loops[k]; ok {
			continue
		}
		lctx, stop := context.WithCancel(ctx)
		run.loops[k] = stop
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runLoop(lctx, l)
		}()
		c.log.Debug("part monitoring started", "slice", id, "part", k.part, "every", k.every, "metrics", l.group.metrics)
	}
	return false, shortest
}

// loop is one part's measuring loop.
type loop struct {
	ref      sdk.PartRef
	provider string
	group    group
}

// runLoop measures the part now and then every period, logging a failure when it
// changes (not every tick) and the recovery.
func (c *Collector) runLoop(ctx context.Context, l loop) {
	t := time.NewTicker(l.group.every)
	defer t.Stop()
	last := ""
	started := false
	for {
		err := c.collect(ctx, l)
		if err == nil && !started {
			started = true
			c.recordStart(ctx, l)
		}
		switch {
		case ctx.Err() != nil:
			return
		case sdk.IsNotFound(err):
			// The part is going away (removed, decommissioned): its loop is stopped at
			// the next re-read of the slice.
			c.log.Debug("monitoring: part not found", "part", l.ref.String(), "error", err)
		case err != nil && err.Error() != last:
			c.log.Warn("monitoring failed", "part", l.ref.String(), "provider", l.provider, "error", err)
			last = err.Error()
		case err == nil && last != "":
			c.log.Info("monitoring recovered", "part", l.ref.String())
			last = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recordStart records that a part's measurements are being stored.
func (c *Collector) recordStart(ctx context.Context, l loop) {
	if c.opts.Store == nil {
		return
	}
	ev := store.Event{Type: EvStarted, Part: l.ref.PartID, Message: "measured every " + l.group.every.String(),
		Data: map[string]string{"every": l.group.every.String()}}
	if err := c.opts.Store.AddEvents(ctx, l.ref.SliceID, ev); err != nil && ctx.Err() == nil {
		c.log.Warn("monitoring: record start", "part", l.ref.String(), "error", err)
	}
}

// collect measures a part once and writes the points.
func (c *Collector) collect(ctx context.Context, l loop) error {
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	vim, err := c.opts.Plugins.VIM(cctx, l.provider)
	if err != nil {
		return fmt.Errorf("VIM of %s: %w", l.provider, err)
	}
	samples, err := vim.Metrics(cctx, l.ref, l.group.metrics)
	if err != nil {
		return fmt.Errorf("metrics of %s: %w", l.ref, err)
	}
	mon, err := c.monitor(cctx)
	if err != nil || mon == nil {
		return fmt.Errorf("monitor plugin: %w", errors.Join(err, providers.ErrNoMonitor))
	}
	points := Points(l.ref, samples, time.Now())
	for len(points) > 0 {
		n := min(len(points), sdk.MaxWritePoints)
		if err := mon.Write(cctx, points[:n]); err != nil {
			return fmt.Errorf("write metrics of %s: %w", l.ref, err)
		}
		points = points[n:]
	}
	return nil
}

// Points turns a part's VIM samples into monitor points with the tags slice, part,
// ResourceID and node-type (the latter only for typed nodes); a sample without a time
// gets now.
func Points(ref sdk.PartRef, samples []sdk.Sample, now time.Time) []sdk.Point {
	out := make([]sdk.Point, 0, len(samples))
	for _, s := range samples {
		if s.Node == "" || s.Metric == "" {
			continue
		}
		tags := map[string]string{sdk.TagSlice: ref.SliceID, sdk.TagPart: ref.PartID, sdk.TagResourceID: s.Node}
		if s.NodeType != "" {
			tags[sdk.TagNodeType] = s.NodeType
		}
		at := s.Time
		if at.IsZero() {
			at = now
		}
		out = append(out, sdk.Point{Metric: s.Metric, Tags: tags, Value: s.Value, Time: at})
	}
	return out
}

func (c *Collector) monitor(ctx context.Context) (sdk.Monitor, error) {
	if c.opts.Plugins == nil {
		return nil, nil
	}
	return c.opts.Plugins.Monitor(ctx)
}

// DefaultMetrics are the metric names Query reads when asked for none, beside those
// the slice's monitoring-parameters and policies name.
var DefaultMetrics = []string{sdk.MetricCPUPercent, sdk.MetricMemoryUsedMB, sdk.MetricMemoryPct}

// MetricNames lists the metrics a slice is expected to have: DefaultMetrics, those of
// its parts' monitoring-parameters and those its policies watch, sorted.
func (c *Collector) MetricNames(ctx context.Context, sliceID string) ([]string, error) {
	set := map[string]bool{}
	for _, m := range DefaultMetrics {
		set[m] = true
	}
	sl, err := c.opts.Store.GetSlice(ctx, sliceID)
	if err != nil {
		return nil, err
	}
	if sp, err := sro.StoredSpec(sl); err == nil {
		for _, p := range sp.Parts {
			if p.Monitoring != nil {
				for _, m := range p.Monitoring.Metrics {
					set[m.Name] = true
				}
			}
		}
	}
	pols, err := c.opts.Store.ListPolicies(ctx, sliceID)
	if err != nil {
		return nil, err
	}
	for _, p := range pols {
		if p.Spec.Collector.Metric != "" {
			set[p.Spec.Collector.Metric] = true
		}
	}
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out, nil
}

// Query reads a slice's points: q with its slice tag forced to sliceID, so that nothing
// of another slice is ever read. An empty q.Metric reads every metric of MetricNames,
// one after the other.
func (c *Collector) Query(ctx context.Context, sliceID string, q sdk.Query) ([]sdk.Point, error) {
	mon, err := c.monitor(ctx)
	if err != nil {
		return nil, fmt.Errorf("query metrics of %s: %w", sliceID, err)
	}
	if mon == nil {
		return nil, providers.ErrNoMonitor
	}
	tags := make(map[string]string, len(q.Tags)+1)
	for k, v := range q.Tags {
		tags[k] = v
	}
	tags[sdk.TagSlice] = sliceID
	q.Tags = tags
	metrics := []string{q.Metric}
	if q.Metric == "" {
		if metrics, err = c.MetricNames(ctx, sliceID); err != nil {
			return nil, fmt.Errorf("query metrics of %s: %w", sliceID, err)
		}
	}
	var out []sdk.Point
	for _, m := range metrics {
		q.Metric = m
		pts, err := mon.Query(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("query %s of %s: %w", m, sliceID, err)
		}
		out = append(out, pts...)
	}
	return out, nil
}

// nodeInfo is where a node of a slice is.
type nodeInfo struct {
	part, nodeType string
}

// sliceNodes indexes a slice's parts and the nodes they were last observed with.
func sliceNodes(parts []*store.Part) (map[string]bool, map[string][]nodeInfo) {
	names := map[string]bool{}
	nodes := map[string][]nodeInfo{}
	for _, p := range parts {
		names[p.Name] = true
		if p.Observed == nil {
			continue
		}
		for _, n := range p.Observed.Nodes {
			nodes[n.Name] = append(nodes[n.Name], nodeInfo{part: p.Name, nodeType: n.Type})
		}
	}
	return names, nodes
}

// joinNames lists names for messages.
func joinNames(set map[string]bool) string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
