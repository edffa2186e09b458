package xenvim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSH deploy targets: how the Deployer reaches a node.
const (
	// TargetGateway reaches every node of a part at the provider's SSH endpoint (ssh.ip,
	// ssh.port, the part's vim-ref ip-ssh/port-ssh), as the original NECOS providers
	// forwarded a port of their gateway to the part's VM.
	TargetGateway = "gateway"
	// TargetNode reaches each node at its own address, port 22.
	TargetNode = "node"
)

// DefaultSSHUser is the user services are deployed as when ssh.user is not set (the
// original NECOS images were run as root).
const DefaultSSHUser = "root"

// DefaultStepTimeout bounds one command when neither the request nor ssh.step_timeout
// sets a limit.
const DefaultStepTimeout = 5 * time.Minute

// maxOutput is how much of each of a step's stdout and stderr is kept: the end of it,
// where the error usually is.
const maxOutput = 64 << 10

// dialTimeout bounds the TCP connect and SSH handshake with a node.
const dialTimeout = 15 * time.Second

// SSHConfig is the ssh key of the configuration: the SSH endpoint handed to tenants and
// how services are deployed onto the nodes.
type SSHConfig struct {
	// IP and Port are the provider's SSH endpoint (vim-ref ip-ssh/port-ssh).
	IP   string `json:"ip"`
	Port int    `json:"port"`
	// User is the account commands run as on the nodes; default [DefaultSSHUser].
	User string `json:"user"`
	// HostKey is the nodes' SSH host public key as an authorized_keys line
	// ("ssh-ed25519 AAAA..."): pinned, handed to tenants with the part's credential,
	// and the only key the Deployer accepts besides those of KnownHosts.
	HostKey string `json:"host_key"`
	// KnownHosts is an OpenSSH known_hosts file the Deployer checks host keys against,
	// by the address it dials ([ip]:port).
	KnownHosts string `json:"known_hosts"`
	// Target is [TargetGateway] or [TargetNode]; default gateway when IP is set, else
	// node.
	Target string `json:"target"`
	// StepTimeout bounds each command of a deployment when the request sets no limit,
	// as a Go duration ("90s", "5m"); default [DefaultStepTimeout].
	StepTimeout string `json:"step_timeout"`
}

// sshSettings is a checked SSHConfig.
type sshSettings struct {
	user        string
	hostKey     ssh.PublicKey // nil when none is pinned
	hostKeyText string        // authorized_keys form of hostKey
	knownHosts  string
	target      string
	stepTimeout time.Duration
}

// check validates c (nil: no ssh key) with defaults applied, reporting through bad.
func (c *SSHConfig) check(bad func(string, ...any)) sshSettings {
	s := sshSettings{user: DefaultSSHUser, target: TargetNode, stepTimeout: DefaultStepTimeout}
	if c == nil {
		return s
	}
	if c.User != "" {
		s.user = c.User
		if strings.ContainsAny(c.User, " \t\r\n@:") {
			bad("ssh.user: expected a user name, got %q", c.User)
		}
	}
	if c.IP != "" {
		s.target = TargetGateway
	}
	switch c.Target {
	case "":
	case TargetGateway:
		s.target = TargetGateway
		if c.IP == "" && c.Port == 0 {
			bad("ssh.target: %s reaches every node at ssh.ip and ssh.port, which are not set", TargetGateway)
		}
	case TargetNode:
		s.target = TargetNode
	default:
		bad("ssh.target: expected %s or %s, got %q", TargetGateway, TargetNode, c.Target)
	}
	if c.HostKey != "" {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.HostKey))
		if err != nil {
			bad("ssh.host_key: expected an authorized_keys line such as \"ssh-ed25519 AAAA...\": %v", err)
		} else {
			s.hostKey = k
			s.hostKeyText = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
		}
	}
	if c.KnownHosts != "" {
		if _, err := knownhosts.New(c.KnownHosts); err != nil {
			bad("ssh.known_hosts: expected a readable OpenSSH known_hosts file: %v", err)
		}
		s.knownHosts = c.KnownHosts
	}
	if c.StepTimeout != "" {
		d, err := time.ParseDuration(c.StepTimeout)
		switch {
		case err != nil:
			bad("ssh.step_timeout: expected a duration such as 90s or 5m, got %q", c.StepTimeout)
		case d <= 0:
			bad("ssh.step_timeout: must be > 0, got %s", c.StepTimeout)
		default:
			s.stepTimeout = d
		}
	}
	return s
}

// newPartKey makes a part's SSH key pair: the private key in OpenSSH PEM form and the
// public key as an authorized_keys line.
func newPartKey(comment string) (private, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", "", fmt.Errorf("encode private key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", fmt.Errorf("encode public key: %w", err)
	}
	return string(pem.EncodeToMemory(block)), authorizedLine(sp, comment), nil
}

// publicOf returns the authorized_keys line of a private key in PEM form.
func publicOf(private, comment string) (string, error) {
	signer, err := ssh.ParsePrivateKey([]byte(private))
	if err != nil {
		return "", err
	}
	return authorizedLine(signer.PublicKey(), comment), nil
}

func authorizedLine(k ssh.PublicKey, comment string) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

// keyComment labels a part's key, so a node's authorized_keys says whose it is.
func keyComment(ref sdk.PartRef) string {
	return "necos-" + cleanName(ref.SliceID) + "-" + cleanName(ref.PartID)
}

// hostKeyCheck accepts a server's host key when it is one of the pinned keys or
// known_hosts (when given) lists it for the address dialled; anything else is refused,
// naming what was offered and what was expected. Without any pinned key or known_hosts
// nothing is accepted: commands are never sent to an unverified host.
func hostKeyCheck(pinned []ssh.PublicKey, knownHostsFile string) (ssh.HostKeyCallback, error) {
	var kh ssh.HostKeyCallback
	if knownHostsFile != "" {
		cb, err := knownhosts.New(knownHostsFile)
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "ssh.known_hosts: %v", err)
		}
		kh = cb
	}
	if len(pinned) == 0 && kh == nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition,
			"no host key to verify the nodes against: the part's credential pins none and the provider "+
				"configures neither ssh.host_key nor ssh.known_hosts")
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		for _, k := range pinned {
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil
			}
		}
		var why []string
		if len(pinned) > 0 {
			var want []string
			for _, k := range pinned {
				want = append(want, ssh.FingerprintSHA256(k))
			}
			why = append(why, "pinned "+strings.Join(want, ", "))
		}
		if kh != nil {
			err := kh(hostname, remote, key)
			if err == nil {
				return nil
			}
			var ke *knownhosts.KeyError
			switch {
			case errors.As(err, &ke) && len(ke.Want) > 0:
				why = append(why, fmt.Sprintf("known_hosts lists another key for %s", hostname))
			case errors.As(err, &ke):
				why = append(why, fmt.Sprintf("known_hosts has no key for %s", hostname))
			default:
				why = append(why, "known_hosts: "+err.Error())
			}
		}
		return fmt.Errorf("host key mismatch at %s: the server offered %s %s; expected %s",
			hostname, key.Type(), ssh.FingerprintSHA256(key), strings.Join(why, "; "))
	}, nil
}

// guestBootWait is how long a real guest that does not answer yet is dialled again: a
// node made moments ago (a part horizontal elasticity just added, a scaled-up node) is
// still booting when the service is deployed onto it; a TCG guest on a loaded machine
// took up to ~70 s to answer SSH here.
const guestBootWait = 3 * time.Minute

// sshTarget is where and as whom a node's commands run.
type sshTarget struct {
	node  string
	addr  string // host:port
	cfg   *ssh.ClientConfig
	netns string // the namespace to dial from; empty: the plugin's own
	// bootWait, when set, is how long a node that does not answer yet is dialled again.
	bootWait time.Duration
}

// dialBooted dials the target; one that refuses, cannot be routed to yet or does not
// answer (a guest still booting) is dialled again every second until t.bootWait passes
// or ctx ends. Any other failure (host key, authentication) is returned at once.
func (t sshTarget) dialBooted(ctx context.Context) (*ssh.Client, error) {
	c, err := nsnet.UntilUp(ctx, t.bootWait, time.Second, nil, t.dial)
	if err != nil && t.bootWait > 0 && nsnet.NotUpYet(err) {
		err = fmt.Errorf("%w (no answer for %s)", err, t.bootWait)
	}
	return c, err
}

// dial connects to the target, giving up when ctx ends or after dialTimeout.
func (t sshTarget) dial(ctx context.Context) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := nsnet.Dial(ctx, "tcp", nsnet.Endpoint{Netns: t.netns, Addr: t.addr})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", t.addr, err)
	}
	// The handshake has no context of its own: a deadline on the connection bounds it.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, t.addr, t.cfg)
	stop()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("ssh to %s as %s: %w", t.addr, t.cfg.User, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// runCommand runs one command in a session of its own (a fresh shell in the user's home,
// as `ssh host command` does) and fills the step's outcome. The command is killed when
// timeout passes or ctx ends.
func runCommand(ctx context.Context, client *ssh.Client, command string, timeout time.Duration, step *sdk.StepResult) {
	sess, err := client.NewSession()
	if err != nil {
		step.State, step.ExitCode, step.Error = sdk.DeployFailed, -1, fmt.Sprintf("open session: %v", err)
		return
	}
	defer sess.Close()
	stdout, stderr := &tailBuffer{max: maxOutput}, &tailBuffer{max: maxOutput}
	sess.Stdout, sess.Stderr = stdout, stderr
	if err := sess.Start(command); err != nil {
		step.State, step.ExitCode, step.Error = sdk.DeployFailed, -1, fmt.Sprintf("start: %v", err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var stopped string
	select {
	case err = <-done:
	case <-timer.C:
		stopped = fmt.Sprintf("timed out after %s", timeout)
	case <-ctx.Done():
		stopped = fmt.Sprintf("canceled: %v", context.Cause(ctx))
	}
	if stopped != "" {
		// Kill the command (sshd passes the signal on) and drop the session; give the
		// session a moment to report, but never wait on a stuck server.
		_ = sess.Signal(ssh.SIGKILL)
		_ = sess.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	step.Stdout, step.Stderr = stdout.String(), stderr.String()
	var exit *ssh.ExitError
	switch {
	case stopped != "":
		step.State, step.ExitCode, step.Error = sdk.DeployFailed, -1, stopped
	case err == nil:
		step.State, step.ExitCode = sdk.DeploySucceeded, 0
	case errors.As(err, &exit):
		step.State, step.ExitCode = sdk.DeployFailed, exit.ExitStatus()
		step.Error = "exit status " + strconv.Itoa(exit.ExitStatus())
		if sig := exit.Signal(); sig != "" {
			step.Error = "killed by signal " + sig
		}
	default:
		step.State, step.ExitCode, step.Error = sdk.DeployFailed, -1, err.Error()
	}
}

// tailBuffer keeps the last max bytes written to it, counting what it dropped.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= b.max {
		b.dropped += int64(len(b.buf) + len(p) - b.max)
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.dropped += int64(over)
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[... %d bytes dropped ...]\n%s", b.dropped, b.buf)
	}
	return string(b.buf)
}
