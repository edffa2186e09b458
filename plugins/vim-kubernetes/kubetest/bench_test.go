package kubetest_test

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk/nsnet"
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

// BenchmarkPolicyAdmission measures how long a new pod waits before a pod of its own
// namespace, isolated by a NetworkPolicy of the shape vim-kubernetes gives every part
// (ingress from the namespace's pods and from outside the pod network), answers it:
// kube-router must first add the new pod's address to the policy's set. Each op is a pod,
// on alternate nodes, that retries an HTTP GET every 100 ms from its start; it reports
// the p50 and p95 from the container's start to the first answer (read in the pod) and
// from the pod's creation to it.
func BenchmarkPolicyAdmission(b *testing.B) {
	needNodes(b)
	ctx := context.Background()
	c, err := kubetest.Start(ctx, kubetest.Options{RealNodes: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	pods := c.Client.CoreV1().Pods("own")
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "own"}},
		metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	pol := &netv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "isolation"}, Spec: netv1.NetworkPolicySpec{
		PolicyTypes: []netv1.PolicyType{netv1.PolicyTypeIngress},
		Ingress: []netv1.NetworkPolicyIngressRule{{From: []netv1.NetworkPolicyPeer{
			{PodSelector: &metav1.LabelSelector{}},
			{IPBlock: &netv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{kubenode.PodCIDRs}}},
		}}}}}
	if _, err := c.Client.NetworkingV1().NetworkPolicies("own").Create(ctx, pol, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	server := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "server"}, Spec: corev1.PodSpec{NodeName: c.Data.Nodes[0].Name,
		Containers: []corev1.Container{{Name: "c", Image: "necos.local/busybox:1.35",
			Command: []string{"sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"}}}}}
	if _, err := pods.Create(ctx, server, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	ip := ""
	for ip == "" {
		got, err := pods.Get(ctx, "server", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if got.Status.Phase == corev1.PodRunning {
			ip = got.Status.PodIP
		}
		time.Sleep(50 * time.Millisecond)
	}
	// busybox 1.35's wget has no -T (Debian builds it without; the option crashes it).
	script := fmt.Sprintf("read s _ </proc/uptime; until timeout 2 wget -q -O /dev/null http://%s:8080/; do sleep 0.1; done; "+
		"read e _ </proc/uptime; echo $s $e", ip)
	var inPod, fromCreate []time.Duration
	for i := 0; b.Loop(); i++ {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i)}, Spec: corev1.PodSpec{
			NodeName: c.Data.Nodes[i%len(c.Data.Nodes)].Name, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: "necos.local/busybox:1.35", Command: []string{"sh", "-c", script}}}}}
		t0 := time.Now()
		if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for {
			got, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if got.Status.Phase == corev1.PodSucceeded {
				break
			}
			if got.Status.Phase == corev1.PodFailed || time.Since(t0) > time.Minute {
				b.Fatalf("pod %s not answered within a minute: %+v", pod.Name, got.Status)
			}
			time.Sleep(10 * time.Millisecond)
		}
		fromCreate = append(fromCreate, time.Since(t0))
		out, err := pods.GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			b.Fatal(err)
		}
		f := strings.Fields(string(out))
		if len(f) != 2 {
			b.Fatalf("pod %s: %q", pod.Name, out)
		}
		s, err1 := strconv.ParseFloat(f[0], 64)
		e, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil {
			b.Fatalf("pod %s: %q", pod.Name, out)
		}
		inPod = append(inPod, time.Duration((e-s)*float64(time.Second)))
		_ = pods.Delete(ctx, pod.Name, metav1.DeleteOptions{})
	}
	q := func(d []time.Duration, p float64) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[int(p*float64(len(d)-1))].Seconds()
	}
	b.ReportMetric(q(inPod, 0.5), "start-to-answer-p50-s")
	b.ReportMetric(q(inPod, 0.95), "start-to-answer-p95-s")
	b.ReportMetric(q(fromCreate, 0.5), "create-to-answer-p50-s")
	b.ReportMetric(q(fromCreate, 0.95), "create-to-answer-p95-s")
}

// BenchmarkClusterDNS resolves the API server's Service (kubernetes.default) through
// the nodes' cluster DNS, from the hub namespace (every pod's way to it), one lookup per
// op: what a pod's name lookup of another part's Service costs.
func BenchmarkClusterDNS(b *testing.B) {
	needNodes(b)
	ctx := context.Background()
	c, err := kubetest.Start(ctx, kubetest.Options{RealNodes: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	svc, err := c.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return nsnet.Dial(ctx, network, nsnet.Endpoint{Netns: c.Data.Hub, Addr: "10.250.0.1:53"})
	}}
	name := "kubernetes.default.svc." + kubenode.ClusterDomain + "."
	for b.Loop() {
		ips, err := r.LookupHost(ctx, name)
		if err != nil || len(ips) != 1 || ips[0] != svc.Spec.ClusterIP {
			b.Fatalf("%s: %v %v, want %s", name, ips, err, svc.Spec.ClusterIP)
		}
	}
}
