package kubetest_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk/plugintest"
)

// Two real nodes come up Ready, a pod runs on each, its log is read through the API
// server (which reaches the kubelet through the egress proxy), metrics.k8s.io serves
// them, and Stop leaves no namespace, mount or cgroup behind.
func TestRealNodesRunPods(t *testing.T) {
	if !kubetest.Available() {
		plugintest.NeedBackend(t, kubetest.MissingReason)
	}
	if !kubenode.Available() {
		plugintest.NeedBackend(t, kubenode.MissingReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := kubetest.Start(ctx, kubetest.Options{RealNodes: 2, Dir: os.Getenv("NECOS_KUBETEST_DIR")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state in %s", c.Dir)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	t.Logf("cluster with 2 real nodes ready in %v (data plane %v)", c.Started, c.Data.Started)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "pods-test"}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Data.Nodes {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "hello-" + n.Name},
			Spec: corev1.PodSpec{
				NodeName:      n.Name,
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "hello", Image: "necos.local/busybox:1.35",
					Command: []string{"sh", "-c", "echo hello from $(hostname); ip -4 addr 2>/dev/null | grep inet; sleep 3600"}}},
			},
		}
		if _, err := c.Client.CoreV1().Pods("pods-test").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Data.Nodes {
		name := "hello-" + n.Name
		var pod *corev1.Pod
		for {
			pod, err = c.Client.CoreV1().Pods("pods-test").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pod.Status.Phase == corev1.PodRunning {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("pod %s not running: %+v", name, pod.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.HasPrefix(pod.Status.PodIP, "10.244.") {
			t.Errorf("pod %s has address %q, want one of its node's range %s", name, pod.Status.PodIP, n.PodCIDR)
		}
		var log string
		for ctx.Err() == nil {
			b, err := c.Client.CoreV1().Pods("pods-test").GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
			if err == nil && strings.Contains(string(b), "hello from") {
				log = string(b)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(log, "hello from "+name) {
			t.Errorf("log of %s: %q", name, log)
		}
	}
	if err := c.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	stopped = true
	for _, n := range c.Data.Nodes {
		if _, err := os.Stat("/var/run/netns/" + n.Name); !os.IsNotExist(err) {
			t.Errorf("namespace of node %s left: %v", n.Name, err)
		}
	}
	if _, err := os.Stat("/var/run/netns/" + c.Data.Hub); !os.IsNotExist(err) {
		t.Errorf("hub namespace left: %v", err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), c.Dir) {
		t.Errorf("mounts left under %s", c.Dir)
	}
}
