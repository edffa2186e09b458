// Package pluginhost discovers, verifies, launches and supervises necos plugins.
//
// Plugins are executables named "necos-plugin-<name>" in one directory. Nothing in it is
// run unless the lock file (default "<dir>/plugins.lock", written by [Host.Lock], i.e.
// "necosctl plugins lock") records the binary's SHA-256; the hash is checked again right
// before exec, so a binary swapped after the lock was read is refused too.
//
// The lock file is JSON, one SHA-256 (hex) per plugin name:
//
//	{
//	  "version": 1,
//	  "plugins": {
//	    "vim-xen": {"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
//	  }
//	}
//
// [Host.Discover] lists the binaries with their status against the lock.
//
// An [Instance] is one plugin binary serving one provider with one configuration; it is
// its own process, so several providers may share a binary. [Host.Start] launches it
// through [sdk.Launch] (go-plugin, gRPC, AutoMTLS), negotiates the API version,
// validates the configuration against the plugin's schema and configures it. The
// plugin's logs are re-logged through the host's hclog logger under
// "plugin.<instance>".
//
// # Health
//
// The kind clients an Instance hands out ([Instance.VIM], [Instance.Deployer],
// [Instance.WAN], [Instance.Monitor]) stay valid for the instance's life. When a call
// finds the plugin process dead (it exited, or the call failed with a transport error
// and the plugin no longer answers a ping), the process is relaunched — re-verified
// against the lock, re-configured — and the call is retried once. Every call of the SDK
// kinds is idempotent by contract, so the retry is safe; application errors (anything
// the plugin answered, even CodeUnavailable) are never retried. Relaunches are spaced by
// an exponential backoff: the first one after a healthy run is immediate, later ones
// wait. A call made while the instance waits waits for the next attempt when its
// deadline is later (a crash shortly after another delays calls, it does not fail
// them), and fails at once with CodeUnavailable, saying when, when it is not.
//
// Monitor.Write is retried like the other calls: a point is keyed by metric, tags and
// time, so storing it twice stores it once; the host stamps points that have no time
// before the first attempt so that a retry sends the very same points. Points a plugin
// had queued when it died are lost with it, so Monitor.Flush reports CodeAborted when
// the plugin was relaunched since the first Write it has not flushed yet.
//
// # No orphans
//
// [Host.Close] stops every plugin (gracefully, then by force) and waits for them to exit.
// If the host process dies without closing (SIGKILL), every plugin notices that its
// parent is gone and exits by itself within a second (see [sdk.Serve]).
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/sdk"
)

// ErrClosed is returned (wrapped) by a host that has been closed and by an instance that
// has been stopped.
var ErrClosed = errors.New("plugin host closed")

// Options configure a [Host].
type Options struct {
	// Dir is the plugin directory.
	Dir string
	// LockFile is the lock file's path; empty means Dir/plugins.lock.
	LockFile string
	// Logger receives the host's logs and, under "plugin.<instance>", the plugins'; nil
	// discards them. Plugins log at the logger's level.
	Logger hclog.Logger
	// StartTimeout bounds each plugin's launch handshake; zero means one minute.
	StartTimeout time.Duration
	// NewBackOff makes the relaunch backoff of each instance; nil means exponential from
	// one second up to one minute, never giving up. A backoff that returns backoff.Stop
	// leaves the instance down for good.
	NewBackOff func() backoff.BackOff
}

// Host runs plugin instances. Its methods are safe for concurrent use.
type Host struct {
	dir      string
	lockPath string
	log      hclog.Logger
	opts     Options

	lockMu sync.Mutex // serializes Lock's read-modify-write of the lock file
	// verified are the binaries that matched the lock, so launches skip the hash.
	verified verifiedBinaries

	mu        sync.Mutex
	closed    bool
	instances map[string]*Instance
	refused   map[string]Status // instances whose last Start failed, by name
	starting  map[string]bool   // names reserved by a Start in progress
	startWG   sync.WaitGroup    // Starts in progress, which Close waits for
}

// New returns a host for the plugin directory opts.Dir. It does no I/O: plugins are
// launched by [Host.Start].
func New(opts Options) *Host {
	dir := opts.Dir
	if abs, err := filepath.Abs(dir); err == nil {
		// go-plugin execs the path as given: an absolute one does not depend on the
		// working directory of whoever calls Start.
		dir = abs
	}
	lockPath := opts.LockFile
	if lockPath == "" {
		lockPath = filepath.Join(dir, DefaultLockFile)
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Host{
		dir:       dir,
		lockPath:  lockPath,
		log:       log,
		opts:      opts,
		instances: map[string]*Instance{},
		refused:   map[string]Status{},
		starting:  map[string]bool{},
	}
}

// Dir returns the plugin directory (absolute).
func (h *Host) Dir() string { return h.dir }

// LockFile returns the lock file's path.
func (h *Host) LockFile() string { return h.lockPath }

// InstanceConfig says what instance to start.
type InstanceConfig struct {
	// Name names the instance, unique within the host; empty means Provider.Name.
	Name string
	// Plugin is the plugin's name: the host runs Dir/necos-plugin-<Plugin>.
	Plugin string
	// Provider is the provider identity the plugin is configured with.
	Provider sdk.Provider
	// Config is the provider's plugin configuration, a JSON object (empty means {}).
	// It is validated against the plugin's schema before Configure.
	Config []byte
	// Dir is the plugin process's working directory (empty: the host's), so that
	// relative paths in Config resolve against it: the catalogue file's directory.
	Dir string
}

// Start launches a plugin instance and configures it; it returns once the plugin is
// ready for calls. The binary is verified against the lock file first. On any failure
// no process is left running and nothing is registered: the error says what went wrong
// (an unlisted or tampered binary, no common API version, a configuration that breaks
// the plugin's schema, with its sdk code: CodeInvalidArgument...).
func (h *Host) Start(ctx context.Context, cfg InstanceConfig) (*Instance, error) {
	if cfg.Name == "" {
		cfg.Name = cfg.Provider.Name
	}
	if cfg.Name == "" {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "start plugin instance: name: required (or provider name)")
	}
	if err := validPluginName(cfg.Plugin); err != nil {
		return nil, fmt.Errorf("start plugin instance %q: %w", cfg.Name, err)
	}
	cfg.Config = append([]byte(nil), cfg.Config...) // the caller may reuse its buffer

	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		return nil, fmt.Errorf("start plugin instance %q: %w", cfg.Name, ErrClosed)
	case h.instances[cfg.Name] != nil || h.starting[cfg.Name]:
		h.mu.Unlock()
		return nil, sdk.Errorf(sdk.CodeAlreadyExists, "start plugin instance %q: an instance of that name exists", cfg.Name)
	}
	h.starting[cfg.Name] = true
	h.startWG.Add(1)
	h.mu.Unlock()
	defer h.startWG.Done()

	in := newInstance(h, cfg)
	p, err := h.launch(ctx, in)

	h.mu.Lock()
	delete(h.starting, cfg.Name)
	if err != nil {
		if !h.closed {
			h.refused[cfg.Name] = h.refusedStatus(cfg, err)
		}
		h.mu.Unlock()
		return nil, fmt.Errorf("start plugin instance %q: %w", cfg.Name, err)
	}
	delete(h.refused, cfg.Name)
	if h.closed {
		h.mu.Unlock()
		// Close ran during the launch and could not see this process; it waits for
		// this Start, so the process is gone when Close returns.
		p.client.Kill()
		return nil, fmt.Errorf("start plugin instance %q: %w", cfg.Name, ErrClosed)
	}
	in.cur.Store(p)
	h.instances[cfg.Name] = in
	h.mu.Unlock()
	in.log.Info("plugin instance started", "plugin", cfg.Plugin, "version", p.info.Version,
		"api_version", p.apiVersion, "kinds", p.info.Kinds, "pid", p.pid)
	return in, nil
}

// Instance returns the named instance.
func (h *Host) Instance(name string) (*Instance, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	in, ok := h.instances[name]
	return in, ok
}

// Instances returns the status of every instance, sorted by name: those running (or
// relaunching), and those whose Start was refused, in state [StateRefused] with the
// reason, so that an operator sees every plugin the host was asked for.
func (h *Host) Instances() []Status {
	h.mu.Lock()
	list := make([]*Instance, 0, len(h.instances))
	for _, in := range h.instances {
		list = append(list, in)
	}
	out := make([]Status, 0, len(list)+len(h.refused))
	for _, s := range h.refused {
		out = append(out, s)
	}
	h.mu.Unlock()
	for _, in := range list {
		out = append(out, in.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stop stops the named instance's process and forgets the instance; its clients then
// fail with ErrClosed.
func (h *Host) Stop(name string) error {
	h.mu.Lock()
	in, ok := h.instances[name]
	delete(h.instances, name)
	h.mu.Unlock()
	if !ok {
		return sdk.Errorf(sdk.CodeNotFound, "stop plugin instance %q: no such instance", name)
	}
	in.stop()
	return nil
}

// Close stops every instance and waits until their processes have exited (each gets two
// seconds to exit gracefully before it is killed), including those of Starts and
// relaunches in progress. The host starts nothing afterwards.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	list := make([]*Instance, 0, len(h.instances))
	for _, in := range h.instances {
		list = append(list, in)
	}
	h.instances = map[string]*Instance{}
	h.refused = map[string]Status{}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.stop()
		}()
	}
	wg.Wait()
	h.startWG.Wait()
	return nil
}

// refusedStatus is what Instances shows of an instance whose Start failed. The reason
// names the plugin directory and lock file by role, not by path: listings reach
// tenants, and where necosd keeps its files is not theirs to know.
func (h *Host) refusedStatus(cfg InstanceConfig, err error) Status {
	msg := strings.ReplaceAll(err.Error(), h.lockPath, "the lock file")
	msg = strings.ReplaceAll(msg, h.dir+string(filepath.Separator), "")
	msg = strings.ReplaceAll(msg, h.dir, "the plugin directory")
	return Status{Name: cfg.Name, Plugin: cfg.Plugin, Provider: cfg.Provider.Name, Location: cfg.Provider.Location,
		Path: h.binaryPath(cfg.Plugin), State: StateRefused, LastError: msg, Started: time.Now().UTC()}
}

func (h *Host) newBackOff() backoff.BackOff {
	if h.opts.NewBackOff != nil {
		return h.opts.NewBackOff()
	}
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(time.Second),
		backoff.WithMaxInterval(time.Minute),
		backoff.WithMaxElapsedTime(0),
	)
}
