package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest/sshdtest"
)

// exec runs necosctl with stdin and returns its output and its error as it is.
func (e *serviceEnv) exec(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut)
	a.tokenFile = filepath.Join(t.TempDir(), "no-token")
	root := newRootCommand(a)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"--server", e.url, "--token", e.token}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// TestSliceSSH logs in to a part's node through a real sshd (the provider's SSH
// gateway) with the part's key, and checks the host key it pinned.
func TestSliceSSH(t *testing.T) {
	e := startServiceEnv(t)
	out, errOut := e.run(t, "slice", "create", "--wait", "-o", "json", "-f", writeFile(t, "slice.yaml", apitest.SmallSlice("sshd")))
	if errOut != "" {
		t.Fatalf("slice create: %s", errOut)
	}
	var s v1.Slice
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	v, err := e.engine.Get(context.Background(), "alice", s.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Only core-dc's key is let in: edge-dc's must be refused.
	for _, p := range v.Parts {
		if p.Name == "core-dc" {
			e.sshd.Authorize(t, p.Observed.Attributes["ssh-public-key"])
		}
	}

	out, errOut = e.run(t, "slice", "ssh", s.ID, "core-dc/core_vm-1", "--", "echo", "hello from", "$USER")
	if errOut != "" || strings.TrimSpace(out) != "hello from "+e.sshd.User {
		t.Errorf("ssh command: out %q err %q", out, errOut)
	}
	// The remote command's status is necosctl's.
	_, errOut = e.run(t, "slice", "ssh", s.ID, "core-dc/core_vm-1", "--", "echo oops >&2; exit 3")
	if !strings.Contains(errOut, "oops") {
		t.Errorf("remote stderr not shown: %q", errOut)
	}
	var exit *exitError
	if _, _, err := e.exec(t, "", "slice", "ssh", s.ID, "core-dc/core_vm-1", "--", "exit 3"); !errors.As(err, &exit) || exit.code != 3 {
		t.Errorf("remote exit 3 ends necosctl with %v", err)
	}
	// Standard input reaches the remote command.
	if out, errOut, err := e.exec(t, "piped\n", "slice", "ssh", s.ID, "core-dc/core_vm-1", "--", "cat"); err != nil || out != "piped\n" {
		t.Errorf("stdin: %v %q %q", err, out, errOut)
	}

	// Another part's key is not authorized: the login is refused, and says by whom.
	if _, errOut := e.run(t, "slice", "ssh", s.ID, "edge-dc/edge_vm-1", "--", "true"); !strings.Contains(errOut, "unable to authenticate") {
		t.Errorf("unauthorized key: %s", errOut)
	}
	// Bad targets name what exists.
	for target, want := range map[string]string{
		"core-dc":          "expected PART/NODE",
		"nope/x":           "parts: core-dc, edge-dc",
		"core-dc/core_vm9": "nodes: core_vm-1",
	} {
		if _, errOut := e.run(t, "slice", "ssh", s.ID, target, "--", "true"); !strings.Contains(errOut, want) {
			t.Errorf("ssh %s: %s, want %q", target, errOut, want)
		}
	}
}

// createWithCredentials creates a one-part slice named name through necosctl and
// returns it as necosctl prints it with --show-credentials.
func (e *serviceEnv) createWithCredentials(t *testing.T, name string) v1.Slice {
	t.Helper()
	out, errOut := e.run(t, "slice", "create", "--wait", "-o", "json", "--show-credentials", "-f", writeFile(t, "slice.yaml", apitest.SmallSlice(name)))
	if errOut != "" {
		t.Fatal(errOut)
	}
	var s v1.Slice
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSSHHostKeyMismatch refuses a host whose key is not the pinned one.
func TestSSHHostKeyMismatch(t *testing.T) {
	e := startServiceEnv(t)
	s := e.createWithCredentials(t, "mitm")
	p := s.Parts[0]
	tgt, err := sshTarget(&s, p.Name, p.Nodes[0].Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Pin another key: the real sshd must be refused.
	_, pub := sshdtest.NewKey(t)
	s.Parts[0].Credential.HostKey = pub
	bad, err := sshTarget(&s, p.Name, p.Nodes[0].Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if bad.at != tgt.at {
		t.Fatalf("targets differ: %v %v", bad.at, tgt.at)
	}
	err = runSSH(context.Background(), bad, 0, "true", strings.NewReader(""), new(strings.Builder), new(strings.Builder))
	if err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Errorf("a host with another key: %v", err)
	}
}

// signalWriter closes first at its first write.
type signalWriter struct {
	first chan struct{}
	once  sync.Once
	b     strings.Builder
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.first) })
	return w.b.Write(p)
}

// A node that does not answer yet (a guest booting) is dialled again until it does,
// saying so once; with no wait the first refusal fails, naming --wait.
func TestSSHWaitsForABootingNode(t *testing.T) {
	e := startServiceEnv(t)
	s := e.createWithCredentials(t, "boot")
	p := s.Parts[0]
	e.sshd.Authorize(t, p.Attributes["ssh-public-key"])
	tgt, err := sshTarget(&s, p.Name, p.Nodes[0].Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	node := tgt.at
	// Nothing listens at the node's address until the test lets it "boot".
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tgt.at = nsnet.Endpoint{Addr: l.Addr().String()}
	l.Close()

	ctx := context.Background()
	err = runSSH(ctx, tgt, 0, "true", strings.NewReader(""), new(strings.Builder), new(strings.Builder))
	if err == nil || !nsnet.NotUpYet(err) || !strings.Contains(err.Error(), "give --wait") {
		t.Errorf("no wait, node not up: %v", err)
	}

	stderr := &signalWriter{first: make(chan struct{})}
	booted := make(chan error, 1)
	go func() {
		<-stderr.first // the waiting is announced: the node comes up now
		f, err := nsnet.Forward(ctx, tgt.at, node, nil)
		if err == nil {
			t.Cleanup(func() { f.Close() })
		}
		booted <- err
	}()
	var stdout strings.Builder
	if err := runSSH(ctx, tgt, time.Minute, "echo up", strings.NewReader(""), &stdout, stderr); err != nil {
		t.Fatalf("a node that answers after a moment: %v (stderr %q)", err, stderr.b.String())
	}
	if err := <-booted; err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(stdout.String()) != "up" || strings.Count(stderr.b.String(), "waiting for") != 1 {
		t.Errorf("stdout %q, stderr %q: want up, and one line saying it waits", stdout.String(), stderr.b.String())
	}
}
