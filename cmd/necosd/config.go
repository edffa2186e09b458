package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/necos/necos/api"
	"github.com/necos/necos/core/spec"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// config is necosd's configuration: defaults, then the config file, then flags.
type config struct {
	// Listen is the API's address.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files: the API serves HTTPS with them.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// InsecureListen allows plain HTTP on an address other than loopback (behind a
	// TLS-terminating proxy that is the only way in).
	InsecureListen bool `yaml:"insecure_listen"`
	// MaxConnections caps the API's connections at once.
	MaxConnections int `yaml:"max_connections"`
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound what a client
	// may hold (see api.ServerOptions).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// DataDir holds the embedded store and the demo tenant's token.
	DataDir string `yaml:"data_dir"`
	// PluginDir holds the plugin binaries and their lock file.
	PluginDir string `yaml:"plugin_dir"`
	// LockFile overrides <plugin_dir>/plugins.lock.
	LockFile string `yaml:"lock_file"`
	// Catalogue is the provider catalogue file; empty means the embedded example.
	Catalogue string `yaml:"catalogue"`
	// EtcdEndpoints of an existing etcd cluster; empty means the embedded store.
	EtcdEndpoints []string `yaml:"etcd_endpoints"`
	// EtcdCACert, EtcdCert and EtcdKey are PEM files for an etcd cluster served over
	// TLS: its CA, and the client certificate and key it asks for.
	EtcdCACert string `yaml:"etcd_cacert"`
	EtcdCert   string `yaml:"etcd_cert"`
	EtcdKey    string `yaml:"etcd_key"`
	// EtcdUsername authenticates to etcd, with the password in EtcdPasswordFile (or
	// the environment's NECOS_ETCD_PASSWORD): never on the command line.
	EtcdUsername     string `yaml:"etcd_username"`
	EtcdPasswordFile string `yaml:"etcd_password_file"`
	// SecretKeyFile holds the key the parts' secrets are sealed with in the store;
	// empty means <data_dir>/secret.key, made on first start. Replicas sharing an etcd
	// need the same one.
	SecretKeyFile string `yaml:"secret_key_file"`
	// StorePrefix is where necos keeps its keys in etcd.
	StorePrefix string `yaml:"store_prefix"`
	// Tenants are created at start-up, each with a token written to
	// <data_dir>/<tenant>-token (kept across restarts).
	Tenants []string `yaml:"tenants"`
	// MaxPartsPerSlice, MaxLinksPerSlice and MaxInstancesPerSlice bound the slices
	// tenants may create.
	MaxPartsPerSlice     int `yaml:"max_parts_per_slice"`
	MaxLinksPerSlice     int `yaml:"max_links_per_slice"`
	MaxInstancesPerSlice int `yaml:"max_instances_per_slice"`
	// Workers is how many slices are reconciled at once.
	Workers int `yaml:"workers"`
	// CallTimeout bounds each plugin call.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// OfferPatience is how long placement keeps asking providers that do not answer.
	OfferPatience time.Duration `yaml:"offer_patience"`
	// HealthInterval is how often the parts of Ready slices are described at their
	// providers, to find parts a provider lost (the slice is then Degraded).
	HealthInterval time.Duration `yaml:"health_interval"`
	// ServiceStepTimeout bounds each step of a service deployment (a command, a
	// manifest with the wait for its workloads to be ready); zero leaves it to each
	// deployer (5 minutes for the project's plugins).
	ServiceStepTimeout time.Duration `yaml:"service_step_timeout"`
	// KeepSites keeps, when necosd stops, the network namespaces that WAN plugins built
	// for the providers' sites; by default those no live slice uses are removed.
	KeepSites bool `yaml:"keep_sites"`
	// MemoryLimitMB is the Go runtime's soft memory limit in MiB (0: none); GOMEMLIMIT
	// in the environment wins over it. See applyMemoryLimit.
	MemoryLimitMB int `yaml:"memory_limit_mb"`
	// DebugListen serves Go's profiler (net/http/pprof) there when set.
	DebugListen string `yaml:"debug_listen"`
	LogLevel    string `yaml:"log_level"`
	LogJSON     bool   `yaml:"log_json"`
}

// envEtcdPassword holds the etcd user's password when no file does.
const envEtcdPassword = "NECOS_ETCD_PASSWORD"

// etcdPassword reads the etcd user's password: from etcd_password_file, else the
// environment.
func (c *config) etcdPassword() (string, error) {
	if c.EtcdUsername == "" {
		return "", nil
	}
	if c.EtcdPasswordFile != "" {
		b, err := os.ReadFile(c.EtcdPasswordFile)
		if err != nil {
			return "", fmt.Errorf("etcd_password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if p, ok := os.LookupEnv(envEtcdPassword); ok {
		return p, nil
	}
	return "", fmt.Errorf("etcd_username %s: no password: give etcd_password_file (--etcd-password-file) or $%s", c.EtcdUsername, envEtcdPassword)
}

var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// secretKeyFile is where the key sealing the store's secrets is kept: beside the store,
// never in it, so that a copy of the store reveals nothing.
func (c *config) secretKeyFile() string {
	if c.SecretKeyFile != "" {
		return c.SecretKeyFile
	}
	return filepath.Join(c.DataDir, "secret.key")
}

// tokenFile is where a tenant's token is kept.
func (c *config) tokenFile(tenant string) string {
	return filepath.Join(c.DataDir, tenant+"-token")
}

func defaultConfig() config {
	pluginDir := "bin/plugins"
	if exe, err := os.Executable(); err == nil {
		pluginDir = filepath.Join(filepath.Dir(exe), "plugins")
	}
	return config{
		Listen:               "127.0.0.1:8080",
		MaxConnections:       api.DefaultMaxConnections,
		ReadHeaderTimeout:    api.DefaultReadHeaderTimeout,
		ReadTimeout:          api.DefaultReadTimeout,
		WriteTimeout:         api.DefaultWriteTimeout,
		IdleTimeout:          api.DefaultIdleTimeout,
		DataDir:              "data",
		PluginDir:            pluginDir,
		Tenants:              []string{"demo"},
		Workers:              64,
		MaxPartsPerSlice:     spec.DefaultMaxParts,
		MaxLinksPerSlice:     spec.DefaultMaxLinks,
		MaxInstancesPerSlice: spec.DefaultMaxInstances,
		CallTimeout:          5 * time.Minute,
		OfferPatience:        2 * time.Minute,
		HealthInterval:       30 * time.Second,
		MemoryLimitMB:        DefaultMemoryLimitMB,
		LogLevel:             "info",
	}
}

// bindFlags registers a flag for every setting; a flag given on the command line wins
// over the config file.
func (c *config) bindFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.Listen, "listen", c.Listen, "API listen address (an address other than loopback needs --tls-cert and --tls-key, or --insecure-listen)")
	f.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate (chain) file: serve the API over HTTPS")
	f.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key file of --tls-cert")
	f.BoolVar(&c.InsecureListen, "insecure-listen", c.InsecureListen, "allow plain HTTP on an address other than loopback (only behind a TLS proxy that is the only way in)")
	f.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "API connections served at once; more wait in the listen queue")
	f.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "time a client has to send a request's headers")
	f.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "time a client has to send a whole request, body included (the default admits 1 MiB at ~9 KB/s)")
	f.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "time each write of an answer may take (a client that stops reading is dropped)")
	f.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "time a kept-alive connection may wait for its next request")
	f.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the embedded store and the demo token")
	f.StringVar(&c.PluginDir, "plugin-dir", c.PluginDir, "directory of plugin binaries (necos-plugin-<name>) and plugins.lock")
	f.StringVar(&c.LockFile, "lock-file", c.LockFile, "plugin lock file (default <plugin-dir>/plugins.lock)")
	f.StringVar(&c.Catalogue, "catalogue", c.Catalogue, "provider catalogue file (default: the embedded example catalogue)")
	f.StringSliceVar(&c.EtcdEndpoints, "etcd-endpoints", c.EtcdEndpoints, "etcd cluster to use instead of the embedded store (comma-separated URLs)")
	f.StringVar(&c.EtcdCACert, "etcd-cacert", c.EtcdCACert, "PEM file of the CA that signed the etcd cluster's certificate (https endpoints)")
	f.StringVar(&c.EtcdCert, "etcd-cert", c.EtcdCert, "PEM client certificate to present to etcd")
	f.StringVar(&c.EtcdKey, "etcd-key", c.EtcdKey, "PEM private key of --etcd-cert")
	f.StringVar(&c.EtcdUsername, "etcd-username", c.EtcdUsername, "etcd user (its password in --etcd-password-file or $"+envEtcdPassword+")")
	f.StringVar(&c.EtcdPasswordFile, "etcd-password-file", c.EtcdPasswordFile, "file holding the etcd user's password")
	f.StringVar(&c.SecretKeyFile, "secret-key-file", c.SecretKeyFile, "key the parts' secrets are sealed with in the store, base64 on one line (default <data-dir>/secret.key, made on first start; replicas sharing an etcd need the same)")
	f.StringVar(&c.StorePrefix, "store-prefix", c.StorePrefix, "etcd key prefix (default /necos/)")
	f.StringSliceVar(&c.Tenants, "tenants", c.Tenants, "tenants created at start-up, each with a token in <data-dir>/<tenant>-token")
	f.IntVar(&c.MaxPartsPerSlice, "max-parts-per-slice", c.MaxPartsPerSlice, "DC parts a slice may have")
	f.IntVar(&c.MaxLinksPerSlice, "max-links-per-slice", c.MaxLinksPerSlice, "net parts (links) a slice may have")
	f.IntVar(&c.MaxInstancesPerSlice, "max-instances-per-slice", c.MaxInstancesPerSlice, "VDU instances (nodes) a slice may have in all")
	f.IntVar(&c.Workers, "workers", c.Workers, "slices reconciled at once")
	f.DurationVar(&c.CallTimeout, "call-timeout", c.CallTimeout, "bound on each plugin call")
	f.DurationVar(&c.OfferPatience, "offer-patience", c.OfferPatience, "how long placement keeps asking providers that do not answer (down or overloaded) before refusing a slice as unavailable (503, Retry-After)")
	f.DurationVar(&c.HealthInterval, "health-interval", c.HealthInterval, "how often Ready slices' parts are described at their providers (a lost part makes the slice Degraded)")
	f.DurationVar(&c.ServiceStepTimeout, "service-step-timeout", c.ServiceStepTimeout, "bound on each step of a service deployment, the wait for its workloads included (0: each deployer's default, 5 min); workloads not ready by then leave the service Applied until they are")
	f.BoolVar(&c.KeepSites, "keep-sites", c.KeepSites, "on stop, keep the sites' network namespaces that WAN plugins built (by default those no live slice uses are removed; necosctl sites release does it on demand)")
	f.IntVar(&c.MemoryLimitMB, "memory-limit-mb", c.MemoryLimitMB, "soft limit on the Go runtime's memory in MiB, past which it collects garbage more often and returns freed memory at once (0: none; GOMEMLIMIT in the environment wins); the store's mapped file is not counted")
	f.StringVar(&c.DebugListen, "debug-listen", c.DebugListen, "address for Go's profiler (/debug/pprof/), e.g. 127.0.0.1:6060; off when empty")
	f.StringVar(&c.LogLevel, "log-level", c.LogLevel, "trace, debug, info, warn or error")
	f.BoolVar(&c.LogJSON, "log-json", c.LogJSON, "log as JSON lines")
}

// load applies the config file, then the flags given on the command line again, so
// that they win over it.
func (c *config) load(cmd *cobra.Command, path string) error {
	if path != "" {
		given := map[string]pflag.Value{}
		saved := map[string]any{}
		cmd.Flags().Visit(func(f *pflag.Flag) {
			given[f.Name] = f.Value
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				saved[f.Name] = sv.GetSlice()
			} else {
				saved[f.Name] = f.Value.String()
			}
		})
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
		for name, v := range given {
			var err error
			if sv, ok := v.(pflag.SliceValue); ok {
				err = sv.Replace(saved[name].([]string))
			} else {
				err = v.Set(saved[name].(string))
			}
			if err != nil {
				return fmt.Errorf("flag --%s: %w", name, err)
			}
		}
	}
	for _, t := range c.Tenants {
		if !tenantRE.MatchString(t) {
			return fmt.Errorf("tenants: %q is not a tenant name (letters, digits, '-', '_')", t)
		}
	}
	if c.Workers <= 0 {
		return fmt.Errorf("workers: must be > 0, got %d", c.Workers)
	}
	for key, v := range map[string]int{"max_parts_per_slice": c.MaxPartsPerSlice, "max_links_per_slice": c.MaxLinksPerSlice,
		"max_instances_per_slice": c.MaxInstancesPerSlice} {
		if v <= 0 {
			return fmt.Errorf("%s: must be > 0, got %d", key, v)
		}
	}
	if c.MemoryLimitMB < 0 {
		return fmt.Errorf("memory_limit_mb: must be >= 0 (0: no limit), got %d", c.MemoryLimitMB)
	}
	if c.MaxConnections <= 0 {
		return fmt.Errorf("max_connections: must be > 0, got %d", c.MaxConnections)
	}
	for name, d := range map[string]time.Duration{"read_header_timeout": c.ReadHeaderTimeout, "read_timeout": c.ReadTimeout,
		"write_timeout": c.WriteTimeout, "idle_timeout": c.IdleTimeout} {
		if d <= 0 {
			return fmt.Errorf("%s: must be > 0, got %s", name, d)
		}
	}
	if c.ServiceStepTimeout < 0 || c.ServiceStepTimeout > 0 && c.ServiceStepTimeout < time.Second {
		// Plugins get it in whole seconds: less would be none at all.
		return fmt.Errorf("service_step_timeout: must be 0 (each deployer's default) or at least 1s, got %s", c.ServiceStepTimeout)
	}
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		return errors.New("etcd_cert and etcd_key: give both (the client certificate and its private key) or neither")
	}
	if len(c.EtcdEndpoints) == 0 {
		for key, v := range map[string]string{"etcd_cacert": c.EtcdCACert, "etcd_cert": c.EtcdCert, "etcd_username": c.EtcdUsername, "etcd_password_file": c.EtcdPasswordFile} {
			if v != "" {
				return fmt.Errorf("%s: only for an etcd cluster (etcd_endpoints); the embedded store makes its own certificates", key)
			}
		}
	}
	if c.EtcdPasswordFile != "" && c.EtcdUsername == "" {
		return errors.New("etcd_password_file: given without etcd_username")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert and tls_key: give both (the certificate and its private key) or neither")
	}
	if err := exposure("listen", c.Listen, c.TLSCert != "", c.InsecureListen); err != nil {
		return err
	}
	// The profiler has no authentication at all: loopback only, TLS or not.
	if c.DebugListen != "" {
		if err := exposure("debug_listen", c.DebugListen, false, false); err != nil {
			return err
		}
	}
	return nil
}

// exposure refuses to serve plain HTTP on an address other than loopback: tenants'
// tokens and their parts' credentials would cross the network in clear text.
func exposure(key, addr string, tls, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not host:port: %w", key, addr, err)
	}
	if tls || insecure || isLoopback(host) {
		return nil
	}
	if key == "debug_listen" {
		return fmt.Errorf("%s: %q is not a loopback address: the profiler has no authentication, so it listens on 127.0.0.1 or ::1 only", key, addr)
	}
	return fmt.Errorf("%s: %q is not a loopback address, and plain HTTP there would carry tenants' tokens and credentials in clear text: "+
		"give tls_cert and tls_key (--tls-cert, --tls-key), or insecure_listen (--insecure-listen) when a TLS proxy in front is the only way in", key, addr)
}

// isLoopback reports whether a listen host reaches this machine only: a loopback IP or
// "localhost". An empty host (every interface) or any other name is not.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
