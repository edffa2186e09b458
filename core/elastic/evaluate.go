package elastic

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// evaluator runs one policy: it evaluates the policy every granularity and starts its
// action when it fires.
type evaluator struct {
	e   *Engine
	pol *store.Policy // as read when the evaluator started; a change restarts it

	cancel context.CancelFunc
	done   chan struct{}
	// measured is signalled when new points of the policy's slice are stored
	// (Engine.Measured), so that the policy is judged on them at once.
	measured chan struct{}
	// removed is set (under Engine.mu) when the policy left the store.
	removed bool

	mu sync.Mutex
	// busy is set while an action runs.
	busy bool
	// since: only points after it count (the end of the last action).
	since time.Time
	// cooldown ends then.
	cooldownUntil time.Time
	// noted is the skip last recorded, so that each is recorded once.
	noted string
	// lastErr is the evaluation failure last logged.
	lastErr string
}

func newEvaluator(e *Engine, p *store.Policy) *evaluator {
	return &evaluator{e: e, pol: p, done: make(chan struct{}), measured: make(chan struct{}, 1)}
}

func (ev *evaluator) name() string { return policyKey(ev.pol.SliceID, ev.pol.Name) }

func (ev *evaluator) start(ctx context.Context) {
	ctx, ev.cancel = context.WithCancel(ctx)
	go func() {
		defer close(ev.done)
		ev.run(ctx)
	}()
}

// stop ends the evaluation loop; an action under way goes on to its end.
func (ev *evaluator) stop() {
	ev.cancel()
	<-ev.done
	if ev.removed {
		ev.e.log.Info("policy stopped", "policy", ev.name())
		// The slice may be gone with its events: then there is nothing to record.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := ev.e.opts.Store.GetSlice(ctx, ev.pol.SliceID); err == nil {
			ev.e.event(ctx, ev.pol.SliceID, ev.ev(EvDisarmed, "policy removed", nil))
		}
	}
}

// ev makes an event of this policy.
func (ev *evaluator) ev(typ, msg string, data map[string]string) store.Event {
	d := map[string]string{"policy": ev.pol.Name}
	for k, v := range data {
		d[k] = v
	}
	return store.Event{Type: typ, Part: ev.pol.Spec.Part, Message: msg, Data: d}
}

// granularity is the policy's evaluation period: its own, else its part's monitoring
// granularity, else the engine's default.
func granularity(p *spec.Policy, s *spec.Slice, def time.Duration) time.Duration {
	if p.Collector.GranularitySecs > 0 {
		return time.Duration(p.Collector.GranularitySecs) * time.Second
	}
	if s != nil {
		if dp, ok := s.Part(p.Part); ok && dp.Monitoring != nil && dp.Monitoring.GranularitySecs > 0 {
			return time.Duration(dp.Monitoring.GranularitySecs) * time.Second
		}
	}
	return def
}

func (ev *evaluator) cooldown() time.Duration {
	p := &ev.pol.Spec
	if p.PostDeployment != nil && p.PostDeployment.Timers.ReactivateSecs > 0 {
		return p.Cooldown()
	}
	return ev.e.opts.DefaultCooldown
}

func (ev *evaluator) run(ctx context.Context) {
	sl, err := ev.e.opts.Store.GetSlice(ctx, ev.pol.SliceID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			ev.e.log.Warn("policy not armed: read slice", "policy", ev.name(), "error", err)
		}
		return // a slice gone takes its policies along: the next sync drops this one
	}
	// A spec that does not parse (the engine records it) leaves the default granularity.
	sp, _ := sro.StoredSpec(sl)
	every := granularity(&ev.pol.Spec, sp, ev.e.opts.DefaultGranularity)
	// The points a trigger looks back over come as often as the part's metric is
	// measured: a policy evaluated more often than that (granularity 2 on a part measured
	// every 10 s) still looks back over that many measurements, or it would never see
	// its points.
	measured := sp.MeasuredEvery(ev.pol.Spec.Part, ev.pol.Spec.Collector.Metric, ev.e.opts.DefaultGranularity)
	period := max(every, measured)
	ev.restore(ctx)
	ev.e.log.Info("policy armed", "policy", ev.name(), "condition", ev.pol.Spec.String(), "every", every, "measured_every", measured)
	armed := fmt.Sprintf("%s, evaluated every %s", ev.pol.Spec.String(), every)
	if measured > every {
		armed += fmt.Sprintf(" (its metric is measured every %s)", measured)
	}
	ev.e.event(ctx, ev.pol.SliceID, ev.ev(EvArmed, armed,
		map[string]string{"every": every.String(), "measured_every": measured.String()}))
	// The policy is judged when its slice's points are stored (the collector and pushes
	// say so through Engine.Measured), and every `every` when nothing says so: waiting
	// for the next tick after the points landed cost up to a whole period of reaction
	// (crossed -> decision 27 s instead of 21 s with 3 points at 10 s). A judgement on
	// announced points puts the tick off by a period, so that it stays a safety net
	// rather than a second judgement of the same points.
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ev.tick(ctx, period)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-ev.measured:
			t.Reset(every)
		}
	}
}

// nudge asks the evaluator to judge the policy now; it never blocks.
func (ev *evaluator) nudge() {
	select {
	case ev.measured <- struct{}{}:
	default:
	}
}

// restore reads the policy's last action from the slice's events, so that its cooldown
// and its "points after the last action" survive a restart.
func (ev *evaluator) restore(ctx context.Context) {
	evs, err := ev.e.opts.Store.Events(ctx, ev.pol.SliceID)
	if err != nil {
		ev.e.log.Warn("read past actions", "policy", ev.name(), "error", err)
		return
	}
	for i := len(evs) - 1; i >= 0; i-- {
		x := evs[i]
		if x.Data["policy"] != ev.pol.Name {
			continue
		}
		switch x.Type {
		case EvActionFinished, EvActionFailed, EvExhausted:
			ev.mu.Lock()
			ev.since = x.Time
			ev.cooldownUntil = x.Time.Add(ev.cooldown())
			ev.mu.Unlock()
			return
		}
	}
}

// Firing is a series that satisfies a policy's trigger.
type Firing struct {
	// Node is the series' ResourceID: the node the policy fired on ("" when the points
	// named none).
	Node string
	// Tags are the series' tags.
	Tags map[string]string
	// Values are the values that satisfied the trigger, oldest first.
	Values []float64
	// Crossed is the time of the first of Values: when the threshold was crossed.
	Crossed time.Time
	// Nodes are the nodes of every series that satisfies the trigger, Node first, each
	// once: a scale-in shrinks the first of them that is above its floor.
	Nodes []string
	// Every is set when the policy fires only when every node satisfies its trigger
	// (spec.Policy.EveryNode); Node is then the node that crossed last.
	Every bool
	// Average is set when the policy judges the mean of its nodes' values
	// (spec.Policy.Average): Values are those means, Nodes every node measured, the
	// one furthest past the threshold (Node) first — the node an action on one node
	// acts on.
	Average bool
}

// String describes the firing for events: "node k8s-node-1 (push): 91, 95, 97".
func (f Firing) String() string {
	vals := make([]string, len(f.Values))
	for i, v := range f.Values {
		// Two decimals for people; the event's data.values keeps every digit.
		vals[i] = strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	}
	src := ""
	if s := f.Tags["source"]; s != "" {
		src = " (" + s + ")"
	}
	node := f.Node
	if node == "" {
		node = "(no node)"
	}
	if f.Average {
		return fmt.Sprintf("the mean of %d nodes, node %s furthest: %s", len(f.Nodes), node, strings.Join(vals, ", "))
	}
	out := fmt.Sprintf("node %s%s: %s", node, src, strings.Join(vals, ", "))
	if f.Every && len(f.Nodes) > 1 {
		out += fmt.Sprintf(" (the last of %d nodes to satisfy it)", len(f.Nodes))
	}
	return out
}

// tick evaluates the policy once and fires it when its trigger holds.
func (ev *evaluator) tick(ctx context.Context, period time.Duration) {
	ev.mu.Lock()
	since := ev.since
	ev.mu.Unlock()
	f, err := ev.evaluate(ctx, period, since, time.Now())
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		ev.mu.Lock()
		changed := err.Error() != ev.lastErr
		ev.lastErr = err.Error()
		ev.mu.Unlock()
		if changed {
			ev.e.log.Warn("policy not evaluated", "policy", ev.name(), "error", err)
		}
		return
	}
	ev.mu.Lock()
	ev.lastErr = ""
	ev.mu.Unlock()
	if f == nil {
		return
	}
	// It fires: act, unless busy or resting. The slice and the policy are read again
	// first: a policy of a slice being decommissioned, or just removed, does nothing.
	sl, err := ev.e.opts.Store.GetSlice(ctx, ev.pol.SliceID)
	if err != nil || sl.Deleting || sl.State != store.SliceReady {
		return
	}
	cur, err := ev.e.opts.Store.GetPolicy(ctx, ev.pol.SliceID, ev.pol.Name)
	if err != nil || cur.Rev != ev.pol.Rev {
		return
	}
	// A scale-in policy fires as long as the part is idle, at its floor too: then it has
	// nothing to do, which is said once (until it acts again), not at every firing,
	// and neither starts an action nor a cooldown.
	ev.mu.Lock()
	busy := ev.busy
	ev.mu.Unlock()
	if !busy && ev.pol.Spec.ScalesIn() {
		_, steps, skipped, err := ev.e.scaleInPlan(ctx, ev, f)
		if err == nil && len(steps) == 0 {
			ev.skip(ctx, f, "floor", "nothing to shrink: "+strings.Join(skipped, "; "))
			return
		}
	}
	now := time.Now()
	ev.mu.Lock()
	var skip, note string
	switch {
	case ev.busy:
		skip, note = "busy: the previous action still runs", "busy"
	case now.Before(ev.cooldownUntil):
		skip = fmt.Sprintf("cooldown: rests until %s (%s more)", ev.cooldownUntil.UTC().Format(time.RFC3339),
			ev.cooldownUntil.Sub(now).Round(time.Second))
		note = "cooldown@" + ev.cooldownUntil.String()
	}
	if skip == "" {
		ev.busy, ev.noted = true, ""
	}
	ev.mu.Unlock()
	if skip != "" {
		ev.skip(ctx, f, note, skip)
		return
	}
	ev.e.log.Info("policy fired", "policy", ev.name(), "on", f.String())
	ev.e.event(ctx, ev.pol.SliceID, ev.ev(EvFired, fmt.Sprintf("%s: %s", ev.pol.Spec.String(), f),
		map[string]string{"node": f.Node, "values": joinValues(f.Values), DataCrossed: f.Crossed.UTC().Format(time.RFC3339Nano)}))
	ev.e.acts.Add(1)
	go func() {
		defer ev.e.acts.Done()
		// The action outlives the evaluation loop (a policy edited meanwhile), not the
		// engine: it ends with the Run context or its timeout.
		actx, cancel := context.WithTimeout(ev.e.root(), ev.e.opts.ActionTimeout)
		defer cancel()
		ev.e.act(actx, ev, f)
		end := time.Now()
		ev.mu.Lock()
		ev.busy = false
		ev.since = end
		ev.cooldownUntil = end.Add(ev.cooldown())
		ev.mu.Unlock()
	}()
}

// skip records that the policy fired but did not act, once per note ("busy",
// "cooldown@<end>", "floor"): the same reason is not recorded again until another one,
// or an action, comes between.
func (ev *evaluator) skip(ctx context.Context, f *Firing, note, why string) {
	ev.mu.Lock()
	first := ev.noted != note
	ev.noted = note
	ev.mu.Unlock()
	if first {
		ev.e.log.Debug("policy fired, skipped", "policy", ev.name(), "why", why)
		ev.e.event(ctx, ev.pol.SliceID, ev.ev(EvSkipped, fmt.Sprintf("%s fired on %s, skipped: %s", ev.pol.Spec.String(), f, why),
			map[string]string{"reason": strings.SplitN(note, "@", 2)[0], "node": f.Node}))
	}
}

func joinValues(vs []float64) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strings.Join(out, ",")
}

// evaluate reads the policy's points and returns the first series (by node) whose
// values satisfy the trigger, or nil.
func (ev *evaluator) evaluate(ctx context.Context, period time.Duration, since, now time.Time) (*Firing, error) {
	mon, err := ev.e.monitor(ctx)
	if err != nil {
		return nil, err
	}
	p := &ev.pol.Spec
	q := Query(ev.pol.SliceID, p, period, since, now)
	pts, err := mon.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", p.Collector.Metric, err)
	}
	return Judge(p, pts), nil
}

// Query is what a policy reads at now: its metric on its part's nodes of node-type,
// newer than since; with trigger points: N the last N points of each series of the last
// (N+2) periods (every: the longer of the policy's evaluation period and its metric's
// measurement period), with time-window: W those of the last W seconds.
func Query(sliceID string, p *spec.Policy, every time.Duration, since, now time.Time) sdk.Query {
	tags := map[string]string{sdk.TagSlice: sliceID, sdk.TagPart: p.Part}
	if p.Collector.NodeType != "" {
		tags[sdk.TagNodeType] = p.Collector.NodeType
	}
	q := sdk.Query{Metric: p.Collector.Metric, Tags: tags}
	if p.Trigger.WindowSecs > 0 {
		q.Start = now.Add(-time.Duration(p.Trigger.WindowSecs) * time.Second)
	} else {
		q.Last = p.Trigger.Points
		q.Start = now.Add(-time.Duration(p.Trigger.Points+2) * every)
	}
	if since.After(q.Start) {
		q.Start = since
	}
	return q
}

// Judge returns the first series of pts (by node, then tags) whose values satisfy the
// policy's trigger: with points: N its last N values (it needs N), with a time window
// all of them; nil when none does. Its Nodes lists the nodes of every series that does.
// A policy that fires only when every node satisfies its trigger (spec.Policy.EveryNode)
// returns nil unless every series of pts does (a node without enough points does not),
// and then names the series that crossed last. A node with no point at all is not
// counted: pts are what the monitor measured.
// pts come series by series, oldest first, as sdk.Monitor.Query returns them.
func Judge(p *spec.Policy, pts []sdk.Point) *Firing {
	var list []*nodeSeries
	by := map[string]*nodeSeries{}
	for _, pt := range pts {
		k := seriesKey(pt.Tags)
		s := by[k]
		if s == nil {
			s = &nodeSeries{key: k, tags: pt.Tags}
			by[k] = s
			list = append(list, s)
		}
		s.values = append(s.values, pt.Value)
		s.times = append(s.times, pt.Time)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i].tags[sdk.TagResourceID], list[j].tags[sdk.TagResourceID]
		if a != b {
			return a < b
		}
		return list[i].key < list[j].key
	})
	if p.Average() {
		return judgeAverage(p, list)
	}
	every := p.EveryNode()
	var f *Firing
	for _, s := range list {
		vals, times := s.values, s.times
		if n := p.Trigger.Points; n > 0 && p.Trigger.WindowSecs == 0 {
			if len(vals) < n {
				if every {
					return nil // a node not yet measured long enough is not known to satisfy it
				}
				continue
			}
			vals, times = vals[len(vals)-n:], times[len(times)-n:]
		}
		if !p.Holds(vals) {
			if every {
				return nil
			}
			continue
		}
		node := s.tags[sdk.TagResourceID]
		switch {
		case f == nil:
			f = &Firing{Node: node, Tags: s.tags, Values: vals, Crossed: times[0]}
		case every && times[0].After(f.Crossed):
			// Every node must satisfy it: it was crossed when the last of them crossed,
			// and that node is the one the firing names.
			f.Node, f.Tags, f.Values, f.Crossed = node, s.tags, vals, times[0]
		}
		if node != "" && !slices.Contains(f.Nodes, node) {
			f.Nodes = append(f.Nodes, node)
		}
	}
	if f != nil && every {
		f.Every = true
		// Node first, as Nodes promises.
		if i := slices.Index(f.Nodes, f.Node); i > 0 {
			f.Nodes = append(append([]string{f.Node}, f.Nodes[:i]...), f.Nodes[i+1:]...)
		}
	}
	return f
}

// nodeSeries is the points of one series (one node, one source), oldest first.
type nodeSeries struct {
	key    string
	tags   map[string]string
	values []float64
	times  []time.Time
}

// judgeAverage judges the mean of the series' last trigger.points values, point by
// point (trigger.nodes: average). Every series needs that many values: the mean of the
// nodes measured long enough is not the part's. It crossed when the last series began
// its values; the node named is the one whose values are furthest past the threshold.
func judgeAverage(p *spec.Policy, list []*nodeSeries) *Firing {
	n := p.Trigger.Points
	if n <= 0 || len(list) == 0 {
		return nil
	}
	means := make([]float64, n)
	var crossed time.Time
	for _, s := range list {
		if len(s.values) < n {
			return nil
		}
		vals, times := s.values[len(s.values)-n:], s.times[len(s.times)-n:]
		for i, v := range vals {
			means[i] += v / float64(len(list))
		}
		if times[0].After(crossed) {
			crossed = times[0]
		}
	}
	if !p.Holds(means) {
		return nil
	}
	// Order the series by how far their values go past the threshold: the highest
	// first for > and >=, the lowest first for < and <=.
	sum := func(s *nodeSeries) float64 {
		t := 0.0
		for _, v := range s.values[len(s.values)-n:] {
			t += v
		}
		return t
	}
	below := p.Operator == "<" || p.Operator == "<="
	ordered := slices.Clone(list)
	slices.SortStableFunc(ordered, func(a, b *nodeSeries) int {
		x, y := sum(a), sum(b)
		if below {
			x, y = -x, -y
		}
		switch {
		case x > y:
			return -1
		case x < y:
			return 1
		}
		return 0
	})
	first := ordered[0]
	f := &Firing{Node: first.tags[sdk.TagResourceID], Tags: first.tags, Values: means, Crossed: crossed, Average: true}
	for _, s := range ordered {
		if node := s.tags[sdk.TagResourceID]; node != "" && !slices.Contains(f.Nodes, node) {
			f.Nodes = append(f.Nodes, node)
		}
	}
	return f
}

func seriesKey(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(tags[k])
		b.WriteByte(',')
	}
	return b.String()
}
