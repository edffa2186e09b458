package service_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// workloads stands for what a deployer of workloads sees of them after its steps ran:
// not ready yet, ready, or unable to start. (vim-kubernetes evaluates real pods the same
// way: its TestDeployPendingIsApplied; test/e2e's TestIoTSliceOnRealPods sees a real
// Applied service become Deployed through necosd.)
type workloads struct {
	mu    sync.Mutex
	state string // sdk.DeployApplied, sdk.DeploySucceeded or sdk.DeployFailed
	msg   string
	calls int // DeployStatus calls
}

func (w *workloads) set(state, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state, w.msg = state, msg
}

// apply turns a deployment whose steps succeeded into what the workloads say.
func (w *workloads) apply(d sdk.Deployment, status bool) sdk.Deployment {
	w.mu.Lock()
	defer w.mu.Unlock()
	if status {
		w.calls++
	}
	if d.State == sdk.DeploySucceeded && w.state != sdk.DeploySucceeded {
		d.State, d.Message = w.state, w.msg
	}
	return d
}

// heldDeployers hands out the real deployers (vim-xen's, over SSH), whose outcome the
// workloads then decide.
type heldDeployers struct {
	inner service.Deployers
	w     *workloads
}

func (h heldDeployers) Deployer(ctx context.Context, provider string) (sdk.Deployer, error) {
	d, err := h.inner.Deployer(ctx, provider)
	if err != nil {
		return nil, err
	}
	return heldDeployer{d, h.w}, nil
}

type heldDeployer struct {
	sdk.Deployer
	w *workloads
}

func (h heldDeployer) Deploy(ctx context.Context, req sdk.DeployRequest) (sdk.Deployment, error) {
	d, err := h.Deployer.Deploy(ctx, req)
	return h.w.apply(d, false), err
}

func (h heldDeployer) DeployStatus(ctx context.Context, req sdk.DeployStatusRequest) (sdk.Deployment, error) {
	id := req.ServiceID
	ref := req.Ref
	d, err := h.Deployer.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: id, Ref: ref})
	return h.w.apply(d, true), err
}

// An Applied service (steps done, workloads not ready) is evaluated again when it is
// read: still waiting, it stays Applied with the deployer's new message; once the
// workloads are ready it is Deployed, with an event; a Deployed service is not asked
// again. Another whose workloads cannot start becomes Failed.
func TestAppliedServiceRecheckedOnRead(t *testing.T) {
	e := start(t)
	v := e.createSlice(t, "alice", "held")
	ctx := context.Background()
	w := &workloads{state: sdk.DeployApplied, msg: "applied; waiting for 1 of 1 pods: Pending (1)"}
	orch := service.New(service.Options{Store: e.store, Slices: e.engine, Deployers: heldDeployers{e.reg, w},
		PollInterval: time.Hour}) // progress is not polled: every DeployStatus call is a re-check
	t.Cleanup(orch.Close)
	doc := []byte(`
slices:
  sliced:
    id: held
    slice-parts:
      - dc-slice-part:
          name: core-dc
          vdus:
            - vdu:
                name: core_vm
                commands: [echo up]
`)
	rec, err := orch.Start(ctx, service.Request{Tenant: "alice", SliceID: v.Slice.ID, Doc: doc, ID: "web", Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != store.ServiceApplied || !strings.Contains(rec.Message, "1 of 1 parts applied, workloads not ready") ||
		!strings.Contains(rec.Message, "Pending (1)") {
		t.Fatalf("deployed: %s %q; want Applied, waiting", rec.State, rec.Message)
	}

	// Still waiting, for something else now: Applied, with the new reason.
	w.set(sdk.DeployApplied, "applied; waiting for 1 of 1 pods: Running, web not ready")
	got, err := orch.Get(ctx, "alice", v.Slice.ID, "web")
	if err != nil || got.State != store.ServiceApplied || !strings.Contains(got.Message, "web not ready") {
		t.Fatalf("get while waiting: %v %+v", err, got)
	}
	if sp, _ := got.Part("core-dc"); sp.State != sdk.DeployApplied || sp.Message != w.msg {
		t.Errorf("part while waiting: %+v", sp)
	}

	// Ready: Deployed, the part succeeded, an event says so.
	w.set(sdk.DeploySucceeded, "")
	got, err = orch.Get(ctx, "alice", v.Slice.ID, "web")
	if err != nil || got.State != store.ServiceDeployed || got.Message != "1 parts deployed" || got.FinishedAt.IsZero() {
		t.Fatalf("get once ready: %v %+v", err, got)
	}
	if sp, _ := got.Part("core-dc"); sp.State != sdk.DeploySucceeded {
		t.Errorf("part once ready: %+v", sp)
	}
	if evs := eventTypes(t, e.store, v.Slice.ID); !strings.HasSuffix(evs, service.EvApplied+","+service.EvDeployed) {
		t.Errorf("events: %s; want the deployment's end, then the re-check's", evs)
	}
	w.mu.Lock()
	calls := w.calls
	w.mu.Unlock()
	if list, err := orch.List(ctx, "alice", v.Slice.ID); err != nil || len(list) != 1 || list[0].State != store.ServiceDeployed {
		t.Fatalf("list: %v %+v", err, list)
	}
	w.mu.Lock()
	if w.calls != calls {
		t.Errorf("a Deployed service was asked again (%d DeployStatus calls, %d before)", w.calls, calls)
	}
	w.mu.Unlock()

	// Workloads that cannot start: Failed, with the deployer's reason, also through List.
	w.set(sdk.DeployApplied, "applied; waiting for 1 of 1 pods: Pending (1)")
	if rec, err = orch.Start(ctx, service.Request{Tenant: "alice", SliceID: v.Slice.ID, Doc: doc, ID: "bad", Wait: true}); err != nil ||
		rec.State != store.ServiceApplied {
		t.Fatalf("second service: %v %+v", err, rec)
	}
	w.set(sdk.DeployFailed, "workloads cannot start: pod x container web ErrImageNeverPull")
	list, err := orch.List(ctx, "alice", v.Slice.ID)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %+v", err, list)
	}
	for _, s := range list {
		if s.ID == "bad" && (s.State != store.ServiceFailed || !strings.Contains(s.Message, "ErrImageNeverPull")) {
			t.Errorf("bad service after the re-check: %s %q", s.State, s.Message)
		}
		if s.ID == "web" && s.State != store.ServiceDeployed {
			t.Errorf("web service: %s %q", s.State, s.Message)
		}
	}
	if got, err := e.store.GetService(ctx, v.Slice.ID, "bad"); err != nil || got.State != store.ServiceFailed {
		t.Errorf("stored: %v %+v", err, got)
	}
}

// A post-deployment onto a part elasticity added waits for the service's workloads there
// to be ready (a new part's pods start after their manifests are applied): it returns
// once they are, with the part Succeeded in the service's record; workloads that cannot
// start fail it, naming the state and why.
func TestPostDeployWaitsForWorkloads(t *testing.T) {
	e := start(t)
	v := e.createSlice(t, "alice", "pods")
	ctx := context.Background()
	w := &workloads{state: sdk.DeployApplied, msg: "applied; waiting for 1 of 1 pods: Pending (1)"}
	orch := service.New(service.Options{Store: e.store, Slices: e.engine, Deployers: heldDeployers{e.reg, w},
		PollInterval: time.Hour})
	t.Cleanup(orch.Close)
	doc := []byte(`
slices:
  sliced:
    id: pods
    slice-parts:
      - dc-slice-part:
          name: edge
          vdus:
            - vdu:
                name: edge_vm
                commands: [echo up]
`)
	rec, err := orch.Start(ctx, service.Request{Tenant: "alice", SliceID: v.Slice.ID, Doc: doc, ID: "agent", Wait: true})
	if err != nil || rec.State != store.ServiceApplied {
		t.Fatalf("deploy: %v %+v", err, rec)
	}
	for i, ready := range []struct {
		state, msg, want string
	}{
		{sdk.DeploySucceeded, "", ""},
		{sdk.DeployFailed, "CrashLoopBackOff", "failed: CrashLoopBackOff"},
	} {
		w.set(sdk.DeployApplied, "applied; waiting for 1 of 1 pods: Pending (1)")
		added, err := e.engine.AddPart(ctx, v.Slice.ID, "edge", sro.AddPartOptions{Reason: "test"})
		if err != nil {
			t.Fatalf("add part %d: %v", i, err)
		}
		e.sshd.Authorize(t, added.Observed.Attributes["ssh-public-key"])
		errc := make(chan error, 1)
		go func() { errc <- orch.PostDeploy(ctx, v.Slice.ID, added.Name, spec.PostDeployment{}) }()
		select {
		case err := <-errc:
			t.Fatalf("post-deployment onto %s ended (%v) while its workloads were not ready", added.Name, err)
		case <-time.After(2 * time.Second):
		}
		w.set(ready.state, ready.msg)
		select {
		case err = <-errc:
		case <-time.After(30 * time.Second):
			t.Fatalf("post-deployment onto %s still waiting 30 s after its workloads were %s", added.Name, ready.state)
		}
		switch {
		case ready.want == "" && err != nil:
			t.Errorf("post-deployment onto %s once ready: %v", added.Name, err)
		case ready.want != "" && (err == nil || !strings.Contains(err.Error(), ready.want)):
			t.Errorf("post-deployment onto %s whose workloads failed: %v, want %q", added.Name, err, ready.want)
		}
		got, err := orch.Get(ctx, "alice", v.Slice.ID, "agent")
		if err != nil {
			t.Fatal(err)
		}
		if sp, ok := got.Part(added.Name); !ok || sp.State != ready.state {
			t.Errorf("the new part %s in the service's record: %+v, want %s", added.Name, sp, ready.state)
		}
	}
}
