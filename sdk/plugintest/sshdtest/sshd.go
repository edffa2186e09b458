// Package sshdtest runs a real OpenSSH server (Debian's sshd) on 127.0.0.1 for tests: it
// stands in for the VMs of a slice part when services are deployed over SSH. The server
// has a fresh ed25519 host key, listens on a free port, lets only the current user in
// with the public keys a test authorizes, and runs commands for real.
//
// The sshd binary is NECOS_SSHD, else /usr/sbin/sshd (apt-get install openssh-server);
// without it the test is skipped, or fails when NECOS_REQUIRE_BACKENDS is set.
package sshdtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/necos/necos/sdk/plugintest"
	"golang.org/x/crypto/ssh"
)

// EnvSSHD names the variable pointing at the sshd binary.
const EnvSSHD = "NECOS_SSHD"

// Server is a running sshd.
type Server struct {
	// Host and Port are where it listens (Host is 127.0.0.1).
	Host string
	Port int
	// User is the only user it lets in: the one running the test.
	User string
	// HostKey is its host public key as an authorized_keys line.
	HostKey string
	// HostSigner is its host private key, to make known_hosts files or mismatches.
	HostSigner ssh.Signer
	// Dir holds its configuration, keys and authorized_keys.
	Dir string

	mu   sync.Mutex
	log  bytes.Buffer
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr returns host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Binary returns the sshd to run, or "" when there is none.
func Binary() string {
	if p := os.Getenv(EnvSSHD); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err == nil {
		return "/usr/sbin/sshd"
	}
	return ""
}

// Start runs an sshd until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t)
}

// StartWith runs an sshd with extra sshd_config lines (e.g. "SetEnv HOME=/tmp/x", so
// that a benchmark does not time the account's shell start-up files).
func StartWith(t testing.TB, config ...string) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		plugintest.NeedBackend(t, EnvSSHD+" is not set and /usr/sbin/sshd is missing: apt-get install -y openssh-server")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshdtest: current user: %v", err)
	}
	if os.Geteuid() == 0 {
		// Debian's sshd refuses to start as root without its privilege separation
		// directory, which the openssh-server package makes at boot.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshdtest: privilege separation directory: %v", err)
		}
	}
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshdtest host key")
	if err != nil {
		t.Fatal(err)
	}
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(hostKeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	s := &Server{Host: "127.0.0.1", User: u.Username, HostSigner: signer, Dir: dir,
		HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))}
	if err := os.WriteFile(s.authorizedKeys(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if lastErr = s.start(bin, hostKeyFile, config); lastErr == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("sshdtest: %v", lastErr)
	return nil
}

func (s *Server) authorizedKeys() string { return filepath.Join(s.Dir, "authorized_keys") }

// start runs sshd on a free port and waits until it listens.
func (s *Server) start(bin, hostKeyFile string, extra []string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cfg := strings.Join([]string{
		"ListenAddress 127.0.0.1:" + strconv.Itoa(port),
		"HostKey " + hostKeyFile,
		"PidFile " + filepath.Join(s.Dir, "sshd.pid"),
		"AuthorizedKeysFile " + s.authorizedKeys(),
		"AllowUsers " + s.User,
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"MaxStartups 200",
		"MaxSessions 200",
		"LogLevel VERBOSE",
	}, "\n") + "\n" + strings.Join(extra, "\n") + "\n"
	cfgFile := filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgFile)
	// Its own process group: the per-connection children go down with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	listening := make(chan struct{})
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if strings.Contains(line, "Server listening on") {
				once.Do(func() { close(listening) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-listening:
		s.Port, s.cmd = port, cmd
		return nil
	case <-s.done:
	case <-time.After(20 * time.Second):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	return fmt.Errorf("sshd did not start on port %d:\n%s", port, s.Log())
}

func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	waited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	}
}

// Log returns what sshd wrote so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Authorize lets the given public keys (authorized_keys lines) in.
func (s *Server) Authorize(t testing.TB, keys ...string) {
	t.Helper()
	f, err := os.OpenFile(s.authorizedKeys(), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, k := range keys {
		if _, err := fmt.Fprintln(f, strings.TrimSpace(k)); err != nil {
			t.Fatal(err)
		}
	}
}

// KnownHosts writes a known_hosts file listing the server's host key for its address
// and returns its path.
func (s *Server) KnownHosts(t testing.TB) string {
	t.Helper()
	p := filepath.Join(s.Dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s\n", s.Host, s.Port, s.HostKey)
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// NewKey returns a fresh ed25519 key pair: the private key in OpenSSH PEM form and the
// public key as an authorized_keys line.
func NewKey(t testing.TB) (private, public string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshdtest")
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
