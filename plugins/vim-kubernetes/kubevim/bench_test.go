package kubevim

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/necos/necos/sdk"
)

// BenchmarkPartLifecycle creates, describes and deletes a part of three nodes on the
// real control plane, reporting each call's time. Delete includes the namespace
// controller's fixed 5 s wait before it finalizes a namespace.
func BenchmarkPartLifecycle(b *testing.B) {
	p := newPlugin(b, nil)
	ctx := context.Background()
	var create, describe, del time.Duration
	for i := 0; b.Loop(); i++ {
		spec := sdk.PartSpec{Ref: sdk.PartRef{SliceID: "bench", PartID: fmt.Sprintf("p%d", i)},
			VDUs: []sdk.VDUSpec{master(), worker(2, 1, 256)}}
		t0 := time.Now()
		if _, err := p.Create(ctx, sdk.CreateRequest{Part: spec}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := p.Describe(ctx, sdk.DescribeRequest{Ref: spec.Ref}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := p.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
			b.Fatal(err)
		}
		create, describe, del = create+t1.Sub(t0), describe+t2.Sub(t1), del+time.Since(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(create.Milliseconds())/n, "create-ms/op")
	b.ReportMetric(float64(describe.Milliseconds())/n, "describe-ms/op")
	b.ReportMetric(float64(del.Milliseconds())/n, "delete-ms/op")
}

// BenchmarkPartFirstPod creates a part on the real nodes, deploys one Deployment of the
// iot-agent image (present on the nodes) and waits until its pod runs: what a tenant
// waits for from asking for a part to running a workload in it. Deletion is not timed.
func BenchmarkPartFirstPod(b *testing.B) {
	c := needCluster(b)
	p := newPlugin(b, nil)
	ctx := context.Background()
	manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: first}
spec:
  selector: {matchLabels: {app: first}}
  template:
    metadata: {labels: {app: first}}
    spec:
      containers: [{name: agent, image: "necos.local/iot-agent:0.1.0"}]
`
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		spec := sdk.PartSpec{Ref: sdk.PartRef{SliceID: "bench-pod", PartID: fmt.Sprintf("p%d", i)},
			VDUs: []sdk.VDUSpec{worker(1, 1, 256)}}
		t0 := time.Now()
		part, err := p.Create(ctx, sdk.CreateRequest{Part: spec})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Deploy(ctx, sdk.DeployRequest{ServiceID: "first", Part: part,
			Work: []sdk.NodeWork{{Node: "worker", Manifests: []string{manifest}}}}); err != nil {
			b.Fatal(err)
		}
		ns := part.Attributes["namespace"]
		for {
			pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=first"})
			if err != nil {
				b.Fatal(err)
			}
			if len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning {
				break
			}
			if time.Since(t0) > 2*time.Minute {
				b.Fatalf("no pod running after 2 min: %+v", pods.Items)
			}
			time.Sleep(20 * time.Millisecond)
		}
		total += time.Since(t0)
		b.StopTimer()
		if err := p.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "create+first-pod-ms/op")
}

// BenchmarkNodePortPolicy ensures the node-port admission policy and its binding once
// they are there, as every part's Create does: what the policy adds to a Create. Run it
// with at most -benchtime 50x: beyond the plugin client's burst (100 requests) the ops
// measure its rate limit (50 a second), not the API server.
func BenchmarkNodePortPolicy(b *testing.B) {
	p := newPlugin(b, nil)
	_, k, err := p.state()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := ensureNodePortPolicy(ctx, k); err != nil {
		b.Fatal(err)
	}
	if !nodePortPolicyCurrent(ctx, k, map[string]string{labelManagedBy: managedBy}) {
		b.Fatal("the node-port policy does not read back as applied")
	}
	for b.Loop() {
		if err := ensureNodePortPolicy(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
}
