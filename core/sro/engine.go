// Package sro is the Slice Resource Orchestrator: it reconciles every slice in the store
// to what its tenant asked for. Level-triggered and crash-safe: each step reads the
// slice, parts and links from the store, takes the next idempotent step through the
// plugins, and records its result before the next, so a necosd killed at any point
// resumes where it was — a create ends Ready or rolled back, a decommission ends with
// nothing left at any provider, an elasticity change (an intent on a part's record, see
// change.go) ends converged or rolled back. A Ready slice is reconciled too: its parts'
// records, what their providers describe and what the ledger holds for them are
// compared at every health round, and drift is repaired through the same intents, or
// recorded on the part when it cannot be (drift.go). Reconcile has controller-runtime's
// shape: one slice at a time, an error retried with back-off, RequeueAfter for what
// waits on time (the health round of Ready slices).
package sro

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
	"k8s.io/client-go/util/workqueue"
)

// Plugins gives the engine the plugin clients of providers.
type Plugins interface {
	VIM(ctx context.Context, provider string) (sdk.VIM, error)
	WAN(ctx context.Context, provider string) (sdk.WAN, error)
}

// Listener learns when slices become Ready and when they are gone, e.g. to start and
// stop monitoring them. Calls come from reconcile workers: return quickly.
type Listener interface {
	SliceReady(v *View)
	SliceGone(sliceID string)
}

// Options configure an Engine.
type Options struct {
	Store     *store.Store
	Catalogue *providers.Catalogue
	Plugins   Plugins
	Logger    hclog.Logger
	// Workers reconcile that many slices at once; default 64.
	Workers int
	// CallTimeout bounds each plugin call; default 5 minutes.
	CallTimeout time.Duration
	// OfferPatience is how long placement keeps asking again providers that do not
	// answer (down, restarting, overloaded) before refusing the slice as unavailable
	// (event slice.unavailable); default the broker's (2 minutes).
	OfferPatience time.Duration
	// VNIMin and VNIMax bound the VXLAN identifiers given to links; default 1000–16000000.
	VNIMin, VNIMax uint32
	// Resync reconciles every slice this often, to catch anything missed; default 5 min.
	Resync time.Duration
	// HealthInterval is how often the parts of Ready and Degraded slices are described
	// at their providers, to find parts a provider lost and repair drift (they are also
	// described when the engine starts leading); default 30 s.
	HealthInterval time.Duration
	// DriftBackoffMax caps the wait between attempts to repair a part's drift that keep
	// failing: after each failure in a row the wait doubles, from HealthInterval up to
	// this; default 10 minutes.
	DriftBackoffMax time.Duration
	// Now is the engine's clock for the drift repairs' back-off; default time.Now. Tests
	// inject one to step through the back-off without waiting.
	Now func() time.Time
	// Identity names this engine in leader election; it must differ between the
	// replicas sharing a store and stay the same across restarts of one replica (a
	// restarted replica then takes over its predecessor's lead at once). Default
	// hostname/pid.
	Identity string
	// Metrics receives phase latencies; nil disables them.
	Metrics *Metrics
}

// Engine creates, watches and decommissions slices.
type Engine struct {
	opts Options
	// corrupt holds the slices whose corrupt stored spec this process recorded.
	corrupt sync.Map
	store   *store.Store
	cat     *providers.Catalogue
	broker  *broker.Broker
	log     hclog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	// drift spaces out the repairs of drift that keep failing.
	drift *driftBackoff

	mu        sync.Mutex
	listeners []Listener
	leader    bool
	announced map[string]bool    // Ready slices announced to listeners
	waiters   map[string]*waiter // callers of this process waiting for a change, by id
	failures  map[string]error   // why changes failed, until their rollback settles them

	// own are the writes a reconcile made and went on from itself (the plan, the
	// build's Ready): their watch events are not work.
	own ownWrites
}

// New returns an engine. Call Run to start reconciling.
func New(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Workers <= 0 {
		opts.Workers = 64
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 5 * time.Minute
	}
	if opts.VNIMin == 0 {
		opts.VNIMin = 1000
	}
	if opts.VNIMax == 0 {
		opts.VNIMax = 16_000_000
	}
	if opts.Resync <= 0 {
		opts.Resync = 5 * time.Minute
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 30 * time.Second
	}
	if opts.DriftBackoffMax <= 0 {
		opts.DriftBackoffMax = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Identity == "" {
		host, _ := os.Hostname()
		opts.Identity = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	e := &Engine{
		opts:   opts,
		store:  opts.Store,
		cat:    opts.Catalogue,
		broker: broker.New(opts.Catalogue, opts.Plugins, opts.Store, opts.Logger.Named("broker")),
		log:    opts.Logger,
		drift:  newDriftBackoff(opts.HealthInterval, max(opts.DriftBackoffMax, opts.HealthInterval)),
	}
	if opts.OfferPatience > 0 {
		e.broker.OfferPatience = opts.OfferPatience
	}
	e.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{})
	return e
}

// Broker returns the engine's marketplace.
func (e *Engine) Broker() *broker.Broker { return e.broker }

// Catalogue returns the providers' catalogue.
func (e *Engine) Catalogue() *providers.Catalogue { return e.cat }

// Store returns the slice database.
func (e *Engine) Store() *store.Store { return e.store }

// AddListener registers l for slice readiness and removal.
func (e *Engine) AddListener(l Listener) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.listeners = append(e.listeners, l)
}

func (e *Engine) notifyReady(v *View) {
	e.mu.Lock()
	ls := append([]Listener(nil), e.listeners...)
	e.mu.Unlock()
	for _, l := range ls {
		l.SliceReady(v)
	}
}

func (e *Engine) notifyGone(id string) {
	e.mu.Lock()
	ls := append([]Listener(nil), e.listeners...)
	e.mu.Unlock()
	for _, l := range ls {
		l.SliceGone(id)
	}
}

// IsLeader reports whether this engine currently reconciles.
func (e *Engine) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Enqueue asks for a slice to be reconciled soon (by whichever engine leads).
func (e *Engine) Enqueue(id string) { e.queue.Add(id) }

// Run reconciles slices until ctx ends. Several engines may share one store: they elect
// a leader through it and only the leader reconciles; the others wait their turn.
func (e *Engine) Run(ctx context.Context) error {
	defer e.queue.ShutDown()
	for {
		err := e.lead(ctx)
		if ctx.Err() != nil {
			return nil
		}
		e.log.Warn("lost leadership, campaigning again", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// lead campaigns for leadership, then reconciles until leadership or ctx is lost.
func (e *Engine) lead(ctx context.Context) error {
	term, err := e.store.Campaign(ctx, e.opts.Identity, 10)
	if err != nil {
		return err
	}
	if term.TookOver {
		e.log.Info("took over from this engine's previous run", "identity", e.opts.Identity)
	}
	e.log.Info("leading: reconciling slices", "identity", e.opts.Identity)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-term.Done():
			cancel()
		case <-lctx.Done():
		}
	}()
	e.setLeader(true)
	defer e.setLeader(false)

	var wg sync.WaitGroup
	work := make(chan string)
	for i := 0; i < e.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				e.process(lctx, id)
			}
		}()
	}
	// The queue outlives a leadership term; feed workers from it until this term ends.
	go func() {
		defer close(work)
		for {
			id, shutdown := e.queue.Get()
			if shutdown {
				return
			}
			if lctx.Err() != nil {
				e.queue.Done(id)
				e.queue.Add(id)
				return
			}
			select {
			case work <- id:
			case <-lctx.Done():
				e.queue.Done(id)
				e.queue.Add(id)
				return
			}
		}
	}()
	watch := e.store.WatchSlices(lctx)
	e.resyncAll(lctx)
	// Orphan holds are swept by the leader alone: two sweepers would judge the same
	// hold twice (harmless, the release is guarded) for twice the reads.
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.sweepLoop(lctx)
	}()
	ticker := time.NewTicker(e.opts.Resync)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-lctx.Done():
			break loop
		case w, ok := <-watch:
			if !ok {
				break loop
			}
			if e.own.wroteItself(w) {
				continue
			}
			e.queue.Add(w.ID)
		case <-ticker.C:
			e.resyncAll(lctx)
		}
	}
	cancel()
	// Unblock the feeder if it waits on Get: a no-op item is harmless.
	e.queue.Add("")
	wg.Wait()
	_ = term.Resign(context.Background())
	// The listeners (monitoring) follow the lead: the next leader announces the slices.
	e.forgetAll()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("leadership lost")
}

func (e *Engine) setLeader(v bool) {
	e.mu.Lock()
	e.leader = v
	e.mu.Unlock()
}

func (e *Engine) resyncAll(ctx context.Context) {
	slices, err := e.store.ListSlices(ctx, "")
	if err != nil {
		e.log.Error("resync: list slices", "error", err)
		return
	}
	for _, sl := range slices {
		e.queue.Add(sl.ID)
	}
}

func (e *Engine) process(ctx context.Context, id string) {
	defer e.queue.Done(id)
	if id == "" {
		e.queue.Forget(id)
		return
	}
	res, err := e.Reconcile(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("reconcile failed, will retry", "slice", id, "error", err)
		e.queue.AddRateLimited(id)
		return
	}
	e.queue.Forget(id)
	if res.RequeueAfter > 0 {
		e.queue.AddAfter(id, res.RequeueAfter)
	}
}

// callCtx bounds one plugin call.
func (e *Engine) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.opts.CallTimeout)
}

// sweepLoop releases orphan holds (SweepHolds) at every health interval until ctx ends.
func (e *Engine) sweepLoop(ctx context.Context) {
	t := time.NewTicker(e.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := e.SweepHolds(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("sweep orphan holds", "error", err)
		}
	}
}
