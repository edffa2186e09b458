package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/sdk/plugintest/sshdtest"
)

// serviceEnv is necosd's API with the service routes over a real engine, whose vim-xen
// providers reach their VMs through a real sshd on 127.0.0.1.
type serviceEnv struct {
	url, token string
	engine     *sro.Engine
	sshd       *sshdtest.Server
}

func startServiceEnv(t *testing.T) *serviceEnv {
	t.Helper()
	sshd := sshdtest.Start(t)
	ssh := fmt.Sprintf("{ip: 127.0.0.1, port: %d, user: %s, host_key: %q}", sshd.Port, sshd.User, sshd.HostKey)
	env := apitest.Start(t, apitest.Options{
		Catalogue: `
providers:
  - name: UNICAMP
    location: AMERICA.BRAZIL
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 100}, subnet: 10.10.1.0/24, ssh: ` + ssh + `}}
  - name: SPAIN
    location: EUROPE.SPAIN
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 100}, subnet: 10.10.3.0/24, ssh: ` + ssh + `}}
`,
		Configure: func(c *daemon.Config) {
			c.Off.Services = false
			c.Services.PollInterval = 100 * time.Millisecond
		},
	})
	return &serviceEnv{url: env.URL, token: env.Token("alice"), engine: env.Engine, sshd: sshd}
}

// run runs necosctl and returns its output and error output.
func (e *serviceEnv) run(t *testing.T, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut)
	a.tokenFile = filepath.Join(t.TempDir(), "no-token")
	root := newRootCommand(a)
	root.SetArgs(append([]string{"--server", e.url, "--token", e.token}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		printError(&errOut, err)
	}
	return out.String(), errOut.String()
}

func TestServiceCommands(t *testing.T) {
	e := startServiceEnv(t)
	out, errOut := e.run(t, "slice", "create", "--wait", "-f", writeFile(t, "slice.yaml", apitest.SmallSlice("cdn")))
	if errOut != "" {
		t.Fatalf("slice create: %s", errOut)
	}
	v := func() *sro.View {
		l, _ := e.engine.List(context.Background(), "alice")
		if len(l) != 1 {
			t.Fatalf("slices: %+v\n%s", l, out)
		}
		v, err := e.engine.Get(context.Background(), "alice", l[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}()
	for _, p := range v.Parts {
		e.sshd.Authorize(t, p.Observed.Attributes["ssh-public-key"])
	}
	dir := t.TempDir()
	doc := writeFile(t, "service.yaml", []byte(`slices:
  sliced:
    id: cdn
    slice-parts:
      - dc-slice-part:
          name: core-dc
          vdus:
            - vdu:
                name: core_vm
                commands:
                  - echo web on ${parts.core-dc.vdus.core_vm.ip} > `+dir+`/web
                  - cat `+dir+`/web
      - dc-slice-part:
          name: edge-dc
          vdus:
            - vdu:
                name: edge_vm
                commands:
                  - echo cache ready
                  - echo cache broken >&2; exit 2
                  - echo never
`))

	// By the document's slice name, following every step.
	out, errOut = e.run(t, "service", "deploy", "-f", doc, "--wait", "--name", "cdn-web")
	t.Logf("deploy --wait:\n%s%s", out, errOut)
	for _, want := range []string{
		"core-dc/core_vm-1", "step 0  succeeded", "step 1  succeeded", "cat " + dir + "/web",
		"edge-dc/edge_vm-1", "step 1  failed", "exit status 2", "    | cache broken", "step 2  skipped",
		"service cdn-web Failed: 1 of 2 parts failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy output lacks %q", want)
		}
	}
	if !strings.Contains(errOut, "service cdn-web failed") {
		t.Errorf("a failed service does not fail the command: %q", errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "web")); !strings.HasPrefix(string(b), "web on 10.10.1.") {
		t.Errorf("the command wrote %q", b)
	}

	out, errOut = e.run(t, "service", "list", "cdn")
	if errOut != "" || !strings.Contains(out, "cdn-web") || !strings.Contains(out, "Failed") || !strings.Contains(out, "3/5") {
		t.Errorf("list:\n%s%s", out, errOut)
	}
	out, errOut = e.run(t, "service", "get", v.Slice.ID, "cdn-web")
	for _, want := range []string{"State:", "Failed", "PART", "edge_vm-1", "failed", "--- edge-dc/edge_vm-1 step 1 failed", "cache broken"} {
		if !strings.Contains(out, want) || errOut != "" {
			t.Errorf("get lacks %q:\n%s%s", want, out, errOut)
		}
	}
	if out, _ := e.run(t, "service", "get", "cdn", "cdn-web", "--logs"); !strings.Contains(out, "cache ready") {
		t.Errorf("get --logs:\n%s", out)
	}
	out, _ = e.run(t, "service", "get", "cdn", "cdn-web", "-o", "json")
	var s v1.Service
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.ID != "cdn-web" || s.Counts.Skipped != 1 {
		t.Errorf("get -o json: %v\n%s", err, out)
	}

	// Without --wait: it returns once started.
	out, errOut = e.run(t, "service", "deploy", "-f", doc, "--slice", v.Slice.ID)
	if errOut != "" || !strings.Contains(out, "is being deployed onto slice "+v.Slice.ID) {
		t.Errorf("deploy:\n%s%s", out, errOut)
	}

	// An unknown reference: the server's problems, nothing deployed.
	bad := writeFile(t, "bad.yaml", []byte(strings.Replace(readFile(t, doc), "core_vm.ip", "core_vm.ipp", 1)))
	_, errOut = e.run(t, "service", "deploy", "-f", bad, "--wait")
	if !strings.Contains(errOut, "unknown reference ${parts.core-dc.vdus.core_vm.ipp}") || !strings.Contains(errOut, "HTTP 400") {
		t.Errorf("bad reference: %s", errOut)
	}
	if _, errOut = e.run(t, "service", "deploy", "-f", doc, "--slice", "nosuch"); !strings.Contains(errOut, `no slice "nosuch"`) {
		t.Errorf("unknown slice: %s", errOut)
	}

	out, errOut = e.run(t, "service", "delete", "cdn", "cdn-web")
	if errOut != "" || !strings.Contains(out, "service cdn-web undeployed") {
		t.Errorf("delete:\n%s%s", out, errOut)
	}
	if _, errOut = e.run(t, "service", "get", "cdn", "cdn-web"); !strings.Contains(errOut, "service not found") {
		t.Errorf("get after delete: %s", errOut)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
