// Package kubenode runs the data plane of a Kubernetes cluster on this machine: real
// nodes (containerd 2, runc, the CNI plugins, kubelet, kube-proxy, and kube-router's
// network-policy controller enforcing NetworkPolicies), each in a network
// namespace of its own, joined by a hub namespace, with metrics-server serving the real
// metrics.k8s.io. The control plane (etcd, kube-apiserver, controller-manager,
// scheduler) is someone else's — kubetest starts one — and listens on the host's
// loopback; the data plane reaches it through loopback forwarders inside its namespaces,
// and the API server reaches the data plane (kubelets, metrics-server) through an egress
// proxy on a unix socket that dials inside the hub. The host namespace never holds
// or contacts any other address.
//
// Use: [Prepare] before the API server starts (it needs [DataPlane.APIServerFlags]),
// then [DataPlane.Start] with the API server's address and an administrator's
// kubeconfig, and [DataPlane.Stop], which leaves nothing behind (pods, mounts, cgroups,
// namespaces). The binaries come from scripts/kube-binaries.sh (kubelet, kube-proxy),
// scripts/node-binaries.sh (containerd, runc, metrics-server) and scripts/images.sh (the
// images every node imports), named by the environment ([EnvNode], [EnvImages]).
package kubenode

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/necos/necos/sdk/lease"
	"github.com/necos/necos/sdk/nsnet"
)

// Environment variables naming the binaries.
const (
	// EnvKube is the directory with kubelet and kube-proxy (scripts/kube-binaries.sh).
	EnvKube = "KUBEBUILDER_ASSETS"
	// EnvNode is the directory with containerd, containerd-shim-runc-v2, ctr, runc,
	// metrics-server and kube-router (scripts/node-binaries.sh).
	EnvNode = "NECOS_KUBE_NODE"
	// EnvImages is the image archive every node imports (scripts/images.sh).
	EnvImages = "NECOS_IMAGES"
	// CNIDir holds Debian's CNI plugins (containernetworking-plugins).
	CNIDir = "/usr/lib/cni"
)

// MissingReason says how to get what the data plane needs.
const MissingReason = EnvNode + ", " + EnvImages + " and " + EnvKube +
	": see scripts/node-binaries.sh, scripts/images.sh and scripts/kube-binaries.sh (and root, for namespaces)"

// PauseImage is the sandbox image, built by scripts/images.sh.
const PauseImage = "necos.local/pause:3.10"

// Binaries are the programs and images of the data plane.
type Binaries struct {
	Kube, Node, CNI, Images string
}

// FindBinaries reads the environment and checks that every program is there.
func FindBinaries() (Binaries, error) {
	b := Binaries{Kube: os.Getenv(EnvKube), Node: os.Getenv(EnvNode), CNI: CNIDir, Images: os.Getenv(EnvImages)}
	var missing []string
	need := map[string][]string{
		b.Kube: {"kubelet", "kube-proxy"},
		b.Node: {"containerd", "containerd-shim-runc-v2", "ctr", "runc", "metrics-server", "kube-router"},
		b.CNI:  {"ptp", "host-local", "loopback"},
	}
	for dir, files := range need {
		for _, f := range files {
			if fi, err := os.Stat(filepath.Join(dir, f)); dir == "" || err != nil || fi.IsDir() {
				missing = append(missing, filepath.Join(dir, f))
			}
		}
	}
	if fi, err := os.Stat(b.Images); b.Images == "" || err != nil || fi.IsDir() {
		missing = append(missing, "images archive "+b.Images)
	}
	// kube-router's firewall programs the node's namespace with these (Debian's iptables
	// and ipset).
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore", "ipset"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (Debian package "+map[bool]string{true: "ipset", false: "iptables"}[tool == "ipset"]+")")
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("kubenode: missing %v (%s)", missing, MissingReason)
	}
	return b, nil
}

// Available reports whether FindBinaries would succeed.
func Available() bool {
	_, err := FindBinaries()
	return err == nil
}

// Options tune Prepare.
type Options struct {
	// Dir holds the data plane's state; it must exist and is not removed by Stop.
	Dir string
	// Nodes is how many nodes to run (default 2).
	Nodes int
	// Labels are put on every node.
	Labels map[string]string
}

// DataPlane is the nodes of one cluster and what joins them to its control plane.
type DataPlane struct {
	// ID is random and names the namespaces and cgroups: several clusters may run on the
	// machine at once.
	ID string
	// Hub is the hub namespace: every node's and pod's address is reachable from it.
	Hub string
	// Nodes are the cluster's nodes.
	Nodes []*Node
	// Dir holds the state, the logs and the configuration of every part.
	Dir string
	// Started is how long Start took, until every node was Ready and metrics.k8s.io
	// answered.
	Started time.Duration

	opts      Options
	bins      Binaries
	egress    *egress
	flags     map[string]string
	kubeletCA string
	msCert    [2]string
	apiAddr   string
	hubAPI    *nsnet.Forwarder
	dns       *DNSServer
	metrics   *proc
	stopOnce  sync.Once
	stopErr   error
	lease     *lease.Lease // held until Stop has removed everything (lease.go)
}

// Prepare makes the hub namespace, the certificates and the egress proxy: what the API
// server's flags point at. Call Stop when done, also after an error.
func Prepare(opts Options) (*DataPlane, error) {
	bins, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	if opts.Nodes <= 0 {
		opts.Nodes = 2
	}
	if opts.Nodes > maxNodes {
		return nil, fmt.Errorf("kubenode: nodes: at most %d, got %d", maxNodes, opts.Nodes)
	}
	if fi, err := os.Stat(opts.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("kubenode: dir: expected an existing directory, got %q", opts.Dir)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	d := &DataPlane{ID: hex.EncodeToString(b), Dir: opts.Dir, opts: opts, bins: bins}
	// What data planes of dead processes left (lease.go); a failure there is not this
	// data plane's, and is tried again at the next Prepare.
	_, _ = sweepLeases()
	if d.lease, err = takeLease(d.ID, d.Dir); err != nil {
		return d, err
	}
	d.Hub = "necos-k" + d.ID + "-hub"
	if err := makeHub(d.Hub); err != nil {
		return d, fmt.Errorf("kubenode: hub: %w", err)
	}
	pkiDir := filepath.Join(d.Dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return d, err
	}
	// Who may call kubelets: the API server (logs, exec) and metrics-server.
	kubeletCA, err := newPKI(pkiDir, "kubelet-client")
	if err != nil {
		return d, err
	}
	d.kubeletCA = kubeletCA.CAFile()
	apiCert, apiKey, err := kubeletCA.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return d, err
	}
	msCert, msKey, err := kubeletCA.issue("metrics-server-kubelet-client", "necos-metrics-server", "system:masters")
	if err != nil {
		return d, err
	}
	d.msCert = [2]string{msCert, msKey}
	// The aggregation layer: the API server vouches for its callers to metrics-server.
	front, err := newPKI(pkiDir, "front-proxy")
	if err != nil {
		return d, err
	}
	proxyCert, proxyKey, err := front.issue("front-proxy-client", "front-proxy-client")
	if err != nil {
		return d, err
	}
	if d.egress, err = startEgress(filepath.Join(d.Dir, "egress.sock"), d.Hub); err != nil {
		return d, err
	}
	egressFile := filepath.Join(d.Dir, "egress-selector.yaml")
	if err := d.egress.writeConfig(egressFile); err != nil {
		return d, err
	}
	d.flags = map[string]string{
		"egress-selector-config-file": egressFile,
		// Node names resolve nowhere: kubelets are reached at their addresses.
		"kubelet-preferred-address-types":    "InternalIP",
		"kubelet-client-certificate":         apiCert,
		"kubelet-client-key":                 apiKey,
		"requestheader-client-ca-file":       front.CAFile(),
		"requestheader-allowed-names":        "front-proxy-client",
		"requestheader-username-headers":     "X-Remote-User",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"proxy-client-cert-file":             proxyCert,
		"proxy-client-key-file":              proxyKey,
	}
	for i := 1; i <= opts.Nodes; i++ {
		d.Nodes = append(d.Nodes, &Node{Name: fmt.Sprintf("necos-k%s-n%d", d.ID, i), IP: nodeIP(i),
			PodCIDR: nodePodCIDR(i), index: i, dir: filepath.Join(d.Dir, fmt.Sprintf("node%d", i))})
	}
	return d, nil
}

// APIServerFlags are the flags (without "--") the API server needs for this data plane:
// its egress selector, its client certificate for kubelets, the aggregation layer.
func (d *DataPlane) APIServerFlags() map[string]string { return d.flags }

func (d *DataPlane) nodeLabels(n *Node) []string {
	out := []string{"necos.io/node-index=" + fmt.Sprint(n.index)}
	for k, v := range d.opts.Labels {
		out = append(out, k+"="+v)
	}
	return out
}

// Start runs the nodes against the API server at apiAddr (host:port on the host's
// loopback) with the administrator kubeconfig admin, and metrics-server; it returns when
// every node is Ready and metrics.k8s.io is served.
func (d *DataPlane) Start(ctx context.Context, apiAddr string, admin []byte) error {
	begin := time.Now()
	host, _, err := net.SplitHostPort(apiAddr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("kubenode: API server address: expected a loopback host:port, got %q", apiAddr)
	}
	d.apiAddr = apiAddr
	inNS, err := kubeconfigAt(admin, fmt.Sprintf("https://127.0.0.1:%d", apiPortInNS))
	if err != nil {
		return err
	}
	restCfg, err := clientcmd.RESTConfigFromKubeConfig(admin)
	if err != nil {
		return fmt.Errorf("kubenode: admin kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	if d.dns, err = startDNS(ctx, d.Hub, cs); err != nil {
		return err
	}
	// The nodes come up side by side: most of the time is each waiting on its own
	// processes.
	errs := make([]error, len(d.Nodes))
	var wg sync.WaitGroup
	for i, n := range d.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.start(ctx, d, inNS, cs)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := d.startMetricsServer(inNS); err != nil {
		return err
	}
	if err := d.waitReady(ctx, cs, restCfg); err != nil {
		return err
	}
	if err := d.startFirewalls(ctx); err != nil {
		return err
	}
	d.Started = time.Since(begin)
	return nil
}

// startFirewalls runs every node's network-policy controller, once the nodes are
// registered (kube-router finds its node by its Node object, and exits when there is
// none), and waits until each has programmed its namespace (its top-level chain exists).
func (d *DataPlane) startFirewalls(ctx context.Context) error {
	for _, n := range d.Nodes {
		if err := n.startFirewall(d); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, n := range d.Nodes {
		for {
			if err, done := n.firewall.exited(); done {
				return fmt.Errorf("node %s: %w", n.Name, n.firewall.failure(err))
			}
			if run(wctx, "nsenter", "--net="+nsnet.Path(n.Name), "iptables", "-w", "-S", "KUBE-ROUTER-FORWARD") == nil {
				break
			}
			if wctx.Err() != nil {
				return fmt.Errorf("node %s: kube-router programmed no rules within a minute (log: %s)", n.Name, n.path("kube-router.log"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// kubeconfigAt returns kubeconfig with every cluster's server set to server.
func kubeconfigAt(kubeconfig []byte, server string) ([]byte, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubenode: kubeconfig: %w", err)
	}
	for _, c := range cfg.Clusters {
		c.Server = server
	}
	return clientcmd.Write(*cfg)
}

// startMetricsServer runs metrics-server in the hub, where it reaches every kubelet, and
// registers it as the metrics.k8s.io API.
func (d *DataPlane) startMetricsServer(kubeconfig []byte) error {
	fwd, err := nsnet.Forward(context.Background(),
		nsnet.Endpoint{Netns: d.Hub, Addr: fmt.Sprintf("127.0.0.1:%d", apiPortInNS)},
		nsnet.Endpoint{Addr: d.apiAddr}, d.forwardError)
	if err != nil {
		return fmt.Errorf("kubenode: hub API forwarder: %w", err)
	}
	d.hubAPI = fwd
	dir := filepath.Join(d.Dir, "metrics-server")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		return err
	}
	p, err := startIn(d.Hub, filepath.Join(d.Dir, "metrics-server.log"), nil,
		filepath.Join(d.bins.Node, "metrics-server"),
		"--kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc,
		"--bind-address="+hubIP, fmt.Sprintf("--secure-port=%d", metricsPort), "--cert-dir="+dir,
		// Kubelets serve self-signed certificates; metrics-server proves who it is with
		// a certificate they trust.
		"--kubelet-insecure-tls", "--kubelet-preferred-address-types=InternalIP",
		"--kubelet-client-certificate="+d.msCert[0], "--kubelet-client-key="+d.msCert[1],
		"--metric-resolution=10s", "--kubelet-request-timeout=5s", "--v=1")
	if err != nil {
		return err
	}
	d.metrics = p
	return nil
}

const metricsPort = 4443

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// waitReady registers metrics-server and waits until every node is Ready and
// metrics.k8s.io answers with every node's metrics.
func (d *DataPlane) waitReady(ctx context.Context, cs kubernetes.Interface, cfg *rest.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	// The API server reaches metrics-server by this name: the egress proxy dials it
	// inside the hub.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "metrics-server", Namespace: "kube-system"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: hubIP,
			Ports: []corev1.ServicePort{{Name: "https", Port: metricsPort}}}}
	if _, err := cs.CoreV1().Services("kube-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubenode: metrics-server service: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	apiSvc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1beta1.metrics.k8s.io"},
		"spec": map[string]any{
			"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": int64(100),
			"versionPriority": int64(100), "insecureSkipTLSVerify": true,
			"service": map[string]any{"namespace": "kube-system", "name": "metrics-server", "port": int64(metricsPort)},
		},
	}}
	if _, err := dyn.Resource(apiServiceGVR).Create(ctx, apiSvc, metav1.CreateOptions{}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubenode: metrics APIService: %w", err)
	}
	var why string
	for {
		if err := d.Check(); err != nil {
			return err // a process ended: waiting longer changes nothing
		}
		why = d.notReady(ctx, cs)
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubenode: data plane not ready: %s", why)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// notReady says what is not ready yet, or "".
func (d *DataPlane) notReady(ctx context.Context, cs kubernetes.Interface) string {
	for _, n := range d.Nodes {
		if err := n.check(); err != nil {
			return err.Error()
		}
	}
	if d.metrics != nil {
		if err, done := d.metrics.exited(); done {
			return d.metrics.failure(err).Error()
		}
	}
	for _, n := range d.Nodes {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Sprintf("node %s: %v", n.Name, err)
		}
		ready := false
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return fmt.Sprintf("node %s is not Ready", n.Name)
		}
	}
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").DoRaw(ctx)
	if err != nil {
		return fmt.Sprintf("metrics.k8s.io: %v", err)
	}
	for _, n := range d.Nodes {
		if !containsName(raw, n.Name) {
			return fmt.Sprintf("metrics.k8s.io has no metrics of node %s yet", n.Name)
		}
	}
	return ""
}

func containsName(raw []byte, name string) bool {
	return len(raw) > 0 && bytes.Contains(raw, []byte(`"name":"`+name+`"`))
}

// forwardError records why a forwarder could not relay a connection.
func (d *DataPlane) forwardError(err error) {
	f, ferr := os.OpenFile(filepath.Join(d.Dir, "forwarders.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if ferr != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %v\n", time.Now().Format(time.RFC3339Nano), err)
}

// Check returns an error when a process of the data plane has ended.
func (d *DataPlane) Check() error {
	if d.metrics != nil {
		if err, done := d.metrics.exited(); done {
			return d.metrics.failure(err)
		}
	}
	for _, n := range d.Nodes {
		if err := n.check(); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends metrics-server and every node and removes their namespaces, mounts and
// cgroups. The state directory stays (logs). Safe to call more than once.
func (d *DataPlane) Stop() error {
	d.stopOnce.Do(func() {
		var errs []error
		d.metrics.stop(5 * time.Second)
		if d.hubAPI != nil {
			_ = d.hubAPI.Close()
		}
		if d.dns != nil {
			_ = d.dns.Close()
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, n := range d.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.stop(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if d.egress != nil {
			_ = d.egress.Close()
		}
		if d.Hub != "" {
			if err := nsnet.Remove(d.Hub); err != nil {
				errs = append(errs, err)
			}
		}
		d.stopErr = errors.Join(errs...)
		if d.stopErr == nil {
			d.lease.Release()
		}
	})
	return d.stopErr
}
