package kubenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/necos/necos/sdk/nsnet"
)

// egress is the API server's way into the cluster network, as konnectivity is in real
// clusters: an HTTP CONNECT proxy on a unix socket that opens every connection from
// inside the cluster's namespace. The API server (in the host namespace, which may
// contact loopback addresses only) reaches kubelets (pod logs, exec) and metrics-server
// (the aggregated metrics.k8s.io) through it: its egress selector sends the "cluster"
// traffic here.
type egress struct {
	netns string
	srv   *http.Server
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startEgress listens on the unix socket sock and dials inside netns.
func startEgress(sock, netns string) (*egress, error) {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	e := &egress{netns: netns, ln: ln, conns: map[net.Conn]struct{}{}}
	e.srv = &http.Server{Handler: http.HandlerFunc(e.connect), ReadHeaderTimeout: 10 * time.Second}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_ = e.srv.Serve(ln)
	}()
	return e, nil
}

// Addr is the proxy's socket.
func (e *egress) Addr() string { return e.ln.Addr().String() }

// writeConfig writes the API server's EgressSelectorConfiguration sending cluster
// traffic through the proxy.
func (e *egress) writeConfig(path string) error {
	cfg := fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, e.Addr())
	return os.WriteFile(path, []byte(cfg), 0o600)
}

func (e *egress) connect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	target, err := nsnet.Dial(ctx, "tcp", nsnet.Endpoint{Netns: e.netns, Addr: r.Host})
	cancel()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		target.Close()
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	client, rw, err := hj.Hijack()
	if err != nil {
		target.Close()
		return
	}
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		target.Close()
		return
	}
	e.track(client, target)
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		// Bytes the client sent after its request are already buffered.
		_, _ = io.Copy(target, rw.Reader)
		closeWrite(target)
	}()
	go func() {
		defer e.wg.Done()
		_, _ = io.Copy(client, target)
		client.Close()
		target.Close()
		e.untrack(client, target)
	}()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

func (e *egress) track(cs ...net.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range cs {
		e.conns[c] = struct{}{}
	}
}

func (e *egress) untrack(cs ...net.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range cs {
		delete(e.conns, c)
	}
}

// Close stops the proxy and ends the connections it relays.
func (e *egress) Close() error {
	err := e.srv.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
