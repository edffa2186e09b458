package testenv

import (
	"bytes"
	"context"
	"fmt"
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

// EnvInfluxd names the variable holding the path of an influxd 1.8.10 binary
// (scripts/influxd.sh builds it and prints its path).
const EnvInfluxd = "NECOS_INFLUXD"

// influxReadyTimeout bounds the wait for /ping. With Flux enabled influxd 1.8 compiles
// the Flux standard library before it listens: 7-10 s on two busy cores.
const influxReadyTimeout = 30 * time.Second

// Influx is a real InfluxDB 1.8 server started for one test: on 127.0.0.1, on free
// ports, with Flux enabled (the v2 query API the monitor-influx plugin speaks) and its
// data in the test's temporary directory. It is killed when the test ends.
//
// It is the core's copy of plugins/monitor-influx/influxtest: the core's tests may not
// import plugins.
type Influx struct {
	// URL is the HTTP API's base URL, e.g. http://127.0.0.1:40123.
	URL string
	// Dir holds the server's configuration, data and log (influxd.log).
	Dir string

	bin    string
	config string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartInflux starts influxd (from NECOS_INFLUXD) for t and waits until it answers
// /ping. Without NECOS_INFLUXD the test is skipped (failed under NECOS_REQUIRE_BACKENDS).
func StartInflux(t testing.TB) *Influx {
	t.Helper()
	bin := os.Getenv(EnvInfluxd)
	if bin == "" {
		plugintest.NeedBackend(t, EnvInfluxd+": path of influxd 1.8.10, see scripts/influxd.sh")
	}
	dir := t.TempDir()
	httpPort, rpcPort := freeTCPPort(t), freeTCPPort(t)
	s := &Influx{
		URL:    fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		Dir:    dir,
		bin:    bin,
		config: filepath.Join(dir, "influxdb.conf"),
	}
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
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("influxd log (last lines):\n%s", s.tail())
		}
	})
	s.start(t)
	return s
}

func (s *Influx) logPath() string { return filepath.Join(s.Dir, "influxd.log") }

func (s *Influx) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("influxd log: %v", err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "-config", s.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start influxd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), influxReadyTimeout)
	defer cancel()
	for s.ping(ctx) != nil {
		select {
		case <-exited:
			t.Fatalf("influxd exited before answering /ping; log:\n%s", s.tail())
		case <-ctx.Done():
			t.Fatalf("influxd did not answer /ping within %s; log:\n%s", influxReadyTimeout, s.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("influxd %s ready in %s", s.URL, time.Since(begin).Round(time.Millisecond))
}

func (s *Influx) tail() string {
	b, _ := os.ReadFile(s.logPath())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func (s *Influx) ping(ctx context.Context) error {
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

func (s *Influx) kill() {
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
func (s *Influx) Query(t testing.TB, q string) string {
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

// MonitorCatalogue returns the catalogue entry (YAML, for providers.Parse) that makes the
// monitor-influx plugin store into database E2E_SLICE of s, created at configuration,
// sending queued points every 100 ms so that tests see them quickly.
func (s *Influx) MonitorCatalogue() string {
	return fmt.Sprintf("monitor: {plugin: monitor-influx, config: {url: %q, create_database: true, flush_interval_ms: 100}}\n", s.URL)
}

// freeTCPPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
