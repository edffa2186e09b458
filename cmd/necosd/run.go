package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/api"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/examples"
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
	if limit, from := applyMemoryLimit(cfg.MemoryLimitMB, os.Getenv, debug.SetMemoryLimit); from != "none" {
		log.Debug("memory limit", "mib", limit>>20, "from", from)
	}

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
	tokens := map[string]string{}
	for _, t := range cfg.Tenants {
		if tokens[t], err = tenantToken(t, cfg.tokenFile(t)); err != nil {
			return err
		}
	}
	tlsCfg, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	d, err := daemon.Start(ctx, daemon.Config{
		Logger:    log,
		Catalogue: cat,
		Store: store.Options{
			Endpoints: cfg.EtcdEndpoints,
			Dir:       filepath.Join(cfg.DataDir, "store"),
			Prefix:    cfg.StorePrefix,
			CACert:    cfg.EtcdCACert,
			Cert:      cfg.EtcdCert,
			Key:       cfg.EtcdKey,
			Username:  cfg.EtcdUsername,
			Password:  etcdPassword,
			SecretKey: secretKey,
		},
		Plugins: pluginhost.Options{Dir: cfg.PluginDir, LockFile: cfg.LockFile},
		Tokens:  tokens,
		Engine: sro.Options{
			Workers:        cfg.Workers,
			CallTimeout:    cfg.CallTimeout,
			OfferPatience:  cfg.OfferPatience,
			HealthInterval: cfg.HealthInterval,
			Identity:       identity(cfg),
		},
		Services: service.Options{StepTimeout: cfg.ServiceStepTimeout},
		Listen:   cfg.Listen,
		API: api.Options{Limits: spec.Limits{MaxParts: cfg.MaxPartsPerSlice, MaxLinks: cfg.MaxLinksPerSlice,
			MaxInstances: cfg.MaxInstancesPerSlice}},
		Server: api.ServerOptions{
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ReadTimeout:       cfg.ReadTimeout,
			WriteTimeout:      cfg.WriteTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxConnections:    cfg.MaxConnections,
			TLS:               tlsCfg,
		},
		KeepSites:   cfg.KeepSites,
		DebugListen: cfg.DebugListen,
		Prometheus:  promReg,
	})
	if err != nil {
		return err
	}
	defer d.Close()

	scheme := "http://"
	if tlsCfg != nil {
		scheme = "https://"
	}
	log.Info("necosd ready", "api", scheme+d.Addr().String(), "catalogue", catName,
		"providers", len(cat.Providers), "plugins", d.Host().Dir(), "store", storeName(cfg))
	for _, t := range cfg.Tenants {
		log.Info("tenant token", "tenant", t, "file", cfg.tokenFile(t))
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-d.Err():
		// Every component has stopped: necosd exits with the error.
		_ = d.Close()
		return err
	}
	return d.Close()
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

// tenantToken returns a tenant's token, from file, or new and written there: a token
// found there is registered again at start (the store may be new).
func tenantToken(tenant, file string) (string, error) {
	token := ""
	if b, err := os.ReadFile(file); err == nil {
		token = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("token of %s: %w", tenant, err)
	}
	if token == "" {
		token = store.NewToken()
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return "", fmt.Errorf("token of %s: %w", tenant, err)
		}
		if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("token of %s: %w", tenant, err)
		}
	}
	return token, nil
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
