package service_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest/sshdtest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is an engine on real vim-xen plugin processes whose SSH endpoint is a real sshd on
// 127.0.0.1, standing in for every VM.
type env struct {
	engine *sro.Engine
	store  *store.Store
	reg    *providers.Registry
	orch   *service.Orchestrator
	sshd   *sshdtest.Server
}

func start(t *testing.T) *env {
	t.Helper()
	sshd := sshdtest.Start(t)
	ssh := fmt.Sprintf("{ip: 127.0.0.1, port: %d, user: %s, host_key: %q, target: gateway}", sshd.Port, sshd.User, sshd.HostKey)
	cat, err := providers.Parse([]byte(`
providers:
  - name: BR
    location: AMERICA.BRAZIL
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 500}, subnet: 10.10.1.0/24, ssh: ` + ssh + `}}
  - name: ES
    location: EUROPE.SPAIN
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 500}, price_per_node_day: 1, subnet: 10.10.2.0/24, ssh: ` + ssh + `}}
  - name: MADRID
    location: EUROPE.SPAIN.MADRID
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 500}, price_per_node_day: 2, subnet: 10.10.3.0/24, ssh: ` + ssh + `}}
`))
	if err != nil {
		t.Fatal(err)
	}
	off := daemon.EngineOnly()
	off.Services = false
	d, err := daemon.Start(context.Background(), daemon.Config{
		Logger:    hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
		Catalogue: cat,
		Store:     store.Options{Dir: t.TempDir()},
		Plugins:   pluginhost.Options{Dir: testenv.PluginDir(t, "vim-xen")},
		Engine:    sro.Options{CallTimeout: time.Minute},
		Services:  service.Options{PollInterval: 100 * time.Millisecond},
		Off:       off,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &env{engine: d.Engine(), store: d.Store(), reg: d.Registry(), orch: d.Services(), sshd: sshd}
}

const sliceDoc = `
slices:
  sliced:
    id: %s
    slice-requirements: {elasticity: true, links-optional: true} # no WAN provider here
    slice-parts:
      - dc-slice-part:
          name: core-dc
          type: DC
          location: AMERICA.BRAZIL
          VIM:
            name: xen-vim
            vdus:
              - vdu:
                  id: core_vm_id
                  name: core_vm
                  epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512, storage-gb: 5}}
      - dc-slice-part:
          name: edge
          type: EDGE
          location: EUROPE.SPAIN
          VIM:
            name: xen-vim
            vdus:
              - vdu:
                  name: edge_vm
                  instance-count: 2
                  epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512, storage-gb: 5}}
`

// createSlice makes a Ready slice for tenant and lets its parts' keys into the sshd.
func (e *env) createSlice(t *testing.T, tenant, name string) *sro.View {
	t.Helper()
	ctx := context.Background()
	sl, err := e.engine.Submit(ctx, tenant, []byte(fmt.Sprintf(sliceDoc, name)))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	got, err := e.engine.Wait(wctx, sl.ID)
	if err != nil || got.State != store.SliceReady {
		t.Fatalf("slice %s: %v %+v", sl.ID, err, got)
	}
	v, err := e.engine.Get(ctx, tenant, sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range v.Parts {
		key := p.Observed.Attributes["ssh-public-key"]
		if key == "" || p.Observed.Credential.Kind != sdk.CredentialSSHKey {
			t.Fatalf("part %s has no SSH credential: %+v", p.Name, p.Observed)
		}
		e.sshd.Authorize(t, key)
	}
	return v
}

func nodeOf(t *testing.T, rec *service.Record, part, node string) store.ServiceNode {
	t.Helper()
	sp, ok := rec.Part(part)
	if !ok {
		t.Fatalf("record has no part %s: %+v", part, rec.Parts)
	}
	for _, n := range sp.Nodes {
		if n.Node == node {
			return n
		}
	}
	t.Fatalf("part %s has no node %s: %+v", part, node, sp.Nodes)
	return store.ServiceNode{}
}

func eventTypes(t *testing.T, st *store.Store, slice string) string {
	t.Helper()
	evs, err := st.Events(context.Background(), slice)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	return strings.Join(types, ",")
}

func TestDeployEndToEnd(t *testing.T) {
	e := start(t)
	v := e.createSlice(t, "alice", "cdn")
	sliceID := v.Slice.ID
	ctx := context.Background()
	dir := t.TempDir()
	core, _ := v.Part("core-dc")
	edge, _ := v.Part("edge")

	doc := strings.ReplaceAll(`
slices:
  sliced:
    id: cdn
    slice-parts:
      - dc-slice-part:
        name: core-dc
        vdus:
          - vdu:
            name: core_vm_id
            VIM: xen-vim
            commands:
              - echo "${parts.core-dc.vdus.core_vm.ip} ${parts.edge.vdus.edge_vm.ips} ${slice.id}" '$${parts.literal}' > DIR/core
              - cat DIR/core
              - echo deployed >> DIR/count
      - dc-slice-part:
          name: edge
          vdus:
            - vdu:
                name: edge_vm-2
                commands:
                  - echo ${parts.edge.vim-ref.ip-ssh}:${parts.edge.vim-ref.port-ssh} > DIR/edge2
                  - echo failing; exit 4
                  - touch DIR/never
          elasticity:
            - policy:
                name: edge-cpu
                operator: '>'
                value: 80
                trigger: {points: 3}
                metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: default}
                post-deployment:
                  node: core_vm
                  commands: ["echo post ${parts.edge.vdus.edge_vm-1.ip} >> DIR/post"]
`, "DIR", dir)

	begin := time.Now()
	rec, err := e.orch.Deploy(ctx, "alice", sliceID, []byte(doc))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	t.Logf("deployment of 2 parts, 6 steps: %v", time.Since(begin))
	for _, sp := range rec.Parts {
		for _, n := range sp.Nodes {
			for _, s := range n.Steps {
				t.Logf("  %s/%s step %d %-9s exit %d %8v %s", sp.Name, n.Node, s.Index, s.State, s.ExitCode,
					s.Duration.Round(time.Millisecond), s.Step)
			}
		}
	}
	if !strings.HasPrefix(rec.ID, "svc-") || rec.Generation != 1 || rec.State != store.ServiceFailed {
		t.Fatalf("record %s gen %d state %s: %s", rec.ID, rec.Generation, rec.State, rec.Message)
	}
	// References were substituted from the created slice; $${ is a literal.
	got, err := os.ReadFile(filepath.Join(dir, "core"))
	edgeIPs := edge.Observed.Nodes[0].IPs[0] + " " + edge.Observed.Nodes[1].IPs[0]
	want := core.Observed.Nodes[0].IPs[0] + " " + edgeIPs + " cdn ${parts.literal}\n"
	if err != nil || string(got) != want {
		t.Fatalf("file written over SSH: %q (%v), want %q", got, err, want)
	}
	if n := nodeOf(t, rec, "core-dc", "core_vm-1"); n.State != sdk.DeploySucceeded || n.VDU != "core_vm" ||
		len(n.Steps) != 3 || n.Steps[1].Stdout != want {
		t.Errorf("core_vm: %+v", n)
	}
	if sp, _ := rec.Part("core-dc"); sp.State != sdk.DeploySucceeded || sp.Provider != "BR" {
		t.Errorf("core part: %+v", sp)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "edge2")); string(b) != fmt.Sprintf("127.0.0.1:%d\n", e.sshd.Port) {
		t.Errorf("vim-ref reference: %q", b)
	}
	n := nodeOf(t, rec, "edge", "edge_vm-2")
	if n.State != sdk.DeployFailed || n.VDU != "edge_vm" || n.Steps[1].State != sdk.DeployFailed || n.Steps[1].ExitCode != 4 ||
		n.Steps[1].Stdout != "failing\n" || n.Steps[2].State != sdk.DeploySkipped {
		t.Errorf("edge_vm-2: %+v", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "never")); !os.IsNotExist(err) {
		t.Error("a step after a failure ran")
	}
	if !strings.Contains(rec.Message, "1 of 2 parts failed") || !strings.Contains(rec.Message, "edge_vm-2 step 1") {
		t.Errorf("message %q", rec.Message)
	}
	// The policy is registered as written: references are left for its post-deployment.
	pol, err := e.store.GetPolicy(ctx, sliceID, "edge-cpu")
	if err != nil || pol.Source != "service:"+rec.ID || pol.Spec.Part != "edge" || pol.Spec.Value != 80 ||
		!strings.Contains(pol.Spec.PostDeployment.Commands[0], "${parts.edge.vdus.edge_vm-1.ip}") {
		t.Errorf("policy %+v %v", pol, err)
	}
	types := eventTypes(t, e.store, sliceID)
	for _, want := range []string{service.EvDeploying, service.EvStep, service.EvFailed, "policy.registered"} {
		if !strings.Contains(types, want) {
			t.Errorf("events %s lack %s", types, want)
		}
	}
	if c := strings.Count(types, service.EvStep); c != 6 {
		t.Errorf("%d step events, want 6", c)
	}

	// The same document again, by the slice's name: the same service, deployed again.
	again, err := e.orch.Deploy(ctx, "alice", "", []byte(doc))
	if err != nil || again.ID != rec.ID || again.Generation != 2 {
		t.Fatalf("re-deploy: %+v %v", again, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "count")); strings.Count(string(b), "deployed") != 2 {
		t.Errorf("after two deployments: %q", b)
	}
	list, err := e.orch.List(ctx, "alice", sliceID)
	if err != nil || len(list) != 1 {
		t.Errorf("list: %d %v", len(list), err)
	}

	// The elasticity engine runs the policy's post-deployment after growing edge: the
	// service is deployed onto edge again (its failing step fails again, and says so),
	// then the commands run on core_vm (another part than the one grown), with
	// references resolved now.
	err = e.orch.PostDeploy(ctx, sliceID, "edge", *pol.Spec.PostDeployment)
	if err == nil || !strings.Contains(err.Error(), "service "+rec.ID+" on part edge") || !strings.Contains(err.Error(), "edge_vm-2 step 1") {
		t.Errorf("post-deploy: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "post")); string(b) != "post "+edge.Observed.Nodes[0].IPs[0]+"\n" {
		t.Errorf("post-deployment wrote %q", b)
	}
	post, err := e.orch.Get(ctx, "alice", sliceID, "post-edge")
	if err != nil || post.State != store.ServiceDeployed || len(post.Parts) != 1 || post.Parts[0].Name != "core-dc" {
		t.Errorf("post-deployment record: %+v %v", post, err)
	}
	err = e.orch.PostDeploy(ctx, sliceID, "edge", spec.PostDeployment{Commands: []string{"exit 9"}})
	if err == nil || !strings.Contains(err.Error(), "exit status 9") {
		t.Errorf("failing post-deployment: %v", err)
	}

	// Only the slice's tenant sees and touches its services.
	if _, err := e.orch.Deploy(ctx, "bob", sliceID, []byte(doc)); !errors.Is(err, sro.ErrNotFound) {
		t.Errorf("another tenant deploys: %v", err)
	}
	if _, err := e.orch.Get(ctx, "bob", sliceID, rec.ID); !errors.Is(err, sro.ErrNotFound) {
		t.Errorf("another tenant reads: %v", err)
	}
	if err := e.orch.Undeploy(ctx, "bob", sliceID, rec.ID); !errors.Is(err, sro.ErrNotFound) {
		t.Errorf("another tenant undeploys: %v", err)
	}

	if err := e.orch.Undeploy(ctx, "alice", sliceID, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.orch.Get(ctx, "alice", sliceID, rec.ID); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("after undeploy: %v", err)
	}
	if _, err := e.store.GetPolicy(ctx, sliceID, "edge-cpu"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("policy after undeploy: %v", err)
	}
	if types := eventTypes(t, e.store, sliceID); !strings.Contains(types, service.EvUndeployed) {
		t.Errorf("events %s", types)
	}
	if err := e.orch.Undeploy(ctx, "alice", sliceID, rec.ID); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("undeploy twice: %v", err)
	}
}

func TestDeployRefusedBeforeAnythingRuns(t *testing.T) {
	e := start(t)
	v := e.createSlice(t, "alice", "iot")
	ctx := context.Background()
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	doc := func(body string) []byte {
		return []byte("slices:\n  sliced:\n    id: iot\n    slice-parts:\n" + body)
	}
	cases := []struct {
		name  string
		body  string
		wants []string
	}{
		{"unknown references", `
      - dc-slice-part:
          name: core-dc
          vdus:
            - vdu:
                name: core_vm
                commands: ["touch ` + marker + `", "echo ${parts.core-dc.vdus.nosuch.ip} ${parts.nopart.name}"]
`, []string{"unknown reference ${parts.core-dc.vdus.nosuch.ip}", "unknown reference ${parts.nopart.name}", "parts.core-dc.vdus.core_vm.commands[1]"}},
		{"unknown part and VDU", `
      - dc-slice-part:
          name: core-dc
          vdus:
            - vdu: {name: core_vm, commands: ["touch ` + marker + `"]}
            - vdu: {name: nosuch_vm, commands: ["true"]}
      - dc-slice-part:
          name: edge-far
          vdus:
            - vdu: {name: edge_vm, commands: ["true"]}
`, []string{`part core-dc has no VDU or node "nosuch_vm" (VDUs: core_vm; nodes: core_vm-1)`, `the slice has no dc-slice-part "edge-far" (it has core-dc, edge)`}},
		{"manifests on a VM part", `
      - dc-slice-part:
          name: edge
          vdus:
            - vdu:
                name: edge_vm
                commands: ["touch ` + marker + `"]
                manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}]
`, []string{"parts.edge.vdus.edge_vm.manifests: part edge runs xen-vim: manifests go onto KUBERNETES parts only"}},
		{"bad document", `
      - dc-slice-part:
          vdus: []
`, []string{"name"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.orch.Deploy(ctx, "alice", v.Slice.ID, doc(c.body))
			var se *spec.Error
			if !errors.As(err, &se) {
				t.Fatalf("want a *spec.Error, got %v", err)
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Error("a refused deployment ran a command")
	}
	if list, _ := e.orch.List(ctx, "alice", v.Slice.ID); len(list) != 0 {
		t.Errorf("refused deployments left records: %+v", list)
	}
	if evs := eventTypes(t, e.store, v.Slice.ID); strings.Contains(evs, "service.") {
		t.Errorf("refused deployments left events: %s", evs)
	}

	// The document names its slice: another one is refused.
	_, err := e.orch.Deploy(ctx, "alice", v.Slice.ID, []byte("slices:\n  sliced:\n    id: other\n    slice-parts:\n      - dc-slice-part: {name: core-dc}\n"))
	if err == nil || !strings.Contains(err.Error(), `the document is for slice "other"`) {
		t.Errorf("document for another slice: %v", err)
	}
	// A name of the tenant's that is no slice.
	if _, err := e.orch.Deploy(ctx, "alice", "", []byte("slices:\n  sliced:\n    id: nosuch\n    slice-parts:\n      - dc-slice-part: {name: core-dc}\n")); !errors.Is(err, sro.ErrNotFound) {
		t.Errorf("unknown slice: %v", err)
	}
	// A slice that is not Ready.
	bad, err := e.engine.Submit(ctx, "alice", []byte(strings.Replace(fmt.Sprintf(sliceDoc, "nowhere"), "EUROPE.SPAIN", "ASIA.JAPAN", 1)))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := e.engine.Wait(wctx, bad.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.orch.Deploy(ctx, "alice", bad.ID, []byte("slices:\n  sliced:\n    id: nowhere\n    slice-parts:\n      - dc-slice-part: {name: core-dc}\n")); !errors.Is(err, service.ErrSliceNotReady) {
		t.Errorf("failed slice: %v", err)
	}
}

func TestStartAndWatchProgress(t *testing.T) {
	e := start(t)
	v := e.createSlice(t, "alice", "prog")
	ctx := context.Background()
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	doc := []byte(`slices:
  sliced:
    id: prog
    slice-parts:
      - dc-slice-part:
          name: edge
          vdus:
            - vdu:
                name: edge_vm
                commands: ["while [ ! -e ` + gate + ` ]; do sleep 0.05; done", "hostname"]
`)
	rec, err := e.orch.Start(ctx, service.Request{Tenant: "alice", SliceID: v.Slice.ID, Doc: doc, ID: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != "web" || rec.State != store.ServiceDeploying {
		t.Fatalf("started: %+v", rec)
	}
	// A second deployment of the same service while the first runs is refused.
	if _, err := e.orch.Start(ctx, service.Request{Tenant: "alice", SliceID: v.Slice.ID, Doc: doc, ID: "web"}); !errors.Is(err, service.ErrBusy) {
		t.Errorf("concurrent deploy: %v", err)
	}
	if _, err := e.orch.Start(ctx, service.Request{Tenant: "alice", SliceID: v.Slice.ID, Doc: doc, ID: "bad/name"}); err == nil {
		t.Error("a service name with a slash was accepted")
	}
	// The record shows both nodes on their first step while they run.
	deadline := time.Now().Add(time.Minute)
	for {
		cur, err := e.orch.Get(ctx, "alice", v.Slice.ID, "web")
		if err != nil {
			t.Fatal(err)
		}
		if sp, ok := cur.Part("edge"); ok && len(sp.Nodes) == 2 && sp.Nodes[0].Steps[0].State == sdk.DeployRunning &&
			sp.Nodes[1].Steps[0].State == sdk.DeployRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw the steps running: %+v", cur.Parts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done, err := e.orch.Wait(wctx, v.Slice.ID, "web")
	if err != nil || done.State != store.ServiceDeployed || done.FinishedAt.IsZero() {
		t.Fatalf("after the gate: %+v %v", done, err)
	}
}

// TestPostDeployAfterElasticity grows a slice as the elasticity engine does — one more
// node (vertical), a copy of a part elsewhere (horizontal) — and checks that PostDeploy
// brings the service onto the new capacity.
func TestPostDeployAfterElasticity(t *testing.T) {
	e := start(t)
	v := e.createSlice(t, "alice", "grow")
	sliceID := v.Slice.ID
	ctx := context.Background()
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	names := filepath.Join(dir, "names")
	doc := []byte(`slices:
  sliced:
    id: grow
    slice-parts:
      - dc-slice-part:
          name: edge
          vdus:
            - vdu:
                name: edge_vm
                commands: ["echo ${slice.id} >> ` + runs + `", "echo ${parts.edge.name} >> ` + names + `"]
`)
	rec, err := e.orch.Deploy(ctx, "alice", sliceID, doc)
	if err != nil || rec.State != store.ServiceDeployed {
		t.Fatalf("deploy: %+v %v", rec, err)
	}
	lines := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "grow\n")
	}
	if n := lines(); n != 2 {
		t.Fatalf("%d runs after the deployment onto 2 nodes", n)
	}

	// Vertical: a third node; the service runs again on the part's nodes.
	if err := e.engine.ScalePart(ctx, sliceID, "edge", "edge_vm", 3); err != nil {
		t.Fatalf("scale: %v", err)
	}
	if err := e.orch.PostDeploy(ctx, sliceID, "edge", spec.PostDeployment{}); err != nil {
		t.Fatalf("post-deploy after scale: %v", err)
	}
	if n := lines(); n != 5 {
		t.Errorf("%d runs after the redeployment onto 3 nodes, want 5", n)
	}
	got, _ := e.orch.Get(ctx, "alice", sliceID, rec.ID)
	if sp, ok := got.Part("edge"); !ok || len(sp.Nodes) != 3 || got.Generation != 1 || got.State != store.ServiceDeployed {
		t.Errorf("record after the vertical redeployment: %+v", got)
	}

	// Horizontal: a copy of edge at another provider, with its own key.
	added, err := e.engine.AddPart(ctx, sliceID, "edge", sro.AddPartOptions{Reason: "test"})
	if err != nil {
		t.Fatalf("add part: %v", err)
	}
	e.sshd.Authorize(t, added.Observed.Attributes["ssh-public-key"])
	pd := spec.PostDeployment{Node: "core_vm", Commands: []string{"echo ${parts." + added.Name + ".vdus.edge_vm.ips} > " + dir + "/rebalanced"}}
	if err := e.orch.PostDeploy(ctx, sliceID, added.Name, pd); err != nil {
		t.Fatalf("post-deploy after add-part: %v", err)
	}
	if n := lines(); n != 7 {
		t.Errorf("%d runs after the deployment onto the new part's 2 nodes, want 7", n)
	}
	// The copy's reference to its template part names the copy itself.
	b, _ := os.ReadFile(names)
	if want := strings.Repeat("edge\n", 5) + strings.Repeat(added.Name+"\n", 2); string(b) != want {
		t.Errorf("the parts named by ${parts.edge.name}: %q, want %q", b, want)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "rebalanced"))
	if want := added.Observed.Nodes[0].IPs[0] + " " + added.Observed.Nodes[1].IPs[0] + "\n"; string(b) != want {
		t.Errorf("post-deployment command wrote %q, want %q", b, want)
	}
	got, _ = e.orch.Get(ctx, "alice", sliceID, rec.ID)
	if sp, ok := got.Part(added.Name); !ok || sp.State != sdk.DeploySucceeded || len(got.Parts) != 2 {
		t.Errorf("the service's record lacks the new part: %+v", got.Parts)
	}
	types := eventTypes(t, e.store, sliceID)
	if strings.Count(types, service.EvDeploying) != 4 { // the service, twice more, and post-<part>
		t.Errorf("events: %s", types)
	}

	// Scale-in, as the elasticity engine follows it. A post-deployment on the copy itself
	// first, so that a record names only the copy.
	if err := e.orch.PostDeploy(ctx, sliceID, added.Name, spec.PostDeployment{Commands: []string{"true"}}); err != nil {
		t.Fatalf("post-deploy on the copy: %v", err)
	}
	ran := lines()
	// The copy goes: the records forget it, the one of its own post-deployment goes, and
	// the scale-in's commands run on the part it was a copy of; nothing is redeployed.
	if err := e.engine.RemovePart(ctx, sliceID, added.Name); err != nil {
		t.Fatalf("remove part: %v", err)
	}
	after := filepath.Join(dir, "after")
	if err := e.orch.PostScaleIn(ctx, sliceID, added.Name, nil, spec.PostDeployment{Commands: []string{"echo ${parts.edge.name} >> " + after}}); err != nil {
		t.Fatalf("post-scale-in after remove-part: %v", err)
	}
	got, _ = e.orch.Get(ctx, "alice", sliceID, rec.ID)
	if _, ok := got.Part(added.Name); ok || len(got.Parts) != 1 || got.State != store.ServiceDeployed {
		t.Errorf("the service's record after the copy went: %+v", got)
	}
	if _, err := e.orch.Get(ctx, "alice", sliceID, service.PostDeployPrefix+added.Name); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("the post-deployment record of the removed copy: %v", err)
	}
	if b, _ := os.ReadFile(after); string(b) != "edge\nedge\nedge\n" {
		t.Errorf("the scale-in's commands wrote %q, want one line per node of edge", b)
	}
	if n := lines(); n != ran {
		t.Errorf("%d runs after the scale-in, want %d: nothing is redeployed", n, ran)
	}
	// One node fewer: the record forgets the node the VIM removed.
	before := map[string]bool{}
	v, _ = e.engine.Get(ctx, "alice", sliceID)
	edge, _ := v.Part("edge")
	for _, n := range edge.Observed.Nodes {
		before[n.Name] = true
	}
	if err := e.engine.ScalePart(ctx, sliceID, "edge", "edge_vm", 2); err != nil {
		t.Fatalf("scale in: %v", err)
	}
	v, _ = e.engine.Get(ctx, "alice", sliceID)
	edge, _ = v.Part("edge")
	for _, n := range edge.Observed.Nodes {
		delete(before, n.Name)
	}
	var gone []string
	for n := range before {
		gone = append(gone, n)
	}
	if len(gone) != 1 {
		t.Fatalf("nodes gone: %v", gone)
	}
	if err := e.orch.PostScaleIn(ctx, sliceID, "edge", gone, spec.PostDeployment{}); err != nil {
		t.Fatalf("post-scale-in after remove-node: %v", err)
	}
	got, _ = e.orch.Get(ctx, "alice", sliceID, rec.ID)
	sp, _ := got.Part("edge")
	if len(sp.Nodes) != 2 || sp.Nodes[0].Node == gone[0] || sp.Nodes[1].Node == gone[0] || got.State != store.ServiceDeployed {
		t.Errorf("the service's record after %s went: %+v", gone[0], got)
	}
	if n := strings.Count(eventTypes(t, e.store, sliceID), service.EvScaledIn); n != 4 { // the service and post-<copy>; the service and post-edge
		t.Errorf("%d %s events, want 4", n, service.EvScaledIn)
	}
	if err := e.orch.Undeploy(ctx, "alice", sliceID, rec.ID); err != nil {
		t.Fatal(err)
	}
}

// TestStartAnswersItsOwnDeployment: a waiting Start answers with the outcome of the
// deployment it started, even when another deployment of the service (one elasticity
// starts on a part it grew) begins between that end and the answer.
func TestStartAnswersItsOwnDeployment(t *testing.T) {
	e := start(t)
	v := e.createSlice(t, "alice", "own")
	ctx := context.Background()
	service.OnEnded(e.orch, func(sliceID, id string) {
		// As mergeRecord does when a post-deployment starts right after.
		if _, err := e.store.UpdateService(ctx, sliceID, id, func(s *store.Service) ([]store.Event, error) {
			s.State, s.Message = store.ServiceDeploying, ""
			return nil, nil
		}); err != nil {
			t.Error(err)
		}
	})
	doc := []byte(`slices:
  sliced:
    id: own
    slice-parts:
      - dc-slice-part:
          name: edge
          vdus:
            - vdu: {name: edge_vm, commands: [hostname]}
`)
	rec, err := e.orch.Start(ctx, service.Request{Tenant: "alice", SliceID: v.Slice.ID, Doc: doc, ID: "web", Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != store.ServiceDeployed || rec.FinishedAt.IsZero() {
		t.Errorf("Start answered %s (%q), want Deployed with its end time", rec.State, rec.Message)
	}
	// The store holds what came after it: the answer was not read from there.
	cur, err := e.store.GetService(ctx, v.Slice.ID, "web")
	if err != nil || cur.State != store.ServiceDeploying {
		t.Errorf("store after the later deployment began: %+v %v", cur, err)
	}
}
