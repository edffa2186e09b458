package kubevim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
)

// A CPU-bound agent (the project's iot-agent image burning one worker) deployed onto a
// part's worker VDU, on real nodes: it runs inside the quota, answers through a NodePort
// and a loopback forwarder, reads > 80 % of its CPU limit, is resized in place when the
// VDU grows (add-cpu: same pod, twice the limit, about half the percentage), gets one
// more replica when the VDU gets a node (add-node), and deleting the part leaves no pod.
func TestRealPodsFollowTheirVDU(t *testing.T) {
	c := needCluster(t)
	p := newPlugin(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	spec := partSpec(t, "edge", worker(1, 1, 512))
	part := create(t, p, spec)
	ns := part.Attributes["namespace"]

	manifests := `apiVersion: apps/v1
kind: Deployment
metadata: {name: agent}
spec:
  replicas: 1
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - name: agent
        image: necos.local/iot-agent:0.1.0
        env: [{name: BURN_WORKERS, value: "1"}]
        ports: [{containerPort: 8080}]
        resources:
          requests: {cpu: 250m, memory: 64Mi}
          limits: {cpu: 250m, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata: {name: agent}
spec:
  type: NodePort
  selector: {app: agent}
  ports: [{port: 8080, targetPort: 8080}]
`
	begin := time.Now()
	d, err := p.Deploy(ctx, sdk.DeployRequest{ServiceID: "load", Part: part,
		Work: []sdk.NodeWork{{Node: "worker", Manifests: []string{manifests}}}})
	if err != nil || d.State != sdk.DeploySucceeded {
		t.Fatalf("deploy: %+v %v", d, err)
	}
	pods := waitPods(ctx, t, c.Client, ns, "app=agent", 1)
	t.Logf("deploy + first pod Running: %v", time.Since(begin))
	pod := pods[0]
	if pod.Labels[labelVDU] != "worker" {
		t.Errorf("pod labels %v, want %s=worker", pod.Labels, labelVDU)
	}

	// The NodePort answers through a forwarder on the host's loopback.
	svc, err := c.Client.CoreV1().Services(ns).Get(ctx, "agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node := c.Data.Nodes[0]
	fwd, err := nsnet.Forward(ctx, nsnet.Endpoint{Addr: "127.0.0.1:0"},
		nsnet.Endpoint{Netns: node.Netns(), Addr: fmt.Sprintf("%s:%d", node.IP, svc.Spec.Ports[0].NodePort)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	if body := httpGet(ctx, t, "http://"+fwd.Addr().String()+"/stats"); !strings.Contains(body, `"burning":1`) {
		t.Errorf("agent stats through the NodePort: %s", body)
	}

	// Metrics: the burning pod at its 250m limit reads > 80 %.
	cpu := waitCPU(ctx, t, p, spec.Ref, func(v float64) bool { return v > 80 })
	t.Logf("CPU %.1f %% of the limit", cpu)

	// add-cpu: the VDU's node from 1 to 2 CPUs; the pod's limit doubles in place.
	if _, err := p.Resize(ctx, sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", CPUs: 2}); err != nil {
		t.Fatalf("resize: %v", err)
	}
	for {
		got, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod after resize: %v (it must be the same pod)", err)
		}
		lim := got.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU]
		applied := len(got.Status.ContainerStatuses) > 0 && got.Status.ContainerStatuses[0].Resources != nil &&
			got.Status.ContainerStatuses[0].Resources.Limits.Cpu().MilliValue() == 500
		if lim.MilliValue() == 500 && applied {
			if got.UID != pod.UID || got.Status.ContainerStatuses[0].RestartCount != 0 {
				t.Errorf("resize replaced or restarted the pod")
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pod not resized: spec %v, status %+v", lim.String(), got.Status.ContainerStatuses)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cpu = waitCPU(ctx, t, p, spec.Ref, func(v float64) bool { return v < 65 })
	t.Logf("after add-cpu: CPU %.1f %% of the limit", cpu)

	// add-node: one more replica, of the grown size.
	if _, err := p.Scale(ctx, sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: 2}); err != nil {
		t.Fatalf("scale: %v", err)
	}
	waitPods(ctx, t, c.Client, ns, "app=agent", 2)

	// A pod beyond the quota is refused.
	cs, _ := tenantClient(t, part)
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, quotaPod("too-big", "5"), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("pod over the quota: %v, want Forbidden", err)
	}

	if err := p.Delete(ctx, spec.Ref); err != nil {
		t.Fatal(err)
	}
	if left, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil || len(left.Items) != 0 {
		t.Errorf("pods left after delete: %v %v", left, err)
	}
}

// waitPods waits until n pods match sel and all run, and returns them.
func waitPods(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, sel string, n int) []corev1.Pod {
	t.Helper()
	for {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running++
			}
		}
		if running == n && len(list.Items) == n {
			return list.Items
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d pods %s running: %+v", running, n, sel, list.Items)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitCPU waits until every node's CPU reading satisfies ok, and returns the last.
func waitCPU(ctx context.Context, t *testing.T, p *Plugin, ref sdk.PartRef, ok func(float64) bool) float64 {
	t.Helper()
	var last []sdk.Sample
	for {
		samples, err := p.Metrics(ctx, ref, []string{sdk.MetricCPUPercent})
		if err != nil {
			t.Fatal(err)
		}
		all := len(samples) > 0
		for _, s := range samples {
			all = all && ok(s.Value)
		}
		if all {
			return samples[0].Value
		}
		last = samples
		if ctx.Err() != nil {
			t.Fatalf("CPU readings %+v", last)
		}
		time.Sleep(time.Second)
	}
}

func httpGet(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return string(b)
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
