package daemon_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk/plugintest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func config(t *testing.T, dir string) daemon.Config {
	t.Helper()
	cat, err := providers.Parse([]byte(`
providers:
  - name: BR
    location: AMERICA.BRAZIL
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 500}, price_per_node_day: 2}}
`))
	if err != nil {
		t.Fatal(err)
	}
	return daemon.Config{
		Logger:    plugintest.TestLogger(t),
		Catalogue: cat,
		Store:     store.Options{Dir: dir},
		Plugins:   pluginhost.Options{Dir: testenv.PluginDir(t, "vim-xen")},
		Tokens:    map[string]string{"alice": "token-of-alice"},
		Listen:    "127.0.0.1:0",
	}
}

// A started daemon serves the API with every component wired (its plugins started:
// /readyz asks the registry), takes the tenants' tokens, and stops everything on Close.
func TestStartServeClose(t *testing.T) {
	d, err := daemon.Start(context.Background(), config(t, filepath.Join(t.TempDir(), "store")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if d.Collector() == nil || d.Services() == nil || d.Elasticity() == nil {
		t.Fatal("a component is missing from the full platform")
	}
	url := "http://" + d.Addr().String()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d after a minute", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/slices", nil)
	req.Header.Set("Authorization", "Bearer token-of-alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/slices with the token given in Config: %d", resp.StatusCode)
	}
	if n := len(d.Host().Instances()); n != 1 {
		t.Errorf("plugin instances: %d, want 1", n)
	}

	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if n := len(d.Host().Instances()); n != 0 {
		t.Errorf("plugin instances after close: %d", n)
	}
	if c, err := net.DialTimeout("tcp", d.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the API still accepts connections after Close")
	}
	select {
	case err := <-d.Err():
		t.Errorf("Err after a clean close: %v", err)
	default:
	}
}

// The API's address is taken before the store is opened: a busy address fails the
// start before anything else, and the embedded store, which looks for free ports of
// its own, can never be given the API's.
func TestListenBeforeStore(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := filepath.Join(t.TempDir(), "store")
	cfg := config(t, dir)
	cfg.Listen = busy.Addr().String()
	if d, err := daemon.Start(context.Background(), cfg); err == nil {
		d.Close()
		t.Fatal("started on a port in use")
	} else if !strings.Contains(err.Error(), "listen") {
		t.Errorf("error does not say what failed: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the store was opened before the API's address was taken: %v", err)
	}
}

// A start that fails halfway closes what it opened: the API's address is free again
// and the embedded store, locked by its etcd while open, opens again at once.
func TestStartFailureClosesWhatItOpened(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	cfg := config(t, dir)
	// A tenant's key larger than a store request may be fails after the store opened.
	cfg.Tokens = map[string]string{strings.Repeat("t", 2<<20): "token"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg.Listener = ln
	if d, err := daemon.Start(context.Background(), cfg); err == nil {
		d.Close()
		t.Fatal("started with a tenant the store cannot hold")
	} else if !strings.Contains(err.Error(), "token of") {
		t.Errorf("error does not say what failed: %v", err)
	}
	// An open listener's Accept times out at once; a closed one's says so.
	_ = ln.(*net.TCPListener).SetDeadline(time.Now())
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the API's listener is still open after the failed start: %v", err)
	}
	cfg = config(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start again on the same store: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// Start's context bounds the start-up only: the platform, its store's client included,
// outlives it.
func TestOutlivesStartContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := config(t, filepath.Join(t.TempDir(), "store"))
	cfg.Off = daemon.EngineOnly()
	cfg.Listen = ""
	d, err := daemon.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	cancel()
	if d.Addr() != nil || d.Collector() != nil || d.Services() != nil || d.Elasticity() != nil {
		t.Error("a component switched off runs")
	}
	time.Sleep(100 * time.Millisecond)
	if err := d.Store().Ping(context.Background()); err != nil {
		t.Fatalf("store after the start context ended: %v", err)
	}
	if _, err := d.Engine().Get(context.Background(), "alice", "nothing"); !errors.Is(err, sro.ErrNotFound) {
		t.Errorf("a slice that does not exist: %v, want sro.ErrNotFound", err)
	}
}

// A component that fails stops the platform: here the API's listener closes under it.
// Err names it once everything has stopped (the engine no longer leads); Close then
// releases the rest.
func TestComponentFailureStopsAll(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, filepath.Join(t.TempDir(), "store"))
	cfg.Listen, cfg.Listener = "", ln
	d, err := daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	deadline := time.Now().Add(time.Minute)
	for !d.Engine().IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the engine does not lead")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ln.Close()
	select {
	case err := <-d.Err():
		if err == nil || !strings.HasPrefix(err.Error(), "api: ") {
			t.Errorf("Err: %v, want the API's failure", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("no failure reported")
	}
	if d.Engine().IsLeader() {
		t.Error("the engine still leads after a failure stopped the platform")
	}
	if err := d.Close(); err != nil {
		t.Errorf("close after a failure: %v", err)
	}
}
