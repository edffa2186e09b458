package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/sdk"
)

// stableUptime is how long a plugin process must have run for its death to count as a
// fresh failure: the backoff restarts from zero then, so a plugin that crashes once a
// day is relaunched at once every time, while a crash loop is slowed down.
const stableUptime = time.Minute

// pingTimeout bounds the ping that tells a dead plugin from an application error. A
// plugin too busy to answer in time is taken as alive: killing it would lose its work.
const pingTimeout = 2 * time.Second

// State is an instance's state in [Status].
type State string

// Instance states.
const (
	// StateRunning: the plugin process runs.
	StateRunning State = "running"
	// StateExited: the process is gone; it is relaunched at the next call.
	StateExited State = "exited"
	// StateFailed: the last relaunch failed; the next one is tried at the next call
	// after Status.NextRestart.
	StateFailed State = "failed"
	// StateStopped: the instance was stopped (or its host closed).
	StateStopped State = "stopped"
	// StateRefused: the host did not start the instance (an unlisted or tampered
	// binary, no common API version, a configuration the plugin refused...); LastError
	// says why. No process runs; a later Start of the same name may succeed.
	StateRefused State = "refused"
)

// Status is a snapshot of an instance, for listings.
type Status struct {
	Name     string `json:"name"`
	Plugin   string `json:"plugin"`
	Provider string `json:"provider"`
	Location string `json:"location,omitempty"`
	// Version, APIVersion and Kinds are what the plugin said at its last launch.
	Version    string     `json:"version"`
	APIVersion string     `json:"api_version"`
	Kinds      []sdk.Kind `json:"kinds"`
	// Path is the executable; SHA256 the lock's hash it was verified against.
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// Pid is the running process's id, 0 when none runs.
	Pid int `json:"pid,omitempty"`
	// Started is when the current (or last) process was launched.
	Started time.Time `json:"started"`
	// Restarts counts successful relaunches since Start.
	Restarts int   `json:"restarts"`
	State    State `json:"state"`
	// NextRestart is the earliest time of the next relaunch attempt, when waiting.
	NextRestart time.Time `json:"next_restart,omitzero"`
	// LastError is why the process last died or failed to relaunch.
	LastError string `json:"last_error,omitempty"`
}

// proc is one plugin process of an instance. It never changes once built: a relaunch
// makes a new one.
type proc struct {
	client     *sdk.Client
	info       sdk.Info
	apiVersion string
	sha256     string
	pid        int
	started    time.Time
	gen        uint64

	vim sdk.VIM
	dep sdk.Deployer
	wan sdk.WAN
	mon sdk.Monitor
}

// Instance is one running plugin instance: a plugin binary serving one provider with one
// configuration. Its methods are safe for concurrent use.
type Instance struct {
	host  *Host
	cfg   InstanceConfig
	log   hclog.Logger
	label string // names the instance in errors

	cur atomic.Pointer[proc] // nil when no process runs

	// relaunching serializes relaunches. It is a channel, not a mutex, so that a call
	// waiting for another's relaunch still honours its context.
	relaunching chan struct{}
	// done is closed when the instance is stopped.
	done chan struct{}

	mu          sync.Mutex // guards the fields below
	last        *proc      // the latest process, kept for Status after it died
	gen         uint64
	restarts    int
	lastErr     error
	nextTry     time.Time
	gaveUp      bool
	failing     bool // the last relaunch failed
	stopped     bool
	bo          backoff.BackOff
	unflushedAt uint64 // generation of the first unflushed Monitor.Write, 0 when none
}

func newInstance(h *Host, cfg InstanceConfig) *Instance {
	return &Instance{
		host:        h,
		cfg:         cfg,
		log:         h.log.Named("plugin").Named(cfg.Name),
		label:       fmt.Sprintf("plugin instance %q (%s)", cfg.Name, cfg.Plugin),
		relaunching: make(chan struct{}, 1),
		done:        make(chan struct{}),
		bo:          h.newBackOff(),
	}
}

// Name returns the instance's name.
func (in *Instance) Name() string { return in.cfg.Name }

// Plugin returns the instance's plugin name.
func (in *Instance) Plugin() string { return in.cfg.Plugin }

// Info returns what the plugin said of itself at its last launch.
func (in *Instance) Info() sdk.Info {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.last == nil {
		return sdk.Info{}
	}
	return in.last.info
}

// Status returns a snapshot of the instance.
func (in *Instance) Status() Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := Status{
		Name:     in.cfg.Name,
		Plugin:   in.cfg.Plugin,
		Provider: in.cfg.Provider.Name,
		Location: in.cfg.Provider.Location,
		Path:     in.host.binaryPath(in.cfg.Plugin),
		Restarts: in.restarts,
	}
	if in.lastErr != nil {
		s.LastError = in.lastErr.Error()
	}
	if p := in.last; p != nil {
		s.Version, s.APIVersion, s.SHA256, s.Started = p.info.Version, p.apiVersion, p.sha256, p.started
		s.Kinds = append([]sdk.Kind(nil), p.info.Kinds...)
	}
	p := in.cur.Load()
	switch {
	case in.stopped:
		s.State = StateStopped
	case p != nil && !p.client.Exited():
		s.State, s.Pid = StateRunning, p.pid
	case in.gaveUp || in.failing:
		s.State = StateFailed
	default:
		s.State = StateExited
	}
	if s.State != StateRunning && s.State != StateStopped && !in.gaveUp && time.Now().Before(in.nextTry) {
		s.NextRestart = in.nextTry
	}
	return s
}

// launch starts, verifies and configures one process for in.
func (h *Host) launch(ctx context.Context, in *Instance) (*proc, error) {
	cfg := in.cfg
	wantHex, err := h.lockedHash(cfg.Plugin)
	if err != nil {
		return nil, err
	}
	path := h.binaryPath(cfg.Plugin)
	// Plugins log at the host's level: raising it reaches into them, and a host that
	// discards logs (hclog's null logger has NoLevel) spares them the work.
	lvl := in.log.GetLevel()
	if lvl == hclog.NoLevel {
		lvl = hclog.Off
	}
	env := []string{sdk.EnvLogLevel + "=" + lvl.String()}
	start := time.Now()
	// The binary is hashed when it changed since it last matched the lock (see
	// verifiedBinaries), not at every launch.
	got, err := h.verified.check(path, wantHex)
	if errors.Is(err, errHashMismatch) {
		return nil, h.mismatchError(path, got, wantHex)
	}
	if err != nil {
		return nil, fmt.Errorf("plugin %s: verify %s: %w", cfg.Plugin, path, err)
	}
	c, err := sdk.Launch(ctx, sdk.LaunchConfig{
		Path:         path,
		Env:          env,
		Logger:       in.log,
		StartTimeout: h.opts.StartTimeout,
		Dir:          cfg.Dir,
	})
	if err != nil {
		return nil, err
	}
	p, err := newProc(ctx, c, cfg)
	if err != nil {
		c.Kill()
		return nil, err
	}
	p.sha256, p.started = wantHex, start
	in.mu.Lock()
	in.gen++
	p.gen = in.gen
	in.last = p
	in.mu.Unlock()
	in.log.Debug("plugin launched", "pid", p.pid, "took", time.Since(start))
	return p, nil
}

// newProc configures a launched plugin and dispenses the clients of its kinds once, so
// calls do not pay for it.
func newProc(ctx context.Context, c *sdk.Client, cfg InstanceConfig) (*proc, error) {
	version, err := c.Configure(ctx, cfg.Provider, cfg.Config)
	if err != nil {
		return nil, err
	}
	p := &proc{client: c, info: c.Info(), apiVersion: version, pid: c.Pid()}
	for _, k := range p.info.Kinds {
		switch k {
		case sdk.KindVIM:
			p.vim, err = c.VIM()
		case sdk.KindDeployer:
			p.dep, err = c.Deployer()
		case sdk.KindWAN:
			p.wan, err = c.WAN()
		case sdk.KindMonitor:
			p.mon, err = c.Monitor()
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// current returns the live process, relaunching it if it has exited.
func (in *Instance) current(ctx context.Context) (*proc, error) {
	p := in.cur.Load()
	if p != nil && !p.client.Exited() {
		return p, nil
	}
	return in.relaunch(ctx, p, nil)
}

// relaunch replaces the dead process (nil when none runs) by a new one, unless another
// call did it already. cause is why the caller thinks it is dead, for the logs.
func (in *Instance) relaunch(ctx context.Context, dead *proc, cause error) (*proc, error) {
	select {
	case in.relaunching <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: wait for relaunch: %w", in.label, ctx.Err())
	}
	defer func() { <-in.relaunching }()

	if p := in.cur.Load(); p != nil && p != dead && !p.client.Exited() {
		return p, nil // relaunched by another call meanwhile
	}
	if dead != nil && in.cur.CompareAndSwap(dead, nil) {
		if cause == nil {
			cause = errors.New("plugin process exited")
		}
		in.log.Warn("plugin process died", "pid", dead.pid, "uptime", time.Since(dead.started), "cause", cause)
		// Kill reaps the process and frees go-plugin's resources; if only the transport
		// broke, it also ends a process that no longer serves us.
		dead.client.Kill()
		in.mu.Lock()
		in.lastErr = cause
		if time.Since(dead.started) >= stableUptime {
			in.bo.Reset()
			in.nextTry = time.Time{}
		}
		in.mu.Unlock()
	}

	if err := in.awaitRelaunch(ctx); err != nil {
		return nil, err
	}

	in.log.Info("relaunching plugin")
	// The new process serves every caller, not only this one: a caller giving up must
	// not abort it half-way (and count a failure against the backoff).
	timeout := in.host.opts.StartTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	p, err := in.host.launch(lctx, in)
	cancel()

	in.mu.Lock()
	if d := in.bo.NextBackOff(); d == backoff.Stop {
		in.gaveUp = true
	} else {
		in.nextTry = time.Now().Add(d)
	}
	if err != nil {
		in.lastErr, in.failing = err, true
		next := in.nextTry
		in.mu.Unlock()
		in.log.Error("plugin relaunch failed", "error", err, "next_attempt", next)
		return nil, fmt.Errorf("relaunch %s: %w", in.label, err)
	}
	if in.stopped {
		in.mu.Unlock()
		// stop ran during the launch and could not see this process; it waits for
		// this relaunch, so the process is gone when stop returns.
		p.client.Kill()
		return nil, fmt.Errorf("%s: %w", in.label, ErrClosed)
	}
	in.failing = false
	in.restarts++
	restarts := in.restarts
	in.cur.Store(p)
	in.mu.Unlock()
	in.log.Info("plugin relaunched", "pid", p.pid, "restarts", restarts)
	return p, nil
}

// awaitRelaunch returns once the backoff allows a relaunch attempt. A call that can
// wait for it (its deadline is later) waits, so that a plugin crash shortly after
// another costs the call a delay, not its result; a call that cannot fails at once with
// CodeUnavailable, saying when the attempt is due. It runs holding the relaunch token.
func (in *Instance) awaitRelaunch(ctx context.Context) error {
	in.mu.Lock()
	switch {
	case in.stopped:
		in.mu.Unlock()
		return fmt.Errorf("%s: %w", in.label, ErrClosed)
	case in.gaveUp:
		err := in.lastErr
		in.mu.Unlock()
		return sdk.Errorf(sdk.CodeUnavailable, "%s is down and no longer relaunched (last error: %v)", in.label, err)
	}
	next, lastErr := in.nextTry, in.lastErr
	in.mu.Unlock()
	wait := time.Until(next)
	if wait <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && dl.Before(next) {
		return sdk.Errorf(sdk.CodeUnavailable, "%s is down; next relaunch attempt in %s, after this call's deadline (last error: %v)",
			in.label, wait.Round(time.Millisecond), lastErr)
	}
	in.log.Info("plugin down: the call waits for the next relaunch attempt", "in", wait.Round(time.Millisecond), "last_error", lastErr)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-in.done:
		return fmt.Errorf("%s: %w", in.label, ErrClosed)
	case <-ctx.Done():
		return sdk.Errorf(sdk.CodeUnavailable, "%s is down; gave up waiting for its relaunch: %v (last error: %v)",
			in.label, ctx.Err(), lastErr)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped {
		return fmt.Errorf("%s: %w", in.label, ErrClosed)
	}
	return nil
}

// stop ends the instance's process and makes every later call fail with ErrClosed. It
// returns once no process of the instance runs, a relaunch in progress included.
func (in *Instance) stop() {
	in.mu.Lock()
	if !in.stopped {
		close(in.done) // wakes a call waiting for a relaunch, which holds the token
	}
	in.stopped = true
	p := in.cur.Swap(nil)
	in.mu.Unlock()
	if p != nil {
		p.client.Kill()
		in.log.Info("plugin instance stopped", "pid", p.pid)
	}
	// A relaunch in progress holds the token; once it has it back, that relaunch has
	// seen stopped and killed what it launched.
	in.relaunching <- struct{}{}
	<-in.relaunching
}

// died tells whether a call failed because the plugin process died or its transport
// broke, as opposed to an answer of the plugin. Only transport-like codes are
// considered, and then only if the process is gone or no longer answers a ping: a
// plugin that answers CodeUnavailable on its own (its backend is down) is alive.
func (in *Instance) died(ctx context.Context, p *proc, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch sdk.CodeOf(err) {
	case sdk.CodeUnavailable, sdk.CodeCanceled:
	default:
		return false
	}
	if p.client.Exited() {
		return true
	}
	done := make(chan error, 1)
	go func() { done <- p.client.Ping() }()
	select {
	case perr := <-done:
		return perr != nil
	case <-time.After(pingTimeout):
		return false
	}
}

// call runs f on the live process; if the process dies under it, it relaunches the
// plugin and runs f once more. Errors are wrapped with the instance's name and op.
func call[T any](ctx context.Context, in *Instance, op string, f func(*proc) (T, error)) (T, error) {
	var zero T
	p, err := in.current(ctx)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", op, err)
	}
	v, err := f(p)
	if err == nil {
		return v, nil
	}
	if !in.died(ctx, p, err) {
		return zero, fmt.Errorf("%s %s: %w", in.label, op, err)
	}
	p2, rerr := in.relaunch(ctx, p, err)
	if rerr != nil {
		return zero, fmt.Errorf("%s: plugin died during the call (%v), not retried: %w", op, err, rerr)
	}
	in.log.Debug("retrying call on the relaunched plugin", "op", op, "pid", p2.pid)
	v, err = f(p2)
	if err != nil {
		return zero, fmt.Errorf("%s %s (retried after relaunch): %w", in.label, op, err)
	}
	return v, nil
}
