// Package plugintest is the conformance kit for necos plugins. A plugin author runs the
// suite of each kind the plugin serves from the plugin's own tests:
//
//	func TestConformance(t *testing.T) {
//		c := plugintest.InProcess(t, myplugin.New(), plugintest.Provider, config)
//		plugintest.RunVIM(t, c, plugintest.VIMOptions{...})
//	}
//
// InProcess drives the plugin through the real gRPC path inside the test process;
// Binary launches a built plugin executable exactly as the necos core does.
package plugintest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/necos/necos/sdk"
)

// Provider is the provider identity the harness configures plugins with.
var Provider = sdk.Provider{Name: "conformance", Location: "EUROPE.TEST"}

// callTimeout bounds each call the suites make.
const callTimeout = 2 * time.Minute

// InProcess connects to impl through go-plugin's in-memory gRPC connection (the same
// adapters and wire format as a real launch, without exec) and configures it.
func InProcess(t testing.TB, impl sdk.Plugin, provider sdk.Provider, configJSON []byte) *sdk.Client {
	t.Helper()
	gc, _ := plugin.TestPluginGRPCConn(t, false, sdk.PluginSet(impl))
	t.Cleanup(func() {
		_ = gc.Close()
		// sdk.Serve closes a plugin when its process ends; do the same here.
		if c, ok := impl.(io.Closer); ok {
			_ = c.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	c, err := sdk.NewClient(ctx, gc)
	if err != nil {
		t.Fatalf("connect in-process plugin: %v", err)
	}
	if _, err := c.Configure(ctx, provider, configJSON); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return c
}

// Binary launches the plugin executable at path, as the core does (gRPC, AutoMTLS), and
// configures it. The process is killed when the test ends.
func Binary(t testing.TB, path string, provider sdk.Provider, configJSON []byte) *sdk.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	c, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: path, Logger: TestLogger(t)})
	if err != nil {
		t.Fatalf("launch %s: %v", path, err)
	}
	t.Cleanup(c.Kill)
	if _, err := c.Configure(ctx, provider, configJSON); err != nil {
		t.Fatalf("configure %s: %v", path, err)
	}
	return c
}

// Build compiles the main package pkg (an import path or a directory) into a temporary
// directory and returns the executable's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// TestLogger returns an hclog logger writing into the test's log.
// Lines logged after the test has ended are dropped (testing panics on them).
func TestLogger(t testing.TB) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return hclog.New(&hclog.LoggerOptions{
		Name:   "plugin",
		Level:  hclog.Debug,
		Output: w,
	})
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return c
}

// EnvRequireBackends names the variable that turns a missing backend into a test failure.
// CI and the README's test command set it: there, nothing is skipped.
const EnvRequireBackends = "NECOS_REQUIRE_BACKENDS"

// NeedBackend skips the test when a real backend it needs is missing (why says what and
// how to get it), or fails it when EnvRequireBackends is set.
func NeedBackend(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(EnvRequireBackends) != "" {
		t.Fatalf("backend missing (and %s is set): %s", EnvRequireBackends, why)
	}
	t.Skipf("backend missing: %s", why)
}
