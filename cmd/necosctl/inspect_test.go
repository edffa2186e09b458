package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/api"
	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
	"gopkg.in/yaml.v3"
)

// startWithPolicies is apitest's necosd with the policy routes necosd serves too.
func startWithPolicies(t *testing.T) *apitest.Env {
	t.Helper()
	env := apitest.Start(t)
	h := env.Handler.(*api.Handler)
	api.PolicyRoutes(env.Engine, env.Store)(h.Router(), h.Auth)
	return env
}

const cpuPolicy = `policy:
  name: cpu-high
  part: edge-dc
  operator: '>'
  value: 80
  trigger: {points: 2}
  metric-collector: {metric-name: PERCENT_CPU_UTILIZATION, granularity: 1}
  post-deployment:
    actions: {vertical: [{action: {type: add-cpu, max: 4}}]}
`

func TestEventsAndPolicies(t *testing.T) {
	env := startWithPolicies(t)
	var s v1.Slice
	if err := json.Unmarshal([]byte(mustCtl(t, env, "slice", "create", "--wait", "-o", "json", "-f", writeFile(t, "s.yaml", apitest.SmallSlice("ev")))), &s); err != nil {
		t.Fatal(err)
	}

	// Events: a table with millisecond times, or the API's list as JSON or YAML.
	out := mustCtl(t, env, "slice", "events", s.ID)
	if !strings.Contains(out, "SEQ") || !strings.Contains(out, "slice.accepted") || !strings.Contains(out, "part.ready") ||
		!regexp.MustCompile(`\d\d:\d\d:\d\d\.\d{3}  +slice\.ready`).MatchString(out) {
		t.Errorf("events:\n%s", out)
	}
	var evs v1.EventList
	if err := json.Unmarshal([]byte(mustCtl(t, env, "slice", "events", s.ID, "-o", "json")), &evs); err != nil || len(evs.Events) < 3 ||
		evs.Events[0].Type != "slice.accepted" || evs.Events[len(evs.Events)-1].Type != "slice.ready" {
		t.Errorf("events -o json: %v %+v", err, evs)
	}
	var ye map[string][]map[string]any
	if err := yaml.Unmarshal([]byte(mustCtl(t, env, "slice", "events", s.ID, "-o", "yaml")), &ye); err != nil || len(ye["events"]) != len(evs.Events) {
		t.Errorf("events -o yaml: %v %v", err, ye)
	}
	if _, errOut := ctl(t, env, "slice", "events", "nope"); !strings.Contains(errOut, "HTTP 404") {
		t.Errorf("events of no slice: %s", errOut)
	}

	// Policies: none, then one registered from a file, read, listed both ways, replaced, deleted.
	if out := mustCtl(t, env, "slice", "policies", s.ID); strings.Contains(out, "cpu-high") || !strings.Contains(out, "CONDITION") {
		t.Errorf("no policies yet:\n%s", out)
	}
	pol := writeFile(t, "pol.yaml", []byte(cpuPolicy))
	out = mustCtl(t, env, "policy", "create", s.ID, "-f", pol)
	if !strings.Contains(out, "policy cpu-high registered on part edge-dc") || !strings.Contains(out, "PERCENT_CPU_UTILIZATION > 80") {
		t.Errorf("policy create:\n%s", out)
	}
	if out := mustCtl(t, env, "policy", "create", s.ID, "-f", pol); !strings.Contains(out, "replaced") {
		t.Errorf("policy create again:\n%s", out)
	}
	out = mustCtl(t, env, "slice", "policies", s.ID)
	if !strings.Contains(out, "cpu-high") || !strings.Contains(out, "edge-dc") || !strings.Contains(out, "api") {
		t.Errorf("slice policies:\n%s", out)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(mustCtl(t, env, "policy", "get", s.ID, "cpu-high", "-o", "json")), &got); err != nil ||
		got["name"] != "cpu-high" || got["policy"].(map[string]any)["operator"] != ">" {
		t.Errorf("policy get -o json: %v %v", err, got)
	}
	// A bad policy names its field; nothing is registered.
	bad := writeFile(t, "bad.yaml", []byte(strings.Replace(strings.Replace(cpuPolicy, "'>'", "'!'", 1), "cpu-high", "bad", 1)))
	if _, errOut := ctl(t, env, "policy", "create", s.ID, "-f", bad); !strings.Contains(errOut, "HTTP 400") || !strings.Contains(errOut, "operator") {
		t.Errorf("bad policy: %s", errOut)
	}
	if out := mustCtl(t, env, "policy", "delete", s.ID, "cpu-high"); !strings.Contains(out, "deleted") {
		t.Errorf("policy delete:\n%s", out)
	}
	if _, errOut := ctl(t, env, "policy", "get", s.ID, "cpu-high"); !strings.Contains(errOut, "has no policy cpu-high") {
		t.Errorf("deleted policy: %s", errOut)
	}
	var l map[string][]any
	if err := json.Unmarshal([]byte(mustCtl(t, env, "policy", "list", s.ID, "-o", "json")), &l); err != nil || l["policies"] == nil || len(l["policies"]) != 0 {
		t.Errorf("policy list after delete: %v %v", err, l)
	}
}

func TestShowCredentials(t *testing.T) {
	env := apitest.Start(t)
	var s v1.Slice
	if err := json.Unmarshal([]byte(mustCtl(t, env, "slice", "create", "--wait", "-o", "json", "-f", writeFile(t, "s.yaml", apitest.SmallSlice("cred")))), &s); err != nil {
		t.Fatal(err)
	}
	const keyMark = "PRIVATE KEY-----"
	for _, p := range s.Parts {
		if p.Credential == nil || p.Credential.Kind != "ssh-key" || p.Credential.Secret != "" {
			t.Errorf("create -o json shows part %s's credential as %+v, want its kind without its secret", p.Name, p.Credential)
		}
	}
	out := mustCtl(t, env, "slice", "get", s.ID)
	if strings.Contains(out, keyMark) || !strings.Contains(out, "secrets hidden: --show-credentials") || !strings.Contains(out, "ssh-key") {
		t.Errorf("get hides no secret or says nothing:\n%s", out)
	}
	if out := mustCtl(t, env, "slice", "get", s.ID, "-o", "yaml"); strings.Contains(out, keyMark) {
		t.Errorf("get -o yaml shows a secret:\n%s", out)
	}
	out = mustCtl(t, env, "slice", "get", s.ID, "--show-credentials")
	if strings.Count(out, "BEGIN OPENSSH "+keyMark) != len(s.Parts) || strings.Contains(out, "secrets hidden") {
		t.Errorf("get --show-credentials shows not every part's key:\n%s", out)
	}
	var shown v1.Slice
	if err := json.Unmarshal([]byte(mustCtl(t, env, "slice", "get", s.ID, "--show-credentials", "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	for _, p := range shown.Parts {
		if p.Credential == nil || !strings.Contains(p.Credential.Secret, keyMark) {
			t.Errorf("get --show-credentials -o json: part %s: %+v", p.Name, p.Credential)
		}
	}
	// Another tenant never gets them, flag or not.
	_, errOut := ctl(t, env, "--token", env.Token("bob"), "slice", "get", s.ID, "--show-credentials")
	if !strings.Contains(errOut, "HTTP 404") {
		t.Errorf("bob reads alice's slice: %s", errOut)
	}
}

// TestWatchFollows follows a Ready slice until it is decommissioned, and ends quietly
// when interrupted.
func TestWatchFollows(t *testing.T) {
	env := apitest.Start(t)
	var s v1.Slice
	if err := json.Unmarshal([]byte(mustCtl(t, env, "slice", "create", "--wait", "-o", "json", "-f", writeFile(t, "s.yaml", apitest.SmallSlice("fol")))), &s); err != nil {
		t.Fatal(err)
	}

	// Interrupted: no error, the history and the live state shown.
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := ctlCtx(ctx, t, env, func(out *syncBuffer) {
		waitFor(t, out, "slice is Ready")
		cancel()
	}, "slice", "watch", s.ID)
	if errOut != "" || !strings.Contains(out, "slice.ready") {
		t.Errorf("interrupted watch: %q\n%s", errOut, out)
	}

	// Followed past Ready until the slice is gone.
	out, errOut = ctlCtx(context.Background(), t, env, func(out *syncBuffer) {
		waitFor(t, out, "slice is Ready")
		mustCtl(t, env, "slice", "delete", s.ID)
	}, "slice", "watch", s.ID)
	if errOut != "" {
		t.Fatalf("watch: %s", errOut)
	}
	ready, deleting, gone := strings.Index(out, "slice is Ready"), strings.Index(out, "slice.deleting"), strings.Index(out, "(gone)")
	if ready < 0 || deleting < ready || gone < deleting {
		t.Errorf("watch did not follow the decommission to the end:\n%s", out)
	}
}

// syncBuffer is a buffer written by the command and read by the test at once.
type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.String()
}

// ctlCtx runs necosctl under ctx while during runs beside it, and returns what it printed.
func ctlCtx(ctx context.Context, t *testing.T, env *apitest.Env, during func(out *syncBuffer), args ...string) (string, string) {
	t.Helper()
	out, errOut := newSyncBuffer(), newSyncBuffer()
	a := newApp(out, errOut)
	a.tokenFile = filepath.Join(t.TempDir(), "no-token")
	root := newRootCommand(a)
	root.SetArgs(append([]string{"--server", env.URL, "--token", env.Token("alice")}, args...))
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	during(out)
	if err := <-done; err != nil {
		printError(errOut, err)
	}
	return out.String(), errOut.String()
}

func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in:\n%s", want, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Tables show a metric value with at most two decimals; -o json keeps every digit.
func TestMetricValueInTables(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{43.45374116235084, "43.45"},
		{2048, "2048"},
		{0.8987302480221631, "0.9"},
		{-1.005, "-1"},
		{99.999, "100"},
		{0, "0"},
	} {
		if got := value(c.in); got != c.want {
			t.Errorf("value(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
