package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// config is necosd's configuration: defaults, then the config file, then flags.
type config struct {
	// Listen is the API's address.
	Listen string `yaml:"listen"`
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
	// StorePrefix is where necos keeps its keys in etcd.
	StorePrefix string `yaml:"store_prefix"`
	// Tenants are created at start-up, each with a token written to
	// <data_dir>/<tenant>-token (kept across restarts).
	Tenants []string `yaml:"tenants"`
	// Workers is how many slices are reconciled at once.
	Workers int `yaml:"workers"`
	// CallTimeout bounds each plugin call.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// DebugListen serves Go's profiler (net/http/pprof) there when set.
	DebugListen string `yaml:"debug_listen"`
	LogLevel    string `yaml:"log_level"`
	LogJSON     bool   `yaml:"log_json"`
}

var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

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
		Listen:      "127.0.0.1:8080",
		DataDir:     "data",
		PluginDir:   pluginDir,
		Tenants:     []string{"demo"},
		Workers:     64,
		CallTimeout: 5 * time.Minute,
		LogLevel:    "info",
	}
}

// bindFlags registers a flag for every setting; a flag given on the command line wins
// over the config file.
func (c *config) bindFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.Listen, "listen", c.Listen, "API listen address")
	f.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the embedded store and the demo token")
	f.StringVar(&c.PluginDir, "plugin-dir", c.PluginDir, "directory of plugin binaries (necos-plugin-<name>) and plugins.lock")
	f.StringVar(&c.LockFile, "lock-file", c.LockFile, "plugin lock file (default <plugin-dir>/plugins.lock)")
	f.StringVar(&c.Catalogue, "catalogue", c.Catalogue, "provider catalogue file (default: the embedded example catalogue)")
	f.StringSliceVar(&c.EtcdEndpoints, "etcd-endpoints", c.EtcdEndpoints, "etcd cluster to use instead of the embedded store (comma-separated URLs)")
	f.StringVar(&c.StorePrefix, "store-prefix", c.StorePrefix, "etcd key prefix (default /necos/)")
	f.StringSliceVar(&c.Tenants, "tenants", c.Tenants, "tenants created at start-up, each with a token in <data-dir>/<tenant>-token")
	f.IntVar(&c.Workers, "workers", c.Workers, "slices reconciled at once")
	f.DurationVar(&c.CallTimeout, "call-timeout", c.CallTimeout, "bound on each plugin call")
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
	return nil
}
