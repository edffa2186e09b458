package pluginhost_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/sdk"
)

func TestStartRefusesTamperedBinary(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	path := filepath.Join(dir, "necos-plugin-memvim")
	tamper(t, path)

	_, err := h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "spain", Plugin: "memvim", Config: memvimConfig("", "")})
	if !errors.Is(err, pluginhost.ErrHashMismatch) {
		t.Fatalf("want ErrHashMismatch, got %v", err)
	}
	for _, s := range []string{path, h.LockFile(), "necosctl plugins lock", `instance "spain"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q should contain %q", err, s)
		}
	}
	t.Logf("refused: %v", err)
	assertRefused(t, h, "spain", "does not match the lock file")
}

// assertRefused checks that the host lists instance name, and it only, as refused with
// a reason that says why and shows no path of the host's.
func assertRefused(t *testing.T, h *pluginhost.Host, name, why string) {
	t.Helper()
	list := h.Instances()
	if len(list) != 1 || list[0].Name != name || list[0].State != pluginhost.StateRefused || list[0].Pid != 0 {
		t.Fatalf("instances after a refused Start: %+v, want %s refused", list, name)
	}
	if msg := list[0].LastError; !strings.Contains(msg, why) || strings.Contains(msg, h.Dir()) {
		t.Errorf("refused instance's error %q: want it to say %q without the plugin directory %s", msg, why, h.Dir())
	}
	if _, ok := h.Instance(name); ok {
		t.Errorf("a refused instance is handed out")
	}
}

func TestStartRefusesUnlistedBinary(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	// Dropped in after the lock was written.
	extra := filepath.Join(dir, "necos-plugin-extra")
	copyFile(t, binary(t, "plugins/memvim"), extra)

	_, err := h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "greece", Plugin: "extra", Config: memvimConfig("", "")})
	if !errors.Is(err, pluginhost.ErrNotLocked) {
		t.Fatalf("want ErrNotLocked, got %v", err)
	}
	for _, s := range []string{extra, h.LockFile(), "necosctl plugins lock"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q should contain %q", err, s)
		}
	}
	t.Logf("refused: %v", err)

	_, err = h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "x", Plugin: "missing"})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "necos-plugin-missing")) || !errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), "make build") {
		t.Errorf("missing binary: want an error naming its path and how to build it, got %v", err)
	}
	_, err = h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "x", Plugin: "../memvim"})
	if err == nil {
		t.Errorf("a path-like plugin name must be refused")
	}
}

func TestUnsupportedAPIVersion(t *testing.T) {
	dir := pluginDir(t, "futureapi")
	h, _ := newHost(t, dir, pluginhost.Options{})
	_, err := h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "future", Plugin: "futureapi"})
	if err == nil {
		t.Fatal("a plugin speaking only v7 and v8 was accepted")
	}
	for _, s := range []string{"host speaks v1", "plugin speaks v7, v8", "futureapi"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q should contain %q", err, s)
		}
	}
	if c := sdk.CodeOf(err); c != sdk.CodeFailedPrecondition {
		t.Errorf("code: got %s, want FailedPrecondition", c)
	}
	t.Logf("refused: %v", err)
}

func TestConfigSchemaError(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	_, err := h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "spain", Plugin: "memvim",
		Config: []byte(`{"state_dir": 5, "bogus": true, "healthy": "yes"}`)})
	if err == nil {
		t.Fatal("a bad configuration was accepted")
	}
	// Every problem at once, each naming its key.
	for _, s := range []string{`instance "spain"`, "bogus: unknown key", "state_dir: expected a string",
		"healthy: expected true or false", "capacity_cpus: required"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q should contain %q", err, s)
		}
	}
	if c := sdk.CodeOf(err); c != sdk.CodeInvalidArgument {
		t.Errorf("code: got %s, want InvalidArgument", c)
	}
	t.Logf("refused: %v", err)
	assertRefused(t, h, "spain", "bogus: unknown key")
	// The name is free again for a good configuration, which replaces the refusal.
	startMemvim(t, h, "spain", "")
	if list := h.Instances(); len(list) != 1 || list[0].State != pluginhost.StateRunning {
		t.Errorf("instances after a good Start: %+v, want spain running only", list)
	}
}

func TestInstancesShareABinary(t *testing.T) {
	dir := pluginDir(t, "memvim", "futureapi")
	h, logs := newHost(t, dir, pluginhost.Options{})
	spain := startMemvim(t, h, "spain", t.TempDir())
	greece := startMemvim(t, h, "greece", t.TempDir())

	ctx := ctxT(t)
	for _, in := range []*pluginhost.Instance{spain, greece} {
		part, err := vimOf(t, in).Create(ctx, sdk.CreateRequest{Part: smallPart("s1", "edge")})
		if err != nil {
			t.Fatal(err)
		}
		// Each process got its own provider identity.
		if part.Attributes["provider"] != in.Name() {
			t.Errorf("%s: part made by provider %q", in.Name(), part.Attributes["provider"])
		}
		if strconv.Itoa(in.Status().Pid) != part.Attributes["pid"] {
			t.Errorf("%s: answered by pid %s, status says %d", in.Name(), part.Attributes["pid"], in.Status().Pid)
		}
	}

	list := h.Instances()
	if len(list) != 2 || list[0].Name != "greece" || list[1].Name != "spain" {
		t.Fatalf("instances: %+v", list)
	}
	if list[0].Pid == list[1].Pid || list[0].Pid == 0 {
		t.Errorf("two instances should be two processes: pids %d and %d", list[0].Pid, list[1].Pid)
	}
	bins := mustDiscover(t, h)
	for _, s := range list {
		if s.Plugin != "memvim" || s.Version != "0.1.0" || s.APIVersion != "v1" || s.State != pluginhost.StateRunning ||
			s.Restarts != 0 || s.Path != filepath.Join(dir, "necos-plugin-memvim") || s.Provider != s.Name ||
			len(s.Kinds) != 2 || s.Kinds[0] != sdk.KindVIM || s.Kinds[1] != sdk.KindMonitor || s.Started.IsZero() {
			t.Errorf("status: %+v", s)
		}
		for _, b := range bins {
			if b.Name == "memvim" && b.SHA256 != s.SHA256 {
				t.Errorf("status sha256 %s, binary %s", s.SHA256, b.SHA256)
			}
		}
	}
	if info := spain.Info(); info.Name != "memvim" || !info.Serves(sdk.KindVIM) {
		t.Errorf("info: %+v", info)
	}

	// Plugin logs come back through hclog, under the instance's name.
	waitFor(t, "plugin log forwarded", 10e9, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "necosd.plugin.greece") && strings.Contains(line, "part created") &&
				strings.Contains(line, "part=s1/edge") {
				return true
			}
		}
		return false
	})

	if _, err := spain.WAN(); sdk.CodeOf(err) != sdk.CodeUnimplemented {
		t.Errorf("WAN of a VIM plugin: want Unimplemented, got %v", err)
	}
	_, err := h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "spain", Plugin: "memvim", Config: memvimConfig("", "")})
	if sdk.CodeOf(err) != sdk.CodeAlreadyExists {
		t.Errorf("duplicate name: want AlreadyExists, got %v", err)
	}
}

func TestStopAndClose(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	names := []string{"core", "edge1", "edge2"}
	var pids []int
	var ins []*pluginhost.Instance
	for _, n := range names {
		in := startMemvim(t, h, n, "")
		ins = append(ins, in)
		pids = append(pids, in.Status().Pid)
	}
	ctx := ctxT(t)

	if err := h.Stop("core"); err != nil {
		t.Fatal(err)
	}
	if !processGone(pids[0]) {
		t.Errorf("stopped instance's process %d still runs", pids[0])
	}
	if _, err := vimOf(t, ins[0]).Describe(ctx, sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: "s", PartID: "p"}}); !errors.Is(err, pluginhost.ErrClosed) {
		t.Errorf("call on a stopped instance: want ErrClosed, got %v", err)
	}
	if st := ins[0].Status(); st.State != pluginhost.StateStopped || st.Pid != 0 {
		t.Errorf("stopped status: %+v", st)
	}
	if err := h.Stop("core"); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Errorf("stop twice: want NotFound, got %v", err)
	}

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waits for the processes: they are gone when it returns.
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("plugin process %d still runs after Close", pid)
		}
	}
	if n := len(h.Instances()); n != 0 {
		t.Errorf("%d instances listed after Close", n)
	}
	if _, err := vimOf(t, ins[1]).Describe(ctx, sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: "s", PartID: "p"}}); !errors.Is(err, pluginhost.ErrClosed) {
		t.Errorf("call after Close: want ErrClosed, got %v", err)
	}
	if _, err := h.Start(ctx, pluginhost.InstanceConfig{Name: "late", Plugin: "memvim"}); !errors.Is(err, pluginhost.ErrClosed) {
		t.Errorf("Start after Close: want ErrClosed, got %v", err)
	}
}

// Close racing with Starts: whatever was launched is gone when Close and the Starts
// have returned.
func TestCloseDuringStarts(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	states := make([]string, 4)
	errs := make([]error, len(states))
	var wg sync.WaitGroup
	for i := range states {
		states[i] = t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "edge" + strconv.Itoa(i), Plugin: "memvim",
				Config: memvimConfig(states[i], "")})
		}()
	}
	time.Sleep(50 * time.Millisecond) // let some launches begin
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, state := range states {
		if errs[i] != nil && !errors.Is(errs[i], pluginhost.ErrClosed) {
			t.Errorf("start %d: %v", i, errs[i])
		}
		raw, err := os.ReadFile(filepath.Join(state, "launches"))
		t.Logf("start %d: error %v; launched %q", i, errs[i], strings.TrimSpace(string(raw)))
		if err != nil {
			continue // never configured
		}
		for _, f := range strings.Fields(string(raw)) {
			pid, _ := strconv.Atoi(f)
			if !processGone(pid) {
				t.Errorf("start %d (err %v): plugin %d still runs after Close", i, errs[i], pid)
			}
		}
	}
}

// A binary verified at one start and then changed in place (same size, same name, no
// rename) is hashed again at the next start and refused.
func TestStartRehashesABinaryChangedInPlace(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	path := filepath.Join(dir, "necos-plugin-memvim")
	if _, err := h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "spain", Plugin: "memvim", Config: memvimConfig("", "")}); err != nil {
		t.Fatal(err)
	}
	if err := h.Stop("spain"); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The last byte of an ELF binary is section data nobody reads at start-up.
	if _, err := f.WriteAt([]byte{raw[len(raw)-1] ^ 0xff}, int64(len(raw)-1)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "spain", Plugin: "memvim", Config: memvimConfig("", "")})
	if !errors.Is(err, pluginhost.ErrHashMismatch) {
		t.Fatalf("start of a binary changed in place: want ErrHashMismatch, got %v", err)
	}
}

// A plugin runs in the instance's Dir, so a relative path in its configuration (here
// memvim's state_dir) lands under that directory, not under the host's.
func TestPluginRunsInItsDir(t *testing.T) {
	dir := pluginDir(t, "memvim")
	h, _ := newHost(t, dir, pluginhost.Options{})
	work := t.TempDir()
	in, err := h.Start(ctxT(t), pluginhost.InstanceConfig{Name: "spain", Plugin: "memvim",
		Config: memvimConfig("state", ""), Dir: work})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(work, "state", "launches")); err != nil {
		t.Errorf("relative state_dir not under the instance's Dir: %v", err)
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", in.Status().Pid)); err != nil || cwd != work {
		t.Errorf("plugin's working directory %q (%v), want %q", cwd, err, work)
	}
}

// Calls moving more than the flow-control window (4 MiB, fixed: see the sdk's
// flowWindow) complete: the window is granted again as the receiver reads. The answer
// is one message larger than the window, and so is the last write (gRPC's default
// limit of 4 MiB on a message a server receives refused it: sdk.MaxMessageBytes).
func TestCallsLargerThanFlowWindow(t *testing.T) {
	h, _ := newHost(t, pluginDir(t, "memvim"), pluginhost.Options{})
	in := startMemvim(t, h, "big", "")
	mon, err := in.Monitor()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	tag := strings.Repeat("x", 1000)
	const batches, size = 3, 2000 // about 2 MB on the wire per batch, the last 8 MB
	for b := range batches {
		n := size
		if b == batches-1 {
			n = 4 * size
		}
		pts := make([]sdk.Point, n)
		for i := range pts {
			pts[i] = sdk.Point{Metric: "big", Tags: map[string]string{"node": tag}, Value: float64(b*size + i),
				Time: time.Unix(int64(b*size+i), 0)}
		}
		if err := mon.Write(ctx, sdk.WriteRequest{Points: pts}); err != nil {
			t.Fatalf("write batch %d of %d points: %v", b, n, err)
		}
	}
	total := (batches + 3) * size
	got, err := mon.Query(ctx, sdk.Query{Metric: "big"})
	if err != nil {
		t.Fatalf("query %d points: %v", total, err)
	}
	last := total - 1
	if len(got) != total || got[last].Value != float64(last) || got[last].Tags["node"] != tag {
		t.Fatalf("query: %d points back of %d written", len(got), total)
	}
}
