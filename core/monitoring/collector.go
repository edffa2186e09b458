// Package monitoring measures every node of every Ready slice into the Monitor plugin,
// as the NECOS demo monitored every node into InfluxDB, and reads the measurements back.
//
// The Collector is an sro.Listener: when a slice becomes Ready, each granularity of each
// of its parts' monitoring-parameters joins the loop of that part's provider and that
// period. Each loop measures all its parts with one VIM MetricsBatch call per period
// (split at MaxBatchParts parts or MaxBatchNodes nodes) and writes all their points
// through the Monitor plugin in one Write (per sdk.MaxWritePoints points), each point
// tagged
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
// is measured in the loop of that period. A slice's spec is parsed once, when it is
// announced, and each part's parameters once, when the part is first seen.
//
// The parts come from the store through one watch (store.WatchParts: a listing, then
// every change), held in memory while any slice is monitored, not read again per slice
// per period: a part that becomes Ready is measured at once (a part added by
// elasticity, named "<part>-h<n>", with the parameters of the part it copies), a part
// that stops being Ready (removed, lost, deleting) stops being measured. Everything of
// a slice stops when it is gone (SliceGone, or its last part's record is deleted). The
// engine announces slices only while it leads and calls SliceGone for each when its
// lead ends, so only the leader's collector measures; with no slice left it also ends
// its watch. A part's first stored measurements are recorded as EvStarted, once per
// part and period. Failures are logged (once per distinct error), never fatal: the next
// period tries again.
//
// Push stores points that tenants or probes inside a slice send (a load test's CPU where
// no agent runs), forced onto their own slice; Query reads points back for the API and
// the elasticity engine.
package monitoring

import (
	"context"
	"fmt"
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

// Bounds of one MetricsBatch call: at most MaxBatchParts parts (sdk.MaxMetricsBatch) and
// about MaxBatchNodes nodes, which keeps an answer (a few samples per node) far below
// gRPC's 4 MB message limit.
const (
	MaxBatchParts = sdk.MaxMetricsBatch
	MaxBatchNodes = 5000
)

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
	// OnStored, when set, is told the slices whose new points a round (or a Push) has
	// just stored: the elasticity engine judges their policies then
	// (elastic.Engine.Measured). It must not block.
	OnStored func(sliceIDs ...string)
}

// Collector measures the nodes of Ready slices into the Monitor plugin. Create it with
// New, register it with sro.Engine.AddListener, and Close it at shutdown.
type Collector struct {
	opts Options
	log  hclog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// newTicker makes each loop's ticker; tests and benchmarks drive it by hand.
	newTicker func(loopKey) ticker
	// afterRound, when set, is called at the end of every round of a loop: of all its
	// members (a period) or of those that just joined.
	afterRound func(key loopKey, all bool)

	mu     sync.Mutex
	slices map[string]*sliceRun // the monitored slices, by id
	// parts are the store's parts, by slice and name, as the watch last reported them
	// (or, for a slice the watch has not reported yet, as its announcement said).
	parts map[string]map[string]partInfo
	loops map[loopKey]*loop
	// watchStop ends the part watch (nil when none runs); watchGen tells the current
	// watch's updates from a stopped one's.
	watchStop context.CancelFunc
	watchGen  int
}

// ticker is the part of *time.Ticker a loop uses.
type ticker interface {
	Chan() <-chan time.Time
	Stop()
}

type realTicker struct{ *time.Ticker }

func (t realTicker) Chan() <-chan time.Time { return t.C }

// partInfo is what the collector keeps of a part's record.
type partInfo struct {
	provider string
	ready    bool
	nodes    int
	rev      int64
}

func infoOf(p *store.Part) partInfo {
	n := 0
	if p.Observed != nil {
		n = len(p.Observed.Nodes)
	}
	return partInfo{provider: p.Provider, ready: p.State == store.PartReady, nodes: max(n, 1), rev: p.Rev}
}

// sliceRun is a monitored slice: its spec's monitoring parameters (monitoringOnly),
// its parts' groups, worked out once per part, and its members of loops.
type sliceRun struct {
	id      string
	spec    *spec.Slice
	groups  map[string][]group
	members map[memberKey]*member
}

// monitoringOnly is what the collector keeps of a slice's spec: each part's name and
// monitoring parameters (shared with sp), enough for groups. The whole parsed spec, kept
// per monitored slice, was two thirds of the collector's memory (20 of 30 MB with
// 10,000 slices monitored).
func monitoringOnly(sp *spec.Slice) *spec.Slice {
	if sp == nil {
		return nil
	}
	out := &spec.Slice{Parts: make([]spec.DCPart, len(sp.Parts))}
	for i, p := range sp.Parts {
		out.Parts[i] = spec.DCPart{Name: p.Name, Monitoring: p.Monitoring}
	}
	return out
}

// groupsOf returns a part's groups, from the cache.
func (r *sliceRun) groupsOf(part string, def time.Duration) []group {
	g, ok := r.groups[part]
	if !ok {
		g = groups(r.spec, part, def)
		r.groups[part] = g
	}
	return g
}

type memberKey struct {
	part  string
	every time.Duration
}

// loopKey identifies a loop: a provider and a period.
type loopKey struct {
	provider string
	every    time.Duration
}

// member is one part measured in one loop (one period of it).
type member struct {
	ref     sdk.PartRef
	metrics []string
	nodes   int
	loop    *loop
	idx     int  // in loop.members
	fresh   bool // joined since the loop's last round
	gone    bool // left its loop: a round in flight drops its results
	started bool // its first measurements were stored (EvStarted recorded)
	lastErr string
	// tags are the tags of its nodes' points, by node and type, made once: every point
	// of a node carries the same.
	tags map[[2]string]map[string]string
}

// loop measures the members of one provider and period.
type loop struct {
	key     loopKey
	members []*member
	kick    chan struct{} // a round for the fresh members, now
	stop    context.CancelFunc

	// Owned by the loop's goroutine.
	lastErr   string
	noMonitor bool
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
	return &Collector{opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel,
		newTicker: func(k loopKey) ticker { return realTicker{time.NewTicker(k.every)} },
		slices:    map[string]*sliceRun{}, parts: map[string]map[string]partInfo{}, loops: map[loopKey]*loop{}}
}

var _ sro.Listener = (*Collector)(nil)

// SliceReady starts monitoring a slice (once; later calls for it do nothing).
func (c *Collector) SliceReady(v *sro.View) {
	id := v.Slice.ID
	// A spec that does not parse (the engine records it) leaves the slice monitored
	// with the defaults: the spec only tunes periods and metrics.
	sp, _ := v.Spec()
	sp = monitoringOnly(sp)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil || c.slices[id] != nil {
		return
	}
	run := &sliceRun{id: id, spec: sp, groups: map[string][]group{}, members: map[memberKey]*member{}}
	c.slices[id] = run
	if c.watchStop == nil && c.opts.Store != nil {
		c.startWatch()
	}
	if c.parts[id] == nil {
		// The watch has not reported the slice's parts yet: take the announcement's,
		// which the watch's newer revisions replace.
		byName := map[string]partInfo{}
		for _, p := range v.Parts {
			byName[p.Name] = infoOf(p)
		}
		c.parts[id] = byName
	}
	c.syncSlice(run)
	c.log.Info("monitoring slice", "slice", id)
}

// SliceGone stops monitoring a slice.
func (c *Collector) SliceGone(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forget(id) {
		c.log.Info("monitoring stopped", "slice", id)
	}
}

// forget stops monitoring a slice, and the part watch with the last one; c.mu is held.
func (c *Collector) forget(id string) bool {
	run := c.slices[id]
	if run == nil {
		return false
	}
	for k, m := range run.members {
		c.leave(m)
		delete(run.members, k)
	}
	delete(c.slices, id)
	if len(c.slices) == 0 && c.watchStop != nil {
		c.watchStop()
		c.watchStop = nil
		c.parts = map[string]map[string]partInfo{}
	}
	return true
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

// Monitored lists the slices being monitored, each with its parts' periods as
// "part@period", sorted (for status pages and tests).
func (c *Collector) Monitored() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]string, len(c.slices))
	for id, run := range c.slices {
		loops := make([]string, 0, len(run.members))
		for k := range run.members {
			loops = append(loops, fmt.Sprintf("%s@%s", k.part, k.every))
		}
		sort.Strings(loops)
		out[id] = loops
	}
	return out
}

// ---- following the store's parts ----

// startWatch starts following the store's parts; c.mu is held.
func (c *Collector) startWatch() {
	wctx, stop := context.WithCancel(c.ctx)
	c.watchStop = stop
	c.watchGen++
	gen := c.watchGen
	ch := c.opts.Store.WatchParts(wctx)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for u := range ch {
			c.apply(gen, u)
		}
	}()
}

// apply takes one update of the part watch into the monitored slices.
func (c *Collector) apply(gen int, u store.PartsUpdate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.watchGen || c.watchStop == nil {
		return // a stopped watch's last words
	}
	touched := map[string]bool{}
	if u.Reset {
		// Only what an announcement said at a later revision than the listing's
		// survives it (the watch reports its changes next).
		old := c.parts
		c.parts = map[string]map[string]partInfo{}
		for id, byName := range old {
			touched[id] = true
			for name, p := range byName {
				if p.rev > u.Rev {
					if c.parts[id] == nil {
						c.parts[id] = map[string]partInfo{}
					}
					c.parts[id][name] = p
				}
			}
		}
	}
	for _, p := range u.Parts {
		byName := c.parts[p.SliceID]
		if byName == nil {
			byName = map[string]partInfo{}
			c.parts[p.SliceID] = byName
		}
		if cur, ok := byName[p.Name]; ok && cur.rev > p.Rev {
			continue // the announcement's record is newer
		}
		byName[p.Name] = infoOf(p)
		touched[p.SliceID] = true
	}
	emptied := map[string]bool{}
	for _, ref := range u.Deleted {
		if byName := c.parts[ref.SliceID]; byName != nil {
			delete(byName, ref.PartID)
			if len(byName) == 0 {
				delete(c.parts, ref.SliceID)
				emptied[ref.SliceID] = true
			}
		}
		touched[ref.SliceID] = true
	}
	for id := range touched {
		run := c.slices[id]
		if run == nil {
			continue
		}
		if emptied[id] && c.parts[id] == nil {
			// Its last part's record is deleted: so is the slice.
			c.forget(id)
			c.log.Info("monitoring stopped: slice gone", "slice", id)
			continue
		}
		c.syncSlice(run)
	}
}

// syncSlice makes a slice's members those of its Ready parts and their periods; c.mu is
// held.
func (c *Collector) syncSlice(run *sliceRun) {
	type want struct {
		provider string
		metrics  []string
		nodes    int
	}
	wants := map[memberKey]want{}
	for name, p := range c.parts[run.id] {
		if !p.ready {
			continue
		}
		for _, g := range run.groupsOf(name, c.opts.DefaultGranularity) {
			wants[memberKey{part: name, every: g.every}] = want{provider: p.provider, metrics: g.metrics, nodes: p.nodes}
		}
	}
	for k, m := range run.members {
		w, ok := wants[k]
		if !ok || w.provider != m.loop.key.provider {
			c.leave(m)
			delete(run.members, k)
			c.log.Debug("part monitoring stopped", "slice", run.id, "part", k.part, "every", k.every)
			continue
		}
		m.nodes = w.nodes
	}
	for k, w := range wants {
		if run.members[k] != nil {
			continue
		}
		m := &member{ref: sdk.PartRef{SliceID: run.id, PartID: k.part}, metrics: w.metrics, nodes: w.nodes, fresh: true}
		run.members[k] = m
		c.join(m, loopKey{provider: w.provider, every: k.every})
		c.log.Debug("part monitoring started", "slice", run.id, "part", k.part, "every", k.every, "metrics", w.metrics)
	}
}

// join adds m to the loop of key, starting the loop when it has none, and has the loop
// measure it now; c.mu is held.
func (c *Collector) join(m *member, key loopKey) {
	l := c.loops[key]
	if l == nil {
		ctx, stop := context.WithCancel(c.ctx)
		l = &loop{key: key, kick: make(chan struct{}, 1), stop: stop}
		c.loops[key] = l
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.runLoop(ctx, l)
		}()
	}
	m.loop, m.idx = l, len(l.members)
	l.members = append(l.members, m)
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// leave takes m out of its loop, stopping the loop with its last member; c.mu is held.
func (c *Collector) leave(m *member) {
	l := m.loop
	last := len(l.members) - 1
	l.members[m.idx] = l.members[last]
	l.members[m.idx].idx = m.idx
	l.members[last] = nil
	l.members = l.members[:last]
	m.gone = true
	if len(l.members) == 0 {
		l.stop()
		delete(c.loops, l.key)
	}
}

// ---- measuring ----

// runLoop measures the loop's fresh members when kicked and all of them every period,
// until ctx ends.
func (c *Collector) runLoop(ctx context.Context, l *loop) {
	t := c.newTicker(l.key)
	defer t.Stop()
	for {
		all := false
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-t.Chan():
			all = true
		}
		c.round(ctx, l, all)
		if c.afterRound != nil {
			c.afterRound(l.key, all)
		}
	}
}

// round measures the loop's members (all, or only the fresh ones) with MetricsBatch
// calls and writes their points at once.
func (c *Collector) round(ctx context.Context, l *loop, all bool) {
	c.mu.Lock()
	var batch []*member
	if all {
		batch = make([]*member, 0, len(l.members))
	}
	for _, m := range l.members {
		if all || m.fresh {
			batch = append(batch, m)
			m.fresh = false
		}
	}
	reqs := make([]sdk.MetricsRequest, len(batch))
	nodes := make([]int, len(batch))
	for i, m := range batch {
		reqs[i], nodes[i] = sdk.MetricsRequest{Ref: m.ref, Names: m.metrics}, m.nodes
	}
	c.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	mon, err := c.monitorOf(ctx)
	if err != nil {
		c.loopFailed(l, "monitor plugin unavailable", err)
		return
	}
	if mon == nil {
		// Nothing would store the points: do not measure.
		if !l.noMonitor {
			c.log.Info("not monitoring: no monitor plugin in the catalogue", "provider", l.key.provider)
		}
		l.noMonitor = true
		return
	}
	l.noMonitor = false
	results, err := c.measure(ctx, l.key.provider, reqs, nodes)
	if err != nil {
		c.loopFailed(l, "monitoring failed", err)
		return
	}
	now := time.Now()
	n := 0
	for _, r := range results {
		n += len(r.Samples)
	}
	points := make([]sdk.Point, 0, n)
	for i, r := range results {
		if r.Err == nil {
			points = batch[i].appendPoints(points, r.Samples, now)
		}
	}
	if werr := c.write(ctx, mon, points); werr != nil {
		c.loopFailed(l, "monitoring failed", werr)
		return
	}
	if ids := c.announced(batch, results); len(ids) > 0 {
		// A monitor may only queue what Write gets (monitor-influx does): flush, or the
		// policies judged now would not see the points they are told of and would wait
		// for the next round (a 3-point policy at 10 s decided 30 s after the crossing
		// instead of 20).
		cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
		err := mon.Flush(cctx)
		cancel()
		if err != nil {
			c.loopFailed(l, "monitoring failed", fmt.Errorf("flush %d points: %w", len(points), err))
			return
		}
		c.opts.OnStored(ids...)
	}
	c.loopFailed(l, "", nil)
	c.settle(ctx, l, batch, results)
}

// announced returns the slices of which a round stored points, each once, when
// OnStored is to be told of them (none otherwise).
func (c *Collector) announced(batch []*member, results []sdk.PartMetrics) []string {
	if c.opts.OnStored == nil {
		return nil
	}
	var ids []string
	seen := make(map[string]struct{})
	for i, r := range results {
		if r.Err != nil || len(r.Samples) == 0 {
			continue
		}
		id := batch[i].ref.SliceID
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			ids = append(ids, id)
		}
	}
	return ids
}

// measure asks the provider's VIM for the metrics of reqs (nodes[i] the nodes of
// reqs[i]), in batches of at most MaxBatchParts parts and about MaxBatchNodes nodes. A
// batch that fails as a whole is each of its parts' error.
func (c *Collector) measure(ctx context.Context, provider string, reqs []sdk.MetricsRequest, nodes []int) ([]sdk.PartMetrics, error) {
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	vim, err := c.opts.Plugins.VIM(cctx, provider)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("VIM of %s: %w", provider, err)
	}
	out := make([]sdk.PartMetrics, 0, len(reqs))
	for start := 0; start < len(reqs); {
		end, n := start, 0
		for end < len(reqs) && end-start < MaxBatchParts && (end == start || n+nodes[end] <= MaxBatchNodes) {
			n += nodes[end]
			end++
		}
		cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
		got, err := sdk.MetricsBatch(cctx, vim, reqs[start:end])
		cancel()
		if err != nil {
			if len(reqs) == end-start {
				return nil, fmt.Errorf("metrics of %d parts at %s: %w", len(reqs), provider, err)
			}
			for _, r := range reqs[start:end] {
				got = append(got, sdk.PartMetrics{Ref: r.Ref, Err: err})
			}
		}
		out = append(out, got...)
		start = end
	}
	return out, nil
}

// write sends points to the monitor, sdk.MaxWritePoints at a time.
func (c *Collector) write(ctx context.Context, mon sdk.Monitor, points []sdk.Point) error {
	for len(points) > 0 {
		n := min(len(points), sdk.MaxWritePoints)
		cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
		err := mon.Write(cctx, sdk.WriteRequest{Points: points[:n]})
		cancel()
		if err != nil {
			return fmt.Errorf("write %d points: %w", len(points), err)
		}
		points = points[n:]
	}
	return nil
}

// settle records each member's outcome: EvStarted for those measured and stored for
// the first time, a log line when a part's failure changes or it recovers.
func (c *Collector) settle(ctx context.Context, l *loop, batch []*member, results []sdk.PartMetrics) {
	type logLine struct {
		ref  sdk.PartRef
		err  error
		back bool
	}
	var lines []logLine
	starts := map[string][]store.Event{}
	every := l.key.every.String()
	c.mu.Lock()
	for i, m := range batch {
		if m.gone {
			continue
		}
		err := results[i].Err
		switch {
		case sdk.IsNotFound(err):
			// The part is going away (removed, decommissioned): the watch takes it out.
			lines = append(lines, logLine{ref: m.ref, err: err})
		case err != nil:
			if msg := err.Error(); msg != m.lastErr {
				m.lastErr = msg
				lines = append(lines, logLine{ref: m.ref, err: err})
			}
		default:
			if m.lastErr != "" {
				m.lastErr = ""
				lines = append(lines, logLine{ref: m.ref, back: true})
			}
			if !m.started {
				m.started = true
				starts[m.ref.SliceID] = append(starts[m.ref.SliceID], store.Event{Type: EvStarted, Part: m.ref.PartID,
					Message: "measured every " + every, Data: map[string]string{"every": every}})
			}
		}
	}
	c.mu.Unlock()
	for _, ln := range lines {
		switch {
		case ln.back:
			c.log.Info("monitoring recovered", "part", ln.ref.String())
		case sdk.IsNotFound(ln.err):
			c.log.Debug("monitoring: part not found", "part", ln.ref.String(), "error", ln.err)
		default:
			c.log.Warn("monitoring failed", "part", ln.ref.String(), "provider", l.key.provider, "error", ln.err)
		}
	}
	if c.opts.Store == nil {
		return
	}
	for slice, evs := range starts {
		cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
		if err := c.opts.Store.AddEvents(cctx, slice, evs...); err != nil && ctx.Err() == nil {
			c.log.Warn("monitoring: record start", "slice", slice, "error", err)
		}
		cancel()
	}
}

// loopFailed logs a loop's failure when it changes (not every period) and its recovery
// (what "" with a nil err says).
func (c *Collector) loopFailed(l *loop, what string, err error) {
	switch {
	case err == nil && l.lastErr != "":
		c.log.Info("monitoring recovered", "provider", l.key.provider, "every", l.key.every)
		l.lastErr = ""
	case err != nil && err.Error() != l.lastErr:
		c.log.Warn(what, "provider", l.key.provider, "every", l.key.every, "error", err)
		l.lastErr = err.Error()
	}
}

// appendPoints appends the points of a member's samples, as Points makes them, with
// the tag maps made once per node.
func (m *member) appendPoints(out []sdk.Point, samples []sdk.Sample, now time.Time) []sdk.Point {
	for _, s := range samples {
		if s.Node == "" || s.Metric == "" {
			continue
		}
		k := [2]string{s.Node, s.NodeType}
		tags := m.tags[k]
		if tags == nil {
			if m.tags == nil {
				m.tags = map[[2]string]map[string]string{}
			}
			tags = pointTags(m.ref, s)
			m.tags[k] = tags
		}
		at := s.Time
		if at.IsZero() {
			at = now
		}
		out = append(out, sdk.Point{Metric: s.Metric, Tags: tags, Value: s.Value, Time: at})
	}
	return out
}

func pointTags(ref sdk.PartRef, s sdk.Sample) map[string]string {
	tags := map[string]string{sdk.TagSlice: ref.SliceID, sdk.TagPart: ref.PartID, sdk.TagResourceID: s.Node}
	if s.NodeType != "" {
		tags[sdk.TagNodeType] = s.NodeType
	}
	return tags
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
		at := s.Time
		if at.IsZero() {
			at = now
		}
		out = append(out, sdk.Point{Metric: s.Metric, Tags: pointTags(ref, s), Value: s.Value, Time: at})
	}
	return out
}

// group is what a part is measured for in one loop: some metrics (nil: the VIM's
// default) every period.
type group struct {
	every   time.Duration
	metrics []string
}

// groups returns the periods a part is measured at, from its monitoring-parameters in
// the spec (or those of the part it copies).
func groups(sp *spec.Slice, part string, def time.Duration) []group {
	var mon *spec.Monitoring
	if dp, ok := sp.Given(part); ok {
		mon = dp.Monitoring
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

func (c *Collector) monitorOf(ctx context.Context) (sdk.Monitor, error) {
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	mon, err := c.monitor(cctx)
	if err != nil {
		return nil, fmt.Errorf("monitor plugin: %w", err)
	}
	return mon, nil
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
