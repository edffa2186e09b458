// Package nsnet opens sockets inside Linux network namespaces and relays TCP between them.
//
// On a necos site, guests, pods and links have private addresses that live only inside
// network namespaces (a site's, a node's); the host namespace holds loopback addresses
// only. Whatever must talk to them — a deployer's SSH client, a metrics probe, a person's
// browser — either opens its socket inside the right namespace ([Dial], [Listen]) or goes
// through a loopback forwarder ([Forward]) that listens on 127.0.0.1 in one namespace and
// dials in another.
//
// A namespace is named as `ip netns` names it (a file under /var/run/netns) or by an
// absolute path (e.g. /proc/PID/ns/net); the empty name is the caller's own namespace.
// Entering a namespace needs CAP_SYS_ADMIN (root).
package nsnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Endpoint is an address in a network namespace.
type Endpoint struct {
	// Netns is the namespace: a name under /var/run/netns, an absolute path, or empty for
	// the caller's own.
	Netns string
	// Addr is host:port.
	Addr string
}

// String returns "addr" or "netns:addr".
func (e Endpoint) String() string {
	if e.Netns == "" {
		return e.Addr
	}
	return e.Netns + ":" + e.Addr
}

// NotUpYet reports whether a dial (or the first exchange after it) failed as it does
// while the far end is still booting: refused (nothing listens yet), no route yet (its
// address answers no ARP), timed out, or closed before the server's greeting. A caller
// that waits for a node to come up dials again on these errors, and on no other.
func NotUpYet(err error) bool {
	var ne net.Error
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EHOSTUNREACH) ||
		errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, io.EOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// UntilUp calls dial until it succeeds, fails otherwise than [NotUpYet], or ctx ends;
// a far end not up yet is dialled again every interval for as long as wait (none when
// wait is 0). waiting, when not nil, is called once, before the first wait. It returns
// dial's last result, its error as dial gave it.
func UntilUp[T any](ctx context.Context, wait, every time.Duration, waiting func(), dial func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(wait)
	for first := true; ; first = false {
		v, err := dial(ctx)
		if err == nil || !NotUpYet(err) || !time.Now().Before(deadline) {
			return v, err
		}
		if first && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(every):
		}
	}
}

// Path returns the file that names a namespace: name itself when it is absolute, else
// /var/run/netns/name.
func Path(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join("/var/run/netns", name)
}

// In runs f on an OS thread that has entered the named namespace and returns f's error.
// Sockets f creates stay in that namespace after f returns. The thread is never handed
// back to other goroutines: it ends with f, so no goroutine can be left in the wrong
// namespace, whatever f does. An empty name runs f in the caller's namespace.
func In(name string, f func() error) error {
	if name == "" {
		return f()
	}
	target, err := netns.GetFromPath(Path(name))
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() {
		defer target.Close()
		// Locked and never unlocked: the runtime ends the thread when this goroutine
		// returns, so its namespace dies with it.
		runtime.LockOSThread()
		if err := netns.Set(target); err != nil {
			done <- fmt.Errorf("enter network namespace %s: %w", name, err)
			return
		}
		done <- f()
	}()
	return <-done
}

// Dial connects to ep.Addr from inside ep.Netns.
func Dial(ctx context.Context, network string, ep Endpoint) (net.Conn, error) {
	var conn net.Conn
	err := In(ep.Netns, func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, ep.Addr)
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", ep, err)
	}
	return conn, nil
}

// Dialer returns a dial function, as net/http's Transport and x/crypto/ssh's clients take,
// that dials inside the named namespace.
func Dialer(name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return Dial(ctx, network, Endpoint{Netns: name, Addr: addr})
	}
}

// Listen listens for TCP at ep.Addr inside ep.Netns.
func Listen(ep Endpoint) (net.Listener, error) {
	var ln net.Listener
	err := In(ep.Netns, func() error {
		l, err := net.Listen("tcp", ep.Addr)
		ln = l
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", ep, err)
	}
	return ln, nil
}

// Forwarder relays every connection accepted at one endpoint to another.
type Forwarder struct {
	ln     net.Listener
	to     Endpoint
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	onErr  func(error)
}

// Forward listens at from and relays each connection to to, until ctx ends or Close is
// called. from.Addr may have port 0; Addr tells the port chosen. onError, when not nil,
// learns of connections that could not be relayed (the target refused, say); the
// forwarder keeps serving.
func Forward(ctx context.Context, from, to Endpoint, onError func(error)) (*Forwarder, error) {
	ln, err := Listen(from)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Forwarder{ln: ln, to: to, ctx: ctx, cancel: cancel, onErr: onError}
	f.wg.Add(1)
	go f.serve()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	return f, nil
}

// Addr returns the address the forwarder listens at.
func (f *Forwarder) Addr() net.Addr { return f.ln.Addr() }

// Close stops listening, closes every relayed connection and waits for them to end.
func (f *Forwarder) Close() error {
	f.cancel()
	err := f.ln.Close()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Wait blocks until the forwarder has stopped (its context ended or Close was called) and
// every relayed connection has ended.
func (f *Forwarder) Wait() { f.wg.Wait() }

func (f *Forwarder) serve() {
	defer f.wg.Done()
	var delay time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if f.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: back off as net/http does, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			f.report(fmt.Errorf("accept on %s: %w", f.ln.Addr(), err))
			select {
			case <-time.After(delay):
			case <-f.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.relay(c)
		}()
	}
}

func (f *Forwarder) relay(c net.Conn) {
	defer c.Close()
	dctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	t, err := Dial(dctx, "tcp", f.to)
	cancel()
	if err != nil {
		f.report(err)
		return
	}
	defer t.Close()
	// Either side's end, or the forwarder's, ends both.
	stop := context.AfterFunc(f.ctx, func() { c.Close(); t.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(t, c)
	go pipe(c, t)
	<-done
	<-done
}

func (f *Forwarder) report(err error) {
	if f.onErr != nil {
		f.onErr(err)
	}
}

// PrepareDir makes the directory of named namespaces a shared mount of its own, as
// `ip netns add` does the first time it runs on a machine, before any namespace is
// mounted in it. Call it before creating a named namespace (Create does): a namespace
// mounted in the plain directory ends up hidden under the mount `ip netns add` makes
// later, where it can be neither entered nor removed by its name (unlink: EBUSY).
func PrepareDir() error {
	const dir = "/var/run/netns"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("namespace directory: %w", err)
	}
	prepareMu.Lock()
	defer prepareMu.Unlock()
	// Already a mount point (made here or by ip): only make sure it is shared.
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("namespace directory %s: make shared: %w", dir, err)
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("namespace directory %s: bind: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("namespace directory %s: make shared: %w", dir, err)
	}
	return nil
}

// prepareMu keeps two PrepareDir of a process from both binding the directory.
var prepareMu sync.Mutex

// Create makes a named network namespace (as `ip netns add` does) with its loopback up.
// It fails when the name is taken. Creating a namespace switches the calling thread into
// it, so that happens on a thread of its own that is never handed back (see [In]).
func Create(name string) error {
	if name == "" || filepath.IsAbs(name) || strings.ContainsRune(name, '/') {
		return fmt.Errorf("create network namespace: name: expected a plain name, got %q", name)
	}
	if _, err := os.Stat(Path(name)); err == nil {
		return fmt.Errorf("create network namespace %s: %w", name, os.ErrExist)
	}
	if err := PrepareDir(); err != nil {
		return fmt.Errorf("create network namespace %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() {
		// Locked and never unlocked: the thread ends with this goroutine.
		runtime.LockOSThread()
		ns, err := netns.NewNamed(name)
		if err != nil {
			done <- fmt.Errorf("create network namespace %s: %w", name, err)
			return
		}
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			done <- fmt.Errorf("network namespace %s: %w", name, err)
			return
		}
		defer h.Close()
		lo, err := h.LinkByName("lo")
		if err == nil {
			err = h.LinkSetUp(lo)
		}
		if err != nil {
			done <- fmt.Errorf("network namespace %s: loopback up: %w", name, err)
			return
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		_ = netns.DeleteNamed(name)
		return err
	}
	return nil
}

// Remove deletes a named network namespace (as `ip netns delete` does); a missing one is
// not an error. Its interfaces go when the last process in it has gone. A name whose
// file is no longer a mount of a namespace (its mount gone, or its creation cut short)
// is removed too: netns.DeleteNamed stops at the unmount and left such files behind.
func Remove(name string) error {
	if name == "" || filepath.IsAbs(name) || strings.ContainsRune(name, '/') {
		return fmt.Errorf("remove network namespace: name: expected a plain name, got %q", name)
	}
	path := Path(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove network namespace %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace %s: %w", name, err)
	}
	return nil
}
