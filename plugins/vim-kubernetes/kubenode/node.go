package kubenode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	criv1 "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/necos/necos/sdk/nsnet"
)

// Node is one Kubernetes node: containerd, kubelet, kube-proxy and kube-router's
// network-policy controller inside a network namespace of its own; its pods in
// namespaces of theirs, on point-to-point links to it.
type Node struct {
	// Name is the node's name in the cluster and the name of its network namespace.
	Name string
	// IP is the node's address in the cluster network (inside the namespaces only).
	IP string
	// PodCIDR is the range its pods' addresses come from.
	PodCIDR string

	index      int
	dir        string
	cgroups    *cgroupRoot
	api        *nsnet.Forwarder
	containerd *proc
	kubelet    *proc
	proxy      *proc
	firewall   *proc
	sharedRoot bool
}

// Netns is the node's network namespace (a name under /var/run/netns).
func (n *Node) Netns() string { return n.Name }

func (n *Node) path(elem ...string) string { return filepath.Join(append([]string{n.dir}, elem...)...) }

func (n *Node) socket() string { return n.path("containerd", "containerd.sock") }

// start brings the node up: network, API forwarder, containerd with the images, kubelet,
// kube-proxy. It returns once the processes run; the caller waits for the Node to be
// Ready. On error, the caller stops the node (stop undoes whatever was done).
func (n *Node) start(ctx context.Context, d *DataPlane, kubeconfig []byte, cs kubernetes.Interface) error {
	for _, sub := range []string{"containerd/root", "containerd/state", "cni/conf", "cni/ipam", "kubelet", "pod-logs",
		"sysctl", "volume-plugins"} {
		if err := os.MkdirAll(n.path(sub), 0o700); err != nil {
			return err
		}
	}
	if err := makeNodeNet(d.Hub, n.Name, n.index); err != nil {
		return fmt.Errorf("node %s network: %w", n.Name, err)
	}
	fwd, err := nsnet.Forward(context.Background(),
		nsnet.Endpoint{Netns: n.Name, Addr: fmt.Sprintf("127.0.0.1:%d", apiPortInNS)},
		nsnet.Endpoint{Addr: d.apiAddr}, d.forwardError)
	if err != nil {
		return fmt.Errorf("node %s: API server forwarder: %w", n.Name, err)
	}
	n.api = fwd
	if err := os.WriteFile(n.path("kubeconfig"), kubeconfig, 0o600); err != nil {
		return err
	}
	if n.cgroups, err = makeCgroupRoot(n.Name); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := n.startContainerd(ctx, d); err != nil {
		return err
	}
	if err := n.startKubelet(d); err != nil {
		return err
	}
	// kube-proxy reads the node's IPs when it starts and exits when they change (for a
	// supervisor to restart it; there is none here): started before the kubelet had
	// registered the node's address, as on a loaded machine, it read none and exited a
	// few seconds later. It starts once the Node has its InternalIP.
	if err := n.waitAddress(ctx, cs); err != nil {
		return err
	}
	// The network-policy controller comes once the node is registered (startFirewalls).
	return n.startProxy(d)
}

// waitAddress waits until the Node object lists the node's IP as its InternalIP.
func (n *Node) waitAddress(ctx context.Context, cs kubernetes.Interface) error {
	for {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err == nil {
			for _, a := range node.Status.Addresses {
				if a.Type == corev1.NodeInternalIP && a.Address == n.IP {
					return nil
				}
			}
		}
		if err := n.check(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: not registered with its address %s: %w (last: %v)", n.Name, n.IP, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) startContainerd(ctx context.Context, d *DataPlane) error {
	cfg := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
# Plugins that would share fixed paths with every other containerd on the machine.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri"]

[grpc]
  address = %[3]q

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[4]q

[plugins."io.containerd.cri.v1.runtime"]
  # No CAP_SYS_RESOURCE here: nothing may lower its oom_score_adj below containerd's.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %[5]q
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%[6]q]
    conf_dir = %[7]q

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, n.path("containerd", "root"), n.path("containerd", "state"), n.socket(), PauseImage,
		filepath.Join(d.bins.Node, "runc"), d.bins.CNI, n.path("cni", "conf"))
	if err := os.WriteFile(n.path("containerd", "config.toml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	cni := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "necos",
  "plugins": [{
    "type": "ptp",
    "ipMasq": false,
    "mtu": 1500,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}
  }]
}
`, n.PodCIDR, n.path("cni", "ipam"))
	if err := os.WriteFile(n.path("cni", "conf", "10-necos.conflist"), []byte(cni), 0o600); err != nil {
		return err
	}
	// The shim and runc are found on PATH; the CNI plugins on bin_dirs.
	env := []string{"PATH=" + d.bins.Node + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	p, err := startIn(n.Name, n.path("containerd.log"), env,
		filepath.Join(d.bins.Node, "containerd"), "--config", n.path("containerd", "config.toml"))
	if err != nil {
		return err
	}
	n.containerd = p
	ctr := func(args ...string) error {
		return run(ctx, append([]string{filepath.Join(d.bins.Node, "ctr"), "--address", n.socket()}, args...)...)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err, done := p.exited(); done {
			return p.failure(err)
		}
		if ctr("version") == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: containerd does not answer on %s", n.Name, n.socket())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := ctr("-n", "k8s.io", "images", "import", d.bins.Images); err != nil {
		return fmt.Errorf("node %s: import images: %w", n.Name, err)
	}
	return nil
}

func (n *Node) startKubelet(d *DataPlane) error {
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The machine mounts cgroup v1 and keeps it; 1.37 still runs on it when told to.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]q
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: unix://%[2]s
failSwapOn: false
# Inside the node's namespace: its own address and loopback only.
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
podLogsDir: %[3]q
volumePluginDir: %[4]q
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[5]q}
authorization: {mode: Webhook}
# The data plane's cluster DNS (dns.go) on the hub, and no host resolver: pods name the
# cluster's Services and reach nothing outside the cluster's namespaces.
resolvConf: ""
clusterDNS: [%[6]s]
clusterDomain: %[7]s
# No CAP_SYS_RESOURCE: the kubelet cannot lower its own score.
oomScoreAdj: 0
serializeImagePulls: false
maxPods: 110
shutdownGracePeriod: 0s
syncFrequency: 10s
fileCheckFrequency: 20s
nodeStatusReportFrequency: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
`, n.cgroups.path, n.socket(), n.path("pod-logs"), n.path("volume-plugins"), d.kubeletCA, hubIP, ClusterDomain)
	if err := os.WriteFile(n.path("kubelet.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	// The kubelet sets kernel-wide sysctls (vm.overcommit_memory, kernel.panic...) to
	// its liking, or refuses to start when told to protect them: neither may happen to
	// this machine. It runs in a mount namespace of its own where those files read the
	// values it wants (files bound over them there, and only there); its root directory
	// is a shared mount, so the volumes it mounts there reach containerd and runc in the
	// host's mount namespace.
	wants := map[string]string{"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
		"kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000", "kernel/keys/root_maxbytes": "25000000"}
	keys := make([]string, 0, len(wants))
	for k := range wants {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	script := []string{"set -e", "mount --make-rprivate /proc"}
	for _, k := range keys {
		f := n.path("sysctl", strings.ReplaceAll(k, "/", "."))
		if err := os.WriteFile(f, []byte(wants[k]+"\n"), 0o644); err != nil {
			return err
		}
		script = append(script, fmt.Sprintf("mount --bind %q %q", f, "/proc/sys/"+k))
	}
	script = append(script, `exec "$@"`)
	root := n.path("kubelet")
	if err := syscall.Mount(root, root, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("node %s: bind %s: %w", n.Name, root, err)
	}
	n.sharedRoot = true
	if err := syscall.Mount("", root, "", syscall.MS_SHARED, ""); err != nil {
		return fmt.Errorf("node %s: share %s: %w", n.Name, root, err)
	}
	p, err := startIn(n.Name, n.path("kubelet.log"), nil,
		"unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", strings.Join(script, "\n"), "kubelet",
		filepath.Join(d.bins.Kube, "kubelet"),
		"--config="+n.path("kubelet.yaml"),
		"--kubeconfig="+n.path("kubeconfig"),
		"--root-dir="+root,
		"--cert-dir="+n.path("kubelet-pki"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.IP,
		"--node-labels="+strings.Join(d.nodeLabels(n), ","),
		"--v=1")
	if err != nil {
		return err
	}
	n.kubelet = p
	return nil
}

func (n *Node) startProxy(d *DataPlane) error {
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %q}
mode: nftables
hostnameOverride: %q
clusterCIDR: %q
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
# Zeros leave the kernel's conntrack settings alone (some are machine-wide).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, n.path("kubeconfig"), n.Name, podCIDRs)
	if err := os.WriteFile(n.path("kube-proxy.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	p, err := startIn(n.Name, n.path("kube-proxy.log"), nil,
		filepath.Join(d.bins.Kube, "kube-proxy"), "--config="+n.path("kube-proxy.yaml"), "--v=1")
	if err != nil {
		return err
	}
	n.proxy = p
	return nil
}

// startFirewall runs kube-router's network-policy controller alone (no routing, no
// service proxy: CNI ptp routes, kube-proxy serves) in the node's namespace: it keeps
// the namespace's iptables rules and ipsets in step with the cluster's NetworkPolicies
// for the node's pods (whose traffic, on point-to-point links, is forwarded by the node).
// Nothing of it reaches the host's namespace; its health and metrics ports are off.
func (n *Node) startFirewall(d *DataPlane) error {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	p, err := startIn(n.Name, n.path("kube-router.log"), env,
		filepath.Join(d.bins.Node, "kube-router"),
		"--kubeconfig="+n.path("kubeconfig"),
		"--hostname-override="+n.Name,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--run-loadbalancer=false",
		"--enable-ipv4=true", "--enable-ipv6=false",
		"--service-cluster-ip-range="+serviceCIDR,
		"--health-port=0", "--metrics-port=0",
		// A policy change is applied on its event; the full resync repairs the rest.
		"--iptables-sync-period=1m",
		"--v=1")
	if err != nil {
		return err
	}
	n.firewall = p
	return nil
}

// check returns an error when one of the node's processes has ended.
func (n *Node) check() error {
	for _, p := range []*proc{n.containerd, n.kubelet, n.proxy, n.firewall} {
		if p == nil {
			continue
		}
		if err, done := p.exited(); done {
			return fmt.Errorf("node %s: %w", n.Name, p.failure(err))
		}
	}
	return nil
}

// stop ends the node and leaves nothing of it: the kubelet first (so that it restarts
// nothing), every pod sandbox through the CRI (which takes down its containers, its
// network namespace and its addresses), containerd and any shim left, then the mounts,
// the cgroups and the namespace.
func (n *Node) stop() error {
	var errs []error
	n.kubelet.stop(10 * time.Second)
	n.proxy.stop(5 * time.Second)
	// Its rules and sets live in the node's namespace and go with it.
	n.firewall.stop(5 * time.Second)
	if n.containerd != nil {
		if _, done := n.containerd.exited(); !done {
			if err := n.removeSandboxes(); err != nil {
				errs = append(errs, err)
			}
		}
		n.containerd.stop(10 * time.Second)
	}
	killShims(n.socket())
	if err := unmountUnder(n.dir); err != nil {
		errs = append(errs, err)
	}
	if n.sharedRoot {
		n.sharedRoot = false
	}
	if err := n.cgroups.remove(); err != nil {
		errs = append(errs, fmt.Errorf("node %s cgroups: %w", n.Name, err))
	}
	if n.api != nil {
		_ = n.api.Close()
	}
	if err := nsnet.Remove(n.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeSandboxes stops and removes every pod sandbox of the node's containerd.
func (n *Node) removeSandboxes() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+n.socket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("node %s: CRI: %w", n.Name, err)
	}
	defer conn.Close()
	rt := criv1.NewRuntimeServiceClient(conn)
	list, err := rt.ListPodSandbox(ctx, &criv1.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("node %s: list pod sandboxes: %w", n.Name, err)
	}
	var errs []error
	for _, sb := range list.Items {
		if _, err := rt.StopPodSandbox(ctx, &criv1.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop sandbox %s: %w", sb.Id, err))
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &criv1.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove sandbox %s: %w", sb.Id, err))
		}
	}
	return errors.Join(errs...)
}

// killShims kills the runc shims of the containerd listening at address, if any is left.
func killShims(address string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.HasSuffix(args[0], "containerd-shim-runc-v2") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == address {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// unmountUnder unmounts every mount point below dir, deepest first (lazily: a mount a
// dying process still holds goes when it does).
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			p := unescapeMount(fields[4])
			if p == dir || strings.HasPrefix(p, dir+"/") {
				points = append(points, p)
			}
		}
	}
	f.Close()
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) &&
			!errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
