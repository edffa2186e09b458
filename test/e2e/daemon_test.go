package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/necos/necos/api/v1"
)

// daemon is a necosd process with its data directory, restartable on the same data.
type daemon struct {
	t       *testing.T
	dir     string
	addr    string
	args    []string
	cmd     *exec.Cmd
	log     *syncBuffer
	done    chan struct{}
	tokens  map[string]string
	catalog string
	// live makes start wait for /healthz only: the daemon is expected not to be ready.
	live bool
	// scheme is http, or https with client trusting caFile.
	scheme string
	client *http.Client
	caFile string
	// served tells whether necosd ever served; retries counts the addresses given up: one
	// found free for the first start may be taken by another process before necosd binds
	// it, and only then is another chosen.
	served  bool
	retries int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func randomID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDaemon starts necosd with a catalogue (YAML) and tenants demo and other, and
// waits until it is ready.
func startDaemon(t *testing.T, catalogue string, args ...string) *daemon {
	t.Helper()
	d := newDaemon(t, catalogue, false, args...)
	d.start()
	return d
}

// startLiveDaemon starts necosd like startDaemon but waits only until it serves
// (/healthz), for daemons that are not meant to become ready.
func startLiveDaemon(t *testing.T, catalogue string, args ...string) *daemon {
	t.Helper()
	d := newDaemon(t, catalogue, true, args...)
	d.start()
	return d
}

// newDaemon prepares necosd like startDaemon, without starting it.
func newDaemon(t *testing.T, catalogue string, live bool, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, dir: t.TempDir(), addr: freeAddr(t), catalog: catalogue, live: live, scheme: "http", client: http.DefaultClient}
	cat := filepath.Join(d.dir, "catalogue.yaml")
	if err := os.WriteFile(cat, []byte(catalogue), 0o600); err != nil {
		t.Fatal(err)
	}
	d.args = append([]string{"--listen", d.addr, "--data-dir", filepath.Join(d.dir, "data"),
		"--plugin-dir", filepath.Join(bin, "plugins"), "--catalogue", cat, "--tenants", "demo,other",
		"--log-level", "debug"}, args...)
	t.Cleanup(func() {
		d.decommissionLeft()
		d.stop()
		if t.Failed() {
			t.Logf("necosd log (last 60 lines):\n%s", tail(d.log.String(), 60))
		}
	})
	return d
}

// useTLS makes the daemon serve HTTPS with cert and key, and its clients (tests,
// necosctl) trust the CA in caFile.
func (d *daemon) useTLS(cert, key, caFile string) {
	d.t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		d.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		d.t.Fatalf("no certificate in %s", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	d.client = &http.Client{Transport: tr}
	d.t.Cleanup(tr.CloseIdleConnections)
	d.scheme, d.caFile = "https", caFile
	d.args = append(d.args, "--tls-cert", cert, "--tls-key", key)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (d *daemon) start() {
	d.t.Helper()
	if d.log == nil {
		d.log = &syncBuffer{}
	}
	d.cmd = exec.Command(filepath.Join(bin, "necosd"), d.args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.done = make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		probe := "/readyz"
		if d.live {
			probe = "/healthz"
		}
		// necosd takes its address before it opens the store and serves after, so a
		// probe may wait for its answer; a second at most, for what answers there may
		// not be necosd (which then exits at start-up).
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.url(probe), nil)
		resp, err := d.client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-d.done:
			at := slices.Index(d.args, "--listen") + 1
			if !d.served && d.retries < 3 && at > 0 && strings.Contains(d.log.String(), "listen tcp "+d.addr+": bind: address already in use") {
				d.retries++
				d.t.Logf("%s was taken before necosd bound it: starting on another address", d.addr)
				d.addr = freeAddr(d.t)
				d.args[at] = d.addr
				d.log = &syncBuffer{}
				d.start()
				return
			}
			d.t.Fatalf("necosd exited at start-up:\n%s", tail(d.log.String(), 40))
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("necosd not ready after 60 s:\n%s", tail(d.log.String(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.served = true
	d.tokens = map[string]string{}
	for _, tenant := range []string{"demo", "other"} {
		b, err := os.ReadFile(filepath.Join(d.dir, "data", tenant+"-token"))
		if err != nil {
			d.t.Fatal(err)
		}
		d.tokens[tenant] = strings.TrimSpace(string(b))
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("necosd did not stop within 30 s of SIGTERM")
	}
}

// decommissionLeft deletes every slice the running daemon still holds, so that a test
// which failed halfway (or never decommissioned) leaves no guest, volume, namespace or
// link behind; what it cannot delete is logged (scripts/test.sh's leak check then fails
// the run).
func (d *daemon) decommissionLeft() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	call := func(tenant, method, path string) (int, []byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, d.url(path), nil)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+d.tokens[tenant])
		resp, err := d.client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, nil
	}
	for tenant := range d.tokens {
		status, body, err := call(tenant, "GET", "/v1/slices")
		if err != nil || status != http.StatusOK {
			d.t.Logf("clean-up: list %s's slices: %v HTTP %d", tenant, err, status)
			continue
		}
		var l v1.SliceList
		if err := json.Unmarshal(body, &l); err != nil {
			d.t.Logf("clean-up: list %s's slices: %v", tenant, err)
			continue
		}
		for _, s := range l.Slices {
			status, body, err := call(tenant, "DELETE", "/v1/slices/"+s.ID+"?wait=true")
			if err != nil || (status != http.StatusNoContent && status != http.StatusNotFound) {
				d.t.Logf("clean-up: decommission %s's slice %s: %v HTTP %d %s", tenant, s.ID, err, status, body)
			} else {
				d.t.Logf("clean-up: decommissioned %s's slice %s, left by the test", tenant, s.ID)
			}
		}
	}
}

// kill9 kills necosd with SIGKILL, as a crash would.
func (d *daemon) kill9() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

func (d *daemon) url(path string) string { return d.scheme + "://" + d.addr + path }

// response is an HTTP answer read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// do sends a request as tenant ("" sends no token).
func (d *daemon) do(tenant, method, path, contentType string, body []byte) response {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, d.url(path), bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if tenant != "" {
		req.Header.Set("Authorization", "Bearer "+d.tokens[tenant])
	}
	resp, err := d.client.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func (d *daemon) expect(r response, status int, what string) {
	d.t.Helper()
	if r.Status != status {
		d.t.Fatalf("%s: HTTP %d, want %d: %s", what, r.Status, status, r.Body)
	}
}

// necosctl runs the CLI against this daemon as tenant.
func (d *daemon) necosctl(tenant string, args ...string) (string, error) {
	global := []string{"--server", d.url(""), "--token", d.tokens[tenant]}
	if d.caFile != "" {
		global = append(global, "--ca-file", d.caFile)
	}
	cmd := exec.Command(filepath.Join(bin, "necosctl"), append(global, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var _ = fmt.Sprintf
