// Package elastic is the elasticity engine: it evaluates the elasticity policies of
// every slice on the metrics the Monitor plugin holds and grows slices when a policy
// fires — vertically (more vCPUs or memory for a node, one more node in a part) or, when
// the provider has no room, horizontally (a copy of a part at another provider, linked
// in) — or, for a scale-in policy, shrinks them back, then hands the service's
// post-deployment to a PostDeployer.
//
// # Policies
//
// Policies live in the store (store.PutPolicy): registered through the API
// (/v1/slices/{id}/policies, see Install) or from a service's elasticity sections. The
// Engine re-reads them every Options.Resync and runs one evaluator per policy; a policy
// deleted, or gone with its slice's decommission, stops its evaluator, and an evaluator
// re-checks its policy and slice before it fires.
//
// # When a policy fires
//
// Every granularity (metric-collector.granularity; "default" is the part's
// monitoring-parameters granularity-secs, else Options.DefaultGranularity) the evaluator
// reads the policy's metric for the part's nodes of node-type (points carry the tags
// slice, part, node-type, ResourceID) and judges each series — a node's points from one
// source: the collector's, or those a probe pushed — on its own, as the original judged
// each node: with trigger points: N, the last N points must all satisfy
// "value <operator> threshold"; with time-window: W, every point of the last W seconds
// (at least one). Two rules keep old data from firing: only points newer than the last
// action of the policy count (they show the slice as it is now), and with points: N only
// points of the last (N+2) granularities.
//
// A policy that fires while its previous action still runs is skipped ("busy"), and so
// is one that fires within its cooldown after an action (timers.reactivate-elasticity,
// else Options.DefaultCooldown) — each skip recorded once. The cooldown and the last
// action are read back from the slice's events when an evaluator starts, so that a
// restarted necosd keeps them.
//
// # What it does
//
// The vertical actions are tried in order (spec.Policy.VerticalActions): add-node
// scales the action's VDU by its step (sro.Engine.ScalePart), add-cpu and add-memory grow
// the node the policy fired on when it is a node of the action's VDU, else every node of
// the VDU (sro.Engine.ResizePart); an action at its limit (spec.Policy.Limit), refused
// by the backend as beyond what a node can have, or refused because the part's new price
// breaks the slice's budget (broker.ErrOverBudget), passes to the next, its refusal an
// elastic.action-failed event. When the provider
// has no room (sro.IsProviderFull) or no vertical action is left, the horizontal actions
// are tried (spec.Policy.HorizontalActions): add-part copies the template part to the
// action's location through sro.Engine.AddPart, which links it to the core. After a
// successful action the PostDeployer runs the policy's post-deployment, after
// timers.service-redeployment seconds.
//
// # Scale-in
//
// A policy whose actions are remove-node, remove-cpu, remove-memory and remove-part
// (spec.Policy.ScalesIn) shrinks what growth added, newest first: its horizontal
// actions first — remove-part removes the newest Ready copy of its template that
// add-part made ("<template>-h<n>", sro.Engine.RemovePart), never a part of the tenant's
// spec — then its vertical actions in order: remove-node scales the VDU down by its step
// (sro.Engine.ScalePart), remove-cpu and remove-memory shrink the first node the policy
// fired on that is above its floor, or every node of the VDU when it fired on none of
// its nodes (sro.Engine.ResizePart). No step goes below its floor (spec.Policy.Floor:
// the action's min, deployment.constraints.vertical's min-*, and what the tenant's spec
// gave the VDU — for a copy, its template). One step per firing; a step the backend
// refuses (sdk.CodeFailedPrecondition: a Kubernetes part whose workloads use more than
// the smaller size) passes to the next. A shrink is never refused for the budget. A
// scale-in policy whose every action is at its floor does nothing and records one
// elastic.skipped (reason "floor") until it acts again: no elastic.fired, no
// elastic.exhausted, no cooldown. After a step the PostDeployer, when it is a
// ScaleInDeployer, has the services' records forget the removed part or nodes and runs
// the post-deployment's commands; nothing is redeployed.
//
// Every decision is an event of the slice (/v1/slices/{id}/events): elastic.armed,
// elastic.fired (why: the series and its values), elastic.skipped (cooldown, busy,
// floor), elastic.action-started, elastic.action-finished, elastic.action-failed,
// elastic.horizontal-fallback, elastic.exhausted, elastic.post-deployed,
// elastic.post-deploy-skipped, elastic.post-deploy-failed, elastic.disarmed.
//
// # Wiring (necosd)
//
//	el := elastic.New(elastic.Options{Store: st, Engine: engine, Monitor: registry,
//		PostDeployer: orchestrator, IsLeader: engine.IsLeader, Logger: log.Named("elastic")})
//	go el.Run(ctx)
//
// with engine the *sro.Engine, registry the *providers.Registry and orchestrator the
// *service.Orchestrator. The API serves the policies through api.PolicyRoutes;
// docs/monitoring.md shows the whole wiring.
package elastic

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Event types the engine records.
const (
	EvArmed              = "elastic.armed"
	EvDisarmed           = "elastic.disarmed"
	EvFired              = "elastic.fired"
	EvSkipped            = "elastic.skipped"
	EvActionStarted      = "elastic.action-started"
	EvActionFinished     = "elastic.action-finished"
	EvActionFailed       = "elastic.action-failed"
	EvHorizontalFallback = "elastic.horizontal-fallback"
	EvExhausted          = "elastic.exhausted"
	EvPostDeployed       = "elastic.post-deployed"
	EvPostDeploySkipped  = "elastic.post-deploy-skipped"
	EvPostDeployFailed   = "elastic.post-deploy-failed"
)

// DataCrossed is the key of an elastic.fired event's data that holds when the threshold
// was crossed (RFC 3339): the time of the first point that satisfied the trigger, so that
// the reaction time can be read from the events.
const DataCrossed = "crossed"

// Defaults of Options.
const (
	DefaultGranularity   = 10 * time.Second
	DefaultResync        = 2 * time.Second
	DefaultActionTimeout = 10 * time.Minute
)

// Actuator is what the engine grows (and shrinks) slices through; *sro.Engine is one.
type Actuator interface {
	Get(ctx context.Context, tenant, id string) (*sro.View, error)
	ResizePart(ctx context.Context, sliceID, part, vdu, node string, cpus int, memMB int64) error
	ScalePart(ctx context.Context, sliceID, part, vdu string, instances int) error
	AddPart(ctx context.Context, sliceID, template string, opts sro.AddPartOptions) (*store.Part, error)
	RemovePart(ctx context.Context, sliceID, part string) error
}

// MonitorSource gives the Monitor plugin's client, nil when there is none;
// *providers.Registry is one.
type MonitorSource interface {
	Monitor(ctx context.Context) (sdk.Monitor, error)
}

// PostDeployer runs a policy's post-deployment once its action is done: its commands on
// post-deployment.node, typically to bring the service onto the new capacity. part is
// the part the action grew or, for add-part, the new part. The service orchestrator
// (*service.Orchestrator) implements it; the engine calls it after
// timers.service-redeployment seconds, bounded by Options.ActionTimeout, and records
// its outcome as an event.
type PostDeployer interface {
	PostDeploy(ctx context.Context, sliceID, part string, pd spec.PostDeployment) error
}

// Options configure an Engine.
type Options struct {
	Store   *store.Store
	Engine  Actuator
	Monitor MonitorSource
	// PostDeployer runs post-deployments; nil skips them (with an event saying so).
	PostDeployer PostDeployer
	Logger       hclog.Logger
	// IsLeader says whether this necosd acts (sro.Engine.IsLeader); nil means always.
	// Evaluators run only while it says so.
	IsLeader func() bool
	// DefaultGranularity is the evaluation period of a policy whose granularity is
	// "default" on a part without granularity-secs; DefaultGranularity when 0.
	DefaultGranularity time.Duration
	// DefaultCooldown is the rest after an action of a policy without
	// timers.reactivate-elasticity; spec.DefaultCooldown when 0.
	DefaultCooldown time.Duration
	// Resync is how often policies are re-read from the store; DefaultResync when 0.
	Resync time.Duration
	// ActionTimeout bounds an action and its post-deployment; DefaultActionTimeout when 0.
	ActionTimeout time.Duration
}

// Engine evaluates every slice's policies and acts on them. Run it with Run.
type Engine struct {
	opts Options
	log  hclog.Logger

	mu      sync.Mutex
	evals   map[string]*evaluator // by slice/policy
	acts    sync.WaitGroup
	rootCtx context.Context // Run's: actions end with it
}

// New returns an engine; Run starts it.
func New(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.DefaultGranularity <= 0 {
		opts.DefaultGranularity = DefaultGranularity
	}
	if opts.DefaultCooldown <= 0 {
		opts.DefaultCooldown = spec.DefaultCooldown
	}
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	if opts.ActionTimeout <= 0 {
		opts.ActionTimeout = DefaultActionTimeout
	}
	return &Engine{opts: opts, log: opts.Logger, evals: map[string]*evaluator{}}
}

// Run evaluates policies until ctx ends, then stops every evaluator and waits for the
// actions under way (they end with ctx).
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	e.rootCtx = ctx
	e.mu.Unlock()
	t := time.NewTicker(e.opts.Resync)
	defer t.Stop()
	for {
		e.sync(ctx)
		select {
		case <-ctx.Done():
			e.stopAll(false)
			e.acts.Wait()
			return nil
		case <-t.C:
		}
	}
}

// Policies lists the policies being evaluated, as "slice/name", sorted.
func (e *Engine) Policies() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.evals))
	for k := range e.evals {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// root is the context actions run under: Run's.
func (e *Engine) root() context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rootCtx == nil {
		return context.Background()
	}
	return e.rootCtx
}

func policyKey(slice, name string) string { return slice + "/" + name }

// sync starts an evaluator for every policy of the store, restarts those whose policy
// changed and stops those whose policy is gone.
func (e *Engine) sync(ctx context.Context) {
	if e.opts.IsLeader != nil && !e.opts.IsLeader() {
		e.stopAll(false)
		return
	}
	lctx, cancel := context.WithTimeout(ctx, e.opts.Resync+10*time.Second)
	pols, err := e.opts.Store.ListPolicies(lctx, "")
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("list policies", "error", err)
		}
		return
	}
	want := make(map[string]*store.Policy, len(pols))
	for _, p := range pols {
		want[policyKey(p.SliceID, p.Name)] = p
	}
	e.mu.Lock()
	var stop []*evaluator
	for k, ev := range e.evals {
		if p, ok := want[k]; !ok || p.Rev != ev.pol.Rev {
			stop = append(stop, ev)
			delete(e.evals, k)
			ev.removed = !ok
		}
	}
	var start []*evaluator
	for k, p := range want {
		if _, ok := e.evals[k]; !ok && ctx.Err() == nil {
			ev := newEvaluator(e, p)
			e.evals[k] = ev
			start = append(start, ev)
		}
	}
	e.mu.Unlock()
	for _, ev := range stop {
		ev.stop()
	}
	for _, ev := range start {
		ev.start(ctx)
	}
}

// Measured tells the engine that new points of these slices are stored: their policies
// are judged at once rather than at their next period. The collector calls it after
// each round (monitoring.Options.OnStored); it never blocks.
func (e *Engine) Measured(sliceIDs ...string) {
	if len(sliceIDs) == 0 {
		return
	}
	ids := make(map[string]struct{}, len(sliceIDs))
	for _, id := range sliceIDs {
		ids[id] = struct{}{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evals {
		if _, ok := ids[ev.pol.SliceID]; ok {
			ev.nudge()
		}
	}
}

func (e *Engine) stopAll(removed bool) {
	e.mu.Lock()
	evs := make([]*evaluator, 0, len(e.evals))
	for k, ev := range e.evals {
		ev.removed = removed
		evs = append(evs, ev)
		delete(e.evals, k)
	}
	e.mu.Unlock()
	for _, ev := range evs {
		ev.stop()
	}
}

// event records events of a slice, logging a failure: a decision must not wait on its
// note.
func (e *Engine) event(ctx context.Context, sliceID string, evs ...store.Event) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.opts.Store.AddEvents(cctx, sliceID, evs...); err != nil {
		e.log.Warn("record elasticity event", "slice", sliceID, "error", err)
	}
}

func (e *Engine) monitor(ctx context.Context) (sdk.Monitor, error) {
	if e.opts.Monitor == nil {
		return nil, providers.ErrNoMonitor
	}
	m, err := e.opts.Monitor.Monitor(ctx)
	if err != nil {
		return nil, fmt.Errorf("monitor plugin: %w", err)
	}
	if m == nil {
		return nil, providers.ErrNoMonitor
	}
	return m, nil
}
