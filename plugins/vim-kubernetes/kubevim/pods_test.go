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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest"
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

	if err := p.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
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
		samples, err := p.Metrics(ctx, sdk.MetricsRequest{Ref: ref, Names: []string{sdk.MetricCPUPercent}})
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

// A slice's parts admit each other's pods, on real nodes with kube-router enforcing the
// parts' policies: a pod of the slice's edge reaches the core's Service (its ClusterIP,
// kube-proxy taking it to the core's pod, whose policy sees the edge pod's address),
// while a pod of another slice's part is refused by the same pod. Both parts of the slice
// are made by separate providers sharing the cluster, as the demo's are.
func TestSlicePartsReachEachOther(t *testing.T) {
	c := needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	p := newPlugin(t, nil)
	other := NewWithLogger(plugintest.TestLogger(t))
	if err := other.Configure(ctx, sdk.Config{APIVersion: sdk.APIVersion1, Provider: sdk.Provider{Name: "test-other", Location: "EUROPE.OTHER"},
		JSON: configJSON(t, c, nil)}); err != nil {
		t.Fatal(err)
	}
	coreSpec := partSpec(t, "core", worker(1, 1, 512))
	edgeSpec := partSpec(t, "edge", worker(1, 1, 512))
	foreignSpec := partSpec(t, "edge", worker(1, 1, 512))
	foreignSpec.Ref.SliceID += "-other"
	core := create(t, p, coreSpec)
	edge := create(t, other, edgeSpec)
	foreign := create(t, p, foreignSpec)
	cns, ens, fns := core.Attributes["namespace"], edge.Attributes["namespace"], foreign.Attributes["namespace"]

	manifests := `apiVersion: apps/v1
kind: Deployment
metadata: {name: store}
spec:
  replicas: 1
  selector: {matchLabels: {app: store}}
  template:
    metadata: {labels: {app: store}}
    spec:
      containers:
      - name: store
        image: necos.local/iot-agent:0.1.0
        ports: [{containerPort: 8080}]
        resources:
          requests: {cpu: 50m, memory: 32Mi}
          limits: {cpu: 100m, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata: {name: store}
spec:
  selector: {app: store}
  ports: [{port: 8080, targetPort: 8080}]
`
	if d, err := p.Deploy(ctx, sdk.DeployRequest{ServiceID: "store", Part: core,
		Work: []sdk.NodeWork{{Node: "worker", Manifests: []string{manifests}}}}); err != nil || d.State != sdk.DeploySucceeded {
		t.Fatalf("deploy the core's store: %+v %v", d, err)
	}
	svc, err := c.Client.CoreV1().Services(cns).Get(ctx, "store", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:8080/healthz", svc.Spec.ClusterIP)
	// A new pod is retried: kube-router admits its address once it has seen the pod's
	// update. Debian's busybox wget has no -T: timeout(1) bounds each try. Then the
	// Service by its name, through the nodes' cluster DNS: the core's namespace is what
	// a service file's ${parts.<core>.namespace} gives.
	name := fmt.Sprintf("store.%s.svc.%s", cns, kubenode.ClusterDomain)
	reach := fmt.Sprintf("for i in $(seq 30); do if timeout 3 wget -q -O /dev/null %s; then echo answered at try $i; break; fi; sleep 1; done; "+
		"nslookup %s && timeout 3 wget -q -O - http://%s:8080/healthz && echo && echo answered by name", url, name, name)
	if ok, log := probePod(ctx, t, c.Client, ens, "same-slice", reach); !ok {
		t.Errorf("a pod of the slice's edge (%s) cannot reach the core's Service at %s and by its name %s: %s", ens, url, name, log)
	} else {
		t.Logf("a new pod of the slice's edge reached the core's Service: %s", log)
	}
	// Refused, not merely failed: the policy's REJECT answers at once.
	if ok, log := probePod(ctx, t, c.Client, fns, "other-slice", "timeout 5 wget -q -O /dev/null "+url); ok || !strings.Contains(log, "Connection refused") {
		t.Errorf("a pod of another slice's part (%s) was not refused by the core's pod at %s (reached: %v): %s", fns, url, ok, log)
	}
}

// probePod runs script (sh -c) in a busybox pod of namespace ns and reports whether it
// exited 0, with its output.
func probePod(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name, script string) (bool, string) {
	t.Helper()
	return probePodOn(ctx, t, cs, ns, name, "", script)
}

// probePodOn is probePod on the named node ("": where the scheduler puts it).
func probePodOn(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name, node, script string) (bool, string) {
	t.Helper()
	one := int64(1)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe-" + name},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: &one, NodeName: node,
			Containers: []corev1.Container{{Name: "probe", Image: testJobImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", script},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")}}}}}}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("probe %s in %s: %v", name, ns, err)
	}
	defer cs.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{})
	for {
		got, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && (got.Status.Phase == corev1.PodSucceeded || got.Status.Phase == corev1.PodFailed) {
			out, err := cs.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
			if err != nil {
				t.Fatalf("probe %s in %s: log: %v", name, ns, err)
			}
			return got.Status.Phase == corev1.PodSucceeded, strings.TrimSpace(string(out))
		}
		if ctx.Err() != nil {
			t.Fatalf("probe %s in %s did not end: %+v %v", name, ns, got.Status, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// A part's NodePort keeps the slices apart as its pods' policy does, on real nodes: the
// deployer makes it keep its clients' addresses (externalTrafficPolicy Local) and the
// tenant cannot make one that does not; a pod of another slice is refused at the port of
// its own node and of the store's node, a pod of another part of the same slice is
// answered, and so is a client on the host through a loopback forwarder into each node
// (a person opening the part's GUI). With the default policy (Cluster) the other slice's
// pod on the node without the store was answered: that node masqueraded it as itself.
func TestNodePortKeepsSlicesApart(t *testing.T) {
	c := needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	p := newPlugin(t, nil)
	coreSpec := partSpec(t, "core", worker(1, 1, 512))
	edgeSpec := partSpec(t, "edge", worker(1, 1, 512))
	foreignSpec := partSpec(t, "edge", worker(1, 1, 512))
	foreignSpec.Ref.SliceID += "-other"
	core := create(t, p, coreSpec)
	edge := create(t, p, edgeSpec)
	foreign := create(t, p, foreignSpec)
	cns, ens, fns := core.Attributes["namespace"], edge.Attributes["namespace"], foreign.Attributes["namespace"]

	// The Service as a tenant writes it, with no traffic policy.
	manifests := `apiVersion: apps/v1
kind: Deployment
metadata: {name: store}
spec:
  replicas: 1
  selector: {matchLabels: {app: store}}
  template:
    metadata: {labels: {app: store}}
    spec:
      containers:
      - name: store
        image: necos.local/iot-agent:0.1.0
        ports: [{containerPort: 8080}]
        resources:
          requests: {cpu: 50m, memory: 32Mi}
          limits: {cpu: 100m, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata: {name: store}
spec:
  type: NodePort
  selector: {app: store}
  ports: [{port: 8080, targetPort: 8080}]
`
	if d, err := p.Deploy(ctx, sdk.DeployRequest{ServiceID: "store", Part: core,
		Work: []sdk.NodeWork{{Node: "worker", Manifests: []string{manifests}}}}); err != nil || d.State != sdk.DeploySucceeded {
		t.Fatalf("deploy the core's store: %+v %v", d, err)
	}
	svc, err := c.Client.CoreV1().Services(cns).Get(ctx, "store", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	port := svc.Spec.Ports[0].NodePort
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("the deployed NodePort's external traffic policy is %q, want Local", svc.Spec.ExternalTrafficPolicy)
	}
	// The tenant's own kubeconfig cannot make a masquerading one.
	cs, _ := tenantClient(t, core)
	masq := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "masq"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
		ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster, Selector: map[string]string{"app": "store"},
		Ports: []corev1.ServicePort{{Port: 8080}}}}
	if _, err := cs.CoreV1().Services(cns).Create(ctx, masq, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "externalTrafficPolicy: Local") {
		t.Errorf("tenant's NodePort Service with externalTrafficPolicy Cluster: %v, want refused by %s", err, nodePortPolicyName)
	}
	pods := waitPods(ctx, t, c.Client, cns, "app=store", 1)
	t.Logf("the store runs on %s", pods[0].Spec.NodeName)

	var storeNode *kubenode.Node
	for _, n := range c.Data.Nodes {
		if n.Name == pods[0].Spec.NodeName {
			storeNode = n
		}
	}
	if storeNode == nil {
		t.Fatalf("the store runs on %q, not one of the test nodes", pods[0].Spec.NodeName)
	}

	// Served from the host, through a forwarder into each node (the node's own address
	// is the client: kube-proxy masquerades it, and the policy admits non-pod addresses).
	for _, n := range c.Data.Nodes {
		fwd, err := nsnet.Forward(ctx, nsnet.Endpoint{Addr: "127.0.0.1:0"},
			nsnet.Endpoint{Netns: n.Netns(), Addr: fmt.Sprintf("%s:%d", n.IP, port)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		httpGet(ctx, t, "http://"+fwd.Addr().String()+"/healthz")
		fwd.Close()
	}
	// From pods on each node: to the port on their own node (status.hostIP, as the IoT
	// edge's agent did) and on the node the store runs on. (With Local, a pod that
	// addresses a third node's port, one with no endpoint of the Service, gets no answer:
	// that node sends it on to the endpoint unmasqueraded and the reply does not come
	// back through it.)
	for i, n := range c.Data.Nodes {
		urls := []string{fmt.Sprintf("http://%s:%d/healthz", n.IP, port)}
		if n != storeNode {
			urls = append(urls, fmt.Sprintf("http://%s:%d/healthz", storeNode.IP, port))
		}
		// A new pod is retried: kube-router admits its address once it has seen the
		// pod's update. Debian's busybox wget has no -T: timeout(1) bounds each try.
		reachAll := "set -e\n"
		for _, u := range urls {
			reachAll += fmt.Sprintf("ok=; for i in $(seq 30); do if timeout 3 wget -q -O /dev/null %s; then echo %s answered at try $i; ok=1; break; fi; sleep 1; done; test -n \"$ok\"\n", u, u)
		}
		if ok, log := probePodOn(ctx, t, c.Client, ens, fmt.Sprintf("same-slice-%d", i), n.Name, reachAll); !ok {
			t.Errorf("a pod of the slice's edge (%s) on %s cannot reach the core's node port %d: %s", ens, n.Name, port, log)
		} else {
			t.Logf("same slice, from %s: %s", n.Name, log)
		}
		// Refused, not merely failed: the policy's REJECT answers at once.
		for j, u := range urls {
			ok, log := probePodOn(ctx, t, c.Client, fns, fmt.Sprintf("other-slice-%d-%d", i, j), n.Name, "timeout 5 wget -q -O /dev/null "+u)
			if ok || !strings.Contains(log, "Connection refused") {
				t.Errorf("a pod of another slice's part (%s) on %s was not refused at the core's node port %s (reached: %v): %s", fns, n.Name, u, ok, log)
			}
		}
	}
}
