package api

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/monitoring"
	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// TimingsRoutes returns an Options.Extra adding GET /v1/slices/{id}/timings: the phases
// of the slice's life (placement, each part's provisioning, each link, creation as a
// whole, monitoring start, each service deployment, rollback, decommission) and of each
// elastic action (threshold crossed, decision, action, post-deployment, effect), with
// start, end and duration. Everything is read from the slice's events (st), the engine
// keeping no other record of it; the effect of an action (its policy's metric back on
// the right side of the threshold) is read from metrics, when there are any (nil: none).
// Another tenant's slice is not found (404).
func TimingsRoutes(slices SliceFinder, st TimingRecords, metrics MetricsService, log hclog.Logger) Extra {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	t := &timingsRoutes{slices: slices, store: st, metrics: metrics, log: log}
	return func(r *mux.Router, auth func(http.Handler) http.Handler) {
		r.Handle("/v1/slices/{id}/timings", auth(http.HandlerFunc(t.get))).Methods(http.MethodGet)
	}
}

// TimingRecords are what the timings route reads: a slice's events and its policies.
// *store.Store is one.
type TimingRecords interface {
	Events(ctx context.Context, slice string) ([]store.Event, error)
	GetPolicy(ctx context.Context, slice, name string) (*store.Policy, error)
}

type timingsRoutes struct {
	slices  SliceFinder
	store   TimingRecords
	metrics MetricsService
	log     hclog.Logger
}

func (t *timingsRoutes) get(w http.ResponseWriter, r *http.Request) {
	v, err := findSlice(t.slices, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	evs, err := t.store.Events(r.Context(), v.Slice.ID)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	now := time.Now().UTC()
	out := Timings(v.Slice.ID, evs, now)
	for i := range out.Actions {
		t.effect(r.Context(), v.Slice.ID, &out.Actions[i], now)
	}
	WriteJSON(w, http.StatusOK, out)
}

// effect finds when an action that is done took effect: the first time after it when
// every series of its policy's metric (on the policy's part and node type) was back on
// the right side of the threshold. Without metrics, or without the policy, it adds
// nothing.
func (t *timingsRoutes) effect(ctx context.Context, sliceID string, a *v1.ElasticAction, now time.Time) {
	if t.metrics == nil || a.Outcome != v1.PhaseDone || a.Done == nil {
		return
	}
	pol, err := t.store.GetPolicy(ctx, sliceID, a.Policy)
	if err != nil {
		return // removed since: its metric and threshold are no longer known
	}
	p := &pol.Spec
	q := sdk.Query{Metric: p.Collector.Metric, Start: *a.Done, Tags: map[string]string{sdk.TagPart: p.Part}}
	if p.Collector.NodeType != "" {
		q.Tags[sdk.TagNodeType] = p.Collector.NodeType
	}
	pts, err := t.metrics.Query(ctx, sliceID, q)
	if err != nil {
		t.log.Debug("timings: metrics of an action's effect", "slice", sliceID, "policy", a.Policy, "error", err)
		return
	}
	at := EffectiveAt(pts, p.Compare)
	ph := v1.Phase{Name: "effect", Subject: a.Policy, Start: *a.Done, Outcome: v1.PhaseRunning}
	if !at.IsZero() {
		a.Effective = &at
		ph.End, ph.Outcome = &at, v1.PhaseDone
	}
	a.Phases = append(a.Phases, finishPhase(ph, now))
}

// EffectiveAt returns the first time at which no series of pts (points of one metric,
// any order) still satisfies fires — the last value of each series seen by then
// considered — or the zero time when that never happened.
func EffectiveAt(pts []sdk.Point, fires func(float64) bool) time.Time {
	sorted := append([]sdk.Point(nil), pts...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Time.Before(sorted[j].Time) })
	last := map[string]bool{} // series -> whether its last value fires
	firing := 0
	for i, pt := range sorted {
		k := seriesTags(pt.Tags)
		was, seen := last[k]
		now := fires(pt.Value)
		switch {
		case !seen && now, seen && !was && now:
			firing++
		case seen && was && !now:
			firing--
		}
		last[k] = now
		// Judge a time once all of its points are in.
		if i+1 < len(sorted) && sorted[i+1].Time.Equal(pt.Time) {
			continue
		}
		if firing == 0 {
			return pt.Time.UTC()
		}
	}
	return time.Time{}
}

// Timings reads the phases of a slice's life and its elastic actions from its events
// (oldest first); phases still running at now last until now.
func Timings(sliceID string, evs []store.Event, now time.Time) v1.Timings {
	b := &timingsBuilder{open: map[string]int{}, current: map[string]int{}}
	for _, ev := range evs {
		b.add(ev)
	}
	out := v1.Timings{Slice: sliceID, Phases: make([]v1.Phase, 0, len(b.phases)), Actions: make([]v1.ElasticAction, 0, len(b.actions))}
	for _, p := range b.phases {
		out.Phases = append(out.Phases, finishPhase(p, now))
	}
	sort.SliceStable(out.Phases, func(i, j int) bool { return out.Phases[i].Start.Before(out.Phases[j].Start) })
	for _, a := range b.actions {
		out.Actions = append(out.Actions, actionPhases(a, now))
	}
	return out
}

// finishPhase sets a phase's duration: to its end, or so far.
func finishPhase(p v1.Phase, now time.Time) v1.Phase {
	end := now
	if p.End != nil {
		end = *p.End
	}
	p.Seconds = end.Sub(p.Start).Seconds()
	if p.Seconds < 0 {
		p.Seconds = 0
	}
	return p
}

type timingsBuilder struct {
	phases []v1.Phase
	// open: the running phase of each key ("part/core") by index in phases.
	open    map[string]int
	actions []v1.ElasticAction
	// current: the running action of each policy, by index in actions.
	current map[string]int
}

// begin starts a phase, unless the same one runs already (a step the engine retried
// after a restart keeps its first start).
func (b *timingsBuilder) begin(key, name, subject string, at time.Time, msg string) {
	if _, ok := b.open[key]; ok {
		return
	}
	b.open[key] = len(b.phases)
	b.phases = append(b.phases, v1.Phase{Name: name, Subject: subject, Start: at.UTC(), Outcome: v1.PhaseRunning, Message: msg})
}

// end ends the running phase of key, if any.
func (b *timingsBuilder) end(key string, at time.Time, outcome, msg string) {
	i, ok := b.open[key]
	if !ok {
		return
	}
	delete(b.open, key)
	t := at.UTC()
	b.phases[i].End, b.phases[i].Outcome = &t, outcome
	if msg != "" {
		b.phases[i].Message = msg
	}
}

func (b *timingsBuilder) add(ev store.Event) {
	at := ev.Time
	switch ev.Type {
	case sro.EvAccepted:
		b.begin("creation", "creation", "", at, "")
		b.begin("placement", "placement", "", at, "")
	case sro.EvPlanned:
		b.end("placement", at, v1.PhaseDone, ev.Message)
	case sro.EvRefused, sro.EvUnavailable:
		b.end("placement", at, v1.PhaseFailed, ev.Message)
		b.end("creation", at, v1.PhaseFailed, ev.Message)
	case sro.EvPartCreate:
		b.begin("part/"+ev.Part, "part", ev.Part, at, ev.Message)
	case sro.EvPartReady:
		b.end("part/"+ev.Part, at, v1.PhaseDone, ev.Message)
	case sro.EvPartFailed:
		b.end("part/"+ev.Part, at, v1.PhaseFailed, ev.Message)
	case sro.EvPartAdding:
		b.begin("add/"+ev.Part, "part-add", ev.Part, at, ev.Message)
	case sro.EvPartAdded:
		b.end("add/"+ev.Part, at, v1.PhaseDone, ev.Message)
	case sro.EvPartAddFailed:
		b.end("add/"+ev.Part, at, v1.PhaseFailed, ev.Message)
	case sro.EvLinkCreate:
		b.begin("link/"+ev.Link, "link", ev.Link, at, ev.Message)
	case sro.EvLinkReady:
		b.end("link/"+ev.Link, at, v1.PhaseDone, ev.Message)
	case sro.EvLinkFailed:
		b.end("link/"+ev.Link, at, v1.PhaseFailed, ev.Message)
	case sro.EvReady:
		b.end("creation", at, v1.PhaseDone, ev.Message)
		if !b.seen("monitoring") {
			b.begin("monitoring", "monitoring", "", at, "")
		}
	case monitoring.EvStarted:
		b.end("monitoring", at, v1.PhaseDone, "")
	case sro.EvRollingBack:
		b.begin("rollback", "rollback", "", at, ev.Message)
	case sro.EvFailed:
		b.end("rollback", at, v1.PhaseDone, "")
		b.end("creation", at, v1.PhaseFailed, ev.Message)
	case sro.EvDecommissionRequested, sro.EvDeleting:
		b.begin("decommission", "decommission", "", at, "")
	case sro.EvDeleted:
		b.end("decommission", at, v1.PhaseDone, ev.Message)
	case service.EvDeploying:
		b.begin("service/"+ev.Data["service"], "service", ev.Data["service"], at, ev.Message)
	case service.EvDeployed, service.EvApplied:
		b.end("service/"+ev.Data["service"], at, v1.PhaseDone, ev.Message)
	case service.EvFailed:
		b.end("service/"+ev.Data["service"], at, v1.PhaseFailed, ev.Message)
	case service.EvUndeploying:
		b.begin("undeploy/"+ev.Data["service"], "service-undeploy", ev.Data["service"], at, ev.Message)
	case service.EvUndeployed:
		b.end("undeploy/"+ev.Data["service"], at, v1.PhaseDone, ev.Message)
	default:
		b.elastic(ev)
	}
}

// seen says whether a phase of that name was ever begun.
func (b *timingsBuilder) seen(name string) bool {
	for _, p := range b.phases {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (b *timingsBuilder) elastic(ev store.Event) {
	policy := ev.Data["policy"]
	if policy == "" {
		return
	}
	at := ev.Time.UTC()
	if ev.Type == elastic.EvFired {
		a := v1.ElasticAction{Policy: policy, Part: ev.Part, Outcome: v1.PhaseRunning, Fired: at, Message: ev.Message}
		if c, err := time.Parse(time.RFC3339Nano, ev.Data[elastic.DataCrossed]); err == nil {
			c = c.UTC()
			a.Crossed = &c
		}
		b.current[policy] = len(b.actions)
		b.actions = append(b.actions, a)
		return
	}
	i, ok := b.current[policy]
	if !ok {
		return // an action whose firing is not recorded (events of another policy kind)
	}
	a := &b.actions[i]
	switch ev.Type {
	case elastic.EvActionStarted:
		if a.Started == nil {
			a.Started = &at
		}
		a.Action = ev.Data["action"]
	case elastic.EvActionFinished:
		a.Done, a.Outcome, a.Message = &at, v1.PhaseDone, ev.Message
		a.Action = ev.Data["action"]
	case elastic.EvActionFailed:
		// Only the final failure carries "took"; the others are an action refused on
		// the way, after which the next one is tried.
		if _, final := ev.Data["took"]; final {
			a.Done, a.Outcome, a.Message = &at, v1.PhaseFailed, ev.Message
		}
	case elastic.EvExhausted:
		a.Done, a.Outcome, a.Message = &at, "exhausted", ev.Message
	case elastic.EvPostDeployed:
		a.PostDeployed = &at
	case elastic.EvPostDeployFailed, elastic.EvPostDeploySkipped:
		outcome := v1.PhaseFailed
		if ev.Type == elastic.EvPostDeploySkipped {
			outcome = v1.PhaseSkipped
		}
		start := at
		if a.Done != nil {
			start = *a.Done
		}
		a.Phases = append(a.Phases, v1.Phase{Name: "post-deployment", Subject: policy, Start: start, End: &at,
			Outcome: outcome, Message: ev.Message})
	}
}

// actionPhases lays out an action's chain as phases: decision (threshold crossed ->
// fired), action (fired -> done), post-deployment (done -> post-deployed), reaction
// (crossed -> done).
func actionPhases(a v1.ElasticAction, now time.Time) v1.ElasticAction {
	var out []v1.Phase
	running := func(end *time.Time) string {
		if end == nil {
			return v1.PhaseRunning
		}
		return v1.PhaseDone
	}
	if a.Crossed != nil {
		fired := a.Fired
		out = append(out, v1.Phase{Name: "decision", Subject: a.Policy, Start: *a.Crossed, End: &fired, Outcome: v1.PhaseDone})
	}
	act := v1.Phase{Name: "action", Subject: a.Policy, Start: a.Fired, End: a.Done, Outcome: running(a.Done), Message: a.Message}
	if a.Done != nil && a.Outcome != v1.PhaseDone {
		act.Outcome = v1.PhaseFailed
	}
	out = append(out, act)
	if a.PostDeployed != nil && a.Done != nil {
		out = append(out, v1.Phase{Name: "post-deployment", Subject: a.Policy, Start: *a.Done, End: a.PostDeployed, Outcome: v1.PhaseDone})
	}
	out = append(out, a.Phases...) // failed or skipped post-deployments
	if a.Outcome == v1.PhaseDone {
		start := a.Fired
		if a.Crossed != nil {
			start = *a.Crossed
		}
		out = append(out, v1.Phase{Name: "reaction", Subject: a.Policy, Start: start, End: a.Done, Outcome: v1.PhaseDone})
	}
	for i := range out {
		out[i] = finishPhase(out[i], now)
	}
	a.Phases = out
	return a
}
