package providers_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/sdk/plugintest"
)

// pluginDir holds the test plugins of the plugin host's tests: memvim (a working VIM)
// locked, futureapi (speaks no API version of this host) locked, tampered (memvim,
// changed after it was locked); ghost is not there at all.
func pluginDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	memvim := plugintest.Build(t, "../pluginhost/testdata/plugins/memvim")
	future := plugintest.Build(t, "../pluginhost/testdata/plugins/futureapi")
	install := func(from, name string) string {
		raw, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dir, pluginhost.BinaryPrefix+name)
		if err := os.WriteFile(to, raw, 0o755); err != nil {
			t.Fatal(err)
		}
		return to
	}
	install(memvim, "memvim")
	install(future, "futureapi")
	tampered := install(memvim, "tampered")
	if _, err := pluginhost.New(pluginhost.Options{Dir: dir}).Lock(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(tampered)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered, append(raw, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func catalogue(t *testing.T, plugins ...string) *providers.Catalogue {
	t.Helper()
	var b strings.Builder
	b.WriteString("providers:\n")
	for _, p := range plugins {
		b.WriteString("  - {name: P-" + p + ", location: EUROPE.TEST, dc: {vim: memvim, plugin: " + p +
			", config: {capacity_cpus: 8}}}\n")
	}
	c, err := providers.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A start-up with broken plugins tries every plugin (a broken one stops no other),
// names every failed provider with its reason, lists the refused instances beside the
// running ones, and is not ready until they serve.
func TestStartAllNamesEveryFailure(t *testing.T) {
	dir := pluginDir(t)
	host := pluginhost.New(pluginhost.Options{Dir: dir, Logger: plugintest.TestLogger(t)})
	t.Cleanup(func() { _ = host.Close() })
	reg := providers.NewRegistry(catalogue(t, "ghost", "futureapi", "tampered", "memvim"), host, nil)
	if err := reg.Ready(); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("Ready before StartAll: %v, want not ready (starting)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	err := reg.StartAll(ctx)
	var se *providers.StartError
	if !errors.As(err, &se) {
		t.Fatalf("StartAll: %v, want a *StartError", err)
	}
	want := map[string]string{
		"P-futureapi": "API version",
		"P-ghost":     "ghost",
		"P-tampered":  "SHA-256",
	}
	if len(se.Failures) != len(want) {
		t.Errorf("failures %+v, want one per broken provider: %v", se.Failures, want)
	}
	for _, f := range se.Failures {
		if why, ok := want[f.Provider]; !ok || !strings.Contains(f.Err.Error(), why) {
			t.Errorf("failure of %s: %v (want it among %v, saying %q)", f.Provider, f.Err, want, why)
		}
	}

	got := map[string]pluginhost.Status{}
	for _, s := range host.Instances() {
		got[s.Provider] = s
	}
	if s := got["P-memvim"]; s.State != pluginhost.StateRunning {
		t.Errorf("the working plugin beside the broken ones: %+v, want running", s)
	}
	for p, why := range want {
		s := got[p]
		if s.State != pluginhost.StateRefused || !strings.Contains(s.LastError, why) {
			t.Errorf("instance of %s: state %q error %q, want refused saying %q", p, s.State, s.LastError, why)
		}
		if strings.Contains(s.LastError, dir) {
			t.Errorf("instance of %s: the listed error shows the plugin directory: %s", p, s.LastError)
		}
	}

	rerr := reg.Ready()
	if rerr == nil {
		t.Fatal("Ready with three refused plugins: nil")
	}
	for p := range want {
		if !strings.Contains(rerr.Error(), p) {
			t.Errorf("Ready does not name %s: %v", p, rerr)
		}
	}
}

func TestReadyWhenEveryPluginServes(t *testing.T) {
	host := pluginhost.New(pluginhost.Options{Dir: pluginDir(t)})
	t.Cleanup(func() { _ = host.Close() })
	reg := providers.NewRegistry(catalogue(t, "memvim"), host, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := reg.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reg.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}
