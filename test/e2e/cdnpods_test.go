package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk/plugintest"
)

// The Touristic CDN example's edges (examples/services/touristic-cdn.yaml, the project's
// necos-cdn image) on a real node, through necosd: the service is Deployed once their pods
// are ready, and each edge serves its region's page on its NodePort and sends the rest to
// the core; a pod of another slice is refused by an edge's pod, one of its own part is
// answered. A service whose pod cannot be scheduled is Applied (202) with the
// scheduler's reason once a step's timeout has passed, and a later GET says Deployed
// once the pod runs. (The core's commands need a real guest: test/e2e's TestRealGuestsCDN runs them.)
func TestCDNEdgesOnRealPods(t *testing.T) {
	needRoot(t)
	if !kubetest.Available() {
		plugintest.NeedBackend(t, kubetest.MissingReason)
	}
	if !kubenode.Available() {
		plugintest.NeedBackend(t, kubenode.MissingReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cluster, err := kubetest.Start(ctx, kubetest.Options{RealNodes: 1})
	if err != nil {
		t.Fatalf("start Kubernetes with a real node: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	t.Logf("cluster with a real node in %v", cluster.Started)
	fed := newFederation(t)
	// A short step timeout: the held service below is answered after it.
	d := startDaemon(t, kubeCatalogue(t, fed, cluster.Kubeconfig), "--service-step-timeout", "10s")

	r := d.do("demo", "POST", "/v1/slices?wait=true", "text/x-yaml", example(t, "touristic-cdn.yaml"))
	d.expect(r, 201, "create the Touristic CDN slice")
	var created struct {
		ID string `json:"id"`
	}
	r.json(t, &created)
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			d.do("demo", "DELETE", "/v1/slices/"+created.ID+"?wait=true", "", nil)
		}
	})
	base := "/v1/slices/" + created.ID + "/services/"

	// The example's edges, as they are; the core's part (commands over SSH) and the
	// elasticity policies (no monitor here) left out.
	svc := string(exampleService(t, "touristic-cdn.yaml"))
	svc = cut(t, svc, "      - dc-slice-part:\n          name: core-dc", "      - dc-slice-part:\n          name: edge-dc-slice-spain")
	svc = cut(t, svc, "          elasticity:\n", "      - dc-slice-part:\n          name: edge-dc-slice-greece")
	begin := time.Now()
	r = d.do("demo", "POST", "/v1/slices/"+created.ID+"/services?wait=true&name=cdn", "text/x-yaml", []byte(svc))
	if r.Status != 201 && r.Status != 202 {
		t.Fatalf("deploy the CDN edges: %d %s", r.Status, r.Body)
	}
	s := waitService(ctx, t, d, base+"cdn", "Deployed")
	t.Logf("CDN edges Deployed %v after the deploy began (first answer %d)", time.Since(begin).Round(time.Millisecond), r.Status)
	if s.Counts.Succeeded != 9 || s.Counts.Total != 9 {
		t.Errorf("steps: %+v", s.Counts)
	}

	// Each edge on its NodePort, through a loopback forwarder into the node's namespace.
	node := cluster.Data.Nodes[0]
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout: 10 * time.Second}
	for i, place := range []string{"spain", "greece", "brazil"} {
		edge := nodePortURL(ctx, t, node, 30080+i)
		var body, server string
		for {
			// kube-proxy programs a NodePort on its own schedule: a moment after Ready.
			if resp, err := noRedirect.Get(edge + "/" + place + "/"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body, server = string(b), resp.Header.Get("X-CDN-Server")
				if resp.StatusCode == http.StatusOK {
					break
				}
			} else {
				body = err.Error()
			}
			if ctx.Err() != nil {
				t.Fatalf("edge %s on :%d: %s", place, 30080+i, body)
			}
			time.Sleep(250 * time.Millisecond)
		}
		title := strings.ToUpper(place[:1]) + place[1:]
		if !strings.Contains(body, "Touristic CDN: "+title) || !strings.Contains(body, "TouristicCDN_sliced") ||
			server != "edge-dc-slice-"+place {
			t.Errorf("edge %s: served by %q: %s", place, server, body)
		}
		resp, err := noRedirect.Get(edge + "/videos/tour.ts")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "http://10.10.1.") ||
			!strings.HasSuffix(loc, "/videos/tour.ts") {
			t.Errorf("edge %s sends the core's content to %d %q, want 302 to the core", place, resp.StatusCode, loc)
		}
	}

	// A pod that cannot be scheduled: Applied (202) after the step's timeout, with the
	// scheduler's reason; Deployed on a later GET once the pod runs.
	held := `slices:
  sliced:
    id: TouristicCDN_sliced
    slice-parts:
      - dc-slice-part:
          name: edge-dc-slice-brazil
          vdus:
            - vdu:
                name: k8s-node
                VIM: KUBERNETES
                manifests:
                  - apiVersion: apps/v1
                    kind: Deployment
                    metadata: {name: held}
                    spec:
                      replicas: 1
                      strategy: {type: Recreate}
                      selector: {matchLabels: {app: held}}
                      template:
                        metadata: {labels: {app: held}}
                        spec:
                          nodeSelector: {necos.io/no-such-node: "yes"}
                          containers:
                            - name: main
                              image: necos.local/busybox:1.35
                              command: [sleep, "3600"]
                              resources:
                                requests: {cpu: 10m, memory: 16Mi}
                                limits: {cpu: 50m, memory: 32Mi}
`
	r = d.do("demo", "POST", "/service_orchestrator/deploy_service", "text/x-yaml", []byte(held))
	if r.Status != http.StatusAccepted || !strings.Contains(string(r.Body), "state: Applied") ||
		!strings.Contains(string(r.Body), "Unschedulable") || !strings.Contains(string(r.Body), "Deployment/held: 0 of 1 replicas available") {
		t.Fatalf("held service: %d %s; want 202 Applied, Unschedulable", r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	if s := getService(t, d, loc); s.State != "Applied" || !strings.Contains(s.Message, "Unschedulable") {
		t.Fatalf("held service read while its pod waits: %s %q", s.State, s.Message)
	}
	ns := partNamespace(t, cluster, "edge-dc-slice-brazil")
	patch := []byte(`{"spec":{"template":{"spec":{"nodeSelector":null}}}}`)
	if _, err := cluster.Client.AppsV1().Deployments(ns).Patch(ctx, "held", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	s = waitService(ctx, t, d, loc, "Deployed")
	t.Logf("held service read Deployed %v after its pod could be scheduled: %s", time.Since(begin).Round(time.Millisecond), s.Message)
	ev := d.do("demo", "GET", "/v1/slices/"+created.ID+"/events", "", nil)
	if !strings.Contains(string(ev.Body), `"service.applied"`) || !strings.Contains(string(ev.Body), "workloads re-checked") {
		t.Errorf("events: no service.applied and re-checked service.deployed: %s", tail(string(ev.Body), 20))
	}

	isolation(ctx, t, d, cluster)

	d.expect(d.do("demo", "DELETE", "/v1/slices/"+created.ID+"?wait=true", "", nil), 204, "delete the slice")
	deleted = true
	if nss := necosNamespaces(t, cluster); len(nss) != 0 {
		t.Errorf("namespaces left: %v", nss)
	}
}

// isolation: the Spain edge's pod (slice TouristicCDN_sliced) answers a pod of its own
// part, and refuses a pod of another slice's part (the IoT slice's edge), kube-router
// enforcing the part's NetworkPolicy; once that policy is removed, the other slice's pod
// gets through (what blocked it was the policy).
func isolation(ctx context.Context, t *testing.T, d *daemon, cluster *kubetest.Cluster) {
	t.Helper()
	r := d.do("demo", "POST", "/v1/slices?wait=true", "text/x-yaml", example(t, "iot-dojot.yaml"))
	d.expect(r, 201, "create the IoT slice")
	var other struct {
		ID string `json:"id"`
	}
	r.json(t, &other)
	defer d.do("demo", "DELETE", "/v1/slices/"+other.ID+"?wait=true", "", nil)
	own, foreign := partNamespace(t, cluster, "edge-dc-slice-spain"), partNamespace(t, cluster, "dc-slice2")
	server := waitRunning(ctx, t, cluster, own, "app=cdn-content")
	url := fmt.Sprintf("http://%s:8080/spain/", server.Status.PodIP)
	// Debian's busybox 1.35 is built without wget's -T: the option makes wget crash
	// (SIGSEGV) before it connects, so the probes bound each try with timeout(1) instead.
	// A new pod is retried: its address joins the policy's allowed set when kube-router
	// has handled the pod's update.
	reach := fmt.Sprintf("for i in $(seq 30); do if timeout 3 wget -q -O /dev/null %s; then echo answered at try $i; exit 0; fi; sleep 1; done; exit 1", url)
	once := fmt.Sprintf("timeout 5 wget -q -O /dev/null %s", url)
	if ok, log := probe(ctx, t, cluster, own, "same-part", reach); !ok {
		t.Fatalf("a pod of the Spain edge's own part cannot reach its pod at %s: %s", url, log)
	} else {
		t.Logf("a new pod of the Spain edge's part is %s", log)
	}
	// Refused, not merely failed: the policy's REJECT answers at once, and a probe that
	// crashed or timed out must not pass for isolation.
	if ok, log := probe(ctx, t, cluster, foreign, "other-slice", once); ok || !strings.Contains(log, "Connection refused") {
		t.Fatalf("a pod of another slice's part (namespace %s) was not refused by the Spain edge's pod at %s (reached: %v): %s",
			foreign, url, ok, log)
	}
	if err := cluster.Client.NetworkingV1().NetworkPolicies(own).Delete(ctx, "necos-isolation", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, log := probe(ctx, t, cluster, foreign, "other-slice-open", reach); !ok {
		t.Errorf("without the part's policy the other slice's pod still cannot reach %s: the block was not the policy: %s", url, log)
	}
}

// probe runs script (sh -c) in a pod of namespace ns and reports whether it exited 0,
// with its output.
func probe(ctx context.Context, t *testing.T, c *kubetest.Cluster, ns, name, script string) (bool, string) {
	t.Helper()
	return probeOn(ctx, t, c, ns, "", name, script)
}

// probeOn is probe on the named node (the scheduler's choice when empty).
func probeOn(ctx context.Context, t *testing.T, c *kubetest.Cluster, ns, node, name, script string) (bool, string) {
	t.Helper()
	one := int64(1)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe-" + name, Namespace: ns},
		Spec: corev1.PodSpec{NodeName: node, RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: &one,
			Containers: []corev1.Container{{Name: "probe", Image: "necos.local/busybox:1.35", ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", script},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")}}}}}}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("probe %s in %s: %v", name, ns, err)
	}
	defer c.Client.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{})
	for {
		got, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && (got.Status.Phase == corev1.PodSucceeded || got.Status.Phase == corev1.PodFailed) {
			out, err := c.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
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

// cut removes from s the text from the first from up to (not including) the next to.
func cut(t *testing.T, s, from, to string) string {
	t.Helper()
	i := strings.Index(s, from)
	j := strings.Index(s[max(i, 0):], to)
	if i < 0 || j < 0 {
		t.Fatalf("the example changed: no %q ... %q", from, to)
	}
	return s[:i] + s[i+j:]
}

// serviceState is what these tests read of a service.
type serviceState struct {
	State   string `json:"state"`
	Message string `json:"message"`
	Counts  struct {
		Total     int `json:"total"`
		Succeeded int `json:"succeeded"`
	} `json:"steps"`
}

func getService(t *testing.T, d *daemon, path string) serviceState {
	t.Helper()
	r := d.do("demo", "GET", path, "", nil)
	d.expect(r, 200, "GET "+path)
	var s serviceState
	r.json(t, &s)
	return s
}

// waitService reads a service until it is in state (each read re-checks an Applied one).
func waitService(ctx context.Context, t *testing.T, d *daemon, path, state string) serviceState {
	t.Helper()
	for {
		s := getService(t, d, path)
		if s.State == state {
			return s
		}
		if s.State == "Failed" || ctx.Err() != nil {
			t.Fatalf("service %s: %s %q, want %s", path, s.State, s.Message, state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
