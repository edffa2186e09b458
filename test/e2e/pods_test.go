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
// agent receives; the agent forwards to the core (iotCore: the history lists the devices,
// the GUI shows them, the edge's pods reach the core's); a CPU-bound load makes the edge's vertical policy fire and the agent's
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
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
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
	// cluster's choice: the example pins none) on the agent's node: a part's node ports
	// keep their clients' addresses (externalTrafficPolicy Local), so a client outside
	// the cluster's nodes is served by the nodes that run the Service's pods.
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
	var node *kubenode.Node
	for _, n := range cluster.Data.Nodes {
		if n.Name == pod.Spec.NodeName {
			node = n
		}
	}
	if node == nil {
		t.Fatalf("the agent runs on %q, not one of the test nodes", pod.Spec.NodeName)
	}
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
	agent := nodePortURL(ctx, t, node, int(nodePorts["http"]))
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

	iotCore(ctx, t, cluster, client, ns)

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

// iotCore: devices publishing through the edge's broker reach the core: the agent
// forwards each message to the core's history (by its Service's name in the core's
// namespace, through the cluster's DNS),
// whose device manager (GET /devices) lists every device with the edge it came through
// and its latest readings, and whose history keeps its messages; the GUI's page (node
// port 30001, through a loopback forwarder) shows the slice and the devices with their
// readings. A pod of the edge's part reaches the core's history at its Service address:
// the part's NetworkPolicy admits the slice's other parts.
func iotCore(ctx context.Context, t *testing.T, cluster *kubetest.Cluster, client mqtt.Client, edgeNS string) {
	t.Helper()
	cns := partNamespace(t, cluster, "dc-slice1")
	for _, app := range []string{"history", "gui"} {
		p := waitRunning(ctx, t, cluster, cns, "app="+app)
		t.Logf("core %s pod %s runs on %s", app, p.Name, p.Spec.NodeName)
	}
	cm, err := cluster.Client.CoreV1().ConfigMaps(cns).Get(ctx, "dojot-core", metav1.GetOptions{})
	if err != nil || cm.Data["DOJOT_SLICE"] == "" {
		t.Fatalf("the core's config map: %v %v", cm, err)
	}
	// Node ports answer on every node: the second node's, whoever runs the pods.
	node := cluster.Data.Nodes[len(cluster.Data.Nodes)-1]
	store, gui := nodePortURL(ctx, t, node, 30002), nodePortURL(ctx, t, node, 30001)

	type reading struct {
		Temperature float64 `json:"temperature"`
		GPS         struct {
			Lat float64 `json:"lat"`
		} `json:"gps"`
	}
	devices := []string{"core-sensor-1", "core-sensor-2", "core-sensor-3"}
	begin := time.Now()
	var listed struct {
		Devices []struct {
			ID       string  `json:"device"`
			Edge     string  `json:"edge"`
			Messages int     `json:"messages"`
			Last     reading `json:"last"`
		} `json:"devices"`
	}
	var body string
	// Bounded here rather than by the test's context: forwarding that does not work shows
	// within seconds.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		for i, dev := range devices {
			payload := fmt.Sprintf(`{"temperature": %d.5, "humidity": 50.0, "light": 300, "gps": {"lat": -22.9, "lon": -47.06}}`, 20+i)
			client.Publish("devices/"+dev+"/telemetry", 1, false, payload).WaitTimeout(10 * time.Second)
		}
		body = get(ctx, t, store+"/devices")
		listed.Devices = nil
		_ = json.Unmarshal([]byte(body), &listed)
		found := 0
		for _, d := range listed.Devices {
			for i, dev := range devices {
				if d.ID == dev && d.Edge == "dc-slice2" && d.Messages > 0 && d.Last.Temperature == float64(20+i)+0.5 && d.Last.GPS.Lat == -22.9 {
					found++
				}
			}
		}
		if found == len(devices) {
			break
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			st := get(ctx, t, store+"/stats")
			t.Fatalf("the core's device manager does not list the devices the edge received: %s (stats %s)", body, st)
		}
		time.Sleep(time.Second)
	}
	t.Logf("the core lists the %d devices %v after they first published; devices: %s",
		len(devices), time.Since(begin).Round(time.Millisecond), strings.TrimSpace(body))
	var hist struct {
		Messages []struct {
			Device  string  `json:"device"`
			Edge    string  `json:"edge"`
			Payload reading `json:"payload"`
		} `json:"messages"`
	}
	h := get(ctx, t, store+"/telemetry?device=core-sensor-2&n=1")
	if err := json.Unmarshal([]byte(h), &hist); err != nil || len(hist.Messages) != 1 ||
		hist.Messages[0].Device != "core-sensor-2" || hist.Messages[0].Edge != "dc-slice2" || hist.Messages[0].Payload.Temperature != 21.5 {
		t.Errorf("the core's history of core-sensor-2: %s", h)
	}

	// A pod is Running once its container started, not once its server listens: the
	// GUI's first answers may be resets while it starts (the store's loop above waited
	// for the store alone).
	page := get(ctx, t, gui+"/")
	for !strings.Contains(page, cm.Data["DOJOT_SLICE"]) && ctx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		page = get(ctx, t, gui+"/")
	}
	for _, want := range []string{cm.Data["DOJOT_SLICE"], "<td>core-sensor-1</td>", "<td>core-sensor-2</td>", "<td>core-sensor-3</td>",
		"<td>dc-slice2</td>", ">20.50</td>", ">22.50</td>", "-22.90000, -47.06000", "fetch('devices'"} {
		if !strings.Contains(page, want) {
			t.Errorf("the GUI's page (node port 30001) has no %q:\n%s", want, page)
		}
	}
	if g := get(ctx, t, gui+"/devices"); !strings.Contains(g, `"device":"core-sensor-3"`) {
		t.Errorf("the GUI's device list: %s", g)
	}

	// The agent's way to the core from either node: the history's name, which the
	// cluster's DNS resolves to its ClusterIP; the node port on the pod's own node is
	// answered too (the part's node ports keep the client's address: the edge's pod is
	// admitted as one of the slice's).
	name := fmt.Sprintf("history.%s.svc.%s", cns, kubenode.ClusterDomain)
	for i, n := range cluster.Data.Nodes {
		for j, u := range []string{fmt.Sprintf("http://%s:8080/stats", name), fmt.Sprintf("http://%s:30002/stats", n.IP)} {
			try := fmt.Sprintf("for i in $(seq 30); do if timeout 3 wget -q -O - %s; then exit 0; fi; sleep 1; done; exit 1", u)
			if ok, log := probeOn(ctx, t, cluster, edgeNS, n.Name, fmt.Sprintf("to-core-%d-%d", i, j), try); !ok || !strings.Contains(log, `"received"`) {
				t.Errorf("a pod of the edge's part on %s cannot reach the core's history at %s: %s", n.Name, u, log)
			}
		}
	}

	// Pod to pod across the slice's parts: the core's Service address from the edge.
	svc, err := cluster.Client.CoreV1().Services(cns).Get(ctx, "history", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:8080/stats", svc.Spec.ClusterIP)
	reach := fmt.Sprintf("for i in $(seq 30); do if timeout 3 wget -q -O - %s; then echo; echo answered at try $i; exit 0; fi; sleep 1; done; exit 1", url)
	if ok, log := probe(ctx, t, cluster, edgeNS, "edge-to-core", reach); !ok || !strings.Contains(log, `"received"`) {
		t.Errorf("a pod of the edge's part cannot reach the core's history at %s: %s", url, log)
	} else {
		t.Logf("a new pod of the edge's part reached the core's history at its Service address: %s", log)
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

// nodePortURL is an http:// URL on the host's loopback relayed to a node port of a test
// cluster's node, inside the node's network namespace (the host may contact loopback
// addresses only); the relay closes when the test ends.
func nodePortURL(ctx context.Context, t *testing.T, node *kubenode.Node, port int) string {
	t.Helper()
	fwd, err := nsnet.Forward(ctx, nsnet.Endpoint{Addr: "127.0.0.1:0"},
		nsnet.Endpoint{Netns: node.Netns(), Addr: fmt.Sprintf("%s:%d", node.IP, port)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Close() })
	return "http://" + fwd.Addr().String()
}
