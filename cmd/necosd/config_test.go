package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// loadArgs parses necosd's command line (and a config file's text, when given) as
// necosd does, without running it.
func loadArgs(t *testing.T, file string, args ...string) (config, error) {
	t.Helper()
	cfg := defaultConfig()
	cmd := &cobra.Command{Use: "necosd"}
	cfg.bindFlags(cmd)
	if err := cmd.Flags().Parse(args); err != nil {
		return cfg, err
	}
	path := ""
	if file != "" {
		path = filepath.Join(t.TempDir(), "necosd.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := cfg.load(cmd, path)
	return cfg, err
}

// TestListenExposure: plain HTTP is served on loopback only, unless TLS or
// --insecure-listen says otherwise; the profiler on loopback only, always.
func TestListenExposure(t *testing.T) {
	cases := []struct {
		args []string
		file string
		want string // "" for accepted, else a piece of the error
	}{
		{args: nil},
		{args: []string{"--listen", "[::1]:8080"}},
		{args: []string{"--listen", "localhost:8080"}},
		{args: []string{"--listen", "127.0.0.2:8080"}},
		{args: []string{"--listen", "0.0.0.0:8080"}, want: `listen: "0.0.0.0:8080" is not a loopback address`},
		{args: []string{"--listen", ":8080"}, want: "give tls_cert and tls_key (--tls-cert, --tls-key), or insecure_listen (--insecure-listen)"},
		{args: []string{"--listen", "192.0.2.1:8080"}, want: "clear text"},
		{args: []string{"--listen", "necos.example:8080"}, want: "not a loopback address"},
		{args: []string{"--listen", "8080"}, want: "not host:port"},
		{args: []string{"--listen", "0.0.0.0:8080", "--tls-cert", "c.pem", "--tls-key", "k.pem"}},
		{args: []string{"--listen", "0.0.0.0:8080", "--insecure-listen"}},
		{file: "listen: 0.0.0.0:8080\ninsecure_listen: true\n"},
		{file: "listen: 0.0.0.0:8080\n", want: "not a loopback address"},
		{args: []string{"--tls-cert", "c.pem"}, want: "tls_cert and tls_key: give both"},
		{args: []string{"--debug-listen", "0.0.0.0:6060", "--insecure-listen"}, want: "the profiler has no authentication"},
		{args: []string{"--debug-listen", "127.0.0.1:6060"}},
	}
	for _, c := range cases {
		_, err := loadArgs(t, c.file, c.args...)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v %q: %v", c.args, c.file, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v %q: got %v, want an error with %q", c.args, c.file, err, c.want)
		}
	}
}

// TestServerLimits: the API server's bounds are flags and config keys, with defaults,
// and nonsense is refused naming the key.
func TestServerLimits(t *testing.T) {
	cfg, err := loadArgs(t, "read_timeout: 5m\nmax_connections: 50\n", "--write-timeout", "30s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReadTimeout != 5*time.Minute || cfg.MaxConnections != 50 || cfg.WriteTimeout != 30*time.Second ||
		cfg.IdleTimeout != time.Minute || cfg.ReadHeaderTimeout != 10*time.Second {
		t.Errorf("%+v", cfg)
	}
	if cfg.MaxPartsPerSlice != 32 || cfg.MaxLinksPerSlice != 64 || cfg.MaxInstancesPerSlice != 256 {
		t.Errorf("slice limits %+v", cfg)
	}
	if cfg, err := loadArgs(t, "max_parts_per_slice: 8\n", "--max-instances-per-slice", "20"); err != nil || cfg.MaxPartsPerSlice != 8 || cfg.MaxInstancesPerSlice != 20 {
		t.Errorf("slice limits set: %+v %v", cfg, err)
	}
	for _, args := range [][]string{{"--max-connections", "0"}, {"--idle-timeout", "0s"}, {"--read-timeout", "-1s"}, {"--max-links-per-slice", "0"}} {
		if _, err := loadArgs(t, "", args...); err == nil || !strings.Contains(err.Error(), "must be > 0") {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestEtcdAccess: TLS files and a user for an etcd cluster, as flags and config keys;
// the password comes from a file or the environment, never the command line.
func TestEtcdAccess(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadArgs(t, "etcd_endpoints: [https://127.0.0.1:2379]\netcd_cacert: ca.crt\netcd_username: necos\netcd_password_file: "+pw+"\n",
		"--etcd-cert", "c.crt", "--etcd-key", "c.key")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := cfg.etcdPassword(); err != nil || p != "s3cret" || cfg.EtcdCACert != "ca.crt" || cfg.EtcdCert != "c.crt" || cfg.EtcdKey != "c.key" {
		t.Errorf("%+v: password %q %v", cfg, p, err)
	}
	t.Setenv(envEtcdPassword, "from-env")
	cfg, err = loadArgs(t, "", "--etcd-endpoints", "https://127.0.0.1:2379", "--etcd-username", "necos")
	if p, perr := cfg.etcdPassword(); err != nil || perr != nil || p != "from-env" {
		t.Errorf("password from the environment: %q %v %v", p, err, perr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd-endpoints", "https://127.0.0.1:2379", "--etcd-cert", "c.crt"}, "etcd_cert and etcd_key: give both"},
		{[]string{"--etcd-cacert", "ca.crt"}, "etcd_cacert: only for an etcd cluster"},
		{[]string{"--etcd-endpoints", "https://127.0.0.1:2379", "--etcd-password-file", pw}, "without etcd_username"},
	} {
		if _, err := loadArgs(t, "", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
}

// TestMemoryLimit: memory_limit_mb sets the runtime's soft limit (0: none), GOMEMLIMIT
// wins over it, and a negative one is refused.
func TestMemoryLimit(t *testing.T) {
	var set []int64
	setter := func(v int64) int64 {
		set = append(set, v)
		if v < 0 {
			return 1 << 30 // the limit GOMEMLIMIT gave
		}
		return v
	}
	noEnv := func(string) string { return "" }
	if limit, from := applyMemoryLimit(200, noEnv, setter); limit != 200<<20 || from != "memory_limit_mb" || set[len(set)-1] != 200<<20 {
		t.Fatalf("200 MiB: %d %s %v", limit, from, set)
	}
	if limit, from := applyMemoryLimit(0, noEnv, setter); limit != math.MaxInt64 || from != "none" || set[len(set)-1] != math.MaxInt64 {
		t.Fatalf("none: %d %s %v", limit, from, set)
	}
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "1GiB"
		}
		return ""
	}
	if limit, from := applyMemoryLimit(200, env, setter); limit != 1<<30 || from != "GOMEMLIMIT" || set[len(set)-1] != -1 {
		t.Fatalf("GOMEMLIMIT: %d %s %v", limit, from, set)
	}
	if _, err := loadArgs(t, "", "--memory-limit-mb", "-1"); err == nil || !strings.Contains(err.Error(), "memory_limit_mb") {
		t.Fatalf("a negative limit: %v", err)
	}
	if cfg, err := loadArgs(t, "memory_limit_mb: 0\n"); err != nil || cfg.MemoryLimitMB != 0 {
		t.Fatalf("memory_limit_mb: 0 in the file: %+v %v", cfg.MemoryLimitMB, err)
	}
}
