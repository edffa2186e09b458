package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/api"
	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/monitoring"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/examples"
	"github.com/necos/necos/ui"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	cfg := defaultConfig()
	var configFile string
	cmd := &cobra.Command{
		Use:   "necosd",
		Short: "necos daemon: slice-as-a-service API and engine",
		Long: `necosd serves the tenant API and reconciles slices through provider plugins.

With no arguments it runs on its embedded defaults: the slice database under ./data, the
plugins next to the binary (bin/plugins), the example catalogue of five providers, and the
API on 127.0.0.1:8080. A demo tenant's token is written to ./data/demo-token.`,
		SilenceUsage: true,
		Args:         cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.load(cmd, configFile); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return run(ctx, cfg)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML config file (keys as the flags, with _ for -)")
	cfg.bindFlags(cmd)
	return cmd
}

func newLogger(cfg config) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "necosd",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		JSONFormat: cfg.LogJSON,
		Output:     os.Stderr,
	})
}

func run(ctx context.Context, cfg config) error {
	log := newLogger(cfg)

	cat, catName, err := loadCatalogue(cfg.Catalogue)
	if err != nil {
		return err
	}
	etcdPassword, err := cfg.etcdPassword()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	secretKey, err := store.LoadSecretKey(cfg.secretKeyFile())
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, store.Options{
		Endpoints: cfg.EtcdEndpoints,
		Dir:       filepath.Join(cfg.DataDir, "store"),
		Prefix:    cfg.StorePrefix,
		CACert:    cfg.EtcdCACert,
		Cert:      cfg.EtcdCert,
		Key:       cfg.EtcdKey,
		Username:  cfg.EtcdUsername,
		Password:  etcdPassword,
		SecretKey: secretKey,
		Logger:    log.Named("store"),
	})
	if err != nil {
		return err
	}
	defer st.Close()
	for _, t := range cfg.Tenants {
		if err := tenantToken(ctx, st, t, cfg.tokenFile(t)); err != nil {
			return err
		}
	}

	host := pluginhost.New(pluginhost.Options{Dir: cfg.PluginDir, LockFile: cfg.LockFile, Logger: log.Named("plugins")})
	defer host.Close()
	reg := providers.NewRegistry(cat, host, log.Named("providers"))

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	engine := sro.New(sro.Options{
		Store:          st,
		Catalogue:      cat,
		Plugins:        reg,
		Logger:         log.Named("engine"),
		Workers:        cfg.Workers,
		CallTimeout:    cfg.CallTimeout,
		OfferPatience:  cfg.OfferPatience,
		HealthInterval: cfg.HealthInterval,
		Metrics:        sro.NewMetrics(promReg),
		Identity:       identity(cfg),
	})

	// Monitoring starts for each slice once it is Ready; elasticity acts on what it
	// measures (and on what tenants push); services run through the parts' deployers.
	collector := monitoring.New(monitoring.Options{Store: st, Plugins: reg, Logger: log.Named("monitoring")})
	defer collector.Close()
	engine.AddListener(collector)
	services := service.New(service.Options{Store: st, Slices: engine, Deployers: reg, Logger: log.Named("services"),
		StepTimeout: cfg.ServiceStepTimeout})
	defer services.Close()
	elasticity := elastic.New(elastic.Options{Store: st, Engine: engine, Monitor: reg, PostDeployer: services,
		IsLeader: engine.IsLeader, Logger: log.Named("elastic")})

	tlsCfg, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The dashboard (/ui/) beside the API: a static page that reads the API.
	srv := api.NewServer(ui.With(api.New(api.Options{
		Engine:   engine,
		Registry: reg,
		Ready:    reg.Ready,
		Limits: spec.Limits{MaxParts: cfg.MaxPartsPerSlice, MaxLinks: cfg.MaxLinksPerSlice,
			MaxInstances: cfg.MaxInstancesPerSlice},
		Logger:   log.Named("api"),
		Metrics:  promReg,
		Gatherer: promReg,
		Extra: api.Extras(api.ServiceRoutes(services), api.MetricsRoutes(engine, collector),
			api.PolicyRoutes(engine, st), api.TimingsRoutes(engine, st, collector, log.Named("api")),
			api.MarketplaceRoutes(reg, st)),
	})), api.ServerOptions{
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxConnections:    cfg.MaxConnections,
		TLS:               tlsCfg,
		Logger:            log.Named("http"),
	})

	if cfg.DebugListen != "" {
		dln, err := net.Listen("tcp", cfg.DebugListen)
		if err != nil {
			return fmt.Errorf("debug listen: %w", err)
		}
		dbg := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second}
		defer dbg.Close()
		go func() { _ = dbg.Serve(dln) }()
		log.Info("profiler", "url", "http://"+dln.Addr().String()+"/debug/pprof/")
	}
	var wg sync.WaitGroup
	ectx, cancelEngine := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Plugins start in the background: a provider whose plugin cannot start yet is
		// retried at its first use, and the API is up meanwhile.
		err := reg.StartAll(ectx)
		var failed *providers.StartError
		switch {
		case ectx.Err() != nil:
		case errors.As(err, &failed):
			for _, f := range failed.Failures {
				log.Error("provider plugin did not start; retried on use (GET /v1/plugins shows it refused)",
					"provider", f.Provider, "role", f.Role, "plugin", f.Plugin, "error", f.Err)
			}
		case err != nil:
			log.Error("provider plugins did not start", "error", err)
		default:
			log.Info("provider plugins started", "instances", len(host.Instances()))
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := engine.Run(ectx); err != nil {
			log.Error("engine stopped", "error", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := elasticity.Run(ectx); err != nil && ectx.Err() == nil {
			log.Error("elasticity stopped", "error", err)
		}
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	scheme := "http://"
	if tlsCfg != nil {
		scheme = "https://"
	}
	log.Info("necosd ready", "api", scheme+ln.Addr().String(), "catalogue", catName,
		"providers", len(cat.Providers), "plugins", host.Dir(), "store", storeName(cfg))
	for _, t := range cfg.Tenants {
		log.Info("tenant token", "tenant", t, "file", cfg.tokenFile(t))
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveErr:
		log.Error("API server stopped", "error", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("API shutdown", "error", err)
	}
	cancelEngine()
	wg.Wait()
	return nil
}

// identity names this necosd among the replicas sharing a store: its host and API
// address, stable across restarts.
func identity(cfg config) string {
	host, _ := os.Hostname()
	return host + "/" + cfg.Listen
}

func storeName(cfg config) string {
	if len(cfg.EtcdEndpoints) > 0 {
		return "etcd " + strings.Join(cfg.EtcdEndpoints, ",")
	}
	return "embedded in " + filepath.Join(cfg.DataDir, "store")
}

func loadCatalogue(path string) (*providers.Catalogue, string, error) {
	if path == "" {
		c, err := providers.Parse(examples.DefaultCatalogue)
		if err != nil {
			return nil, "", fmt.Errorf("embedded catalogue: %w", err)
		}
		return c, "embedded example", nil
	}
	c, err := providers.Load(path)
	return c, path, err
}

// tenantToken makes sure a tenant has a token and that it is in file: a token found there
// is registered again (the store may be new); otherwise a new one is written.
func tenantToken(ctx context.Context, st *store.Store, tenant, file string) error {
	token := ""
	if b, err := os.ReadFile(file); err == nil {
		token = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("token of %s: %w", tenant, err)
	}
	if token == "" {
		token = store.NewToken()
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return fmt.Errorf("token of %s: %w", tenant, err)
		}
		if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
			return fmt.Errorf("token of %s: %w", tenant, err)
		}
	}
	return st.AddToken(ctx, tenant, token)
}

// serverTLS loads the API's certificate and key, when configured.
func serverTLS(cfg config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls_cert %s and tls_key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
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
