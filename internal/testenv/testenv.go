// Package testenv builds what the core's tests need from this repository: plugin
// binaries in a locked plugin directory, an embedded store, an engine over a catalogue.
package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/necos/necos/core/pluginhost"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// Main runs a package's tests and removes the plugin builds they shared. Call it from
// TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Root returns the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// PluginDir builds the named plugins (e.g. "vim-xen") into a fresh directory as
// necos-plugin-<name>, locks them, and returns the directory. Builds are shared by the
// tests of one test binary.
func PluginDir(t testing.TB, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		src := buildPlugin(t, n)
		dst := filepath.Join(dir, pluginhost.BinaryPrefix+n)
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pluginhost.New(pluginhost.Options{Dir: dir}).Lock(); err != nil {
		t.Fatalf("lock plugins: %v", err)
	}
	return dir
}

func buildPlugin(t testing.TB, name string) string {
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "necos-plugin-build-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	bin := filepath.Join(buildDir, name)
	cmd := exec.CommandContext(context.Background(), "go", "build", "-o", bin, "./plugins/"+name)
	cmd.Dir = Root()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build plugin %s: %v\n%s", name, err, b)
	}
	built[name] = bin
	return bin
}
