package kubevim

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/necos/necos/sdk"
)

// sleeper is a Deployment of one pod of the local busybox image; extra goes into the
// pod's spec.
func sleeper(name, image, extra string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata: {name: ` + name + `}
spec:
  replicas: 1
  selector: {matchLabels: {app: ` + name + `}}
  template:
    metadata: {labels: {app: ` + name + `}}
    spec:
` + extra + `      containers:
      - name: main
        image: ` + image + `
        imagePullPolicy: Never
        command: [sleep, "3600"]
`
}

// A Deployment whose pod cannot be scheduled is applied, not deployed: the message says
// what it waits for, with the scheduler's reason; once it can run, a later DeployStatus
// says succeeded.
func TestDeployPendingIsApplied(t *testing.T) {
	c := needCluster(t)
	p := newPlugin(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	part := create(t, p, partSpec(t, "core", master()))
	ns := part.Attributes["namespace"]
	m := sleeper("stuck", testJobImage, "      nodeSelector: {necos.io/no-such-node: \"yes\"}\n")
	req := sdk.DeployRequest{ServiceID: "pending", Part: part, StepTimeout: 3 * time.Second,
		Work: []sdk.NodeWork{{Node: "master", Manifests: []string{m}}}}
	d, err := p.Deploy(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deploy: %s: %s", d.State, d.Message)
	if d.State != sdk.DeployApplied || !strings.Contains(d.Message, "waiting for 1 of 1 pods") ||
		!strings.Contains(d.Message, "Unschedulable") || !strings.Contains(d.Message, "Deployment/stuck") {
		t.Fatalf("deploy: %s %q; want applied, waiting for 1 of 1 pods, Unschedulable", d.State, d.Message)
	}
	if st, err := p.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: req.ServiceID, Ref: part.Ref}); err != nil || st.State != sdk.DeployApplied {
		t.Fatalf("status while pending: %s %q %v", st.State, st.Message, err)
	}

	// The selector dropped (as an administrator would fix it), the pod runs: succeeded.
	// Recreate: the part's quota has no room for a surge pod beside the pending one.
	patch := []byte(`{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null},"template":{"spec":{"nodeSelector":null}}}}`)
	if _, err := c.Client.AppsV1().Deployments(ns).Patch(ctx, "stuck", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := p.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: req.ServiceID, Ref: part.Ref})
		if err == nil && st.State == sdk.DeploySucceeded {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("never succeeded: %s %q %v", st.State, st.Message, err)
		}
		time.Sleep(200 * time.Millisecond) // DeployStatus evaluates once: poll it
	}
}

// A pod whose image is not on the node (and is never pulled) fails the deployment with
// the container's reason; one whose image is present succeeds within the wait.
func TestDeployUnpullableImageFails(t *testing.T) {
	needCluster(t)
	p := newPlugin(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	part := create(t, p, partSpec(t, "core", master()))
	req := sdk.DeployRequest{ServiceID: "bad-image", Part: part, StepTimeout: time.Minute,
		Work: []sdk.NodeWork{{Node: "master", Manifests: []string{sleeper("nopull", "necos.local/no-such-image:0.0.0", "")}}}}
	begin := time.Now()
	d, err := p.Deploy(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deploy in %v: %s: %s", time.Since(begin), d.State, d.Message)
	if d.State != sdk.DeployFailed || !strings.Contains(d.Message, "ErrImageNeverPull") ||
		!strings.Contains(d.Message, "Deployment/nopull") {
		t.Fatalf("deploy: %s %q; want failed with ErrImageNeverPull", d.State, d.Message)
	}

	// Its pods gone, the part's quota has room for the next.
	if err := p.Undeploy(ctx, sdk.UndeployRequest{ServiceID: req.ServiceID, Part: part}); err != nil {
		t.Fatal(err)
	}
	req.ServiceID, req.Work = "good-image", []sdk.NodeWork{{Node: "master", Manifests: []string{sleeper("runs", testJobImage, "")}}}
	begin = time.Now()
	d, err = p.Deploy(ctx, req)
	if err != nil || d.State != sdk.DeploySucceeded {
		t.Fatalf("deploy of a present image: %s %q %v", d.State, d.Message, err)
	}
	t.Logf("deploy until the pod is ready: %v", time.Since(begin))
}
