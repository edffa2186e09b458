package plugintest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// DeployerOptions gives [RunDeployer] a part to deploy onto.
type DeployerOptions struct {
	// Part is a part the plugin holds (made by its VIM, or one its backend has), with
	// the credential Deploy needs. The suite runs shell commands on Node only.
	Part sdk.Part
	// Node is a node of Part that runs shell commands (sh -c): echo and exit are all
	// the suite asks of it.
	Node string
	// StepTimeout bounds each step; zero means a minute (a command that runs as a
	// workload, e.g. a Kubernetes Job, may wait for its pod to start).
	StepTimeout time.Duration
}

// RunDeployer checks that the Deployer served by client keeps the contract of
// [sdk.Deployer] on opts.Part:
//
//   - Deploy returns when every node is done: a step's output is kept (what it writes
//     to stderr in Stderr, or in Stdout where the backend merges the streams), a
//     failing step fails its node and the deployment (reported in the Deployment, not
//     as an error) and the steps after it on that node are skipped, not run;
//   - deploying the same service again is safe, and runs its steps again;
//   - DeployStatus reports what the last Deploy did;
//   - Undeploy removes the deployment (DeployStatus is then NotFound) and is idempotent;
//     an unknown service is NotFound to DeployStatus and not an error to Undeploy;
//   - work naming a node the part lacks is InvalidArgument naming it, and a request
//     without a service id is InvalidArgument (sdk.DeployRequest.Validate).
//
// Every run uses service ids of its own, so runs against one backend do not meet.
func RunDeployer(t *testing.T, client *sdk.Client, opts DeployerOptions) {
	t.Helper()
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = time.Minute
	}
	if opts.Node == "" {
		t.Fatal("RunDeployer: DeployerOptions.Node is required")
	}
	dep, err := client.Deployer()
	if err != nil {
		t.Fatalf("deployer client: %v", err)
	}
	s := &deployerSuite{dep: dep, opts: opts, run: monitorRandomID()}
	t.Run("DeployCommands", s.deployCommands)
	t.Run("FailingStepStops", s.failingStepStops)
	t.Run("DeployAgain", s.deployAgain)
	t.Run("UnknownService", s.unknownService)
	t.Run("Undeploy", s.undeploy)
	t.Run("BadRequests", s.badRequests)
}

type deployerSuite struct {
	dep  sdk.Deployer
	opts DeployerOptions
	run  string
}

// service returns a service id unique to this run and check.
func (s *deployerSuite) service(name string) string { return "conformance-" + s.run + "-" + name }

func (s *deployerSuite) request(service string, commands ...string) sdk.DeployRequest {
	return sdk.DeployRequest{ServiceID: service, Part: s.opts.Part, StepTimeout: s.opts.StepTimeout,
		Work: []sdk.NodeWork{{Node: s.opts.Node, Commands: commands}}}
}

func (s *deployerSuite) deploy(t *testing.T, req sdk.DeployRequest) sdk.Deployment {
	t.Helper()
	d, err := s.dep.Deploy(ctx(t), req)
	if err != nil {
		t.Fatalf("Deploy %s: %v", req.ServiceID, err)
	}
	t.Cleanup(func() { _ = s.dep.Undeploy(ctx(t), sdk.UndeployRequest{ServiceID: req.ServiceID, Part: s.opts.Part}) })
	return d
}

// steps returns the steps of the suite's node, failing the test unless the deployment
// has that node alone with n steps.
func (s *deployerSuite) steps(t *testing.T, d sdk.Deployment, n int) []sdk.StepResult {
	t.Helper()
	if len(d.Nodes) != 1 || d.Nodes[0].Node != s.opts.Node || len(d.Nodes[0].Steps) != n {
		t.Fatalf("deployment %s: nodes %+v, want node %s alone with %d steps", d.ServiceID, d.Nodes, s.opts.Node, n)
	}
	return d.Nodes[0].Steps
}

func (s *deployerSuite) deployCommands(t *testing.T) {
	mark := "conformance " + s.run
	d := s.deploy(t, s.request(s.service("commands"), "echo "+mark, "echo to-stderr >&2"))
	st := s.steps(t, d, 2)
	if d.State != sdk.DeploySucceeded || d.Nodes[0].State != sdk.DeploySucceeded || d.ServiceID != s.service("commands") || d.Ref != s.opts.Part.Ref {
		t.Errorf("deployment: %s %s, node %s, service %q, ref %s: want succeeded", d.State, d.Message, d.Nodes[0].State, d.ServiceID, d.Ref)
	}
	for i, r := range st {
		if r.Index != i || r.Kind != sdk.StepCommand || r.State != sdk.DeploySucceeded || r.ExitCode != 0 {
			t.Errorf("step %d: %+v, want command step %d succeeded", i, r, i)
		}
	}
	if !strings.Contains(st[0].Stdout, mark) {
		t.Errorf("step 0's stdout %q lacks %q", st[0].Stdout, mark)
	}
	// A backend that cannot tell the streams apart (a pod's log) keeps both in Stdout.
	if !strings.Contains(st[1].Stderr+st[1].Stdout, "to-stderr") {
		t.Errorf("step 1's output (stdout %q, stderr %q) lacks what the command wrote to stderr", st[1].Stdout, st[1].Stderr)
	}
	got, err := s.dep.DeployStatus(ctx(t), sdk.DeployStatusRequest{ServiceID: d.ServiceID, Ref: s.opts.Part.Ref})
	if err != nil || got.State != d.State || len(got.Nodes) != 1 || len(got.Nodes[0].Steps) != 2 {
		t.Errorf("DeployStatus after Deploy: %+v %v, want what Deploy returned (%s, 2 steps)", got, err, d.State)
	}
}

func (s *deployerSuite) failingStepStops(t *testing.T) {
	never := "never-" + s.run
	d := s.deploy(t, s.request(s.service("failing"), "echo first", "echo failing >&2; exit 3", "echo "+never))
	st := s.steps(t, d, 3)
	if d.State != sdk.DeployFailed || d.Nodes[0].State != sdk.DeployFailed || d.Message == "" {
		t.Errorf("deployment %s (%q), node %s: want failed, saying why", d.State, d.Message, d.Nodes[0].State)
	}
	if st[0].State != sdk.DeploySucceeded {
		t.Errorf("step 0 before the failure: %+v", st[0])
	}
	if st[1].State != sdk.DeployFailed || st[1].ExitCode != 3 || st[1].Error == "" {
		t.Errorf("failing step: %+v, want failed with exit code 3 and an error", st[1])
	}
	if st[2].State != sdk.DeploySkipped || strings.Contains(st[2].Stdout, never) {
		t.Errorf("step after the failure: %+v, want skipped, not run", st[2])
	}
}

func (s *deployerSuite) deployAgain(t *testing.T) {
	svc := s.service("again")
	for i := 1; i <= 2; i++ {
		mark := fmt.Sprintf("run %d of %s", i, s.run)
		d := s.deploy(t, s.request(svc, "echo "+mark))
		st := s.steps(t, d, 1)
		if d.State != sdk.DeploySucceeded || !strings.Contains(st[0].Stdout, mark) {
			t.Errorf("deployment %d: %s %q, stdout %q: want succeeded, the step run again", i, d.State, d.Message, st[0].Stdout)
		}
	}
}

func (s *deployerSuite) unknownService(t *testing.T) {
	svc := s.service("unknown")
	_, err := s.dep.DeployStatus(ctx(t), sdk.DeployStatusRequest{ServiceID: svc, Ref: s.opts.Part.Ref})
	wantCode(t, "DeployStatus of a service never deployed", err, sdk.CodeNotFound)
	if err := s.dep.Undeploy(ctx(t), sdk.UndeployRequest{ServiceID: svc, Part: s.opts.Part}); err != nil {
		t.Errorf("Undeploy of a service never deployed: %v, want no error", err)
	}
}

func (s *deployerSuite) undeploy(t *testing.T) {
	d := s.deploy(t, s.request(s.service("undeploy"), "echo here"))
	for i := 1; i <= 2; i++ {
		if err := s.dep.Undeploy(ctx(t), sdk.UndeployRequest{ServiceID: d.ServiceID, Part: s.opts.Part}); err != nil {
			t.Errorf("Undeploy %d: %v", i, err)
		}
	}
	_, err := s.dep.DeployStatus(ctx(t), sdk.DeployStatusRequest{ServiceID: d.ServiceID, Ref: s.opts.Part.Ref})
	wantCode(t, "DeployStatus after Undeploy", err, sdk.CodeNotFound)
}

func (s *deployerSuite) badRequests(t *testing.T) {
	unknown := "no-such-node-" + s.run
	req := s.request(s.service("bad"), "echo never")
	req.Work[0].Node = unknown
	_, err := s.dep.Deploy(ctx(t), req)
	wantCode(t, "Deploy onto a node the part lacks", err, sdk.CodeInvalidArgument)
	if err != nil && !strings.Contains(err.Error(), unknown) {
		t.Errorf("Deploy onto a node the part lacks: %q does not name %s", err, unknown)
	}
	req = s.request("", "echo never")
	_, err = s.dep.Deploy(ctx(t), req)
	wantCode(t, "Deploy without a service id", err, sdk.CodeInvalidArgument)
	// Neither left a deployment behind.
	_, err = s.dep.DeployStatus(ctx(t), sdk.DeployStatusRequest{ServiceID: s.service("bad"), Ref: s.opts.Part.Ref})
	wantCode(t, "DeployStatus of a refused deployment", err, sdk.CodeNotFound)
}
