// Package daemon is necosd as a library: the one place where the platform is wired
// together (store → plugin host → provider registry → engine → monitoring, services and
// elasticity → API), as etcd's embed package is for etcd. cmd/necosd, the API's test
// helpers and the tests of the core all start the platform through Start, so the wiring
// and its lifecycle are written once.
//
// Every long-running part is a component, a Run(ctx) error, under one small manager:
// components start in order and stop in reverse order (the API first, the store's
// watch last); one that fails stops all of them and its error is reported on Err.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/api"
	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/monitoring"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/sites"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/ui"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultShutdownTimeout is how long Close lets the API's requests in flight finish
// before it closes their connections.
const DefaultShutdownTimeout = 15 * time.Second

// Config describes a platform to start. Its zero value, given a Catalogue and where to
// keep the store, is necosd with every component; the option structs of the core's
// packages are passed through, Start filling in what it wires (the store, the engine,
// the registry, loggers).
type Config struct {
	// Logger is the root logger; each component logs under its own name. Nil: none.
	Logger hclog.Logger
	// Catalogue lists the providers; required.
	Catalogue *providers.Catalogue
	// Store opens the slice database (an embedded etcd under Store.Dir, or a cluster).
	Store store.Options
	// Plugins runs the plugin binaries (Dir, LockFile).
	Plugins pluginhost.Options
	// Tokens are registered at start: tenant → bearer token.
	Tokens map[string]string
	// Engine tunes the reconciler (Workers, CallTimeout, Identity...).
	Engine sro.Options
	// EnginePlugins, when set, stands between the engine and the providers' plugins
	// (tests inject failures and delays there).
	EnginePlugins func(*providers.Registry) sro.Plugins
	// Monitoring, Services and Elasticity tune those components.
	Monitoring monitoring.Options
	Services   service.Options
	Elasticity elastic.Options
	// Off switches components off, for tests of one part of the platform.
	Off Components

	// Listen is the API's address; Listener, when set, is used instead, and is the
	// daemon's to close from then on (a failed Start closes it too). With neither, no
	// server runs and Handler serves the API to whoever the owner chooses.
	Listen   string
	Listener net.Listener
	// API tunes the API (Limits, MaxBody...); Extra routes are added after the
	// platform's own.
	API api.Options
	// Server bounds the API's clients (timeouts, connections, TLS).
	Server api.ServerOptions
	// ShutdownTimeout bounds the wait for the API's requests in flight at Close;
	// DefaultShutdownTimeout when 0.
	ShutdownTimeout time.Duration
	// KeepSites keeps, at Close, the network namespaces that WAN plugins built for the
	// providers' sites; by default those no live slice uses are removed (sites.Release).
	KeepSites bool
	// DebugListen serves Go's profiler (net/http/pprof) there when set.
	DebugListen string
	// Prometheus holds the engine's and the API's metrics; nil: a new registry.
	Prometheus *prometheus.Registry
}

// Components names the optional components. A test of one part of the platform
// switches the others off, so that they neither act nor log.
type Components struct {
	// Monitoring: no collector (no node metrics).
	Monitoring bool
	// Services: no service orchestrator (no service routes, no post-deployments).
	Services bool
	// Elasticity: no elasticity engine (policies are kept, not evaluated).
	Elasticity bool
	// PluginStart: the providers' plugins start at their first use rather than at start.
	PluginStart bool
	// UI: no dashboard beside the API.
	UI bool
}

// EngineOnly switches off every optional component: the store, the plugins (started at
// their first use) and the engine run, with the API. Tests switch back on what they need.
func EngineOnly() Components {
	return Components{Monitoring: true, Services: true, Elasticity: true, PluginStart: true, UI: true}
}

// Daemon is a running platform. Close it.
type Daemon struct {
	cfg     Config
	log     hclog.Logger
	store   *store.Store
	host    *pluginhost.Host
	reg     *providers.Registry
	engine  *sro.Engine
	col     *monitoring.Collector
	svc     *service.Orchestrator
	el      *elastic.Engine
	handler http.Handler
	prom    *prometheus.Registry
	ln      net.Listener
	dbgLn   net.Listener

	mgr        *manager
	cancelBase context.CancelFunc
	closeOnce  sync.Once
	closeErr   error
}

// Start opens the store, registers the tokens, wires the plugin host, the registry, the
// engine and the other components, and starts them. ctx bounds the start-up only: the
// platform runs until Close, or until a component fails (Err). A start that fails
// halfway closes what it opened.
func Start(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	if cfg.Catalogue == nil {
		return nil, errors.New("daemon: no catalogue")
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	// The store's client lives as long as the platform, not as long as ctx; a ctx that
	// ends during start-up still aborts it.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	stopAbort := context.AfterFunc(ctx, cancelBase)
	d := &Daemon{cfg: cfg, log: log, cancelBase: cancelBase, mgr: newManager(log)}
	defer func() {
		stopAbort()
		if err != nil {
			_ = d.Close()
		}
	}()

	// The addresses are taken before the embedded store looks for free ports of its
	// own, so that it cannot be given the API's: a busy address fails the start early.
	d.ln = cfg.Listener
	if d.ln == nil && cfg.Listen != "" {
		if d.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	if cfg.DebugListen != "" {
		if d.dbgLn, err = net.Listen("tcp", cfg.DebugListen); err != nil {
			return nil, fmt.Errorf("debug listen: %w", err)
		}
	}

	so := cfg.Store
	so.Logger = named(so.Logger, log, "store")
	if d.store, err = store.Open(base, so); err != nil {
		return nil, err
	}
	for tenant, token := range cfg.Tokens {
		if err := d.store.AddToken(base, tenant, token); err != nil {
			return nil, fmt.Errorf("token of %s: %w", tenant, err)
		}
	}

	po := cfg.Plugins
	po.Logger = named(po.Logger, log, "plugins")
	d.host = pluginhost.New(po)
	d.reg = providers.NewRegistry(cfg.Catalogue, d.host, log.Named("providers"))

	d.prom = cfg.Prometheus
	if d.prom == nil {
		d.prom = prometheus.NewRegistry()
	}
	eo := cfg.Engine
	eo.Store, eo.Catalogue, eo.Plugins = d.store, cfg.Catalogue, d.reg
	if cfg.EnginePlugins != nil {
		eo.Plugins = cfg.EnginePlugins(d.reg)
	}
	eo.Logger = named(eo.Logger, log, "engine")
	if eo.Metrics == nil {
		eo.Metrics = sro.NewMetrics(d.prom)
	}
	d.engine = sro.New(eo)

	// Services run through the parts' deployers; monitoring starts for each slice once
	// it is Ready; elasticity acts on what it measures (and on what tenants push), told
	// by the collector when new points are stored, so it is made first.
	if !cfg.Off.Services {
		so := cfg.Services
		so.Store, so.Slices, so.Deployers = d.store, d.engine, d.reg
		so.Logger = named(so.Logger, log, "services")
		d.svc = service.New(so)
	}
	if !cfg.Off.Elasticity {
		eo := cfg.Elasticity
		eo.Store, eo.Engine, eo.Monitor = d.store, d.engine, d.reg
		if eo.PostDeployer == nil && d.svc != nil {
			eo.PostDeployer = d.svc
		}
		if eo.IsLeader == nil {
			eo.IsLeader = d.engine.IsLeader
		}
		eo.Logger = named(eo.Logger, log, "elastic")
		d.el = elastic.New(eo)
	}
	var metrics api.MetricsService
	if !cfg.Off.Monitoring {
		mo := cfg.Monitoring
		mo.Store, mo.Plugins = d.store, d.reg
		mo.Logger = named(mo.Logger, log, "monitoring")
		if mo.OnStored == nil && d.el != nil {
			// Policies are judged as soon as their points are stored.
			mo.OnStored = d.el.Measured
		}
		d.col = monitoring.New(mo)
		d.engine.AddListener(d.col)
		metrics = d.col
	}

	ao := cfg.API
	ao.Engine, ao.Records = d.engine, d.store
	if host := d.reg.Host(); host != nil {
		ao.Plugins = host
	}
	ao.Logger = named(ao.Logger, log, "api")
	ao.Metrics, ao.Gatherer = d.prom, d.prom
	if ao.Ready == nil && !cfg.Off.PluginStart {
		ao.Ready = d.reg.Ready
	}
	// The metrics and policy routes are served without the collector and the
	// elasticity engine too (metrics then answer that nothing measures them).
	var services api.Extra
	if d.svc != nil {
		services = api.ServiceRoutes(d.svc)
	}
	ao.Extra = api.Extras(services, api.MetricsRoutes(d.engine, metrics), api.PolicyRoutes(d.engine, d.store),
		api.TimingsRoutes(d.engine, d.store, metrics, ao.Logger), api.MarketplaceRoutes(d.reg, d.store), api.SiteRoutes(d.reg, d.store), cfg.API.Extra)
	d.handler = api.New(ao)
	if !cfg.Off.UI {
		// The dashboard (/ui/) beside the API: a static page that reads the API.
		d.handler = ui.With(d.handler)
	}

	// Stopped in the reverse order: the API first, then what answers it; the collector
	// and the services after the engine that announces slices to them.
	d.mgr.start(base, "store", d.watchStore)
	d.mgr.start(base, "plugins", d.startPlugins)
	if d.col != nil {
		d.mgr.start(base, "monitoring", d.col.Run)
	}
	if d.svc != nil {
		d.mgr.start(base, "services", d.svc.Run)
	}
	d.mgr.start(base, "engine", d.engine.Run)
	if d.el != nil {
		d.mgr.start(base, "elasticity", d.el.Run)
	}
	if d.dbgLn != nil {
		dbg := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second}
		d.mgr.start(base, "profiler", serveHTTP(dbg.Serve, dbg.Shutdown, dbg.Close, d.dbgLn, time.Second, log))
		log.Info("profiler", "url", "http://"+d.dbgLn.Addr().String()+"/debug/pprof/")
	}
	if d.ln != nil {
		sopts := cfg.Server
		sopts.Logger = named(sopts.Logger, log, "http")
		srv := api.NewServer(d.handler, sopts)
		wait := cfg.ShutdownTimeout
		if wait <= 0 {
			wait = DefaultShutdownTimeout
		}
		d.mgr.start(base, "api", serveHTTP(srv.Serve, srv.Shutdown, srv.Close, d.ln, wait, log))
	}
	return d, nil
}

func named(l, root hclog.Logger, name string) hclog.Logger {
	if l != nil {
		return l
	}
	return root.Named(name)
}

// watchStore fails when the embedded etcd stops serving: every later call would fail.
func (d *Daemon) watchStore(ctx context.Context) error {
	select {
	case err, ok := <-d.store.Err():
		if !ok || err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		return nil
	}
}

// startPlugins starts every provider's plugin. It never fails the platform: a provider
// whose plugin cannot start yet is retried at its first use, and the API is up
// meanwhile.
func (d *Daemon) startPlugins(ctx context.Context) error {
	if d.cfg.Off.PluginStart {
		return nil
	}
	err := d.reg.StartAll(ctx)
	var failed *providers.StartError
	switch {
	case ctx.Err() != nil:
	case errors.As(err, &failed):
		for _, f := range failed.Failures {
			d.log.Error("provider plugin did not start; retried on use (GET /v1/plugins shows it refused)",
				"provider", f.Provider, "role", f.Role, "plugin", f.Plugin, "error", f.Err)
		}
	case err != nil:
		d.log.Error("provider plugins did not start", "error", err)
	default:
		d.log.Info("provider plugins started", "instances", len(d.host.Instances()))
	}
	return nil
}

// serveHTTP is a server as a component: it serves until ctx ends, then lets requests in
// flight finish for up to wait before closing their connections.
func serveHTTP(serve func(net.Listener) error, shutdown func(context.Context) error, closeAll func() error,
	ln net.Listener, wait time.Duration, log hclog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- serve(ln) }()
		select {
		case err := <-served:
			return fmt.Errorf("serve %s: %w", ln.Addr(), err)
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("shutdown: closing the connections still open", "address", ln.Addr().String(), "error", err)
			_ = closeAll()
		}
		<-served
		return nil
	}
}

// debugHandler serves Go's profiler; it is never on the API's address.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Err reports the error of the first component that failed (the embedded etcd
// stopping, the API's listener failing...); every component has been stopped by then.
// Close the daemon after it.
func (d *Daemon) Err() <-chan error { return d.mgr.failed }

// Close stops every component in the reverse of their start order (the API first,
// letting its requests finish, the collector and the services after the engine), then
// the plugins and the store. Later calls return the first one's result.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.mgr.stop()
		// Components never started (a start that failed halfway) are closed here.
		if d.col != nil {
			d.col.Close()
		}
		if d.svc != nil {
			d.svc.Close()
		}
		// The sites are released once the engine has stopped, while the plugins and the
		// store still serve.
		if !d.cfg.KeepSites && d.reg != nil && d.store != nil {
			d.releaseSites()
		}
		var errs []error
		if d.host != nil {
			if err := d.host.Close(); err != nil {
				errs = append(errs, fmt.Errorf("plugin host: %w", err))
			}
		}
		if d.store != nil {
			// The store's client reports its own cancellation on Close: not an error.
			if err := d.store.Close(); err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("store: %w", err))
			}
		}
		// A server closes its listener when it stops; not one that never ran.
		for _, ln := range []net.Listener{d.ln, d.dbgLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		d.cancelBase()
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// Store returns the slice database.
func (d *Daemon) Store() *store.Store { return d.store }

// Host returns the plugin host.
func (d *Daemon) Host() *pluginhost.Host { return d.host }

// Registry returns the providers' plugin instances.
func (d *Daemon) Registry() *providers.Registry { return d.reg }

// Engine returns the reconciler.
func (d *Daemon) Engine() *sro.Engine { return d.engine }

// Collector returns the monitoring collector; nil when Off.Monitoring.
func (d *Daemon) Collector() *monitoring.Collector { return d.col }

// Services returns the service orchestrator; nil when Off.Services.
func (d *Daemon) Services() *service.Orchestrator { return d.svc }

// Elasticity returns the elasticity engine; nil when Off.Elasticity.
func (d *Daemon) Elasticity() *elastic.Engine { return d.el }

// Handler returns the API's handler (with the dashboard unless Off.UI).
func (d *Daemon) Handler() http.Handler { return d.handler }

// Prometheus returns the registry of the engine's and the API's metrics.
func (d *Daemon) Prometheus() *prometheus.Registry { return d.prom }

// Addr returns the API's address; nil when no server runs.
func (d *Daemon) Addr() net.Addr {
	if d.ln == nil {
		return nil
	}
	return d.ln.Addr()
}

// releaseSites removes, as the daemon stops, the site namespaces WAN plugins built that
// no live slice uses: the federation's network is built again at its next use. What is
// kept is logged with why.
func (d *Daemon) releaseSites() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := sites.Release(ctx, d.cfg.Catalogue, d.reg, d.store, nil)
	if err != nil {
		d.log.Warn("could not release the sites' namespaces; necosctl sites release does it while necosd runs",
			"error", err)
	}
	if len(res.Removed) > 0 {
		d.log.Info("released the sites' namespaces no slice uses (--keep-sites keeps them)", "removed", res.Removed)
	}
	for _, k := range res.Kept {
		d.log.Info("kept a site's namespace", "site", k.Site, "netns", k.Netns, "reason", k.Reason)
	}
}
