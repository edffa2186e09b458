// Package service is the service orchestrator: it deploys a tenant's service onto a
// created slice. A service document (deploy_service, spec.ParseService) says what to run
// on which VDU or node of which part — commands, Kubernetes manifests — and which
// elasticity policies watch the parts. The orchestrator
//
//   - finds the slice (by its platform id, or by the id the tenant's spec gave it) among
//     the tenant's own slices, and requires it Ready;
//   - substitutes the references to the created slice (${parts.core-dc.vdus.core_vm.ip},
//     ${parts.dc-slice1.vim-ref.ip-api}, docs/service-references.md) and checks that every
//     part and VDU the document names exists; any problem is reported, all at once,
//     before anything runs;
//   - registers the document's elasticity policies (store.Policy, Source "service:<id>");
//   - hands each part's work to the Deployer of the part's provider (the provider's
//     dc.deployer plugin, else its VIM plugin: Kubernetes manifests and Jobs, commands over
//     SSH), all parts in parallel, and records the progress — per part, node and step,
//     with each step's output — in the store as it goes, with an event per step.
//
// # Service ids
//
// A service is named within its slice. The tenant may name it (Request.ID, ?name= on the
// API, --name on the CLI); otherwise its id is derived from the document: "svc-" and the
// first 12 hex digits of the SHA-256 of the parsed document (its parts, VDUs, commands,
// manifests and policies, before references are substituted). So posting the same file
// again — however it is indented — re-deploys the same service, running its steps again,
// while a changed file is another service beside it. Re-deploying is safe as far as the
// platform goes: manifests are applied again, commands run again, and whether running a
// command twice is harmless is the command's business, as in the original NECOS.
package service

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// Event types the orchestrator records on the slice.
const (
	EvDeploying = "service.deploying"
	EvStep      = "service.step"
	EvDeployed  = "service.deployed"
	// EvApplied ends a deployment whose steps all ran while some workloads were not ready;
	// service.deployed (or service.failed) follows when a read finds them ready (or
	// unable to start).
	EvApplied     = "service.applied"
	EvFailed      = "service.failed"
	EvUndeploying = "service.undeploying"
	EvUndeployed  = "service.undeployed"
)

// Errors callers act on (the API maps them to HTTP statuses). Problems of the document
// itself are a *spec.Error.
var (
	// ErrNotFound: no such service on the slice.
	ErrNotFound = errors.New("service not found")
	// ErrSliceNotReady: the slice is not (or no longer) Ready.
	ErrSliceNotReady = errors.New("slice is not ready")
	// ErrBusy: the service is being deployed or undeployed right now.
	ErrBusy = errors.New("service is being deployed or undeployed")
	// ErrNoDeployer: a part's provider cannot deploy services.
	ErrNoDeployer = errors.New("no deployer for the part")
)

// Record is a service as the store keeps it.
type Record = store.Service

// Slices is what the orchestrator needs of the slice engine (*sro.Engine has it).
type Slices interface {
	// Get returns a tenant's slice (tenant "": any), or an error wrapping sro.ErrNotFound.
	Get(ctx context.Context, tenant, id string) (*sro.View, error)
	// GetByName returns a tenant's slice by the id its spec gave it.
	GetByName(ctx context.Context, tenant, name string) (*sro.View, error)
	// Status is what was created of the slice, as references see it.
	Status(v *sro.View) spec.Status
}

// Deployers hands out the deployer of a provider's parts (*providers.Registry has it).
type Deployers interface {
	Deployer(ctx context.Context, provider string) (sdk.Deployer, error)
}

// Options configure an Orchestrator.
type Options struct {
	Store     *store.Store
	Slices    Slices
	Deployers Deployers
	Logger    hclog.Logger
	// StepTimeout bounds each step; zero leaves it to each deployer (5 minutes for the
	// plugins of this project).
	StepTimeout time.Duration
	// PartTimeout bounds the deployment of one part; default 1 hour.
	PartTimeout time.Duration
	// PollInterval is how often a part's progress is read while it deploys; default
	// 500 ms.
	PollInterval time.Duration
	// OutputBudget bounds the step output kept in one service record (stdout and stderr
	// of every step together, each step keeping the end of its output); default 256 KiB.
	// The store's records must stay well below etcd's request size limit.
	OutputBudget int
}

// Orchestrator deploys services onto slices. It is safe for concurrent use.
type Orchestrator struct {
	opts  Options
	store *store.Store
	log   hclog.Logger

	ctx    context.Context // lives until Close: deployments outlive the requests that start them
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]*inflight // by slice/service
	closed  bool

	// ended, when set (by tests), runs once a deployment's end is recorded and before
	// those waiting for it are woken.
	ended func(sliceID, id string)
}

// inflight is a deployment or undeployment this process is running.
type inflight struct {
	cancel context.CancelFunc
	done   chan struct{}
	// ended is the record as the deployment's end left it, set before done is closed
	// (nil when it could not be recorded): what a waiting Start answers, since by the
	// time it reads the store again another deployment (one that elasticity starts on
	// the service's parts) may have begun.
	ended *store.Service
}

// New returns an orchestrator. Close it to stop the deployments it runs.
func New(opts Options) *Orchestrator {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.PartTimeout <= 0 {
		opts.PartTimeout = time.Hour
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	if opts.OutputBudget <= 0 {
		opts.OutputBudget = 256 << 10
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Orchestrator{opts: opts, store: opts.Store, log: opts.Logger, ctx: ctx, cancel: cancel,
		running: map[string]*inflight{}}
}

// Run returns when ctx ends, having closed the orchestrator (Close): a component of the
// daemon's manager.
func (o *Orchestrator) Run(ctx context.Context) error {
	<-ctx.Done()
	o.Close()
	return nil
}

// Close stops the deployments in progress (their records say they were interrupted) and
// waits for them.
func (o *Orchestrator) Close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.cancel()
	o.wg.Wait()
}

// Request asks for a service to be deployed.
type Request struct {
	// Tenant owns the slice; only the slice's own tenant may deploy onto it.
	Tenant string
	// SliceID is the slice's platform id; empty means the slice the document's
	// slices.sliced.id names (the id its spec gave it, or its platform id).
	SliceID string
	// Doc is the service document (YAML or JSON of the same shape).
	Doc []byte
	// ID names the service; empty derives it from the document (see the package doc).
	ID string
	// Wait returns once every part is done or failed; otherwise Start returns as soon
	// as the deployment has begun.
	Wait bool
}

// Deploy deploys a service document onto a tenant's slice (sliceID "": the slice the
// document names) and returns once every part is done or failed. A step that fails is
// reported in the record (state Failed), not as an error; errors are for requests that
// cannot run: a bad document or reference (*spec.Error), an unknown slice
// (sro.ErrNotFound), a slice not Ready, a part without a deployer.
func (o *Orchestrator) Deploy(ctx context.Context, tenant, sliceID string, doc []byte) (*Record, error) {
	return o.Start(ctx, Request{Tenant: tenant, SliceID: sliceID, Doc: doc, Wait: true})
}

// Start deploys a service as Deploy does; without req.Wait it returns the record as
// soon as the deployment has begun (state Deploying), and the work goes on in the
// background, also when ctx ends.
func (o *Orchestrator) Start(ctx context.Context, req Request) (*Record, error) {
	svc, err := spec.ParseService(req.Doc)
	if err != nil {
		return nil, err
	}
	v, err := o.findSlice(ctx, req.Tenant, req.SliceID, svc.SliceID)
	if err != nil {
		return nil, err
	}
	id := req.ID
	if id == "" {
		id = DeriveID(svc)
	} else if err := checkID(id); err != nil {
		return nil, err
	}
	p, err := o.plan(ctx, v, svc, id, true)
	if err != nil {
		return nil, err
	}
	p.doc, p.tenant = string(req.Doc), v.Slice.Tenant
	return o.launch(ctx, p, req.Wait)
}

// findSlice finds the tenant's slice by platform id, or (sliceID "") by the id the
// document names, and checks that it is Ready.
func (o *Orchestrator) findSlice(ctx context.Context, tenant, sliceID, docSlice string) (*sro.View, error) {
	var v *sro.View
	var err error
	if sliceID != "" {
		v, err = o.opts.Slices.Get(ctx, tenant, sliceID)
		if err != nil {
			return nil, err
		}
		if docSlice != v.Slice.Name && docSlice != v.Slice.ID {
			return nil, &spec.Error{Problems: []spec.FieldError{{Path: "slices.sliced.id",
				Message: fmt.Sprintf("the document is for slice %q, but it is deployed onto slice %s (%s)", docSlice, v.Slice.ID, v.Slice.Name)}}}
		}
	} else {
		v, err = o.opts.Slices.GetByName(ctx, tenant, docSlice)
		if errors.Is(err, sro.ErrNotFound) {
			v, err = o.opts.Slices.Get(ctx, tenant, docSlice)
		}
		if err != nil {
			return nil, err
		}
	}
	if v.Slice.State != store.SliceReady || v.Slice.Deleting {
		state := string(v.Slice.State)
		if v.Slice.Deleting {
			state = "being decommissioned"
		}
		return nil, fmt.Errorf("slice %s is %s: %w", v.Slice.ID, state, ErrSliceNotReady)
	}
	return v, nil
}

// idRE is a service id: one path segment of the API and of store keys.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func checkID(id string) error {
	if !idRE.MatchString(id) {
		return &spec.Error{Problems: []spec.FieldError{{Path: "name",
			Message: fmt.Sprintf("a service name is 1-63 letters, digits, '.', '-' or '_', starting with a letter or digit; got %q", id)}}}
	}
	return nil
}

// Get returns a service of a tenant's slice. An Applied service's workloads are
// evaluated again first (recheck.go), so that it reads Deployed once they are ready.
func (o *Orchestrator) Get(ctx context.Context, tenant, sliceID, id string) (*Record, error) {
	v, err := o.opts.Slices.Get(ctx, tenant, sliceID)
	if err != nil {
		return nil, err
	}
	rec, err := o.store.GetService(ctx, sliceID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("service %s of slice %s: %w", id, sliceID, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return o.recheck(ctx, v, rec), nil
}

// List returns the services of a tenant's slice, by id, Applied ones evaluated again as
// by Get.
func (o *Orchestrator) List(ctx context.Context, tenant, sliceID string) ([]*Record, error) {
	v, err := o.opts.Slices.Get(ctx, tenant, sliceID)
	if err != nil {
		return nil, err
	}
	recs, err := o.store.ListServices(ctx, sliceID)
	if err != nil {
		return nil, err
	}
	for i, rec := range recs {
		recs[i] = o.recheck(ctx, v, rec)
	}
	return recs, nil
}

// Wait waits until the service's deployment has ended and returns its record.
func (o *Orchestrator) Wait(ctx context.Context, sliceID, id string) (*Record, error) {
	o.mu.Lock()
	in := o.running[key(sliceID, id)]
	o.mu.Unlock()
	if in != nil {
		select {
		case <-in.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	rec, err := o.store.GetService(ctx, sliceID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("service %s of slice %s: %w", id, sliceID, ErrNotFound)
	}
	return rec, err
}

func key(sliceID, id string) string { return sliceID + "/" + id }

// claim registers a deployment or undeployment of the service, or returns ErrBusy when
// one is in progress here.
func (o *Orchestrator) claim(sliceID, id string) (*inflight, context.Context, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, nil, errors.New("service orchestrator is closed")
	}
	if _, busy := o.running[key(sliceID, id)]; busy {
		return nil, nil, fmt.Errorf("service %s of slice %s: %w", id, sliceID, ErrBusy)
	}
	ctx, cancel := context.WithCancel(o.ctx)
	in := &inflight{cancel: cancel, done: make(chan struct{})}
	o.running[key(sliceID, id)] = in
	o.wg.Add(1)
	return in, ctx, nil
}

func (o *Orchestrator) release(sliceID, id string, in *inflight) {
	o.mu.Lock()
	if o.running[key(sliceID, id)] == in {
		delete(o.running, key(sliceID, id))
	}
	o.mu.Unlock()
	in.cancel()
	close(in.done)
	o.wg.Done()
}

// Undeploy removes a service from a tenant's slice: a deployment in progress is stopped,
// every part's deployer removes what it applied (Kubernetes objects; commands that ran
// cannot be undone), the service's policies are unregistered and the record deleted.
func (o *Orchestrator) Undeploy(ctx context.Context, tenant, sliceID, id string) error {
	v, err := o.opts.Slices.Get(ctx, tenant, sliceID)
	if err != nil {
		return err
	}
	rec, err := o.store.GetService(ctx, sliceID, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("service %s of slice %s: %w", id, sliceID, ErrNotFound)
	}
	if err != nil {
		return err
	}
	// Stop a deployment of it that runs here, then take the service over.
	o.mu.Lock()
	if in := o.running[key(sliceID, id)]; in != nil {
		in.cancel()
		o.mu.Unlock()
		select {
		case <-in.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	} else {
		o.mu.Unlock()
	}
	in, _, err := o.claim(sliceID, id)
	if err != nil {
		return err
	}
	defer o.release(sliceID, id, in)
	if _, err := o.store.UpdateService(ctx, sliceID, id, func(s *store.Service) ([]store.Event, error) {
		s.State, s.Message = store.ServiceUndeploying, ""
		return []store.Event{{Type: EvUndeploying, Message: "service " + id, Data: map[string]string{"service": id}}}, nil
	}); err != nil {
		return err
	}
	var problems []string
	for _, sp := range rec.Parts {
		part, ok := v.Part(sp.Name)
		if !ok || part.Observed == nil {
			continue // the part is gone, and what ran on it with it
		}
		dep, err := o.opts.Deployers.Deployer(ctx, part.Provider)
		if err == nil {
			err = dep.Undeploy(ctx, sdk.UndeployRequest{ServiceID: id, Part: *part.Observed})
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("part %s: %v", sp.Name, err))
		}
	}
	if len(problems) > 0 {
		msg := fmt.Sprintf("undeploy: %s", joinSemi(problems))
		_, _ = o.store.UpdateService(ctx, sliceID, id, func(s *store.Service) ([]store.Event, error) {
			s.Message = msg
			return nil, nil
		})
		return fmt.Errorf("service %s of slice %s: %s", id, sliceID, msg)
	}
	if err := o.unregisterPolicies(ctx, sliceID, id, nil); err != nil {
		return err
	}
	if err := o.store.DeleteService(ctx, sliceID, id, store.Event{Type: EvUndeployed, Message: "service " + id,
		Data: map[string]string{"service": id}}); err != nil {
		return err
	}
	o.log.Info("service undeployed", "slice", sliceID, "service", id)
	return nil
}
