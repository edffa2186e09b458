package xenvim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/necos/necos/sdk"
	"golang.org/x/crypto/ssh"
)

// The Deployer runs a service's commands on the part's nodes over SSH, as the original
// NECOS service orchestrator did: for each node, its commands one after the other, each
// in a session of its own (a fresh shell in the user's home, like `ssh host command`),
// with the part's credential; the host key is verified against the key pinned in the
// credential, ssh.host_key or ssh.known_hosts. A failing command (non-zero exit, time-out)
// stops its node's remaining commands, which are reported skipped; the other nodes go
// on. Nodes run in parallel.
//
// Deploying a service again simply runs its commands again: whether running them twice
// is harmless is the commands' business (write them idempotent: mkdir -p, ln -sf...), as
// in the original. Commands cannot be undone, so Undeploy only stops a deployment that
// is running and forgets it. DeployStatus reports the deployments this plugin process
// ran (live while they run); after a restart it knows none of them: the core keeps the
// record.

// maxParallelNodes bounds the nodes one deployment drives at once.
const maxParallelNodes = 32

// maxKeptDeployments bounds the finished deployments DeployStatus remembers; the oldest
// are forgotten first.
const maxKeptDeployments = 256

// deployKey names a deployment: a service on a part.
type deployKey struct {
	service string
	ref     sdk.PartRef
}

// deployRun is one deployment, running or done.
type deployRun struct {
	mu       sync.Mutex
	d        sdk.Deployment
	cancel   context.CancelFunc
	done     chan struct{}
	finished time.Time
}

func (r *deployRun) snapshot() sdk.Deployment {
	r.mu.Lock()
	defer r.mu.Unlock()
	return copyDeployment(r.d)
}

// update changes the deployment under its lock.
func (r *deployRun) update(f func(d *sdk.Deployment)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.d)
}

// deployTable holds the deployments of a plugin process. The zero value is ready.
type deployTable struct {
	mu   sync.Mutex
	runs map[deployKey]*deployRun
}

// start registers a new run of k once any earlier run of k has ended, so deployments of
// one service onto one part never overlap.
func (t *deployTable) start(ctx context.Context, k deployKey, d sdk.Deployment) (*deployRun, context.Context, error) {
	for {
		t.mu.Lock()
		if t.runs == nil {
			t.runs = map[deployKey]*deployRun{}
		}
		prev := t.runs[k]
		if prev == nil || !prev.finished.IsZero() {
			rctx, cancel := context.WithCancel(ctx)
			r := &deployRun{d: d, cancel: cancel, done: make(chan struct{})}
			t.runs[k] = r
			t.evict()
			t.mu.Unlock()
			return r, rctx, nil
		}
		t.mu.Unlock()
		select {
		case <-prev.done:
		case <-ctx.Done():
			return nil, nil, sdk.Errorf(sdk.CodeCanceled, "wait for the previous deployment of %s on %s: %v",
				k.service, k.ref, ctx.Err())
		}
	}
}

// finish marks r done.
func (t *deployTable) finish(r *deployRun) {
	t.mu.Lock()
	r.finished = time.Now()
	t.mu.Unlock()
	r.cancel()
	close(r.done)
}

// evict forgets the oldest finished runs beyond maxKeptDeployments. Called with mu held.
func (t *deployTable) evict() {
	if len(t.runs) <= maxKeptDeployments {
		return
	}
	type aged struct {
		k deployKey
		t time.Time
	}
	var done []aged
	for k, r := range t.runs {
		if !r.finished.IsZero() {
			done = append(done, aged{k, r.finished})
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].t.Before(done[j].t) })
	for _, a := range done {
		if len(t.runs) <= maxKeptDeployments {
			return
		}
		delete(t.runs, a.k)
	}
}

func (t *deployTable) get(k deployKey) *deployRun {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.runs[k]
}

// forget stops a run of k, waits for it to end, and drops it.
func (t *deployTable) forget(ctx context.Context, k deployKey) error {
	t.mu.Lock()
	r := t.runs[k]
	t.mu.Unlock()
	if r == nil {
		return nil
	}
	r.cancel()
	select {
	case <-r.done:
	case <-ctx.Done():
		return sdk.Errorf(sdk.CodeCanceled, "stop the deployment of %s on %s: %v", k.service, k.ref, ctx.Err())
	}
	t.mu.Lock()
	if t.runs[k] == r {
		delete(t.runs, k)
	}
	t.mu.Unlock()
	return nil
}

// nodeJob is the commands of one node, its work entries merged in request order.
type nodeJob struct {
	node     sdk.Node
	commands []string
}

// Deploy runs the commands of every node of the request over SSH and returns when each
// node is done or failed. A request that cannot run at all — an unknown node, manifests
// (a VM part has no Kubernetes), no credential, no way to verify host keys — fails
// before anything runs, with every problem named.
func (p *Plugin) Deploy(ctx context.Context, req sdk.DeployRequest) (sdk.Deployment, error) {
	s, conn, err := p.session()
	if err != nil {
		return sdk.Deployment{}, err
	}
	part := req.Part
	if len(part.Nodes) == 0 || part.Credential.Secret == "" || s.guests {
		// The core sends the part as last described; fill in what it lacks from libvirt.
		live, err := p.describe(conn, s, part.Ref)
		if err != nil {
			return sdk.Deployment{}, fmt.Errorf("deploy %s: %w", req.ServiceID, err)
		}
		if len(part.Nodes) == 0 {
			part.Nodes = live.Nodes
		}
		if part.Credential.Secret == "" {
			part.Credential = live.Credential
		}
		// Real guests: where their nodes are reached from, and their pinned host keys,
		// are the plugin's own knowledge.
		for _, k := range []string{AttrNetns, AttrSSHKnownHosts} {
			if v, ok := live.Attributes[k]; ok {
				if part.Attributes == nil {
					part.Attributes = map[string]string{}
				}
				part.Attributes[k] = v
			}
		}
	}
	jobs, err := planNodes(part, req.Work)
	if err != nil {
		return sdk.Deployment{}, sdk.Errorf(sdk.CodeInvalidArgument, "deploy %s on part %s: %v", req.ServiceID, part.Ref, err)
	}
	targets, err := p.sshTargets(s, part, jobs)
	if err != nil {
		return sdk.Deployment{}, fmt.Errorf("deploy %s on part %s: %w", req.ServiceID, part.Ref, err)
	}
	timeout := req.StepTimeout
	if timeout <= 0 {
		timeout = s.ssh.stepTimeout
	}

	d := sdk.Deployment{ServiceID: req.ServiceID, Ref: part.Ref, State: sdk.DeployRunning}
	for _, j := range jobs {
		ns := sdk.NodeStatus{Node: j.node.Name, State: sdk.DeployPending}
		for i, c := range j.commands {
			ns.Steps = append(ns.Steps, sdk.StepResult{Index: i, Kind: sdk.StepCommand, Step: c, State: sdk.DeployPending})
		}
		d.Nodes = append(d.Nodes, ns)
	}
	key := deployKey{service: req.ServiceID, ref: part.Ref}
	run, rctx, err := p.deploys.start(ctx, key, d)
	if err != nil {
		return sdk.Deployment{}, err
	}
	defer p.deploys.finish(run)
	begin := time.Now()
	p.log.Info("deploying service", "service", req.ServiceID, "part", part.Ref.String(), "nodes", len(jobs),
		"target", s.ssh.target, "step_timeout", timeout.String())

	sem := make(chan struct{}, maxParallelNodes)
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p.runNode(rctx, run, i, targets[i], jobs[i].commands, timeout)
		}()
	}
	wg.Wait()
	run.update(summarize)
	out := run.snapshot()
	p.log.Info("service deployed", "service", req.ServiceID, "part", part.Ref.String(), "state", out.State,
		"message", out.Message, "took", time.Since(begin).String())
	return out, nil
}

// runNode runs one node's commands in order, recording each step in run as it goes.
func (p *Plugin) runNode(ctx context.Context, run *deployRun, i int, t sshTarget, commands []string, timeout time.Duration) {
	run.update(func(d *sdk.Deployment) { d.Nodes[i].State = sdk.DeployRunning })
	fail := func(from int, msg string) {
		run.update(func(d *sdk.Deployment) {
			n := &d.Nodes[i]
			for j := from; j < len(n.Steps); j++ {
				if j == from && msg != "" {
					n.Steps[j].State, n.Steps[j].ExitCode, n.Steps[j].Error = sdk.DeployFailed, -1, msg
					n.Steps[j].Started = time.Now()
					continue
				}
				n.Steps[j].State = sdk.DeploySkipped
			}
			n.State = sdk.DeployFailed
		})
	}
	client, err := t.dialBooted(ctx)
	if err != nil {
		p.log.Warn("cannot reach node", "node", t.node, "addr", t.addr, "error", err)
		fail(0, err.Error()+gatewayHint(t, err))
		return
	}
	defer client.Close()
	for j, c := range commands {
		step := sdk.StepResult{Index: j, Kind: sdk.StepCommand, Step: c, State: sdk.DeployRunning, Started: time.Now()}
		run.update(func(d *sdk.Deployment) { d.Nodes[i].Steps[j] = step })
		runCommand(ctx, client, c, timeout, &step)
		step.Duration = time.Since(step.Started)
		run.update(func(d *sdk.Deployment) { d.Nodes[i].Steps[j] = step })
		p.log.Debug("step done", "node", t.node, "step", j, "state", step.State, "exit", step.ExitCode,
			"took", step.Duration.String())
		if step.State != sdk.DeploySucceeded {
			fail(j+1, "")
			return
		}
	}
	run.update(func(d *sdk.Deployment) { d.Nodes[i].State = sdk.DeploySucceeded })
}

// gatewayHint says what to do when a provider's SSH gateway (nodes that are not real
// guests) refuses: nothing runs there, as on libvirt's test driver, whose domains never
// boot.
func gatewayHint(t sshTarget, err error) string {
	if t.bootWait > 0 || !errors.Is(err, syscall.ECONNREFUSED) {
		return ""
	}
	return fmt.Sprintf(" (this provider reaches its nodes through the SSH gateway ssh.ip/ssh.port of its catalogue entry, %s, and nothing listens there;"+
		" on libvirt's test driver, as in examples/catalogue-bench.yaml, nodes are domains that never boot: run services on the default"+
		" catalogue's real guests (./scripts/run.sh) or on a Kubernetes part (./scripts/run.sh --kubernetes))", t.addr)
}

// summarize sets the deployment's state and message from its nodes.
func summarize(d *sdk.Deployment) {
	var failed []string
	for _, n := range d.Nodes {
		if n.State != sdk.DeployFailed {
			continue
		}
		for _, s := range n.Steps {
			if s.State == sdk.DeployFailed {
				failed = append(failed, fmt.Sprintf("%s step %d (%s): %s", n.Node, s.Index, clip(s.Step, 60), s.Error))
				break
			}
		}
	}
	if len(failed) == 0 {
		d.State, d.Message = sdk.DeploySucceeded, fmt.Sprintf("%d nodes done", len(d.Nodes))
		return
	}
	d.State = sdk.DeployFailed
	d.Message = fmt.Sprintf("%d of %d nodes failed: %s", len(failed), len(d.Nodes), strings.Join(failed, "; "))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// planNodes resolves each work entry's node — a node name, a VDU name (each of its
// nodes), a node id, or empty (every node) — and merges the commands per node in order.
// Every problem is reported.
func planNodes(part sdk.Part, work []sdk.NodeWork) ([]nodeJob, error) {
	var problems []string
	var jobs []nodeJob
	index := map[string]int{}
	for i, w := range work {
		at := fmt.Sprintf("work[%d]", i)
		if w.Node != "" {
			at += fmt.Sprintf(" (%s)", w.Node)
		}
		nodes := nodesNamed(part, w.Node)
		if len(nodes) == 0 {
			problems = append(problems, fmt.Sprintf("%s.node: part %s has no node or VDU %q (nodes: %s)",
				at, part.Name, w.Node, nodeList(part)))
			continue
		}
		if len(w.Manifests) > 0 {
			problems = append(problems, fmt.Sprintf("%s.manifests: part %s is made of VMs, which run commands over SSH "+
				"and have no Kubernetes to apply manifests to", at, part.Name))
		}
		for _, n := range nodes {
			k, ok := index[n.Name]
			if !ok {
				k = len(jobs)
				index[n.Name] = k
				jobs = append(jobs, nodeJob{node: n})
			}
			jobs[k].commands = append(jobs[k].commands, w.Commands...)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return jobs, nil
}

// nodesNamed returns the part's nodes a work entry names.
func nodesNamed(part sdk.Part, name string) []sdk.Node {
	if name == "" {
		return part.Nodes
	}
	for _, n := range part.Nodes {
		if n.Name == name || n.ID == name {
			return []sdk.Node{n}
		}
	}
	return part.NodesOf(name)
}

func nodeList(part sdk.Part) string {
	if len(part.Nodes) == 0 {
		return "none"
	}
	names := make([]string, 0, len(part.Nodes))
	for _, n := range part.Nodes {
		names = append(names, n.Name)
	}
	return strings.Join(names, ", ")
}

// sshTargets works out, for each job, the address to dial and the client
// configuration: the part's credential as the user, host keys checked.
func (p *Plugin) sshTargets(s *settings, part sdk.Part, jobs []nodeJob) ([]sshTarget, error) {
	cred := part.Credential
	user := cred.User
	if user == "" {
		user = s.ssh.user
	}
	var auth ssh.AuthMethod
	switch cred.Kind {
	case sdk.CredentialSSHKey:
		signer, err := ssh.ParsePrivateKey([]byte(cred.Secret))
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "the part's SSH key cannot be read: %v", err)
		}
		auth = ssh.PublicKeys(signer)
	case sdk.CredentialPassword:
		auth = ssh.Password(cred.Secret)
	default:
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "the part has no SSH credential (kind %q)", cred.Kind)
	}
	var pinned []ssh.PublicKey
	// Nodes of real guests have host keys of their own, generated by the plugin and
	// given to them in their seed: each node is checked against its own.
	nodeKeys := map[string]ssh.PublicKey{}
	for _, line := range strings.Split(part.Attributes[AttrSSHKnownHosts], "\n") {
		ip, key, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "the pinned host key of %s cannot be read: %v", ip, err)
		}
		nodeKeys[ip] = k
	}
	if cred.HostKey != "" {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cred.HostKey))
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "the part's pinned host key cannot be read: %v", err)
		}
		pinned = append(pinned, k)
	}
	if s.ssh.hostKey != nil {
		pinned = append(pinned, s.ssh.hostKey)
	}
	if len(nodeKeys) > 0 {
		return p.guestTargets(part, jobs, user, auth, nodeKeys)
	}
	check, err := hostKeyCheck(pinned, s.ssh.knownHosts)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{auth}, HostKeyCallback: check, Timeout: dialTimeout}
	if len(pinned) > 0 && s.ssh.knownHosts == "" {
		// Ask for the pinned kinds of key first, so a server with several host keys
		// offers the one that was pinned.
		seen := map[string]bool{}
		for _, k := range pinned {
			for _, a := range hostKeyAlgorithms(k.Type()) {
				if !seen[a] {
					seen[a] = true
					cfg.HostKeyAlgorithms = append(cfg.HostKeyAlgorithms, a)
				}
			}
		}
	}
	var problems []string
	out := make([]sshTarget, len(jobs))
	for i, j := range jobs {
		var host string
		var port int
		switch s.ssh.target {
		case TargetGateway:
			host, port = part.VIMRef.IPSSH, part.VIMRef.PortSSH
			if host == "" {
				host, port = s.vimRef.IPSSH, s.vimRef.PortSSH
			}
			if host == "" || port == 0 {
				problems = append(problems, fmt.Sprintf("node %s: the part has no SSH endpoint (vim-ref ip-ssh/port-ssh)", j.node.Name))
			}
		default:
			if len(j.node.IPs) == 0 {
				problems = append(problems, fmt.Sprintf("node %s has no address to reach it at", j.node.Name))
			} else {
				host, port = j.node.IPs[0], 22
			}
		}
		out[i] = sshTarget{node: j.node.Name, addr: net.JoinHostPort(host, strconv.Itoa(port)), cfg: cfg}
	}
	if len(problems) > 0 {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "%s", strings.Join(problems, "; "))
	}
	return out, nil
}

// guestTargets reaches each node of real guests at its own address, port 22, from the
// part's endpoint namespace, checking its own pinned host key.
func (p *Plugin) guestTargets(part sdk.Part, jobs []nodeJob, user string, auth ssh.AuthMethod,
	keys map[string]ssh.PublicKey) ([]sshTarget, error) {
	var problems []string
	out := make([]sshTarget, len(jobs))
	for i, j := range jobs {
		if len(j.node.IPs) == 0 || keys[j.node.IPs[0]] == nil {
			problems = append(problems, fmt.Sprintf("node %s has no address with a pinned host key", j.node.Name))
			continue
		}
		ip := j.node.IPs[0]
		check, err := hostKeyCheck([]ssh.PublicKey{keys[ip]}, "")
		if err != nil {
			return nil, err
		}
		cfg := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{auth}, HostKeyCallback: check, Timeout: dialTimeout,
			HostKeyAlgorithms: hostKeyAlgorithms(keys[ip].Type())}
		out[i] = sshTarget{node: j.node.Name, addr: net.JoinHostPort(ip, "22"), cfg: cfg, netns: part.Attributes[AttrNetns],
			bootWait: guestBootWait}
	}
	if len(problems) > 0 {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "%s", strings.Join(problems, "; "))
	}
	return out, nil
}

// hostKeyAlgorithms lists the host key algorithms that can present a key of type t (an
// RSA key signs with SHA-2 in modern servers).
func hostKeyAlgorithms(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

// DeployStatus returns a deployment this plugin process runs or ran, live while it runs.
// One it does not know (never run here, undeployed, or run before a restart) is
// NotFound.
func (p *Plugin) DeployStatus(_ context.Context, req sdk.DeployStatusRequest) (sdk.Deployment, error) {
	serviceID := req.ServiceID
	ref := req.Ref
	r := p.deploys.get(deployKey{service: serviceID, ref: ref})
	if r == nil {
		return sdk.Deployment{}, sdk.Errorf(sdk.CodeNotFound, "no deployment of service %q on part %s here", serviceID, ref)
	}
	return r.snapshot(), nil
}

// Undeploy stops the service's deployment on the part if it is running and forgets it.
// Commands that ran cannot be undone; an unknown service is not an error.
func (p *Plugin) Undeploy(ctx context.Context, req sdk.UndeployRequest) error {
	serviceID := req.ServiceID
	part := req.Part
	if err := p.deploys.forget(ctx, deployKey{service: serviceID, ref: part.Ref}); err != nil {
		return err
	}
	p.log.Info("service undeployed", "service", serviceID, "part", part.Ref.String())
	return nil
}

func copyDeployment(d sdk.Deployment) sdk.Deployment {
	out := d
	out.Nodes = make([]sdk.NodeStatus, len(d.Nodes))
	for i, n := range d.Nodes {
		out.Nodes[i] = n
		out.Nodes[i].Steps = append([]sdk.StepResult(nil), n.Steps...)
	}
	return out
}
