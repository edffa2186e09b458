package pluginhost_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
)

// binDir keeps the test binaries, built once per test run: building them in every test
// would cost seconds each on a small machine.
var (
	binDir   string
	binMu    sync.Mutex
	binBuilt = map[string]string{}
)

func TestMain(m *testing.M) {
	if path := os.Getenv(envBareEcho); path != "" { // the bare benchmark's child
		if err := bareEcho(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "pluginhost-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// binary returns the executable built from the main package ./testdata/<pkg>.
func binary(t testing.TB, pkg string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binBuilt[pkg]; ok {
		return p
	}
	built := plugintest.Build(t, "./testdata/"+pkg)
	out := filepath.Join(binDir, strings.ReplaceAll(pkg, "/", "_"))
	copyFile(t, built, out)
	binBuilt[pkg] = out
	return out
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Write then rename: overwriting a binary that a process runs in place fails
	// (ETXTBSY), and replacing it is what an operator's upgrade does anyway.
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// pluginDir makes a plugin directory holding the named test plugins
// (testdata/plugins/<name>) as necos-plugin-<name>.
func pluginDir(t testing.TB, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		copyFile(t, binary(t, "plugins/"+n), filepath.Join(dir, pluginhost.BinaryPrefix+n))
	}
	return dir
}

// tamper replaces a binary by a copy with one more byte: it still runs, but its hash
// differs.
func tamper(t testing.TB, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects log output for assertions and mirrors it into the test's log
// while the test runs.
type logBuffer struct {
	mu   sync.Mutex
	t    testing.TB
	buf  bytes.Buffer
	done bool
}

func (w *logBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *logBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func testLogger(t testing.TB) (hclog.Logger, *logBuffer) {
	w := &logBuffer{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return hclog.New(&hclog.LoggerOptions{Name: "necosd", Level: hclog.Debug, Output: w}), w
}

// newHost returns a host on dir with its binaries locked; it is closed when the test
// ends.
func newHost(t testing.TB, dir string, opts pluginhost.Options) (*pluginhost.Host, *logBuffer) {
	t.Helper()
	opts.Dir = dir
	var logs *logBuffer
	if opts.Logger == nil {
		opts.Logger, logs = testLogger(t)
	}
	h := pluginhost.New(opts)
	if _, err := h.Lock(); err != nil {
		t.Fatalf("lock: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h, logs
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func memvimConfig(stateDir string, extra string) []byte {
	c := `{"capacity_cpus": 64`
	if stateDir != "" {
		c += fmt.Sprintf(`, "state_dir": %q`, stateDir)
	}
	if extra != "" {
		c += ", " + extra
	}
	return []byte(c + "}")
}

func startMemvim(t testing.TB, h *pluginhost.Host, name, stateDir string) *pluginhost.Instance {
	t.Helper()
	in, err := h.Start(ctxT(t), pluginhost.InstanceConfig{
		Name:     name,
		Plugin:   "memvim",
		Provider: sdk.Provider{Name: name, Location: "EUROPE." + strings.ToUpper(name)},
		Config:   memvimConfig(stateDir, ""),
	})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return in
}

func vimOf(t testing.TB, in *pluginhost.Instance) sdk.VIM {
	t.Helper()
	v, err := in.VIM()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func smallPart(slice, part string) sdk.PartSpec {
	return sdk.PartSpec{
		Ref:  sdk.PartRef{SliceID: slice, PartID: part},
		Name: part, Type: "DC", Location: "EUROPE.SPAIN", Bridge: "br-" + slice,
		VDUs: []sdk.VDUSpec{{Name: "web", Image: "debian", Instances: 2, CPUs: 1, MemoryMB: 512, StorageGB: 1}},
	}
}

// launches reads the pids the memvim plugin recorded at each Configure in stateDir.
func launches(t testing.TB, stateDir string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(stateDir, "launches"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(raw))
}

// waitFor polls cond until it holds; the deadline only keeps a broken build from hanging.
func waitFor(t testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: still not true after %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
