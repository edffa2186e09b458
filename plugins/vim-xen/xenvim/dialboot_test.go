package xenvim

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest/sshdtest"
	"golang.org/x/crypto/ssh"
)

// A node that starts answering SSH only after a while (a guest booting) is reached once
// it does; one that never answers fails after the wait, naming it; a failure that is not
// a node still booting (authentication) fails at once, and without a wait nothing is
// dialled again.
func TestDialBootedWaitsForANodeThatBoots(t *testing.T) {
	srv := sshdtest.Start(t)
	priv, pub := sshdtest.NewKey(t)
	srv.Authorize(t, pub)
	signer, err := ssh.ParsePrivateKey([]byte(priv))
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(srv.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(s ssh.Signer) *ssh.ClientConfig {
		return &ssh.ClientConfig{User: srv.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(s)},
			HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: dialTimeout}
	}
	freeAddr := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	ctx := context.Background()

	// Nothing listens at first; after a moment a listener passes connections to sshd.
	addr := freeAddr()
	booted := make(chan struct{})
	go func() {
		time.Sleep(1500 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		close(booted)
		if err != nil {
			return
		}
		defer l.Close()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			return
		}
		defer s.Close()
		go func() { _, _ = io.Copy(s, c) }()
		_, _ = io.Copy(c, s)
	}()
	if _, err := (sshTarget{node: "n", addr: addr, cfg: cfg(signer)}).dialBooted(ctx); err == nil {
		t.Fatal("without a boot wait, a node not answering yet was reached")
	}
	c, err := (sshTarget{node: "n", addr: addr, cfg: cfg(signer), bootWait: time.Minute}).dialBooted(ctx)
	if err != nil {
		t.Fatalf("a node that answers after a moment: %v", err)
	}
	select {
	case <-booted:
	default:
		t.Error("reached before the node answered")
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sess.Output("echo up"); err != nil || strings.TrimSpace(string(out)) != "up" {
		t.Errorf("command on the booted node: %q %v", out, err)
	}
	c.Close()

	// Never answers: fails after the wait, saying so.
	start := time.Now()
	_, err = (sshTarget{node: "n", addr: freeAddr(), cfg: cfg(signer), bootWait: 2 * time.Second}).dialBooted(ctx)
	if err == nil || !strings.Contains(err.Error(), "no answer for 2s") || time.Since(start) < 2*time.Second {
		t.Errorf("a node that never answers: %v after %s", err, time.Since(start))
	}

	// A key sshd does not take is no node booting: no second try.
	wrong, _ := sshdtest.NewKey(t)
	ws, err := ssh.ParsePrivateKey([]byte(wrong))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = (sshTarget{node: "n", addr: srv.Addr(), cfg: cfg(ws), bootWait: time.Minute}).dialBooted(ctx)
	if err == nil || nsnet.NotUpYet(err) || time.Since(start) > 30*time.Second {
		t.Errorf("a refused key: %v after %s", err, time.Since(start))
	}
}
