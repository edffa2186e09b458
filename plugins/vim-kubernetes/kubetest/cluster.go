// Package kubetest starts a real Kubernetes cluster on this machine, for tests and for
// the demo: kube-apiserver and etcd through controller-runtime's envtest, plus a
// kube-controller-manager process against it, a fake Node that gives the cluster
// allocatable capacity to count and, with Options.RealNodes, a kube-scheduler and real
// nodes that run pods (kubenode: containerd, runc, kubelet, kube-proxy in network
// namespaces, metrics-server).
//
// The controller-manager is what makes the API server behave like a cluster for slice
// parts: without it ResourceQuota is never enforced (its status stays empty), namespaces
// are never finalized on delete, new namespaces get no "default" ServiceAccount and Jobs
// and Deployments create no pods. Without real nodes there is no kubelet and no
// scheduler: pods stay Pending. The fake Node is tainted so that the scheduler never
// places a pod on it.
//
// The binaries come from KUBEBUILDER_ASSETS (scripts/kube-binaries.sh prints the
// directory), and for real nodes from the variables kubenode names.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
)

var setLogger sync.Once

// EnvAssets names the variable pointing at the directory with the Kubernetes binaries.
const EnvAssets = "KUBEBUILDER_ASSETS"

// MissingReason says how to get the binaries; tests pass it to plugintest.NeedBackend.
const MissingReason = EnvAssets + ": see scripts/kube-binaries.sh"

// Binaries the cluster needs in the assets directory.
var Binaries = []string{"kube-apiserver", "etcd", "kube-controller-manager"}

// Available reports whether KUBEBUILDER_ASSETS holds every binary in [Binaries].
func Available() bool {
	dir := os.Getenv(EnvAssets)
	if dir == "" {
		return false
	}
	for _, b := range Binaries {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// NodeOptions describes the fake Node created at start.
type NodeOptions struct {
	Name   string
	Labels map[string]string
	// CPU, Memory and Storage are the node's allocatable cpu, memory and
	// ephemeral-storage, as Kubernetes quantities ("16", "64Gi", "500Gi").
	CPU, Memory, Storage string
}

// FakeNodeTaint is the taint (NoSchedule) of the nodes AddNode makes.
const FakeNodeTaint = "necos.io/no-kubelet"

// DefaultNode is the node Start creates when Options.Nodes is empty.
var DefaultNode = NodeOptions{
	Name:    "necos-test-node-1",
	Labels:  map[string]string{"necos.io/test-pool": "default"},
	CPU:     "16",
	Memory:  "64Gi",
	Storage: "500Gi",
}

// Options tune Start.
type Options struct {
	// Nodes are created (with allocatable capacity in their status) once the cluster is up.
	// Empty means DefaultNode, unless NoFakeNode.
	Nodes []NodeOptions
	// NoFakeNode creates no fake Node when Nodes is empty: the cluster's capacity is
	// then its real nodes' only.
	NoFakeNode bool
	// ControllerLog receives the controller-manager's output; nil means a file in the
	// cluster's Dir (Cluster.ControllerLogPath).
	ControllerLog *os.File
	// RealNodes, when > 0, runs a kube-scheduler and that many real nodes
	// (kubenode.Available says whether this machine has what they need).
	RealNodes int
	// Dir, when set, holds the cluster's state and logs and is kept after Stop;
	// otherwise a temporary directory is made and removed by Stop.
	Dir string
}

// Cluster is a running control plane.
type Cluster struct {
	// Config talks to the API server as a cluster administrator (system:masters).
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for the same administrator, as a
	// provider would hand it to the plugin.
	Kubeconfig string
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Dir is a scratch directory removed by Stop.
	Dir string
	// ControllerManagerArgs are the flags the controller-manager was started with.
	ControllerManagerArgs []string
	// ControllerLogPath is the controller-manager's log file, unless Options.ControllerLog
	// was given.
	ControllerLogPath string
	// Started says how long the API server and the controller-manager took to be ready
	// (and the real nodes, when there are some).
	Started time.Duration
	// Data is the data plane (real nodes), when Options.RealNodes > 0.
	Data *kubenode.DataPlane
	// APIAddr is the API server's host:port on the host's loopback.
	APIAddr string

	env       *envtest.Environment
	cm        *exec.Cmd
	cmDone    chan error
	sched     *exec.Cmd
	schedDone chan error
	keepDir   bool
}

// Start runs etcd, kube-apiserver and kube-controller-manager on 127.0.0.1 and waits
// until quota, namespace and service-account controllers work. Call Stop when done,
// also after an error.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if !Available() {
		return nil, errors.New(MissingReason)
	}
	begin := time.Now()
	// envtest logs through controller-runtime's logger, which complains with a stack
	// trace when nobody set it; its messages are not wanted in test output.
	setLogger.Do(func() { crlog.SetLogger(logr.Discard()) })
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "necos-kubetest-")
		if err != nil {
			return nil, fmt.Errorf("kubetest: scratch dir: %w", err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kubetest: dir: %w", err)
	}
	c := &Cluster{Dir: dir, keepDir: opts.Dir != ""}
	c.env = &envtest.Environment{
		BinaryAssetsDirectory:    os.Getenv(EnvAssets),
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	api := c.env.ControlPlane.GetAPIServer()
	// envtest turns the ServiceAccount admission plugin off because it runs no
	// controller-manager; we run one, so admission is left as in a real cluster
	// (pods need their ServiceAccount, quota and limit ranges apply).
	api.Configure().Disable("disable-admission-plugins")
	if f, err := os.Create(filepath.Join(dir, "kube-apiserver.log")); err == nil {
		defer f.Close() // the child has its own descriptor
		api.Out, api.Err = f, f
	}
	if opts.RealNodes > 0 {
		dpDir := filepath.Join(dir, "nodes")
		if err := os.MkdirAll(dpDir, 0o700); err != nil {
			_ = c.Stop()
			return nil, err
		}
		dp, err := kubenode.Prepare(kubenode.Options{Dir: dpDir, Nodes: opts.RealNodes})
		c.Data = dp
		if err != nil {
			_ = c.Stop()
			return nil, fmt.Errorf("kubetest: %w", err)
		}
		for k, v := range dp.APIServerFlags() {
			api.Configure().Set(k, v)
		}
	}
	if _, err := c.env.Start(); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("kubetest: start envtest: %w", err)
	}
	admin, err := c.env.AddUser(envtest.User{Name: "necos-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("kubetest: add admin user: %w", err)
	}
	c.Config = rest.CopyConfig(admin.Config())
	kc, err := admin.KubeConfig()
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("kubetest: admin kubeconfig: %w", err)
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("kubetest: write kubeconfig: %w", err)
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("kubetest: clientset: %w", err)
	}
	u, err := url.Parse(c.Config.Host)
	if err != nil || u.Host == "" {
		_ = c.Stop()
		return nil, fmt.Errorf("kubetest: API server address %q: %v", c.Config.Host, err)
	}
	c.APIAddr = u.Host
	if err := c.startControllerManager(opts); err != nil {
		_ = c.Stop()
		return nil, err
	}
	if c.Data != nil {
		if err := c.startScheduler(); err != nil {
			_ = c.Stop()
			return nil, err
		}
		if err := c.Data.Start(ctx, c.APIAddr, kc); err != nil {
			_ = c.Stop()
			return nil, fmt.Errorf("kubetest: real nodes: %w", err)
		}
	}
	nodes := opts.Nodes
	if len(nodes) == 0 && !opts.NoFakeNode {
		nodes = []NodeOptions{DefaultNode}
	}
	for _, n := range nodes {
		if err := c.AddNode(ctx, n); err != nil {
			_ = c.Stop()
			return nil, err
		}
	}
	if err := c.waitControllers(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	c.Started = time.Since(begin)
	return c, nil
}

// ControllerManagerFlags returns the flags to run kube-controller-manager against an
// envtest API server: kubeconfig is a system:masters kubeconfig, certDir envtest's
// certificate directory (it holds the service-account signing key), caFile the API
// server's CA bundle.
func ControllerManagerFlags(kubeconfig, certDir, caFile string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		// Every on-by-default controller: none of them needs a cloud provider any more.
		"--controllers=*",
		// One identity for all controllers: the admin kubeconfig. Per-controller
		// service-account credentials would need the tokens of those accounts first.
		"--use-service-account-credentials=false",
		// Lets the token controller fill legacy token Secrets, should a test make one.
		"--service-account-private-key-file=" + filepath.Join(certDir, "sa-signer.key"),
		// Published as kube-root-ca.crt in every namespace, as in a real cluster.
		"--root-ca-file=" + caFile,
		"--leader-elect=false",
		// No serving port: nothing scrapes it, and it would need delegated auth.
		"--secure-port=0",
		"--bind-address=127.0.0.1",
		// Quota status and namespace deletion are event-driven; short resyncs only bound
		// how long a missed event takes to heal.
		"--resource-quota-sync-period=10s",
		"--namespace-sync-period=10s",
	}
}

func (c *Cluster) startControllerManager(opts Options) error {
	cmKubeconfig := filepath.Join(c.Dir, "controller-manager.kubeconfig")
	user, err := c.env.AddUser(envtest.User{Name: "necos-controller-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("kubetest: controller-manager user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubetest: controller-manager kubeconfig: %w", err)
	}
	if err := os.WriteFile(cmKubeconfig, kc, 0o600); err != nil {
		return fmt.Errorf("kubetest: write controller-manager kubeconfig: %w", err)
	}
	caFile := filepath.Join(c.Dir, "ca.crt")
	if err := os.WriteFile(caFile, c.Config.CAData, 0o600); err != nil {
		return fmt.Errorf("kubetest: write CA: %w", err)
	}
	certDir := c.env.ControlPlane.GetAPIServer().CertDir
	c.ControllerManagerArgs = ControllerManagerFlags(cmKubeconfig, certDir, caFile)
	cmd := exec.Command(filepath.Join(os.Getenv(EnvAssets), "kube-controller-manager"), c.ControllerManagerArgs...)
	out := opts.ControllerLog
	if out == nil {
		c.ControllerLogPath = filepath.Join(c.Dir, "controller-manager.log")
		f, err := os.Create(c.ControllerLogPath)
		if err != nil {
			return fmt.Errorf("kubetest: controller-manager log: %w", err)
		}
		defer f.Close() // the child has its own descriptor
		out = f
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that Stop ends it and nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := kubenode.Start(cmd); err != nil {
		return fmt.Errorf("kubetest: start kube-controller-manager: %w", err)
	}
	c.cm = cmd
	c.cmDone = make(chan error, 1)
	go func() { c.cmDone <- cmd.Wait() }()
	return nil
}

// waitControllers waits until the controllers the slice parts rely on answer: a probe
// namespace gets its default ServiceAccount and a ResourceQuota in it gets its status.
func (c *Cluster) waitControllers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	const ns = "necos-kubetest-probe"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: probe namespace: %w", err)
	}
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}}
	if _, err := c.Client.CoreV1().ResourceQuotas(ns).Create(ctx, q, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: probe quota: %w", err)
	}
	for {
		select {
		case err := <-c.cmDone:
			c.cmDone <- err
			return fmt.Errorf("kubetest: kube-controller-manager exited: %v", err)
		default:
		}
		_, saErr := c.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		got, qErr := c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, "probe", metav1.GetOptions{})
		if saErr == nil && qErr == nil && len(got.Status.Hard) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: controllers not working (default ServiceAccount: %v, quota status: %v): %w",
				saErr, qErr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The probe namespace goes away in the background; its deletion also proves the
	// namespace controller runs, which tests of Delete observe anyway.
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubetest: delete probe namespace: %w", err)
	}
	return nil
}

// AddNode creates a Node object with allocatable capacity. No kubelet runs for it: it
// only gives the cluster capacity to count.
func (c *Cluster) AddNode(ctx context.Context, n NodeOptions) error {
	list := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse(n.CPU),
		corev1.ResourceMemory:           resource.MustParse(n.Memory),
		corev1.ResourceEphemeralStorage: resource.MustParse(n.Storage),
		corev1.ResourcePods:             resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels},
		// Capacity to count, never a place for a pod: no kubelet runs it.
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: FakeNodeTaint, Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{Capacity: list, Allocatable: list,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
				Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}},
	}
	created, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("kubetest: create node %s: %w", n.Name, err)
	}
	// Status on create is kept for nodes today; set it again so that does not matter
	// (the node lifecycle controller may write it meanwhile: retried on conflict).
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := c.Client.CoreV1().Nodes().Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status = node.Status
		_, err = c.Client.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubetest: node %s status: %w", n.Name, err)
	}
	return nil
}

// AddUser returns a REST config for a new user of the cluster (client certificate).
func (c *Cluster) AddUser(name string, groups ...string) (*rest.Config, error) {
	u, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("kubetest: add user %s: %w", name, err)
	}
	return rest.CopyConfig(u.Config()), nil
}

// Stop ends the real nodes, the scheduler and the controller-manager, then the API
// server and etcd, and removes Dir (unless Options.Dir named it).
func (c *Cluster) Stop() error {
	var errs []error
	if c.Data != nil {
		if err := c.Data.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("kubetest: stop nodes: %w", err))
		}
	}
	stopGroup(c.sched, c.schedDone)
	c.sched = nil
	if c.cm != nil && c.cm.Process != nil {
		// SIGTERM to its process group, SIGKILL after a grace period.
		_ = syscall.Kill(-c.cm.Process.Pid, syscall.SIGTERM)
		select {
		case <-c.cmDone:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.cm.Process.Pid, syscall.SIGKILL)
			<-c.cmDone
		}
		c.cm = nil
	}
	if c.env != nil {
		if err := c.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("kubetest: stop envtest: %w", err))
		}
	}
	if c.Dir != "" && !c.keepDir {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startScheduler runs kube-scheduler against the API server, as the controller-manager
// runs, in a process group of its own.
func (c *Cluster) startScheduler() error {
	user, err := c.env.AddUser(envtest.User{Name: "necos-scheduler", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("kubetest: scheduler user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	path := filepath.Join(c.Dir, "scheduler.kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(c.Dir, "scheduler.log"))
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(filepath.Join(os.Getenv(EnvAssets), "kube-scheduler"), "--kubeconfig="+path,
		"--authentication-kubeconfig="+path, "--authorization-kubeconfig="+path,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := kubenode.Start(cmd); err != nil {
		return fmt.Errorf("kubetest: start kube-scheduler: %w", err)
	}
	c.sched, c.schedDone = cmd, make(chan error, 1)
	go func() { c.schedDone <- cmd.Wait() }()
	return nil
}

// stopGroup ends a process group: SIGTERM, SIGKILL after a grace period.
func stopGroup(cmd *exec.Cmd, done chan error) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}
