package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/api"
	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk"
)

// elasticEnv is the API with the metrics and policy routes over a real engine (vim-xen
// on libvirt's in-process test driver), a real influxd behind the monitor-influx
// plugin, the monitoring collector and the elasticity engine.
type elasticEnv struct {
	url    string
	engine *sro.Engine
	store  *store.Store
	tokens map[string]string
}

func startElastic(t *testing.T) *elasticEnv {
	t.Helper()
	influx := testenv.StartInflux(t)
	env := apitest.Start(t, apitest.Options{
		Catalogue: `
providers:
  - name: SPAIN
    location: EUROPE.SPAIN
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 16, memory_mb: 32768, storage_gb: 500}, price_per_node_day: 1}}
` + influx.MonitorCatalogue(),
		Plugins: []string{"vim-xen", "monitor-influx"},
		Configure: func(c *daemon.Config) {
			c.Off.Monitoring, c.Off.Elasticity = false, false
			c.Elasticity.Resync = 100 * time.Millisecond
		},
	})
	tokens := map[string]string{}
	for _, tenant := range apitest.Tenants {
		tokens[tenant] = env.Token(tenant)
	}
	return &elasticEnv{url: env.URL, engine: env.Engine, store: env.Store, tokens: tokens}
}

// call sends a request as tenant and returns the status and body.
func (e *elasticEnv) call(t *testing.T, tenant, method, path, contentType, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.tokens[tenant])
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// wantProblem checks an error answer's status and that one of its problems is at path.
func wantProblem(t *testing.T, status int, body []byte, wantStatus int, path string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status %d, want %d: %s", status, wantStatus, body)
		return
	}
	e := decode[v1.Error](t, body)
	for _, p := range e.Problems {
		if p.Path == path {
			return
		}
	}
	t.Errorf("no problem at %q: %s", path, body)
}

// elasticSlice's nodes have 2 vCPUs: libvirt's test driver reports wall time as a
// domain's CPU time, so the collector reads 100 % / vCPUs for every node. With one vCPU
// each, the node the test does not load read 100 %, above the policy's 80, and the
// action's effect (every series back under the threshold) showed only when the grown
// node's point happened to be stored a few microseconds before the other's.
const elasticSlice = `slices:
  sliced:
    id: %s
    slice-parts:
      - dc-slice-part:
          name: edge
          type: EDGE
          location: EUROPE.SPAIN
          monitoring-parameters: {granularity-secs: 1}
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: k8s-node, instance-count: 2, epa-attributes: {host-epa: {cpu-number: 2, memory-mb: 512}}}
`

func (e *elasticEnv) slice(t *testing.T, tenant, name string) string {
	t.Helper()
	status, b := e.call(t, tenant, http.MethodPost, "/v1/slices?wait=true", "text/x-yaml", fmt.Sprintf(elasticSlice, name))
	if status != http.StatusCreated {
		t.Fatalf("create slice: %d %s", status, b)
	}
	return decode[v1.Slice](t, b).ID
}

func TestMetricsAndPolicyRoutes(t *testing.T) {
	e := startElastic(t)
	id := e.slice(t, "alice", "iot")
	bobs := e.slice(t, "bob", "other")
	base := "/v1/slices/" + id

	t.Run("GET metrics", func(t *testing.T) {
		var ans api.MetricsAnswer
		deadline := time.Now().Add(time.Minute)
		for {
			status, b := e.call(t, "alice", http.MethodGet, base+"/metrics?metric=MEMORY_USED_MB&last=2&since=5m", "", "")
			if status != http.StatusOK {
				t.Fatalf("%d %s", status, b)
			}
			if ans = decode[api.MetricsAnswer](t, b); len(ans.Series) == 2 && len(ans.Series[1].Points) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("metrics of both nodes: %s", b)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for i, s := range ans.Series {
			node := fmt.Sprintf("k8s-node-%d", i+1)
			if s.Metric != sdk.MetricMemoryUsedMB || s.Tags[sdk.TagSlice] != id || s.Tags[sdk.TagPart] != "edge" ||
				s.Tags[sdk.TagResourceID] != node || s.Tags[sdk.TagNodeType] != "worker" || s.Points[1].Value <= 0 {
				t.Errorf("series %d: %+v", i, s)
			}
		}
		// All metrics of one node, by default the last 100 points.
		status, b := e.call(t, "alice", http.MethodGet, base+"/metrics?node=k8s-node-1", "", "")
		if status != http.StatusOK {
			t.Fatalf("%d %s", status, b)
		}
		metrics := map[string]bool{}
		for _, s := range decode[api.MetricsAnswer](t, b).Series {
			metrics[s.Metric] = true
		}
		if !metrics[sdk.MetricCPUPercent] || !metrics[sdk.MetricMemoryUsedMB] {
			t.Errorf("metrics of k8s-node-1: %v", metrics)
		}
		if status, b := e.call(t, "bob", http.MethodGet, base+"/metrics", "", ""); status != http.StatusNotFound {
			t.Errorf("another tenant's metrics: %d %s", status, b)
		}
		status, b = e.call(t, "alice", http.MethodGet, base+"/metrics?last=-1&since=yesterday", "", "")
		wantProblem(t, status, b, http.StatusBadRequest, "query last")
		wantProblem(t, status, b, http.StatusBadRequest, "query since")
	})

	t.Run("POST metrics", func(t *testing.T) {
		at := time.Now().Add(-time.Second).Truncate(time.Millisecond)
		lines := fmt.Sprintf("PERCENT_CPU_UTILIZATION,ResourceID=k8s-node-2 value=42 %d\nRPS,part=edge value=7\n", at.UnixMilli())
		status, b := e.call(t, "alice", http.MethodPost, base+"/metrics?precision=ms", "text/plain", lines)
		if status != http.StatusOK || decode[api.PushAnswer](t, b).Stored != 2 {
			t.Fatalf("push line protocol: %d %s", status, b)
		}
		status, b = e.call(t, "alice", http.MethodPost, base+"/metrics", "application/json",
			`{"points": [{"metric": "RPS", "part": "edge", "value": 8}]}`)
		if status != http.StatusOK || decode[api.PushAnswer](t, b).Stored != 1 {
			t.Fatalf("push JSON: %d %s", status, b)
		}
		status, b = e.call(t, "alice", http.MethodGet, base+"/metrics?metric=PERCENT_CPU_UTILIZATION&source=push", "", "")
		ans := decode[api.MetricsAnswer](t, b)
		if status != http.StatusOK || len(ans.Series) != 1 || ans.Series[0].Tags[sdk.TagNodeType] != "worker" ||
			ans.Series[0].Tags[sdk.TagPart] != "edge" || !ans.Series[0].Points[0].Time.Equal(at) || ans.Series[0].Points[0].Value != 42 {
			t.Errorf("pushed point reads back as %d %s", status, b)
		}
		if status, b := e.call(t, "alice", http.MethodGet, base+"/metrics?metric=RPS", "", ""); status != http.StatusOK ||
			len(decode[api.MetricsAnswer](t, b).Series[0].Points) != 2 {
			t.Errorf("RPS: %d %s", status, b)
		}

		// Only to one's own slice, parts and nodes.
		if status, b := e.call(t, "alice", http.MethodPost, "/v1/slices/"+bobs+"/metrics", "text/plain", "RPS value=1"); status != http.StatusNotFound {
			t.Errorf("push to another tenant's slice: %d %s", status, b)
		}
		status, b = e.call(t, "alice", http.MethodPost, base+"/metrics", "text/plain",
			"RPS,slice="+bobs+" value=1\nRPS,ResourceID=vm-9 value=1\nRPS,part=core value=1\n")
		wantProblem(t, status, b, http.StatusBadRequest, "points[0].tags.slice")
		wantProblem(t, status, b, http.StatusBadRequest, "points[1].tags.ResourceID")
		wantProblem(t, status, b, http.StatusBadRequest, "points[2].tags.part")
		status, b = e.call(t, "alice", http.MethodPost, base+"/metrics", "text/plain", "RPS value=1\nRPS,host\n")
		wantProblem(t, status, b, http.StatusBadRequest, "line 2")
		status, b = e.call(t, "alice", http.MethodPost, base+"/metrics", "application/json", `{"points": [{"metric": "RPS"}]}`)
		wantProblem(t, status, b, http.StatusBadRequest, "points[0].value")
		status, b = e.call(t, "alice", http.MethodPost, base+"/metrics?precision=h", "text/plain", "RPS value=1")
		wantProblem(t, status, b, http.StatusBadRequest, "query precision")
		status, b = e.call(t, "alice", http.MethodPost, base+"/metrics", "application/xml", "<RPS/>")
		wantProblem(t, status, b, http.StatusUnsupportedMediaType, "header Content-Type")
		if status, b := e.call(t, "alice", http.MethodPost, base+"/metrics", "text/plain", ""); status != http.StatusBadRequest {
			t.Errorf("empty push: %d %s", status, b)
		}
		// Nothing of the refused pushes was stored in bob's slice.
		if status, b := e.call(t, "bob", http.MethodGet, "/v1/slices/"+bobs+"/metrics?metric=RPS", "", ""); status != http.StatusOK ||
			len(decode[api.MetricsAnswer](t, b).Series) != 0 {
			t.Errorf("bob's slice has alice's points: %d %s", status, b)
		}
	})

	t.Run("policies", func(t *testing.T) {
		pol := `policy:
  name: cpu-high
  part: edge
  operator: '>'
  value: 80
  trigger: {points: 2}
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: 1}
  post-deployment:
    timers: {reactivate-elasticity: 600}
    actions: {vertical: [{action: {type: add-cpu, max: 4}}]}
`
		status, b := e.call(t, "alice", http.MethodPost, base+"/policies", "text/x-yaml", pol)
		if status != http.StatusCreated {
			t.Fatalf("register: %d %s", status, b)
		}
		got := decode[api.PolicyView](t, b)
		if got.Name != "cpu-high" || got.Part != "edge" || got.Source != elastic.SourceAPI ||
			got.Condition != "cpu-high: PERCENT_CPU_UTILIZATION > 80 on worker nodes for 2 points" || got.Policy.Trigger.Points != 2 {
			t.Errorf("registered %+v", got)
		}
		if status, b := e.call(t, "alice", http.MethodPost, base+"/policies", "text/x-yaml", pol); status != http.StatusOK {
			t.Errorf("register again: %d %s", status, b)
		}
		status, b = e.call(t, "alice", http.MethodGet, base+"/policies", "", "")
		if list := decode[api.PolicyList](t, b); status != http.StatusOK || len(list.Policies) != 1 || list.Policies[0].Name != "cpu-high" {
			t.Errorf("list: %d %s", status, b)
		}
		if status, b := e.call(t, "alice", http.MethodGet, base+"/policies/cpu-high", "", ""); status != http.StatusOK ||
			decode[api.PolicyView](t, b).Policy.Operator != ">" {
			t.Errorf("get: %d %s", status, b)
		}
		if status, _ := e.call(t, "bob", http.MethodGet, base+"/policies/cpu-high", "", ""); status != http.StatusNotFound {
			t.Errorf("another tenant reads the policy: %d", status)
		}
		// JSON, checked like YAML, and against the slice.
		status, b = e.call(t, "alice", http.MethodPost, base+"/policies", "application/json",
			`{"name": "bad", "part": "core", "operator": "!", "value": 1, "metric-collector": {"metric-name": "m"}}`)
		wantProblem(t, status, b, http.StatusBadRequest, "operator")
		wantProblem(t, status, b, http.StatusBadRequest, "trigger")
		status, b = e.call(t, "alice", http.MethodPost, base+"/policies", "application/json",
			`{"name": "lost", "part": "core", "operator": ">", "value": 1, "trigger": {"points": 1}, "metric-collector": {"metric-name": "m"}}`)
		wantProblem(t, status, b, http.StatusBadRequest, "policy.part")
		// A service's policy is changed through its service.
		// Its condition can never hold: while it is in the store (long enough, under load,
		// for the elasticity engine to arm it) it must not act on the nodes' measured CPU,
		// or the timings below would count its action too.
		svc := got.Policy
		svc.Collector.Metric = "NEVER_MEASURED"
		if err := e.store.PutPolicy(context.Background(), &store.Policy{SliceID: id, Name: "svc", Source: "service:iot", Spec: svc}); err != nil {
			t.Fatal(err)
		}
		status, b = e.call(t, "alice", http.MethodPost, base+"/policies", "text/x-yaml", strings.Replace(pol, "cpu-high", "svc", 1))
		wantProblem(t, status, b, http.StatusConflict, "policy.name")
		if status, b := e.call(t, "alice", http.MethodDelete, base+"/policies/svc", "", ""); status != http.StatusNoContent {
			t.Errorf("delete: %d %s", status, b)
		}
		if status, b := e.call(t, "alice", http.MethodGet, base+"/policies/svc", "", ""); status != http.StatusNotFound ||
			!strings.Contains(string(b), "has no policy svc") {
			t.Errorf("deleted policy: %d %s", status, b)
		}
		if status, _ := e.call(t, "alice", http.MethodDelete, base+"/policies/svc", "", ""); status != http.StatusNotFound {
			t.Errorf("delete twice: %d", status)
		}
	})

	t.Run("pushed load grows the slice through the registered policy", func(t *testing.T) {
		lines := fmt.Sprintf("PERCENT_CPU_UTILIZATION,ResourceID=k8s-node-1 value=95 %d\nPERCENT_CPU_UTILIZATION,ResourceID=k8s-node-1 value=97 %d\n",
			time.Now().Add(-500*time.Millisecond).UnixMilli(), time.Now().UnixMilli())
		if status, b := e.call(t, "alice", http.MethodPost, base+"/metrics?precision=ms", "text/plain", lines); status != http.StatusOK {
			t.Fatalf("push: %d %s", status, b)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			status, b := e.call(t, "alice", http.MethodGet, base+"/events", "", "")
			if status != http.StatusOK {
				t.Fatalf("events: %d %s", status, b)
			}
			if strings.Contains(string(b), elastic.EvActionFinished) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no action: %s", b)
			}
			time.Sleep(200 * time.Millisecond)
		}
		status, b := e.call(t, "alice", http.MethodGet, base, "", "")
		sl := decode[v1.Slice](t, b)
		if status != http.StatusOK || len(sl.Parts) != 1 || sl.Parts[0].Nodes[0].CPUs != 3 || sl.Parts[0].Nodes[1].CPUs != 2 {
			t.Errorf("after the action: %d %s", status, b)
		}
	})
	t.Run("timings", func(t *testing.T) {
		// The action above is done; its effect shows once the collector has measured
		// node 1 below the threshold after it.
		var tm v1.Timings
		deadline := time.Now().Add(time.Minute)
		for {
			status, b := e.call(t, "alice", http.MethodGet, base+"/timings", "", "")
			if status != http.StatusOK {
				t.Fatalf("timings: %d %s", status, b)
			}
			tm = decode[v1.Timings](t, b)
			if len(tm.Actions) == 1 && tm.Actions[0].Effective != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no effective action: %s", b)
			}
			time.Sleep(200 * time.Millisecond)
		}
		phases := map[string]v1.Phase{}
		for _, p := range tm.Phases {
			phases[p.Name+"/"+p.Subject] = p
		}
		for _, k := range []string{"placement/", "part/edge", "creation/", "monitoring/"} {
			p, ok := phases[k]
			if !ok || p.Outcome != v1.PhaseDone || p.End == nil || p.Seconds < 0 || p.End.Before(p.Start) {
				t.Errorf("phase %s: %+v (all: %+v)", k, p, tm.Phases)
			}
		}
		if c, p := phases["creation/"], phases["part/edge"]; p.Start.Before(c.Start) || p.End.After(*c.End) {
			t.Errorf("part %+v outside creation %+v", p, c)
		}
		a := tm.Actions[0]
		if a.Policy != "cpu-high" || a.Part != "edge" || a.Action != "add-cpu" || a.Outcome != v1.PhaseDone ||
			a.Crossed == nil || a.Started == nil || a.Done == nil || a.Crossed.After(a.Fired) || a.Done.Before(a.Fired) ||
			a.Effective.Before(*a.Done) {
			t.Errorf("action %+v", a)
		}
		names := []string{}
		for _, p := range a.Phases {
			names = append(names, p.Name)
		}
		if got := strings.Join(names, ","); got != "decision,action,post-deployment,reaction,effect" {
			t.Errorf("action phases %s", got)
		}
		// This API runs no service deployer: the post-deployment is skipped.
		if p := a.Phases[2]; p.Outcome != v1.PhaseSkipped {
			t.Errorf("post-deployment %+v", p)
		}
		if status, b := e.call(t, "bob", http.MethodGet, base+"/timings", "", ""); status != http.StatusNotFound {
			t.Errorf("another tenant's timings: %d %s", status, b)
		}
	})
}
