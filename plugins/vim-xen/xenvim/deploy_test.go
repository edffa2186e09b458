package xenvim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/plugins/vim-xen/xenvim"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/necos/necos/sdk/plugintest/sshdtest"
	"golang.org/x/crypto/ssh"
)

// The Deployer is tested against a real sshd on 127.0.0.1 standing in for the part's
// VMs: with target gateway every node is reached at the provider's SSH endpoint, which is
// that sshd, and the commands run for real on this machine.

// sshConfig is a plugin configuration whose SSH endpoint is srv.
func sshConfig(t *testing.T, srv *sshdtest.Server, mod func(*xenvim.SSHConfig)) []byte {
	t.Helper()
	sc := &xenvim.SSHConfig{IP: srv.Host, Port: srv.Port, User: srv.User, HostKey: srv.HostKey, Target: xenvim.TargetGateway}
	if mod != nil {
		mod(sc)
	}
	b, err := json.Marshal(xenvim.Config{URI: "test:///default", Capacity: testCapacity, Subnet: "10.79.0.0/24", SSH: sc})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type deployEnv struct {
	client *sdk.Client
	vim    sdk.VIM
	dep    sdk.Deployer
	part   sdk.Part
}

// newDeployEnv starts a plugin in process configured with cfg and creates a part of two
// VDUs: "vm" (two nodes) and "db" (one), authorized on srv.
func newDeployEnv(t *testing.T, srv *sshdtest.Server, cfg []byte) *deployEnv {
	t.Helper()
	provider := sdk.Provider{Name: "deploy-" + randomSuffix(), Location: "EUROPE.TEST"}
	c := plugintest.InProcess(t, xenvim.New(plugintest.TestLogger(t)), provider, cfg)
	return createDeployPart(t, c, srv)
}

func createDeployPart(t *testing.T, c *sdk.Client, srv *sshdtest.Server) *deployEnv {
	t.Helper()
	if !c.Info().Serves(sdk.KindDeployer) {
		t.Fatalf("kinds %v lack the deployer", c.Info().Kinds)
	}
	vim, err := c.VIM()
	if err != nil {
		t.Fatal(err)
	}
	dep, err := c.Deployer()
	if err != nil {
		t.Fatal(err)
	}
	ref := sdk.PartRef{SliceID: "deploy-" + randomSuffix(), PartID: "core-dc"}
	ctx := context.Background()
	part, err := vim.Create(ctx, sdk.CreateRequest{Part: sdk.PartSpec{Ref: ref, Name: "core-dc", Type: "DC", Bridge: "br-deploy", VDUs: []sdk.VDUSpec{
		{Name: "vm", Instances: 2, CPUs: 1, MemoryMB: 256},
		{Name: "db", Instances: 1, CPUs: 1, MemoryMB: 256},
	}}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = vim.Delete(context.Background(), sdk.DeleteRequest{Ref: ref}) })
	srv.Authorize(t, part.Attributes[xenvim.AttrSSHPublicKey])
	return &deployEnv{client: c, vim: vim, dep: dep, part: part}
}

func step(t *testing.T, d sdk.Deployment, node string, i int) sdk.StepResult {
	t.Helper()
	for _, n := range d.Nodes {
		if n.Node == node {
			if i >= len(n.Steps) {
				t.Fatalf("node %s has %d steps, want step %d", node, len(n.Steps), i)
			}
			return n.Steps[i]
		}
	}
	t.Fatalf("deployment has no node %s: %+v", node, d.Nodes)
	return sdk.StepResult{}
}

func nodeState(d sdk.Deployment, node string) string {
	for _, n := range d.Nodes {
		if n.Node == node {
			return n.State
		}
	}
	return ""
}

func TestCredentialIssued(t *testing.T) {
	srv := sshdtest.Start(t)
	env := newDeployEnv(t, srv, sshConfig(t, srv, nil))
	cred := env.part.Credential
	if cred.Kind != sdk.CredentialSSHKey || cred.User != srv.User || cred.HostKey != srv.HostKey {
		t.Fatalf("credential %+v", cred)
	}
	signer, err := ssh.ParsePrivateKey([]byte(cred.Secret))
	if err != nil {
		t.Fatalf("private key: %v", err)
	}
	if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("key type %s", signer.PublicKey().Type())
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(env.part.Attributes[xenvim.AttrSSHPublicKey]))
	if err != nil || string(pub.Marshal()) != string(signer.PublicKey().Marshal()) {
		t.Fatalf("public key attribute %q does not match the private key (%v)", env.part.Attributes[xenvim.AttrSSHPublicKey], err)
	}
	// The key is the part's: Describe and a repeated Create hand out the same one, and
	// another part gets another.
	ctx := context.Background()
	again, err := env.vim.Describe(ctx, sdk.DescribeRequest{Ref: env.part.Ref})
	if err != nil || again.Credential != cred {
		t.Errorf("describe: %v, credential changed: %+v", err, again.Credential)
	}
	scaled, err := env.vim.Scale(ctx, sdk.ScaleRequest{Ref: env.part.Ref, VDU: "vm", Instances: 3})
	if err != nil || scaled.Credential != cred {
		t.Errorf("scale: %v, credential changed: %+v", err, scaled.Credential)
	}
	other, err := env.vim.Create(ctx, sdk.CreateRequest{Part: sdk.PartSpec{Ref: sdk.PartRef{SliceID: env.part.Ref.SliceID, PartID: "edge"},
		Name: "edge", Bridge: "br-deploy", VDUs: []sdk.VDUSpec{{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 128}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.vim.Delete(context.Background(), sdk.DeleteRequest{Ref: other.Ref}) })
	if other.Credential.Secret == cred.Secret {
		t.Error("two parts share a key")
	}
}

func TestDeployCommands(t *testing.T) {
	srv := sshdtest.Start(t)
	env := newDeployEnv(t, srv, sshConfig(t, srv, nil))
	dir := t.TempDir()
	ctx := context.Background()
	out := filepath.Join(dir, "out")
	req := sdk.DeployRequest{ServiceID: "web", Part: env.part, Work: []sdk.NodeWork{
		// A file written on one step and read back on the next, over SSH.
		{Node: "vm-1", Commands: []string{"printf 'hello from %s' \"$(whoami)\" > " + out, "cat " + out, "echo run >> " + dir + "/count"}},
		// Each of these two waits for the other: they only succeed when run in parallel.
		{Node: "vm-2", Commands: []string{barrier(dir, "b", "c")}},
		{Node: "db", Commands: []string{barrier(dir, "c", "b"),
			"echo to-stdout; echo to-stderr >&2; exit 3",
			"touch " + dir + "/never"}},
	}}
	begin := time.Now()
	d, err := env.dep.Deploy(ctx, req)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	t.Logf("deploy of 3 nodes, 6 steps: %v", time.Since(begin))
	for _, n := range d.Nodes {
		for _, s := range n.Steps {
			t.Logf("  %s step %d %-9s exit %d %8v %s", n.Node, s.Index, s.State, s.ExitCode, s.Duration.Round(time.Millisecond), s.Step)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "hello from "+srv.User {
		t.Fatalf("file written over SSH: %q, %v", b, err)
	}
	if s := step(t, d, "vm-1", 1); s.State != sdk.DeploySucceeded || s.Stdout != "hello from "+srv.User || s.ExitCode != 0 {
		t.Errorf("read back: %+v", s)
	}
	if nodeState(d, "vm-1") != sdk.DeploySucceeded || nodeState(d, "vm-2") != sdk.DeploySucceeded {
		t.Errorf("vm nodes: %+v", d.Nodes)
	}
	if s := step(t, d, "db-1", 0); s.State != sdk.DeploySucceeded {
		t.Errorf("the parallel barrier failed: %+v", s)
	}
	failed := step(t, d, "db-1", 1)
	if failed.State != sdk.DeployFailed || failed.ExitCode != 3 || failed.Stdout != "to-stdout\n" ||
		failed.Stderr != "to-stderr\n" || !strings.Contains(failed.Error, "exit status 3") {
		t.Errorf("failing step: %+v", failed)
	}
	if s := step(t, d, "db-1", 2); s.State != sdk.DeploySkipped {
		t.Errorf("step after the failure: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "never")); !os.IsNotExist(err) {
		t.Errorf("a step after a failure ran: %v", err)
	}
	if d.State != sdk.DeployFailed || nodeState(d, "db-1") != sdk.DeployFailed ||
		!strings.Contains(d.Message, "db-1 step 1") || !strings.Contains(d.Message, "exit status 3") {
		t.Errorf("deployment %s: %s", d.State, d.Message)
	}
	st, err := env.dep.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: "web", Ref: env.part.Ref})
	if err != nil || st.State != d.State || len(st.Nodes) != 3 {
		t.Errorf("status after deploy: %+v %v", st, err)
	}

	// Deploying again runs the commands again.
	if _, err := env.dep.Deploy(ctx, req); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "count")); strings.Count(string(b), "run") != 2 {
		t.Errorf("after two deploys the counter holds %q", b)
	}
	if err := env.dep.Undeploy(ctx, sdk.UndeployRequest{ServiceID: "web", Part: env.part}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.dep.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: "web", Ref: env.part.Ref}); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Errorf("status after undeploy: %v", err)
	}
	if err := env.dep.Undeploy(ctx, sdk.UndeployRequest{ServiceID: "unknown", Part: env.part}); err != nil {
		t.Errorf("undeploy of an unknown service: %v", err)
	}
}

// barrier is a command that creates mine and waits (up to 30 s) for theirs.
func barrier(dir, mine, theirs string) string {
	return fmt.Sprintf("touch %s/%s; i=0; while [ ! -e %s/%s ]; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done",
		dir, mine, dir, theirs)
}

func TestDeployVDUAndProgress(t *testing.T) {
	srv := sshdtest.Start(t)
	env := newDeployEnv(t, srv, sshConfig(t, srv, nil))
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	ctx := context.Background()
	// A VDU name means each of its nodes; the first step waits for the gate.
	req := sdk.DeployRequest{ServiceID: "svc", Part: env.part, Work: []sdk.NodeWork{
		{Node: "vm", Commands: []string{"while [ ! -e " + gate + " ]; do sleep 0.05; done", "echo done"}},
	}}
	type result struct {
		d   sdk.Deployment
		err error
	}
	res := make(chan result, 1)
	go func() { d, err := env.dep.Deploy(ctx, req); res <- result{d, err} }()
	// While it runs, DeployStatus shows both nodes on their first step.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := env.dep.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: "svc", Ref: env.part.Ref})
		if err == nil && st.State == sdk.DeployRunning && len(st.Nodes) == 2 &&
			step(t, st, "vm-1", 0).State == sdk.DeployRunning && step(t, st, "vm-2", 0).State == sdk.DeployRunning {
			if s := step(t, st, "vm-1", 1); s.State != sdk.DeployPending {
				t.Errorf("second step while the first runs: %+v", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw the deployment running: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.d.State != sdk.DeploySucceeded {
		t.Fatalf("deploy: %+v %v", r.d, r.err)
	}
	for _, n := range []string{"vm-1", "vm-2"} {
		if s := step(t, r.d, n, 1); s.Stdout != "done\n" {
			t.Errorf("%s: %+v", n, s)
		}
	}
}

func TestDeployTimeoutAndOutputBound(t *testing.T) {
	srv := sshdtest.Start(t)
	env := newDeployEnv(t, srv, sshConfig(t, srv, nil))
	ctx := context.Background()
	d, err := env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "slow", Part: env.part, StepTimeout: time.Second,
		Work: []sdk.NodeWork{{Node: "vm-1", Commands: []string{"sleep 60", "echo never"}}}})
	if err != nil {
		t.Fatal(err)
	}
	s := step(t, d, "vm-1", 0)
	if s.State != sdk.DeployFailed || !strings.Contains(s.Error, "timed out after 1s") || s.ExitCode != -1 {
		t.Errorf("slow step: %+v", s)
	}
	if s := step(t, d, "vm-1", 1); s.State != sdk.DeploySkipped {
		t.Errorf("after the time-out: %+v", s)
	}
	d, err = env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "big", Part: env.part,
		Work: []sdk.NodeWork{{Node: "db-1", Commands: []string{"head -c 300000 /dev/zero | tr '\\0' a; echo; echo end"}}}})
	if err != nil {
		t.Fatal(err)
	}
	big := step(t, d, "db-1", 0)
	if big.State != sdk.DeploySucceeded || len(big.Stdout) > 65<<10 || !strings.HasSuffix(big.Stdout, "\nend\n") ||
		!strings.HasPrefix(big.Stdout, "[... ") {
		t.Errorf("large output: state %s, %d bytes, starts %q", big.State, len(big.Stdout), clipped(big.Stdout))
	}
}

func clipped(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

func TestDeployHostKeys(t *testing.T) {
	srv := sshdtest.Start(t)
	_, otherKey := sshdtest.NewKey(t)
	ctx := context.Background()
	work := []sdk.NodeWork{{Node: "vm-1", Commands: []string{"true"}}}

	t.Run("GatewayRefuses", func(t *testing.T) {
		// A port where nothing listens, as examples/catalogue-bench.yaml's gateways.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		env := newDeployEnv(t, srv, sshConfig(t, srv, func(c *xenvim.SSHConfig) { c.Port = port }))
		d, err := env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "x", Part: env.part, Work: work})
		if err != nil {
			t.Fatal(err)
		}
		s := step(t, d, "vm-1", 0)
		for _, want := range []string{"connection refused", "nothing listens there", "./scripts/run.sh --kubernetes"} {
			if s.State != sdk.DeployFailed || !strings.Contains(s.Error, want) {
				t.Errorf("step %+v; want an error containing %q", s, want)
			}
		}
	})
	t.Run("Mismatch", func(t *testing.T) {
		env := newDeployEnv(t, srv, sshConfig(t, srv, func(c *xenvim.SSHConfig) { c.HostKey = otherKey }))
		d, err := env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "x", Part: env.part, Work: work})
		if err != nil {
			t.Fatal(err)
		}
		s := step(t, d, "vm-1", 0)
		want := "host key mismatch at " + srv.Addr()
		if s.State != sdk.DeployFailed || !strings.Contains(s.Error, want) || !strings.Contains(s.Error, "SHA256:") {
			t.Errorf("step %+v; want an error containing %q", s, want)
		}
		t.Logf("refused: %s", s.Error)
		// The part's pinned key counts as much as the configuration's: pinning the
		// server's key in the credential lets the deployment through.
		part := env.part
		part.Credential.HostKey = srv.HostKey
		d, err = env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "x", Part: part, Work: work})
		if err != nil || d.State != sdk.DeploySucceeded {
			t.Errorf("with the right pinned key: %+v %v", d, err)
		}
	})

	t.Run("KnownHosts", func(t *testing.T) {
		kh := srv.KnownHosts(t)
		env := newDeployEnv(t, srv, sshConfig(t, srv, func(c *xenvim.SSHConfig) { c.HostKey, c.KnownHosts = "", kh }))
		if env.part.Credential.HostKey != "" {
			t.Errorf("no host key configured, yet the credential pins %q", env.part.Credential.HostKey)
		}
		d, err := env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "x", Part: env.part, Work: work})
		if err != nil || d.State != sdk.DeploySucceeded {
			t.Fatalf("known_hosts: %+v %v", d, err)
		}
		if err := os.WriteFile(kh, []byte(fmt.Sprintf("[%s]:%d %s\n", srv.Host, srv.Port, otherKey)), 0o600); err != nil {
			t.Fatal(err)
		}
		d, err = env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "x", Part: env.part, Work: work})
		if err != nil || d.State != sdk.DeployFailed || !strings.Contains(step(t, d, "vm-1", 0).Error, "known_hosts lists another key") {
			t.Errorf("changed known_hosts: %+v %v", d, err)
		}
	})

	t.Run("NothingToCheck", func(t *testing.T) {
		env := newDeployEnv(t, srv, sshConfig(t, srv, func(c *xenvim.SSHConfig) { c.HostKey = "" }))
		_, err := env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "x", Part: env.part, Work: work})
		if sdk.CodeOf(err) != sdk.CodeFailedPrecondition || !strings.Contains(err.Error(), "no host key") {
			t.Errorf("deploy without any host key to check: %v", err)
		}
	})
}

func TestDeployRefusals(t *testing.T) {
	srv := sshdtest.Start(t)
	env := newDeployEnv(t, srv, sshConfig(t, srv, nil))
	ctx := context.Background()
	_, err := env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "bad", Part: env.part, Work: []sdk.NodeWork{
		{Node: "vm", Manifests: []string{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"}},
		{Node: "nosuch", Commands: []string{"true"}},
	}})
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument {
		t.Fatalf("deploy: %v", err)
	}
	for _, want := range []string{"work[0] (vm).manifests", "no Kubernetes", `work[1] (nosuch).node: part core-dc has no node or VDU "nosuch"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// An empty command is the SDK's to refuse (sdk.DeployRequest.Validate), before the
	// plugin sees the request, with the same code.
	_, err = env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "bad", Part: env.part, Work: []sdk.NodeWork{
		{Node: "vm", Commands: []string{"true"}}, {Node: "db-1", Commands: []string{" "}}}})
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument || !strings.Contains(err.Error(), "work[1].commands[0]: empty") {
		t.Errorf("deploy of an empty command: %v, want InvalidArgument naming work[1].commands[0]", err)
	}
	if _, err := env.dep.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: "bad", Ref: env.part.Ref}); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Errorf("a refused deployment left a status: %v", err)
	}
}

// TestDeployerBinary runs the plugin as the core does (built, launched, gRPC with mutual
// TLS) and deploys through it; with a shared libvirtd (NECOS_LIBVIRT_URI) it also checks
// that a new plugin process hands out the same key for a part made by the one before.
func TestDeployerBinary(t *testing.T) {
	srv := sshdtest.Start(t)
	bin := plugintest.Build(t, "github.com/necos/necos/plugins/vim-xen")
	provider := sdk.Provider{Name: "deploy-bin-" + randomSuffix(), Location: "EUROPE.TEST"}
	c := plugintest.Binary(t, bin, provider, sshConfig(t, srv, nil))
	env := createDeployPart(t, c, srv)
	dir := t.TempDir()
	ctx := context.Background()
	begin := time.Now()
	d, err := env.dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "bin", Part: env.part, Work: []sdk.NodeWork{
		{Node: "vm", Commands: []string{"echo $SSH_CONNECTION > " + dir + "/conn", "cat " + dir + "/conn"}},
		{Node: "db", Commands: []string{"exit 7"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deploy through the binary: %v", time.Since(begin))
	if s := step(t, d, "vm-2", 1); s.State != sdk.DeploySucceeded || !strings.Contains(s.Stdout, fmt.Sprint(srv.Port)) {
		t.Errorf("vm-2: %+v", s)
	}
	if s := step(t, d, "db-1", 0); s.ExitCode != 7 || s.State != sdk.DeployFailed {
		t.Errorf("db-1: %+v", s)
	}
	st, err := env.dep.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: "bin", Ref: env.part.Ref})
	if err != nil || st.State != sdk.DeployFailed || len(st.Nodes) != 3 {
		t.Errorf("status: %+v %v", st, err)
	}

	uri := os.Getenv("NECOS_LIBVIRT_URI")
	if uri == "" {
		plugintest.NeedBackend(t, "NECOS_LIBVIRT_URI is not set: start a libvirtd with the test driver (scripts/libvirtd.sh)")
	}
	cfg := func() []byte {
		var m map[string]any
		_ = json.Unmarshal(sshConfig(t, srv, nil), &m)
		m["uri"] = uri
		b, _ := json.Marshal(m)
		return b
	}()
	first := plugintest.Binary(t, bin, provider, cfg)
	shared := createDeployPart(t, first, srv)
	first.Kill()
	second := plugintest.Binary(t, bin, provider, cfg)
	vim2, err := second.VIM()
	if err != nil {
		t.Fatal(err)
	}
	found, err := vim2.Describe(ctx, sdk.DescribeRequest{Ref: shared.part.Ref})
	if err != nil || found.Credential != shared.part.Credential {
		t.Fatalf("after a restart the part's credential is %+v (%v), was %+v", found.Credential, err, shared.part.Credential)
	}
	dep2, _ := second.Deployer()
	d, err = dep2.Deploy(ctx, sdk.DeployRequest{ServiceID: "after-restart", Part: found,
		Work: []sdk.NodeWork{{Node: "db-1", Commands: []string{"true"}}}})
	if err != nil || d.State != sdk.DeploySucceeded {
		t.Errorf("deploy after restart: %+v %v", d, err)
	}
	if err := vim2.Delete(ctx, sdk.DeleteRequest{Ref: shared.part.Ref}); err != nil {
		t.Error(err)
	}
}

// The shared Deployer suite, on a part whose nodes are the sshd standing in for them.
func TestDeployerConformance(t *testing.T) {
	srv := sshdtest.Start(t)
	env := newDeployEnv(t, srv, sshConfig(t, srv, nil))
	plugintest.RunDeployer(t, env.client, plugintest.DeployerOptions{Part: env.part, Node: "vm-1", StepTimeout: 30 * time.Second})
}
