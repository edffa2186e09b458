package kubetest_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk/plugintest"
)

func needNodes(b *testing.B) {
	if !kubetest.Available() {
		plugintest.NeedBackend(b, kubetest.MissingReason)
	}
	if !kubenode.Available() {
		plugintest.NeedBackend(b, kubenode.MissingReason)
	}
}

// BenchmarkClusterStart starts a control plane with two real nodes and stops it,
// reporting the data plane's start (nodes Ready, metrics.k8s.io serving them) apart.
func BenchmarkClusterStart(b *testing.B) {
	needNodes(b)
	var cluster, nodes, stop time.Duration
	for b.Loop() {
		c, err := kubetest.Start(context.Background(), kubetest.Options{RealNodes: 2})
		if err != nil {
			b.Fatal(err)
		}
		cluster, nodes = cluster+c.Started, nodes+c.Data.Started
		t0 := time.Now()
		if err := c.Stop(); err != nil {
			b.Fatal(err)
		}
		stop += time.Since(t0)
	}
	n := float64(b.N)
	b.ReportMetric(cluster.Seconds()/n, "cluster-s/op")
	b.ReportMetric(nodes.Seconds()/n, "nodes-s/op")
	b.ReportMetric(stop.Seconds()/n, "stop-s/op")
}

// BenchmarkPodStart creates pods of an image present on the nodes, one at a time, and
// reports the p50 and p95 of creation to Running.
func BenchmarkPodStart(b *testing.B) {
	needNodes(b)
	ctx := context.Background()
	c, err := kubetest.Start(ctx, kubetest.Options{RealNodes: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}},
		metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var times []time.Duration
	for i := 0; b.Loop(); i++ {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i)}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: "necos.local/busybox:1.35", Command: []string{"sleep", "3600"}}}}}
		t0 := time.Now()
		if _, err := c.Client.CoreV1().Pods("bench").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for {
			got, err := c.Client.CoreV1().Pods("bench").Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if got.Status.Phase == corev1.PodRunning {
				break
			}
			if time.Since(t0) > time.Minute {
				b.Fatalf("pod %s not running: %+v", pod.Name, got.Status)
			}
			time.Sleep(10 * time.Millisecond)
		}
		times = append(times, time.Since(t0))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	q := func(p float64) float64 { return times[int(p*float64(len(times)-1))].Seconds() }
	b.ReportMetric(q(0.5), "p50-s")
	b.ReportMetric(q(0.95), "p95-s")
}
