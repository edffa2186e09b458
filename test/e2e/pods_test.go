package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest"
)

// The IoT slice from the examples on a cluster with real nodes, through necosd: the
// example service's edge (the project's mosquitto and iot-agent images in one pod) runs;
// an MQTT client in the cluster's hub namespace publishes through the NodePort and the
// agent receives; a CPU-bound load makes the edge's vertical policy fire and the agent's
// limits grow in place; an add-node policy then gives the VDU a second node (a second
// agent replica Running, the slice listing it); decommission leaves no pod and no
// namespace.
func TestIoTSliceOnRealPods(t *testing.T) {
	needRoot(t)
	if !kubetest.Available() {
		plugintest.NeedBackend(t, kubetest.MissingReason)
	}
	if !kubenode.Available() {
		plugintest.NeedBackend(t, kubenode.MissingReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cluster, err := kubetest.Start(ctx, kubetest.Options{RealNodes: 2})
	if err != nil {
		t.Fatalf("start Kubernetes with real nodes: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	t.Logf("cluster with 2 real nodes in %v", cluster.Started)
	fed := newFederation(t)
	influx := testenv.StartInflux(t)
	d := startDaemon(t, kubeCatalogue(t, fed, cluster.Kubeconfig)+influx.MonitorCatalogue())

	// The slice, measured every 2 s so that the policy sees its points within the test.
	slice := strings.ReplaceAll(string(example(t, "iot-dojot.yaml")), "granularity-secs: 10", "granularity-secs: 2")
	r := d.do("demo", "POST", "/v1/slices?wait=true", "text/x-yaml", []byte(slice))
	d.expect(r, 201, "create the IoT slice")
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

	// The example service; its edge grows CPU first (add-cpu, in place), at once after 3
	// points.
	svc := string(exampleService(t, "iot-dojot.yaml"))
	if !strings.Contains(svc, "- action: {type: add-cpu, vdu: k8s-node, value: 1, max: 3}") {
		t.Fatal("the example's edge no longer grows by add-cpu")
	}
	svc = strings.Replace(svc, "timers: {service-redeployment: 30, reactivate-elasticity: 300}",
		"timers: {service-redeployment: 0, reactivate-elasticity: 300}", -1)
	r = d.do("demo", "POST", "/v1/slices/"+created.ID+"/services?wait=true", "text/x-yaml", []byte(svc))
	if r.Status != 201 && r.Status != 200 {
		t.Fatalf("deploy the IoT service: %d %s", r.Status, r.Body)
	}

	ns := partNamespace(t, cluster, "dc-slice2")
	pod := waitRunning(ctx, t, cluster, ns, "app=iotagent-mqtt")
	t.Logf("edge agent pod %s runs on %s", pod.Name, pod.Spec.NodeName)

	// An MQTT client in the hub namespace publishes to the edge's NodePort (the
	// cluster's choice: the example pins none).
	svcObj, err := cluster.Client.CoreV1().Services(ns).Get(ctx, "iotagent-mqtt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePorts := map[string]int32{}
	for _, p := range svcObj.Spec.Ports {
		nodePorts[p.Name] = p.NodePort
	}
	if nodePorts["mqtt"] == 0 || nodePorts["http"] == 0 {
		t.Fatalf("the edge's Service has no node ports: %+v", svcObj.Spec.Ports)
	}
	node := cluster.Data.Nodes[0]
	broker := fmt.Sprintf("%s:%d", node.IP, nodePorts["mqtt"])
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("e2e-device").
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
			return nsnet.Dial(ctx, "tcp", nsnet.Endpoint{Netns: cluster.Data.Hub, Addr: broker})
		})
	client := mqtt.NewClient(opts)
	// Running is not listening: the broker binds its port a moment after its container
	// starts, and kube-proxy programs the NodePort on its own schedule.
	for {
		tok := client.Connect()
		if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("MQTT connect to %s in %s: %v", broker, cluster.Data.Hub, tok.Error())
		}
		time.Sleep(500 * time.Millisecond)
	}
	defer client.Disconnect(100)

	// The agent's HTTP interface through a loopback forwarder on the host.
	fwd, err := nsnet.Forward(ctx, nsnet.Endpoint{Addr: "127.0.0.1:0"},
		nsnet.Endpoint{Netns: node.Netns(), Addr: fmt.Sprintf("%s:%d", node.IP, nodePorts["http"])}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	agent := "http://" + fwd.Addr().String()
	for {
		tok := client.Publish("devices/sensor-1/telemetry", 1, false, `{"temperature": 21.5}`)
		tok.WaitTimeout(10 * time.Second)
		body := get(ctx, t, agent+"/telemetry")
		if strings.Contains(body, `"device":"sensor-1"`) && strings.Contains(body, `"temperature":21.5`) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the agent did not receive the telemetry: %s", body)
		}
		time.Sleep(time.Second) // the agent subscribes once its broker answers
	}

	// Load: the agent burns at its limit (0.5 CPU, beside the broker's 0.05): the worker
	// reads > 80 % of its pods' limits from metrics.k8s.io; 3 such points fire add-cpu on
	// k8s-node (2 -> 3 CPUs): the quota grows and the same pod's limits with it.
	resp, err := http.Post(agent+"/burn?workers=2&for=5m", "", nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("burn: %v %v", resp, err)
	}
	resp.Body.Close()
	begin := time.Now()
	var peak float64
	for {
		peak = max(peak, workerCPU(t, d, created.ID))
		got, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil && ctx.Err() == nil {
			t.Fatalf("agent pod: %v (resized in place, it must stay)", err)
		}
		if err == nil && limitOf(got, "iotagent") == 750 {
			t.Logf("agent CPU limit 500m -> 750m in place %v after the load began (worker CPU up to %.1f %%)",
				time.Since(begin).Round(time.Second), peak)
			break
		}
		if ctx.Err() != nil {
			r := d.do("demo", "GET", "/v1/slices/"+created.ID+"/events", "", nil)
			t.Fatalf("agent CPU limit not grown to 750m (worker CPU up to %.1f %%); events: %s", peak, tail(string(r.Body), 30))
		}
		time.Sleep(time.Second)
	}
	if peak <= 80 {
		t.Errorf("the policy fired while the worker read at most %.1f %% CPU", peak)
	}

	addNode(ctx, t, d, cluster, created.ID, ns)

	d.expect(d.do("demo", "DELETE", "/v1/slices/"+created.ID+"?wait=true", "", nil), 204, "delete the slice")
	deleted = true
	if nss := necosNamespaces(t, cluster); len(nss) != 0 {
		t.Errorf("namespaces left: %v", nss)
	}
	pods, err := cluster.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if strings.HasPrefix(p.Namespace, "necos-") {
			t.Errorf("pod left: %s/%s", p.Namespace, p.Name)
		}
	}
}

// addNode: a policy with add-node on the edge's busy k8s-node (the agent still burns)
// gives the VDU a second node on the real nodes: the part's quota grows by a node's share,
// the agent's Deployment runs a second replica and both its pods are Running, and the
// slice, as the plugin describes the part, lists two k8s-node nodes.
func addNode(ctx context.Context, t *testing.T, d *daemon, cluster *kubetest.Cluster, slice, ns string) {
	t.Helper()
	quota := func() int64 {
		q, err := cluster.Client.CoreV1().ResourceQuotas(ns).Get(ctx, "necos-quota", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("quota of %s: %v", ns, err)
		}
		hard := q.Spec.Hard[corev1.ResourceLimitsCPU]
		if hard.IsZero() {
			hard = q.Spec.Hard[corev1.ResourceRequestsCPU]
		}
		return hard.MilliValue()
	}
	before := quota()
	pol := `policy:
  name: iotagent-nodes
  part: dc-slice2
  operator: '>'
  value: 50
  trigger: {points: 2}
  metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION}
  post-deployment:
    timers: {reactivate-elasticity: 600}
    actions: {vertical: [{action: {type: add-node, vdu: k8s-node, max: 2}}]}
`
	d.expect(d.do("demo", "POST", "/v1/slices/"+slice+"/policies", "text/x-yaml", []byte(pol)), 201, "register the add-node policy")
	begin := time.Now()
	for {
		dep, err := cluster.Client.AppsV1().Deployments(ns).Get(ctx, "iotagent-mqtt", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("agent deployment: %v", err)
		}
		if dep.Spec.Replicas != nil && *dep.Spec.Replicas == 2 && dep.Status.ReadyReplicas == 2 {
			break
		}
		if ctx.Err() != nil {
			r := d.do("demo", "GET", "/v1/slices/"+slice+"/events", "", nil)
			t.Fatalf("the agent's Deployment has not 2 ready replicas after add-node: %+v; events: %s", dep.Status, tail(string(r.Body), 30))
		}
		time.Sleep(time.Second)
	}
	pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=iotagent-mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	running := map[string]string{}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running[p.Name] = p.Spec.NodeName
		}
	}
	if len(running) != 2 {
		t.Errorf("agent pods Running after add-node: %v, want 2", running)
	}
	if after := quota(); after <= before {
		t.Errorf("the part's CPU quota did not grow with the node: %dm -> %dm", before, after)
	} else {
		t.Logf("add-node %v after its policy: agent pods %v, CPU quota %dm -> %dm", time.Since(begin).Round(time.Second), running, before, after)
	}
	nodes := 0
	for _, p := range getSlice(t, d, "demo", slice).Parts {
		if p.Name != "dc-slice2" {
			continue
		}
		for _, n := range p.Nodes {
			if n.VDU == "k8s-node" {
				nodes++
			}
		}
	}
	if nodes != 2 {
		t.Errorf("the slice lists %d k8s-node nodes in dc-slice2 after add-node, want 2", nodes)
	}
}

// workerCPU is the highest of the last CPU points of the edge's workers, as necosd
// stores them from the plugin (not pushed).
func workerCPU(t *testing.T, d *daemon, slice string) float64 {
	t.Helper()
	r := d.do("demo", "GET", "/v1/slices/"+slice+"/metrics?metric=PERCENT_CPU_UTILIZATION&part=dc-slice2&node-type=worker&last=1", "", nil)
	if r.Status != http.StatusOK {
		return 0
	}
	var m struct {
		Series []struct {
			Tags   map[string]string `json:"tags"`
			Points []struct {
				Value float64 `json:"value"`
			} `json:"points"`
		} `json:"series"`
	}
	r.json(t, &m)
	var v float64
	for _, s := range m.Series {
		if s.Tags["source"] == "push" {
			t.Fatalf("pushed CPU points in a slice nobody pushed to: %v", s.Tags)
		}
		for _, p := range s.Points {
			v = max(v, p.Value)
		}
	}
	return v
}

func exampleService(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(), "examples", "services", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// partNamespace finds the namespace of a part by its name label.
func partNamespace(t *testing.T, c *kubetest.Cluster, part string) string {
	t.Helper()
	nss, err := c.Client.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: "necos.io/part=" + part})
	if err != nil || len(nss.Items) != 1 {
		t.Fatalf("namespace of part %s: %v %v", part, nss, err)
	}
	return nss.Items[0].Name
}

func waitRunning(ctx context.Context, t *testing.T, c *kubetest.Cluster, ns, sel string) corev1.Pod {
	t.Helper()
	for {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				return p
			}
		}
		if ctx.Err() != nil {
			b, _ := json.Marshal(pods.Items)
			t.Fatalf("no pod %s running in %s: %s", sel, ns, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func limitOf(p *corev1.Pod, container string) int64 {
	for _, c := range p.Spec.Containers {
		if c.Name == container {
			return c.Resources.Limits.Cpu().MilliValue()
		}
	}
	return 0
}

func get(ctx context.Context, t *testing.T, u string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
