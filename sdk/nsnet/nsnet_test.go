package nsnet_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest"
	"golang.org/x/sys/unix"
)

// freshName returns a namespace name no other test uses; the test is skipped (or fails,
// when backends are required) unless it runs as root.
func freshName(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		plugintest.NeedBackend(t, "network namespaces need root")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "necos-nsnet-" + hex.EncodeToString(b)
}

// namespace makes a network namespace with loopback up, removed when the test ends.
func namespace(t *testing.T) string {
	t.Helper()
	name := freshName(t)
	for _, args := range [][]string{{"netns", "add", name}, {"-n", name, "link", "set", "lo", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// echo serves one line back, prefixed with the namespace's name, at 127.0.0.1 in ns.
func echo(t *testing.T, ns string) nsnet.Endpoint {
	t.Helper()
	ln, err := nsnet.Listen(nsnet.Endpoint{Netns: ns, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				_, _ = io.WriteString(c, ns+" "+line)
			}()
		}
	}()
	return nsnet.Endpoint{Netns: ns, Addr: ln.Addr().String()}
}

func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(got)
}

func TestDialIntoNamespace(t *testing.T) {
	ns := namespace(t)
	target := echo(t, ns)
	// The same address is not served in the host's namespace: only a socket opened
	// inside ns reaches it.
	if c, err := net.DialTimeout("tcp", target.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s answered in the host namespace", target.Addr)
	}
	c, err := nsnet.Dial(context.Background(), "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := roundTrip(t, c, "hello"), ns+" hello"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestForwardFromHostLoopback(t *testing.T) {
	ns := namespace(t)
	target := echo(t, ns)
	errs := make(chan error, 8)
	f, err := nsnet.Forward(context.Background(), nsnet.Endpoint{Addr: "127.0.0.1:0"}, target,
		func(err error) { errs <- err })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c, err := net.Dial("tcp", f.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		msg := "ping" + string(rune('a'+i))
		if got, want := roundTrip(t, c, msg), ns+" "+msg; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", f.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the forwarder still listens after Close")
	}
	select {
	case err := <-errs:
		t.Fatalf("unexpected relay error: %v", err)
	default:
	}
}

func TestForwardReportsUnreachableTarget(t *testing.T) {
	ns := namespace(t)
	// Nothing listens at port 1 inside ns: the relay fails, the forwarder says so and
	// closes the client's connection, and keeps serving.
	errs := make(chan error, 8)
	f, err := nsnet.Forward(context.Background(), nsnet.Endpoint{Addr: "127.0.0.1:0"},
		nsnet.Endpoint{Netns: ns, Addr: "127.0.0.1:1"}, func(err error) { errs <- err })
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 2 {
		c, err := net.Dial("tcp", f.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read %d bytes from a relay to nowhere", n)
		}
		c.Close()
		select {
		case err := <-errs:
			if !strings.Contains(err.Error(), ns) {
				t.Fatalf("error %q does not name the namespace", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no error reported")
		}
	}
}

func TestUnknownNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		plugintest.NeedBackend(t, "network namespaces need root")
	}
	_, err := nsnet.Dial(context.Background(), "tcp", nsnet.Endpoint{Netns: "necos-nsnet-missing", Addr: "127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "necos-nsnet-missing") {
		t.Fatalf("got %v, want an error naming the namespace", err)
	}
}

func TestCreateAndRemove(t *testing.T) {
	name := freshName(t)
	if err := nsnet.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsnet.Remove(name) })
	if err := nsnet.Create(name); !errors.Is(err, os.ErrExist) {
		t.Errorf("second create: got %v, want ErrExist", err)
	}
	// Loopback is up: something listens and answers there.
	ep := echo(t, name)
	c, err := nsnet.Dial(context.Background(), "tcp", ep)
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, c, "hi"); got != name+" hi" {
		t.Errorf("echo: got %q", got)
	}
	c.Close()
	if err := nsnet.Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(nsnet.Path(name)); !os.IsNotExist(err) {
		t.Errorf("namespace file still there: %v", err)
	}
	if err := nsnet.Remove(name); err != nil {
		t.Errorf("removing a missing namespace: %v", err)
	}
	for _, bad := range []string{"", "a/b", "/abs"} {
		if err := nsnet.Create(bad); err == nil {
			t.Errorf("Create(%q) accepted", bad)
		}
	}
}

// A name whose file is no longer a namespace's mount (its mount gone, or its creation
// cut short) is removed as well: such a file was what a test run left behind.
func TestRemoveUnmountedName(t *testing.T) {
	name := freshName(t)
	if err := os.MkdirAll(filepath.Dir(nsnet.Path(name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nsnet.Path(name), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(nsnet.Path(name)) })
	if err := nsnet.Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(nsnet.Path(name)); !os.IsNotExist(err) {
		t.Errorf("file still there: %v", err)
	}
}

// NotUpYet tells the errors of a node still booting, as real dials return them, from
// the rest.
func TestNotUpYet(t *testing.T) {
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	_, refused := net.Dial("tcp", addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	_, expired := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused", refused, true},
		{"no route yet", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", unix.EHOSTUNREACH)}, true},
		{"reset before the greeting", fmt.Errorf("ssh: handshake failed: %w", unix.ECONNRESET), true},
		{"closed before the greeting", fmt.Errorf("ssh: handshake failed: %w", io.EOF), true},
		{"timed out", expired, true},
		{"authentication", errors.New("ssh: handshake failed: ssh: unable to authenticate"), false},
		{"no such namespace", errors.New(`netns "x": no such file or directory`), false},
		{"nil", nil, false},
	} {
		if c.err == nil && c.want {
			t.Fatalf("%s: the dial did not fail", c.name)
		}
		if got := nsnet.NotUpYet(c.err); got != c.want {
			t.Errorf("%s (%v): NotUpYet %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// UntilUp dials again while the far end is not up yet, and only then, announcing the
// wait once; without a wait it dials once.
func TestUntilUp(t *testing.T) {
	notUp := os.NewSyscallError("connect", unix.ECONNREFUSED)
	refusedLogin := errors.New("unable to authenticate")
	for _, c := range []struct {
		name      string
		wait      time.Duration
		errs      []error // dial's answers in turn; nil after the last
		wantCalls int
		wantErr   error
		wantWaits int
	}{
		{"up after two refusals", time.Minute, []error{notUp, notUp}, 3, nil, 1},
		{"another failure", time.Minute, []error{refusedLogin}, 1, refusedLogin, 0},
		{"no wait", 0, []error{notUp}, 1, notUp, 0},
	} {
		calls, waits := 0, 0
		_, err := nsnet.UntilUp(context.Background(), c.wait, time.Millisecond, func() { waits++ },
			func(context.Context) (int, error) {
				calls++
				if calls <= len(c.errs) {
					return 0, c.errs[calls-1]
				}
				return calls, nil
			})
		if calls != c.wantCalls || waits != c.wantWaits {
			t.Errorf("%s: %d dials and %d announced waits, want %d and %d", c.name, calls, waits, c.wantCalls, c.wantWaits)
		}
		if err != c.wantErr {
			t.Errorf("%s: %v, want %v", c.name, err, c.wantErr)
		}
	}
}
