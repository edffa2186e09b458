package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/api"
	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/necos/necos/sdk/plugintest/sshdtest"
	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// svcEnv is the API with the service routes over a real engine, the real plugins named
// and a service orchestrator.
type svcEnv struct {
	url    string
	engine *sro.Engine
	orch   *service.Orchestrator
	tokens map[string]string
}

// startServices runs the API over providers (a catalogue's providers: list) served by
// the named plugins, built from this module.
func startServices(t *testing.T, catalogue string, plugins ...string) *svcEnv {
	t.Helper()
	return startServicesWith(t, service.Options{}, catalogue, plugins...)
}

// startServicesWith is startServices with the orchestrator's options (its store, slices,
// deployers and logger are filled in).
func startServicesWith(t *testing.T, opts service.Options, catalogue string, plugins ...string) *svcEnv {
	t.Helper()
	if opts.PollInterval == 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	env := apitest.Start(t, apitest.Options{
		Catalogue: catalogue,
		Plugins:   plugins,
		Configure: func(c *daemon.Config) {
			c.Off.Services = false
			c.Services = opts
			c.Engine.CallTimeout = 2 * time.Minute
		},
	})
	// necosd serves the metrics and policy routes beside (documented in the same
	// openapi.yaml); they are not exercised here.
	if err := env.Handler.(*api.Handler).CheckOpenAPI(); err != nil {
		t.Errorf("openapi.yaml and the routes differ:\n%v", err)
	}
	tokens := map[string]string{}
	for _, tenant := range apitest.Tenants {
		tokens[tenant] = env.Token(tenant)
	}
	return &svcEnv{url: env.URL, engine: env.Engine, orch: env.Daemon.Services(), tokens: tokens}
}

// call sends a request as tenant and returns the status and body.
func (e *svcEnv) call(t *testing.T, tenant, method, path, contentType string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
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
	return resp.StatusCode, b, resp.Header
}

// createSlice creates a slice through the API and waits until it is Ready.
func (e *svcEnv) createSlice(t *testing.T, doc []byte) *sro.View {
	t.Helper()
	status, body, _ := e.call(t, "alice", http.MethodPost, "/v1/slices?wait=true", "text/x-yaml", doc)
	if status != http.StatusCreated {
		t.Fatalf("create slice: %d %s", status, body)
	}
	var s v1.Slice
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	v, err := e.engine.Get(context.Background(), "alice", s.ID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func xenCatalogue(srv *sshdtest.Server) string {
	ssh := fmt.Sprintf("{ip: 127.0.0.1, port: %d, user: %s, host_key: %q}", srv.Port, srv.User, srv.HostKey)
	return `
providers:
  - name: UNICAMP
    location: AMERICA.BRAZIL.UNICAMP
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 100}, subnet: 10.10.1.0/24, ssh: ` + ssh + `}}
  - name: SPAIN
    location: EUROPE.SPAIN
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 100}, subnet: 10.10.3.0/24, ssh: ` + ssh + `}}
`
}

func TestServiceRoutes(t *testing.T) {
	sshd := sshdtest.Start(t)
	env := startServices(t, xenCatalogue(sshd), "vim-xen")
	v := env.createSlice(t, apitest.SmallSlice("svc-api"))
	for _, p := range v.Parts {
		sshd.Authorize(t, p.Observed.Attributes["ssh-public-key"])
	}
	core, _ := v.Part("core-dc")
	dir := t.TempDir()

	// The NECOS route: YAML in, the slice named by its spec id, YAML out once done.
	doc := []byte(`slices:
  sliced:
    id: svc-api
    slice-parts:
      - dc-slice-part:
        name: core-dc
        vdus:
          - vdu:
            name: core_vm
            VIM: xen-vim
            commands:
              - echo ${parts.core-dc.vdus.core_vm.ip} > ` + dir + `/necos
              - cat ` + dir + `/necos
`)
	status, body, hdr := env.call(t, "alice", http.MethodPost, "/service_orchestrator/deploy_service", "text/x-yaml", doc)
	if status != http.StatusCreated || !strings.HasPrefix(hdr.Get("Content-Type"), "text/x-yaml") {
		t.Fatalf("deploy_service: %d %s", status, body)
	}
	var necos struct {
		Service v1.Service `yaml:"service"`
	}
	if err := yaml.Unmarshal(body, &necos); err != nil {
		t.Fatalf("answer: %v\n%s", err, body)
	}
	s := necos.Service
	ip := core.Observed.Nodes[0].IPs[0]
	if s.State != "Deployed" || s.SliceID != v.Slice.ID || len(s.Parts) != 1 || s.Counts.Succeeded != 2 ||
		s.Parts[0].VDUs[0].Name != "core_vm" || s.Parts[0].VDUs[0].Nodes[0].Steps[1].Stdout != ip+"\n" {
		t.Errorf("deploy_service answered:\n%s", body)
	}
	if !strings.Contains(string(body), "exit-code: 0") || !strings.Contains(string(body), "slice-id: "+v.Slice.ID) {
		t.Errorf("the YAML answer is not kebab-case:\n%s", body)
	}
	if hdr.Get("Location") != "/v1/slices/"+v.Slice.ID+"/services/"+s.ID {
		t.Errorf("location %q", hdr.Get("Location"))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "necos")); string(b) != ip+"\n" {
		t.Errorf("the command wrote %q", b)
	}
	if status, body, _ := env.call(t, "alice", http.MethodPost, "/service_orchestrator/deploy_service", "text/x-yaml", doc); status != http.StatusOK {
		t.Errorf("deploy_service again: %d %s", status, body)
	}

	// Unknown references: 400 naming each, in YAML on the NECOS route, nothing run.
	bad := bytes.ReplaceAll(doc, []byte("vdus.core_vm.ip"), []byte("vdus.core_mv.ip"))
	bad = bytes.ReplaceAll(bad, []byte("/necos"), []byte("/bad"))
	status, body, _ = env.call(t, "alice", http.MethodPost, "/service_orchestrator/deploy_service", "text/x-yaml", bad)
	if status != http.StatusBadRequest || !strings.Contains(string(body), "unknown reference ${parts.core-dc.vdus.core_mv.ip}") ||
		!strings.Contains(string(body), "path: parts.core-dc.vdus.core_vm.commands[0]") {
		t.Errorf("unknown reference: %d %s", status, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); !os.IsNotExist(err) {
		t.Error("a refused deployment ran")
	}
	status, body, _ = env.call(t, "alice", http.MethodPost, "/service_orchestrator/deploy_service", "text/x-yaml",
		bytes.Replace(doc, []byte("id: svc-api"), []byte("id: nosuch"), 1))
	if status != http.StatusNotFound || !strings.Contains(string(body), "slices.sliced.id") {
		t.Errorf("unknown slice: %d %s", status, body)
	}
	if status, body, _ := env.call(t, "bob", http.MethodPost, "/service_orchestrator/deploy_service", "text/x-yaml", doc); status != http.StatusNotFound {
		t.Errorf("another tenant deploys: %d %s", status, body)
	}

	// The native route: JSON in, named, answered at once, followed with GET.
	js, err := json.Marshal(map[string]any{"slices": map[string]any{"sliced": map[string]any{"id": "svc-api",
		"slice-parts": []any{map[string]any{"dc-slice-part": map[string]any{"name": "edge-dc", "vdus": []any{
			map[string]any{"vdu": map[string]any{"name": "edge_vm-1", "commands": []string{"echo ${parts.edge-dc.vim-ref.port-ssh}", "exit 3"}}}},
			"elasticity": []any{map[string]any{"policy": map[string]any{"name": "edge-cpu", "operator": ">", "value": 80,
				"trigger": map[string]any{"points": 3}, "metric-collector": map[string]any{"metric-name": "PERCENT_CPU_UTILIZATION"}}}}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	base := "/v1/slices/" + v.Slice.ID + "/services"
	status, body, hdr = env.call(t, "alice", http.MethodPost, base+"?name=edge", "application/json", js)
	if status != http.StatusAccepted || hdr.Get("Location") != base+"/edge" {
		t.Fatalf("POST services: %d %s", status, body)
	}
	var got v1.Service
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		status, body, _ = env.call(t, "alice", http.MethodGet, base+"/edge", "", nil)
		if status != http.StatusOK {
			t.Fatalf("GET service: %d %s", status, body)
		}
		got = v1.Service{}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if got.State != "Deploying" || time.Now().After(deadline) {
			break
		}
	}
	if got.State != "Failed" || got.Counts.Failed != 1 || !strings.Contains(got.Message, "edge_vm-1 step 1") ||
		got.Document == "" || len(got.Policies) != 1 {
		t.Errorf("service: %s", body)
	}
	steps := got.Parts[0].VDUs[0].Nodes[0].Steps
	if len(steps) != 2 || steps[0].Stdout != fmt.Sprintf("%d\n", sshd.Port) || steps[1].ExitCode != 3 || steps[1].State != "failed" {
		t.Errorf("steps: %+v", steps)
	}
	status, body, _ = env.call(t, "alice", http.MethodGet, base, "", nil)
	var list v1.ServiceList
	if err := json.Unmarshal(body, &list); status != http.StatusOK || err != nil || len(list.Services) != 2 {
		t.Errorf("list: %d %s", status, body)
	}
	if status, body, _ := env.call(t, "alice", http.MethodPost, base+"?name=a/b", "text/x-yaml", doc); status != http.StatusBadRequest {
		t.Errorf("bad name: %d %s", status, body)
	}
	if status, body, _ := env.call(t, "bob", http.MethodGet, base+"/edge", "", nil); status != http.StatusNotFound {
		t.Errorf("another tenant reads: %d %s", status, body)
	}
	if status, body, _ := env.call(t, "alice", http.MethodDelete, base+"/edge", "", nil); status != http.StatusNoContent {
		t.Errorf("DELETE: %d %s", status, body)
	}
	status, body, _ = env.call(t, "alice", http.MethodGet, base+"/edge", "", nil)
	if status != http.StatusNotFound || !strings.Contains(string(body), "service not found") {
		t.Errorf("after DELETE: %d %s", status, body)
	}

	// A service that fails through the NECOS route is no 2xx: 422, with the error where
	// clients look for one and the service with its steps beside it.
	failing := []byte(`slices:
  sliced:
    id: svc-api
    slice-parts:
      - dc-slice-part:
        name: edge-dc
        vdus:
          - vdu:
            name: edge_vm
            VIM: xen-vim
            commands: [echo trying, exit 4]
`)
	status, body, hdr = env.call(t, "alice", http.MethodPost, "/service_orchestrator/deploy_service", "text/x-yaml", failing)
	var failed struct {
		Error   string     `yaml:"error"`
		Service v1.Service `yaml:"service"`
	}
	if err := yaml.Unmarshal(body, &failed); err != nil {
		t.Fatalf("failed deploy_service: %v\n%s", err, body)
	}
	if status != http.StatusUnprocessableEntity || failed.Service.State != "Failed" || !strings.Contains(failed.Error, "failed") ||
		failed.Service.Counts.Failed != 1 || hdr.Get("Location") == "" {
		t.Errorf("failed deploy_service: %d %s", status, body)
	}
}

// TestServiceManifestsKubernetes deploys the IoT example (examples/services/iot-dojot.yaml)
// onto the IoT example slice, whose two parts are Kubernetes parts: through the NECOS
// route, the engine and vim-kubernetes into a real API server (etcd, kube-apiserver and
// kube-controller-manager on 127.0.0.1; no kubelet, so the pods are never run). Every
// manifest is applied, but no pod can run: the service is Applied (202), not Deployed,
// once a step's timeout has passed, and says what its pods wait for; a later GET says
// the same (re-checked, still Pending). test/e2e's TestIoTSliceOnRealPods sees the
// same service Deployed on real nodes.
func TestServiceManifestsKubernetes(t *testing.T) {
	if !kubetest.Available() {
		plugintest.NeedBackend(t, kubetest.MissingReason)
	}
	ctx := context.Background()
	cluster, err := kubetest.Start(ctx, kubetest.Options{})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	t.Logf("control plane ready in %v", cluster.Started)
	k8s := `{kubeconfig: "` + cluster.Kubeconfig + `", token_ttl: 1h, wait_timeout: 60s}`
	// A short step timeout: the wait for pods that cannot run ends after it.
	env := startServicesWith(t, service.Options{StepTimeout: 3 * time.Second}, `
providers:
  - name: UNICAMP
    location: AMERICA.BRAZIL.UNICAMP
    dc: {vim: KUBERNETES, plugin: vim-kubernetes, config: `+k8s+`}
  - name: 5TONIC
    location: EUROPE.SPAIN.MADRID
    dc: {vim: KUBERNETES, plugin: vim-kubernetes, config: `+k8s+`}
`, "vim-kubernetes")
	v := env.createSlice(t, apitest.Example(t, "iot-dojot.yaml"))
	core, _ := v.Part("dc-slice1")
	edge, _ := v.Part("dc-slice2")
	doc, err := os.ReadFile(filepath.Join("..", "examples", "services", "iot-dojot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	status, body, _ := env.call(t, "alice", http.MethodPost, "/service_orchestrator/deploy_service", "text/x-yaml", doc)
	if status != http.StatusAccepted {
		t.Fatalf("deploy: %d %s; want 202 (applied, no node to run the pods)", status, body)
	}
	t.Logf("deployment of %d manifests onto 2 Kubernetes parts: %v", strings.Count(string(doc), "apiVersion:"), time.Since(begin))
	var necos struct {
		Service v1.Service `yaml:"service"`
	}
	if err := yaml.Unmarshal(body, &necos); err != nil {
		t.Fatal(err)
	}
	s := necos.Service
	// Every step ran; the pods wait (no scheduler, no node: Pending).
	if s.State != "Applied" || s.Counts.Succeeded != 8 || s.Counts.Total != 8 || len(s.Policies) != 2 ||
		!strings.Contains(s.Message, "2 of 2 parts applied, workloads not ready") ||
		!strings.Contains(s.Message, "waiting for") || !strings.Contains(s.Message, "Pending") ||
		!strings.Contains(s.Message, "Deployment/iotagent-mqtt: 0 of 1 replicas available") {
		t.Errorf("service:\n%s", body)
	}
	status, body, _ = env.call(t, "alice", http.MethodGet, "/v1/slices/"+v.Slice.ID+"/services/"+s.ID, "", nil)
	var got v1.Service
	if status != http.StatusOK || json.Unmarshal(body, &got) != nil || got.State != "Applied" || !strings.Contains(got.Message, "Pending") {
		t.Errorf("GET while the pods wait: %d %s", status, body)
	}
	ens, cns := edge.Observed.Attributes["namespace"], core.Observed.Attributes["namespace"]
	cm, err := cluster.Client.CoreV1().ConfigMaps(ens).Get(ctx, "iotagent-mqtt", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the edge's config map is not in the cluster: %v", err)
	}
	if cm.Data["DOJOT_CORE_HOST"] != core.Observed.VIMRef.IPAPI || cm.Data["DOJOT_SLICE"] != "IoTService_sliced" {
		t.Errorf("references in the config map: %v", cm.Data)
	}
	if _, err := cluster.Client.AppsV1().Deployments(ens).Get(ctx, "iotagent-mqtt", metav1.GetOptions{}); err != nil {
		t.Errorf("IoT agent: %v", err)
	}
	if svc, err := cluster.Client.CoreV1().Services(cns).Get(ctx, "gui", metav1.GetOptions{}); err != nil || svc.Spec.Ports[0].NodePort != 30001 {
		t.Errorf("GUI service: %+v %v", svc, err)
	}
	if status, body, _ := env.call(t, "alice", http.MethodDelete, "/v1/slices/"+v.Slice.ID+"/services/"+s.ID, "", nil); status != http.StatusNoContent {
		t.Fatalf("undeploy: %d %s", status, body)
	}
	if _, err := cluster.Client.CoreV1().ConfigMaps(ens).Get(ctx, "iotagent-mqtt", metav1.GetOptions{}); err == nil {
		t.Error("undeploy left the config map")
	}
}
