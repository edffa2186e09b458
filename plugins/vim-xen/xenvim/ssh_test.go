package xenvim

import (
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

func TestSSHConfig(t *testing.T) {
	provider := sdk.Provider{Name: "p"}
	base := Config{URI: "test:///default", Capacity: Capacity{CPUs: 1, MemoryMB: 1}}

	s, err := base.check(provider)
	if err != nil || s.ssh.target != TargetNode || s.ssh.user != DefaultSSHUser || s.ssh.stepTimeout != DefaultStepTimeout {
		t.Errorf("without ssh: %+v %v", s.ssh, err)
	}
	c := base
	c.SSH = &SSHConfig{IP: "192.0.2.1", Port: 22131, User: "necos", StepTimeout: "90s",
		HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb6OK0rhV2XX4Dj8lP3TSq9y5EnGgkbSKUfPHnlLgwz host"}
	s, err = c.check(provider)
	if err != nil || s.ssh.target != TargetGateway || s.ssh.user != "necos" || s.ssh.stepTimeout != 90*time.Second ||
		s.ssh.hostKey == nil || !strings.HasPrefix(s.ssh.hostKeyText, "ssh-ed25519 AAAA") || s.vimRef.PortSSH != 22131 {
		t.Errorf("gateway: %+v %v", s.ssh, err)
	}
	c.SSH = &SSHConfig{Target: "node"}
	if s, err = c.check(provider); err != nil || s.ssh.target != TargetNode || s.vimRef.IPSSH != "" {
		t.Errorf("node target without endpoint: %+v %v", s.ssh, err)
	}

	c.SSH = &SSHConfig{User: "a b", HostKey: "not a key", KnownHosts: "/nonexistent/known_hosts", Target: "jump",
		StepTimeout: "soon"}
	_, err = c.check(provider)
	for _, key := range []string{"ssh.user:", "ssh.host_key:", "ssh.known_hosts:", "ssh.target:", "ssh.step_timeout:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	c.SSH = &SSHConfig{Target: "gateway", StepTimeout: "-1s"}
	_, err = c.check(provider)
	if err == nil || !strings.Contains(err.Error(), "ssh.target: gateway") || !strings.Contains(err.Error(), "ssh.step_timeout: must be > 0") {
		t.Errorf("gateway without endpoint: %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, w := range []string{"abc", "defgh", "ij"} {
		_, _ = b.Write([]byte(w))
	}
	if got := b.String(); got != "[... 2 bytes dropped ...]\ncdefghij" {
		t.Errorf("got %q", got)
	}
	_, _ = b.Write([]byte("0123456789"))
	if got := b.String(); got != "[... 12 bytes dropped ...]\n23456789" {
		t.Errorf("got %q", got)
	}
	small := &tailBuffer{max: 8}
	_, _ = small.Write([]byte("ok"))
	if small.String() != "ok" {
		t.Errorf("got %q", small.String())
	}
}

func TestPartKey(t *testing.T) {
	priv, pub, err := newPartKey("necos-s-p")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(priv, "-----BEGIN OPENSSH PRIVATE KEY-----") || !strings.HasPrefix(pub, "ssh-ed25519 ") ||
		!strings.HasSuffix(pub, " necos-s-p") {
		t.Fatalf("key pair %q / %q", priv[:40], pub)
	}
	if again, err := publicOf(priv, "necos-s-p"); err != nil || again != pub {
		t.Errorf("public key from the private one: %q %v", again, err)
	}
	// The key survives the metadata round trip.
	rec := partRecord{Generation: 1, Name: "p", SSHKey: priv}
	content, err := metadataContent(nodeMeta{Name: "n-1", Record: rec})
	if err != nil {
		t.Fatal(err)
	}
	x, err := parseDomain("<domain><metadata>" + strings.Replace(content, "<node", `<node xmlns="`+Namespace+`"`, 1) + "</metadata></domain>")
	if err != nil || x.Metadata.Node == nil || x.Metadata.Node.Record.SSHKey != priv {
		t.Errorf("metadata round trip: %v %+v", err, x.Metadata.Node)
	}
}
