// Package influxtest starts a real InfluxDB 1.8 server for one test: on 127.0.0.1, on
// free ports, with its data in the test's temporary directory, Flux enabled (the v2
// query API that influxdb-client-go speaks) and killed when the test ends.
//
// The binary comes from the NECOS_INFLUXD variable (scripts/influxd.sh builds it); without
// it the test is skipped, or fails when NECOS_REQUIRE_BACKENDS is set.
package influxtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/sdk/plugintest"
)

// EnvInfluxd names the variable holding the path of an influxd 1.8.10 binary.
const EnvInfluxd = "NECOS_INFLUXD"

// readyTimeout bounds the wait for /ping. With Flux enabled influxd 1.8 compiles the
// Flux standard library before it listens: 7-10 s on two busy cores.
const readyTimeout = 30 * time.Second

// Server is a running influxd.
type Server struct {
	// URL is the HTTP API's base URL, e.g. http://127.0.0.1:40123.
	URL string
	// Dir holds the server's configuration, data and log (influxd.log).
	Dir string
	// Startup is how long the last start took until /ping answered.
	Startup time.Duration

	t      testing.TB
	bin    string
	config string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts influxd for t and waits until it answers /ping. It is killed when the
// test ends; its log is added to the test's output when the test failed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := os.Getenv(EnvInfluxd)
	if bin == "" {
		plugintest.NeedBackend(t, EnvInfluxd+": path of influxd 1.8.10, see scripts/influxd.sh")
	}
	dir := t.TempDir()
	s := &Server{Dir: dir, t: t, bin: bin, config: filepath.Join(dir, "influxdb.conf")}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			if b, err := os.ReadFile(s.logPath()); err == nil {
				t.Logf("influxd log (last lines):\n%s", lastLines(string(b), 40))
			}
		}
	})
	// A free port is only free until someone binds it: another test process's server
	// may take one of ours between freePort and influxd's bind. Then influxd exits, and
	// it is started again on other ports.
	for attempt := 1; ; attempt++ {
		httpPort, rpcPort := pickPort(t), pickPort(t)
		s.URL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
		s.writeConfig(t, httpPort, rpcPort)
		err := s.start()
		if err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == portAttempts {
			t.Fatal(err)
		}
		t.Logf("influxd: %v; starting it on other ports", err)
	}
	return s
}

// pickPort chooses a port to give influxd (freePort; tests hand out a taken one).
var pickPort = freePort

// portAttempts bounds Start's tries when a port it chose was taken meanwhile.
const portAttempts = 3

// errPortTaken is start's error when influxd could not bind a port it was given.
var errPortTaken = errors.New("a port was taken before influxd bound it")

func (s *Server) writeConfig(t testing.TB, httpPort, rpcPort int) {
	t.Helper()
	dir := s.Dir
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"

[meta]
  dir = %q

[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false

[http]
  bind-address = "127.0.0.1:%d"
  flux-enabled = true
  log-enabled = false

# No _internal database: it would write every 10 s for nothing.
[monitor]
  store-enabled = false
`, rpcPort, filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), httpPort)
	if err := os.WriteFile(s.config, []byte(conf), 0o600); err != nil {
		t.Fatalf("influxd config: %v", err)
	}
}

func (s *Server) logPath() string { return filepath.Join(s.Dir, "influxd.log") }

// start runs influxd and waits until it answers /ping.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("influxd log: %w", err)
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command(s.bin, "-config", s.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start influxd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		if s.ping(ctx) == nil {
			break
		}
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			b, _ := os.ReadFile(s.logPath())
			if int64(len(b)) >= logStart && strings.Contains(string(b[logStart:]), "address already in use") {
				return fmt.Errorf("influxd exited: %w", errPortTaken)
			}
			return fmt.Errorf("influxd exited before answering /ping; log:\n%s", s.tail())
		case <-ctx.Done():
			return fmt.Errorf("influxd did not answer /ping within %s; log:\n%s", readyTimeout, s.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.Startup = time.Since(begin)
	s.t.Logf("influxd %s ready in %s (pid %d)", s.URL, s.Startup.Round(time.Millisecond), cmd.Process.Pid)
	return nil
}

func (s *Server) tail() string {
	b, _ := os.ReadFile(s.logPath())
	return lastLines(string(b), 40)
}

func (s *Server) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/ping", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// Stop kills the server and waits for it to exit; the data stays, for Restart.
func (s *Server) Stop() { s.kill() }

// Restart starts the stopped server again on the same ports and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.kill()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Query runs an InfluxQL statement through the 1.x /query endpoint (POST), e.g.
// CREATE DATABASE, and returns the JSON answer.
func (s *Server) Query(t testing.TB, q string) string {
	t.Helper()
	resp, err := http.PostForm(s.URL+"/query", url.Values{"q": {q}})
	if err != nil {
		t.Fatalf("influxql %q: %v", q, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.Contains(b.String(), `"error"`) {
		t.Fatalf("influxql %q: %s: %s", q, resp.Status, b.String())
	}
	return b.String()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
