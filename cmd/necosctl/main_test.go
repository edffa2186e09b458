package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/api/apitest"
	"github.com/necos/necos/api/client"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/pluginhost"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) { os.Exit(apitest.Main(m)) }

// ctl runs necosctl against env as tenant alice (unless args give another token) and
// returns its standard output, and its error as printError shows it.
func ctl(t *testing.T, env *apitest.Env, args ...string) (string, string) {
	t.Helper()
	return ctlAt(t, env.URL, env.Token("alice"), args...)
}

// ctlAt runs necosctl against the API at url with token.
func ctlAt(t *testing.T, url, token string, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut)
	a.tokenFile = filepath.Join(t.TempDir(), "no-token")
	root := newRootCommand(a)
	base := []string{"--server", url, "--token", token}
	root.SetArgs(append(base, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		printError(&errOut, err)
	}
	return out.String(), errOut.String()
}

func mustCtl(t *testing.T, env *apitest.Env, args ...string) string {
	t.Helper()
	out, errOut := ctl(t, env, args...)
	if errOut != "" {
		t.Fatalf("necosctl %s: %s", strings.Join(args, " "), errOut)
	}
	return out
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSliceCommands(t *testing.T) {
	env := apitest.Start(t)
	spec := writeFile(t, "cdn.yaml", apitest.Example(t, "touristic-cdn-xen.yaml"))

	out := mustCtl(t, env, "slice", "create", "-f", spec, "--wait")
	for _, want := range []string{"State:", "Ready", "core-dc", "UNICAMP", "edge_vm-1", "10.10.", "pop-core-dc-to-pop-edge-dc-slice-spain", "NotBuilt"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}

	var list v1.SliceList
	if err := json.Unmarshal([]byte(mustCtl(t, env, "slice", "list", "-o", "json")), &list); err != nil || len(list.Slices) != 1 {
		t.Fatalf("list -o json: %+v %v", list, err)
	}
	id := list.Slices[0].ID
	if out := mustCtl(t, env, "slice", "list"); !strings.Contains(out, id) || !strings.Contains(out, "TouristicCDN_xen_sliced") {
		t.Errorf("list:\n%s", out)
	}

	var s map[string]any
	if err := yaml.Unmarshal([]byte(mustCtl(t, env, "slice", "get", id, "-o", "yaml")), &s); err != nil || s["id"] != id || s["cost_per_day"] == nil {
		t.Errorf("get -o yaml: %v %v", s, err)
	}
	if out := mustCtl(t, env, "slice", "get", id, "--necos"); !strings.Contains(out, "dc-slice-controller:") || !strings.Contains(out, "slices:") {
		t.Errorf("get --necos:\n%s", out)
	}
	// A Ready slice: watch shows its history and stops.
	out = mustCtl(t, env, "slice", "watch", id, "--until-ready")
	if !strings.Contains(out, "part.ready") || !strings.Contains(out, "slice is Ready") {
		t.Errorf("watch of a ready slice:\n%s", out)
	}

	// Timings: every part's provisioning inside the creation, in a table or as JSON.
	out = mustCtl(t, env, "slice", "timings", id)
	for _, want := range []string{"PHASE", "placement", "creation", "core-dc", "done"} {
		if !strings.Contains(out, want) {
			t.Errorf("timings lack %q:\n%s", want, out)
		}
	}
	var tm v1.Timings
	if err := json.Unmarshal([]byte(mustCtl(t, env, "slice", "timings", id, "-o", "json")), &tm); err != nil || tm.Slice != id {
		t.Fatalf("timings -o json: %v %+v", err, tm)
	}
	parts := 0
	for _, p := range tm.Phases {
		if p.Name == "part" && p.Outcome == v1.PhaseDone && p.End != nil {
			parts++
		}
	}
	if parts != 4 {
		t.Errorf("%d parts provisioned in the timings, want 4: %+v", parts, tm.Phases)
	}
	if out := mustCtl(t, env, "slice", "delete", id, "--wait"); !strings.Contains(out, "decommissioned") {
		t.Errorf("delete:\n%s", out)
	}
	_, errOut := ctl(t, env, "slice", "get", id)
	if !strings.Contains(errOut, "HTTP 404") {
		t.Errorf("get after delete: %s", errOut)
	}
}

// TestWatch follows a slice being built, then being decommissioned.
func TestWatch(t *testing.T) {
	env := apitest.Start(t)
	spec := writeFile(t, "small", apitest.SmallSlice("watched"))

	var created v1.Slice
	if err := json.Unmarshal([]byte(mustCtl(t, env, "slice", "create", "-f", spec, "-o", "json")), &created); err != nil {
		t.Fatal(err)
	}
	out := mustCtl(t, env, "slice", "watch", created.ID, "--until-ready")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.Contains(lines[0], "slice.accepted") || !strings.Contains(lines[len(lines)-1], "slice.ready") {
		t.Errorf("watch:\n%s", out)
	}
	if !strings.Contains(out, "part.ready") || !strings.Contains(out, "core-dc") || !strings.Contains(out, "edge-dc") {
		t.Errorf("watch shows no progress per part:\n%s", out)
	}

	if out := mustCtl(t, env, "slice", "delete", created.ID); !strings.Contains(out, "being decommissioned") {
		t.Errorf("delete:\n%s", out)
	}
	out = mustCtl(t, env, "slice", "watch", created.ID, "-o", "json")
	var last map[string]any
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last["type"] != v1.StreamEnd {
		t.Errorf("watch of a decommission does not end with %s:\n%s", v1.StreamEnd, out)
	}
}

func TestErrors(t *testing.T) {
	env := apitest.Start(t)
	// Two problems: each on its own line, named by its path.
	bad := writeFile(t, "bad.json", []byte(`{"slices": {"sliced": {"slice-parts": [{"dc-slice-part": {"VIM": {"name": "xen-vim"}}}]}}}`))
	_, errOut := ctl(t, env, "slice", "create", "-f", bad)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if !strings.HasPrefix(lines[0], "Error: invalid document") || !strings.Contains(lines[0], "HTTP 400") || len(lines) < 3 ||
		!strings.Contains(errOut, "\n  slices.sliced.id: ") || !strings.Contains(errOut, "\n  slices.sliced.slice-parts[0].dc-slice-part.name: ") {
		t.Errorf("bad spec:\n%s", errOut)
	}
	// One problem: said once.
	_, errOut = ctl(t, env, "slice", "create", "-f", writeFile(t, "noid.yaml", bytes.Replace(apitest.SmallSlice("x"), []byte("    id: x\n"), nil, 1)))
	if strings.Count(errOut, "slices.sliced.id") != 1 {
		t.Errorf("one problem:\n%s", errOut)
	}

	// A VIM this catalogue lacks: the VIMs it has, and the example catalogue offering it.
	kube := writeFile(t, "kube.yaml", bytes.Replace(apitest.SmallSlice("kube"), []byte("name: xen-vim"), []byte("name: KUBERNETES"), 1))
	_, errOut = ctl(t, env, "slice", "create", "-f", kube)
	if !strings.Contains(errOut, `unknown VIM "KUBERNETES": this platform offers [xen-vim]`) ||
		!strings.Contains(errOut, "--catalogue examples/catalogue-kubernetes.yaml") {
		t.Errorf("unknown VIM:\n%s", errOut)
	}

	// The spec asks 64 CPUs in Spain: the slice fails, and watch says so.
	huge := writeFile(t, "huge.yaml", []byte(strings.Replace(string(apitest.SmallSlice("huge")), "cpu-number: 1", "cpu-number: 64", 1)))
	_, errOut = ctl(t, env, "slice", "create", "-f", huge, "--wait")
	if !strings.Contains(errOut, "HTTP 409") || !strings.Contains(errOut, "(slice huge-") {
		t.Errorf("failed slice:\n%s", errOut)
	}

	// Another document with the id of a live slice: the commands that free it. (The
	// same document again is the same create: it answers the slice it made.)
	mustCtl(t, env, "slice", "create", "-f", writeFile(t, "dup.yaml", apitest.SmallSlice("dup")), "--wait")
	other := writeFile(t, "dup2.yaml", []byte(strings.Replace(string(apitest.SmallSlice("dup")), "cpu-number: 1", "cpu-number: 2", 1)))
	_, errOut = ctl(t, env, "slice", "create", "-f", other)
	if !strings.Contains(errOut, "HTTP 409") || !strings.Contains(errOut, "necosctl slice delete dup-") {
		t.Errorf("id held by a live slice:\n%s", errOut)
	}

	var out, stderr bytes.Buffer
	a := newApp(&out, &stderr)
	a.tokenFile = filepath.Join(t.TempDir(), "none")
	t.Setenv(envToken, "") // before the command reads it as the flag's default
	root := newRootCommand(a)
	root.SetArgs([]string{"--server", env.URL, "slice", "list"})
	err := root.Execute()
	printError(&stderr, err)
	if !strings.Contains(stderr.String(), "HTTP 401") || !strings.Contains(stderr.String(), "--token") {
		t.Errorf("no token:\n%s", stderr.String())
	}
	_, errOut = ctl(t, env, "slice", "list", "-o", "xml")
	if !strings.Contains(errOut, `-o "xml"`) {
		t.Errorf("bad -o: %s", errOut)
	}
}

// TestTokenFile reads the demo tenant's token from the file necosd writes.
func TestTokenFile(t *testing.T) {
	env := apitest.Start(t)
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut)
	a.tokenFile = writeFile(t, "demo-token", []byte(env.Token("bob")+"\n"))
	t.Setenv(envToken, "")
	root := newRootCommand(a)
	root.SetArgs([]string{"--server", env.URL, "providers"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"UNICAMP", "AMERICA.BRAZIL.UNICAMP", "dc xen-vim [DC,EDGE] (vim-xen)", "10.100.0.1",
		"CONTROLLER ID", "nothing listens there", "not reachable from the host"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("providers lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPlugins(t *testing.T) {
	env := apitest.Start(t)
	mustCtl(t, env, "slice", "create", "-f", writeFile(t, "s.yaml", apitest.SmallSlice("p")), "--wait")
	out := mustCtl(t, env, "plugins", "list")
	if !strings.Contains(out, "UNICAMP") || !strings.Contains(out, "running") || !strings.Contains(out, "vim") {
		t.Errorf("plugins list:\n%s", out)
	}

	// Lock runs locally: no server involved.
	dir := t.TempDir()
	bin := filepath.Join(dir, pluginhost.BinaryPrefix+"demo")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out = mustCtl(t, env, "plugins", "lock", "--dir", dir)
	if !strings.Contains(out, "demo") || !strings.Contains(out, "added") {
		t.Errorf("lock:\n%s", out)
	}
	if out := mustCtl(t, env, "plugins", "lock", "--dir", dir); !strings.Contains(out, "unchanged") {
		t.Errorf("lock again:\n%s", out)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var changes []pluginhost.LockChange
	if err := json.Unmarshal([]byte(mustCtl(t, env, "plugins", "lock", "--dir", dir, "-o", "json")), &changes); err != nil ||
		len(changes) != 1 || changes[0].Change != pluginhost.LockUpdated || changes[0].Old == "" {
		t.Errorf("lock after change: %+v %v", changes, err)
	}
	if _, err := os.Stat(filepath.Join(dir, pluginhost.DefaultLockFile)); err != nil {
		t.Error(err)
	}
}

func TestFailureReasonGroupsBySliceLessMessage(t *testing.T) {
	a := failureReason(errors.New(`slice "X-b1-3" (id 7f3a) failed: provider WAN unavailable`), "7f3a", "X-b1-3")
	b := failureReason(errors.New(`slice "X-b1-9" (id 9c21) failed: provider WAN unavailable`), "9c21", "X-b1-9")
	if a != b || strings.Contains(a, "7f3a") {
		t.Fatalf("reasons differ or keep the id: %q vs %q", a, b)
	}
}

// TestPrintErrorConnectionRefused checks that a call to necosd that is refused tells the
// user how to start necosd or where to point necosctl, and that other errors, a guest
// refusing SSH among them, get no such hint.
func TestPrintErrorConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the dial is refused
	c, err := client.New("http://"+addr, "token")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListSlices(context.Background())
	if err == nil {
		t.Fatal("a call to a closed port succeeded")
	}
	var out bytes.Buffer
	printError(&out, fmt.Errorf("list slices: %w", err))
	if !strings.Contains(out.String(), "Is necosd running?") || !strings.Contains(out.String(), "./scripts/run.sh") {
		t.Fatalf("no next step for a refused call to necosd:\n%s", out.String())
	}
	_, dialErr := net.Dial("tcp", addr)
	if dialErr == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	for _, other := range []error{errors.New("something else"), fmt.Errorf("ssh core/vm-1: connect to ns:10.0.0.2:22: %w", dialErr)} {
		out.Reset()
		printError(&out, other)
		if strings.Contains(out.String(), "necosd running") {
			t.Fatalf("necosd hint on %v:\n%s", other, out.String())
		}
	}
}

// A table's free-text cells stay on one bounded line.
func TestClip(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"two\nlines  and\ttabs", 40, "two lines and tabs"},
		{strings.Repeat("é", 70), 60, strings.Repeat("é", 57) + "..."},
	} {
		if got := clip(c.in, c.n); got != c.want {
			t.Errorf("clip(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// TestDemoTenantsFlag: a tenant the demo has no story for is refused before anything is
// created, naming the flag.
func TestDemoTenantsFlag(t *testing.T) {
	env := apitest.Start(t)
	_, errOut := ctl(t, env, "demo", "--tenants", "cdn,video")
	if !strings.Contains(errOut, "--tenants: expected cdn, iot or cdn,iot") || !strings.Contains(errOut, "cdn,video") {
		t.Errorf("bad --tenants:\n%s", errOut)
	}
	out := mustCtl(t, env, "slice", "list")
	if strings.Contains(out, "touristic") || strings.Contains(out, "iotservice") {
		t.Errorf("slices after a refused demo:\n%s", out)
	}
}
