// Package apitest runs the necos API over a real platform (daemon.Start) for tests: an
// embedded store, the vim-xen plugin binary (built from this module, locked, launched by
// the plugin host) serving three providers on libvirt's in-process test driver, and the
// API on an httptest server. Tests of the API and of its clients share it.
//
// A test package builds the plugin once for all its tests by running them through Main:
//
//	func TestMain(m *testing.M) { os.Exit(apitest.Main(m)) }
package apitest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/api"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/prometheus/client_golang/prometheus"
)

// VIMPlugin is the plugin the providers run.
const VIMPlugin = "vim-xen"

// Catalogue has three vim-xen providers: UNICAMP hosts DC and EDGE parts in Brazil,
// UFSCAR edges in Brazil, SPAIN edges in Europe. They have WAN sites but no WAN
// provider, so links cannot be built: the slices of [Example] and [SmallSlice] accept
// that (links-optional), and their links are recorded NotBuilt. Prices are per node
// per day.
const Catalogue = `
providers:
  - name: UNICAMP
    location: AMERICA.BRAZIL.UNICAMP
    controller: {ip: 127.0.0.1, port: 5000}
    dc:
      vim: xen-vim
      part_types: [DC, EDGE]
      plugin: vim-xen
      config:
        uri: "test:///default"
        capacity: {cpus: 32, memory_mb: 65536, storage_gb: 1000}
        price_per_node_day: 4
        subnet: 10.10.1.0/24
        ssh: {ip: 127.0.0.1, port: 22101}
    site: {underlay: 10.100.0.1}
  - name: UFSCAR
    location: AMERICA.BRAZIL.UFSCAR
    controller: {ip: 127.0.0.1, port: 5001}
    dc:
      vim: xen-vim
      part_types: [EDGE]
      plugin: vim-xen
      config:
        uri: "test:///default"
        capacity: {cpus: 16, memory_mb: 32768, storage_gb: 500}
        price_per_node_day: 5
        subnet: 10.10.2.0/24
        ssh: {ip: 127.0.0.1, port: 22102}
    site: {underlay: 10.100.0.2}
  - name: SPAIN
    location: EUROPE.SPAIN
    controller: {ip: 127.0.0.1, port: 5002}
    dc:
      vim: xen-vim
      part_types: [EDGE]
      plugin: vim-xen
      config:
        uri: "test:///default"
        capacity: {cpus: 16, memory_mb: 32768, storage_gb: 500}
        price_per_node_day: 6
        subnet: 10.10.3.0/24
        ssh: {ip: 127.0.0.1, port: 22103}
    site: {underlay: 10.100.0.3}
`

// Tenants have a token each in every Env.
var Tenants = []string{"alice", "bob"}

// Env is a running API over a real engine.
type Env struct {
	// URL is the API's base URL.
	URL string
	// Server is the httptest server, unless Options.Server asked for api.NewServer.
	Server *httptest.Server
	// Handler is the API's handler.
	Handler   http.Handler
	Engine    *sro.Engine
	Store     *store.Store
	Registry  *providers.Registry
	Catalogue *providers.Catalogue
	// Daemon is the platform the API runs in (its collector, services, elasticity when
	// Options.Configure switched them on).
	Daemon *daemon.Daemon
	// Prometheus holds the engine's and the API's metrics.
	Prometheus *prometheus.Registry
	// PluginDir holds the locked plugin binaries.
	PluginDir string
	tokens    map[string]string
}

// Token returns a tenant's bearer token.
func (e *Env) Token(tenant string) string {
	tok, ok := e.tokens[tenant]
	if !ok {
		panic("apitest: no tenant " + tenant)
	}
	return tok
}

var (
	buildMu  sync.Mutex
	buildDir string                // set by Main: binaries built there outlive single tests
	built    = map[string]string{} // plugin name -> binary under buildDir
)

// Main runs a test binary's tests (m.Run) so that they share one build of each plugin,
// and removes them afterwards. It returns the exit code.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "necos-apitest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "apitest:", err)
		return 1
	}
	buildMu.Lock()
	buildDir = dir
	buildMu.Unlock()
	code := m.Run()
	_ = os.RemoveAll(dir)
	return code
}

// pluginBinary returns the built plugin of that name: built once per test binary under
// Main, else once per test.
func pluginBinary(t testing.TB, name string) string {
	buildMu.Lock()
	defer buildMu.Unlock()
	if b := built[name]; b != "" {
		return b
	}
	bin := plugintest.Build(t, "github.com/necos/necos/plugins/"+name)
	if buildDir == "" {
		return bin
	}
	keep := filepath.Join(buildDir, name)
	copyFile(t, bin, keep)
	built[name] = keep
	return keep
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// Options adjust Start.
type Options struct {
	// API is passed to api.New; Engine, Registry, Logger, Metrics and Gatherer are set
	// by Start.
	API api.Options
	// Server, when set, serves the API with api.NewServer and these options on a
	// loopback port (as necosd does) instead of an httptest server; Listener then
	// wraps the listener (to observe connections), when set.
	Server   *api.ServerOptions
	Listener func(net.Listener) net.Listener
	// Catalogue replaces the package's Catalogue, and Plugins the plugins built for it
	// (default: VIMPlugin).
	Catalogue string
	Plugins   []string
	// Configure adjusts the platform's configuration before it starts. The API runs
	// alone by default (no monitoring, services, elasticity, dashboard; plugins start
	// at their first use): switch on in Config.Off what a test needs.
	Configure func(*daemon.Config)
}

// Start runs an API over a fresh platform (daemon.Start): store, plugins, engine;
// everything stops when the test ends.
func Start(t testing.TB, opts ...Options) *Env {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	logger := plugintest.TestLogger(t).ResetNamed("necos")
	logger.SetLevel(logLevel())

	plugins := o.Plugins
	if len(plugins) == 0 {
		plugins = []string{VIMPlugin}
	}
	pluginDir := t.TempDir()
	for _, name := range plugins {
		// A hard link is enough and costs nothing; a copy when the temp dirs are on
		// different file systems.
		target := filepath.Join(pluginDir, pluginhost.BinaryPrefix+name)
		if err := os.Link(pluginBinary(t, name), target); err != nil {
			copyFile(t, pluginBinary(t, name), target)
		}
	}
	if _, err := pluginhost.New(pluginhost.Options{Dir: pluginDir}).Lock(); err != nil {
		t.Fatalf("lock plugins: %v", err)
	}

	catalogue := o.Catalogue
	if catalogue == "" {
		catalogue = Catalogue
	}
	cat, err := providers.Parse([]byte(catalogue))
	if err != nil {
		t.Fatalf("catalogue: %v", err)
	}
	tokens := map[string]string{}
	for _, tenant := range Tenants {
		tokens[tenant] = store.NewToken()
	}
	cfg := daemon.Config{
		Logger:    logger,
		Catalogue: cat,
		Store:     store.Options{Dir: t.TempDir()},
		Plugins:   pluginhost.Options{Dir: pluginDir},
		Tokens:    tokens,
		Engine:    sro.Options{Workers: 8, CallTimeout: time.Minute},
		Off:       daemon.EngineOnly(),
		API:       o.API,
	}
	var url string
	if o.Server != nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		url = "http://" + ln.Addr().String()
		if o.Listener != nil {
			ln = o.Listener(ln)
		}
		cfg.Listener, cfg.Server = ln, *o.Server
		// Connections still open (streams) are closed at once when the test ends.
		cfg.ShutdownTimeout = time.Millisecond
	}
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	d, err := daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	var srv *httptest.Server
	if o.Server == nil {
		srv = httptest.NewServer(d.Handler())
		url = srv.URL
	}
	t.Cleanup(func() {
		if srv != nil {
			// Streams still open would keep Close waiting.
			srv.CloseClientConnections()
			srv.Close()
		}
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &Env{URL: url, Server: srv, Handler: d.Handler(), Engine: d.Engine(), Store: d.Store(), Registry: d.Registry(),
		Catalogue: cat, Daemon: d, Prometheus: d.Prometheus(), PluginDir: pluginDir, tokens: tokens}
}

// logLevel is NECOS_TEST_LOG (trace, debug, info...), info by default: the logs show
// in a failed test's output.
func logLevel() hclog.Level {
	if l := hclog.LevelFromString(os.Getenv("NECOS_TEST_LOG")); l != hclog.NoLevel {
		return l
	}
	return hclog.Info
}

// Example returns examples/slices/<name> with its parts moved to locations the test
// catalogue serves (Greece has no provider there, so its edge goes to any of EUROPE),
// accepting links not built (the catalogue has no WAN provider).
func Example(t testing.TB, name string) []byte {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("apitest: cannot locate the module")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "examples", "slices", name))
	if err != nil {
		t.Fatalf("example %s: %v", name, err)
	}
	doc := strings.ReplaceAll(string(b), "location: EUROPE.GREECE", "location: EUROPE")
	return []byte(strings.Replace(doc, "    slice-requirements:\n", "    slice-requirements:\n      links-optional: true\n", 1))
}

// SmallSlice returns a slice spec of two one-node Xen parts, a core in Brazil and an
// edge in Spain, linked (the link may stay not built): quick to build.
func SmallSlice(id string) []byte {
	return []byte(fmt.Sprintf(`slices:
  sliced:
    id: %s
    name: %s
    slice-requirements: {elasticity: false, links-optional: true}
    cost:
      dc-model: {model: COST_PER_PHYSICAL_MACHINE_PER_DAY, value-euros: "<=10"}
      net-model: {model: COST_PER_LINK_PER_DAY, value-euros: "<=5"}
    slice-parts:
      - dc-slice-part:
          name: core-dc
          type: DC
          location: AMERICA.BRAZIL
          VIM:
            name: xen-vim
            vdus:
              - vdu:
                  id: core_vm
                  name: core_vm
                  instance-count: 1
                  epa-attributes:
                    host-epa: {cpu-number: 1, memory-mb: 512, storage-gb: 5}
      - dc-slice-part:
          name: edge-dc
          type: EDGE
          location: EUROPE.SPAIN
          VIM:
            name: xen-vim
            vdus:
              - vdu:
                  id: edge_vm
                  name: edge_vm
                  instance-count: 1
                  epa-attributes:
                    host-epa: {cpu-number: 1, memory-mb: 512, storage-gb: 5}
      - net-slice-part:
          name: core-to-edge
          WIM: {name: VXLAN}
          links:
            - dc-part1: core-dc
            - dc-part2: edge-dc
            - requirements: {bandwidth-GB: 0.1}
`, id, id))
}
