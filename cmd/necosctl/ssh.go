package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// attrKnownHosts is the part attribute holding its nodes' pinned SSH host keys, one
// known_hosts line per node ("ADDRESS ssh-ed25519 AAAA...").
const attrKnownHosts = "ssh-known-hosts"

// sshDialTimeout bounds the TCP connect and SSH handshake with a node.
const sshDialTimeout = 20 * time.Second

// exitError carries a remote command's exit status out of necosctl.
type exitError struct{ code int }

func (e *exitError) Error() string {
	return fmt.Sprintf("remote command exited with status %d", e.code)
}

func newSliceSSH(a *app) *cobra.Command {
	var (
		port int
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ssh SLICE PART/NODE [-- COMMAND...]",
		Short: "Open a shell, or run a command, on a node of a slice with the part's key",
		Long: `Log in to node NODE of part PART with the part's SSH credential (the key the API hands
its owner), checking the node's host key against the one pinned at creation. With a
COMMAND, run it and exit with its status; without, open a shell.

Where the node is reached from: a part whose nodes live in a network namespace (real
guests: the part's "netns" attribute) is dialled at the node's address, port 22, from
inside that namespace — so this needs root on the provider's machine, like
port-forward; a part with a provider SSH gateway (its vim_ref ssh endpoint) is reached
there, as the original providers forwarded their gateway to the part's VMs; otherwise
the node's address, port 22.

A slice is Ready once its guests are started, before they have booted: a node that does
not answer yet is dialled again every half second for up to --wait (2m).`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			part, node, ok := strings.Cut(args[1], "/")
			if !ok || part == "" || node == "" {
				return fmt.Errorf("target: expected PART/NODE (e.g. core-dc/core_vm-1), got %q", args[1])
			}
			if port < 0 || port > 65535 {
				return fmt.Errorf("--port: expected 1-65535, got %d", port)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.GetSlice(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			t, err := sshTarget(s, part, node, port)
			if err != nil {
				return err
			}
			if wait < 0 {
				return fmt.Errorf("--wait: expected a duration of 0 or more, got %s", wait)
			}
			return runSSH(cmd.Context(), t, wait, strings.Join(args[2:], " "), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "SSH port (default: the part's gateway port, else 22)")
	cmd.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for a node that does not answer yet (a guest still booting); 0 fails at once")
	return cmd
}

// sshTargetInfo is where and how to log in to a node.
type sshTargetInfo struct {
	at      nsnet.Endpoint
	user    string
	signer  ssh.Signer
	hostKey ssh.PublicKey
	name    string // PART/NODE, for messages
}

// sshTarget finds a node's SSH endpoint, user, key and pinned host key in a slice.
func sshTarget(s *v1.Slice, part, node string, port int) (sshTargetInfo, error) {
	var p *v1.Part
	var names []string
	for i := range s.Parts {
		names = append(names, s.Parts[i].Name)
		if s.Parts[i].Name == part {
			p = &s.Parts[i]
		}
	}
	if p == nil {
		return sshTargetInfo{}, fmt.Errorf("slice %s has no part %q (parts: %s)", s.ID, part, strings.Join(names, ", "))
	}
	var n *v1.Node
	names = nil
	for i := range p.Nodes {
		names = append(names, p.Nodes[i].Name)
		if p.Nodes[i].Name == node {
			n = &p.Nodes[i]
		}
	}
	if n == nil {
		return sshTargetInfo{}, fmt.Errorf("part %s has no node %q (nodes: %s)", part, node, strings.Join(names, ", "))
	}
	cred := p.Credential
	if cred == nil || cred.Kind != "ssh-key" || cred.Secret == "" {
		kind := "none"
		if cred != nil {
			kind = cred.Kind
		}
		return sshTargetInfo{}, fmt.Errorf("part %s has no SSH key credential (credential: %s): its provider does not hand out SSH logins; for a kubeconfig use kubectl with the credential of necosctl slice get %s --show-credentials", part, kind, s.ID)
	}
	signer, err := ssh.ParsePrivateKey([]byte(cred.Secret))
	if err != nil {
		return sshTargetInfo{}, fmt.Errorf("part %s: its SSH key does not parse: %w", part, err)
	}
	user := cred.User
	if user == "" {
		user = "root"
	}
	t := sshTargetInfo{user: user, signer: signer, name: part + "/" + node}
	netns := p.Attributes[attrNetns]
	var ip string
	if len(n.IPs) > 0 {
		ip = n.IPs[0]
	}
	switch {
	case netns != "" || p.VIMRef == nil || p.VIMRef.SSH == nil:
		if ip == "" {
			return sshTargetInfo{}, fmt.Errorf("node %s of part %s has no address yet (state %s)", node, part, n.State)
		}
		if port == 0 {
			port = 22
		}
		t.at = nsnet.Endpoint{Netns: netns, Addr: net.JoinHostPort(ip, strconv.Itoa(port))}
	default:
		gw := p.VIMRef.SSH
		if port == 0 {
			port = gw.Port
		}
		t.at = nsnet.Endpoint{Addr: net.JoinHostPort(gw.IP, strconv.Itoa(port))}
	}
	// The node's own pinned key first (real guests), else the provider's.
	keyText := cred.HostKey
	for _, line := range strings.Split(p.Attributes[attrKnownHosts], "\n") {
		if a, k, ok := strings.Cut(strings.TrimSpace(line), " "); ok && a == ip && netns != "" {
			keyText = k
		}
	}
	if keyText == "" {
		return sshTargetInfo{}, fmt.Errorf("part %s pins no SSH host key for %s: refusing to log in to a host that cannot be checked (set ssh.host_key in the provider's catalogue entry)", part, node)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(keyText))
	if err != nil {
		return sshTargetInfo{}, fmt.Errorf("part %s: pinned host key of %s does not parse: %w", part, node, err)
	}
	t.hostKey = hk
	return t, nil
}

// sshRetryEvery is how often a node that does not answer yet is dialled again.
const sshRetryEvery = 500 * time.Millisecond

// dialNode logs in to t. A node that does not answer yet as a booting guest does
// (refused, no route yet, no greeting: see nsnet.NotUpYet) is dialled again until wait
// has passed, saying once on stderr that it waits; any other failure (the host key, the
// login) returns at once.
func dialNode(ctx context.Context, t sshTargetInfo, wait time.Duration, stderr io.Writer) (*ssh.Client, error) {
	waiting := func() {
		fmt.Fprintf(stderr, "waiting for %s to answer SSH at %s (up to --wait %s: a guest may still be booting)\n", t.name, t.at, wait)
	}
	c, err := nsnet.UntilUp(ctx, wait, sshRetryEvery, waiting, func(ctx context.Context) (*ssh.Client, error) {
		return dialNodeOnce(ctx, t)
	})
	switch {
	case err == nil || !nsnet.NotUpYet(err):
		return c, err
	case wait <= 0:
		return nil, fmt.Errorf("%w (a guest still booting does not answer for its first seconds: give --wait to wait for it)", err)
	default:
		return nil, fmt.Errorf("%w (no answer within --wait %s)", err, wait)
	}
}

// dialNodeOnce connects to t and completes the SSH handshake and login.
func dialNodeOnce(ctx context.Context, t sshTargetInfo) (*ssh.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, sshDialTimeout)
	defer cancel()
	conn, err := nsnet.Dial(dctx, "tcp", t.at)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: connect to %s: %w", t.name, t.at, err)
	}
	_ = conn.SetDeadline(time.Now().Add(sshDialTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(conn, t.at.Addr, &ssh.ClientConfig{
		User: t.user, Auth: []ssh.AuthMethod{ssh.PublicKeys(t.signer)},
		HostKeyCallback: ssh.FixedHostKey(t.hostKey), HostKeyAlgorithms: []string{t.hostKey.Type()},
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh %s at %s as %s: %w", t.name, t.at, t.user, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// runSSH logs in to t (waiting up to wait for a node still booting, see dialNode) and
// runs command (a shell when empty) with the given streams.
func runSSH(ctx context.Context, t sshTargetInfo, wait time.Duration, command string, stdin io.Reader, stdout, stderr io.Writer) error {
	client, err := dialNode(ctx, t, wait, stderr)
	if err != nil {
		return err
	}
	defer client.Close()
	// Interruption closes the connection: the remote side sees the session end.
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	sess, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("ssh %s: session: %w", t.name, err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	if command == "" {
		if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			restore, err := interactive(sess, int(f.Fd()))
			if err != nil {
				return fmt.Errorf("ssh %s: terminal: %w", t.name, err)
			}
			defer restore()
		}
		if err := sess.Shell(); err != nil {
			return fmt.Errorf("ssh %s: shell: %w", t.name, err)
		}
		err = sess.Wait()
	} else {
		err = sess.Run(command)
	}
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		return &exitError{code: exit.ExitStatus()}
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("ssh %s: %w", t.name, err)
	}
	return nil
}

// interactive gives the session a terminal the size of ours and puts ours in raw mode;
// the returned function restores it.
func interactive(sess *ssh.Session, fd int) (func(), error) {
	w, h, err := term.GetSize(fd)
	if err != nil {
		w, h = 80, 24
	}
	tt := os.Getenv("TERM")
	if tt == "" {
		tt = "xterm"
	}
	if err := sess.RequestPty(tt, h, w, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		return nil, err
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, err
	}
	return func() { _ = term.Restore(fd, old) }, nil
}
