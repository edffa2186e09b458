package kubevim

import (
	"context"
	"maps"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk"
)

// tenantClient is a clientset built from the part's credential, as the tenant uses it.
func tenantClient(t *testing.T, part sdk.Part) (kubernetes.Interface, string) {
	t.Helper()
	if part.Credential.Kind != sdk.CredentialKubeconfig {
		t.Fatalf("credential kind %q", part.Credential.Kind)
	}
	cc, err := clientcmd.Load([]byte(part.Credential.Secret))
	if err != nil {
		t.Fatalf("tenant kubeconfig: %v", err)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*cc, nil).ClientConfig()
	if err != nil {
		t.Fatalf("tenant kubeconfig: %v", err)
	}
	ns := cc.Contexts[cc.CurrentContext].Namespace
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, ns
}

func TestPartLifecycle(t *testing.T) {
	c := needCluster(t)
	p := newPlugin(t, nil)
	ctx := context.Background()
	spec := partSpec(t, "core-dc", master(), worker(2, 1, 256))
	spec.Labels = map[string]string{"team": "iot", "bad key!": "x"}

	before, err := p.Offer(ctx, sdk.OfferRequest{Part: spec})
	if err != nil || !before.Accepted {
		t.Fatalf("offer: %+v %v", before, err)
	}
	if want := allocatable(t, c); before.Capacity != want {
		t.Errorf("capacity %+v, want the nodes' allocatable %+v", before.Capacity, want)
	}
	if before.PricePerDay != 3 {
		t.Errorf("price %v, want 3 (3 nodes at 1 a day)", before.PricePerDay)
	}

	begin := time.Now()
	part := create(t, p, spec)
	t.Logf("create part: %v", time.Since(begin))
	if part.State != sdk.StateReady {
		t.Errorf("state %q (%s)", part.State, part.Message)
	}
	var names []string
	for _, n := range part.Nodes {
		names = append(names, n.Name+":"+n.Type+":"+n.State)
	}
	if got := strings.Join(names, ","); got != "master-1:master:running,worker-1:worker:running,worker-2:worker:running" {
		t.Errorf("nodes %s", got)
	}
	if part.Allocated != (sdk.Resources{CPUs: 3, MemoryMB: 1024, StorageGB: 1, Nodes: 3}) {
		t.Errorf("allocated %+v", part.Allocated)
	}
	u, _ := url.Parse(c.Config.Host)
	if port, _ := strconv.Atoi(u.Port()); part.VIMRef.IPAPI != u.Hostname() || part.VIMRef.PortAPI != port {
		t.Errorf("vim-ref %+v, want %s", part.VIMRef, u.Host)
	}
	if d := time.Until(part.Credential.Expires); d < 50*time.Minute || d > 61*time.Minute {
		t.Errorf("token expires in %v, want about 1h", d)
	}

	ns := part.Attributes["namespace"]
	if ns != "necos-testpartlifecycle-core-dc" {
		t.Errorf("namespace %q", ns)
	}
	got, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{labelSlice: "testpartlifecycle", labelSliceKey: sliceKey("testpartlifecycle"),
		labelPart: "core-dc", labelTenant: "tenant-core-dc",
		labelProvider: "test", labelManagedBy: "necos", labelPodSec: "baseline", "team": "iot"} {
		if got.Labels[k] != v {
			t.Errorf("namespace label %s = %q, want %q", k, got.Labels[k], v)
		}
	}
	if _, ok := got.Labels["bad key!"]; ok {
		t.Error("invalid label key applied")
	}
	q, err := c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, quotaName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[corev1.ResourceName]string{corev1.ResourceRequestsCPU: "3", corev1.ResourceLimitsMemory: "1Gi",
		corev1.ResourceRequestsStorage: "1Gi", corev1.ResourcePods: "330"} {
		if h := q.Status.Hard[k]; h.Cmp(resource.MustParse(v)) != 0 {
			t.Errorf("enforced quota %s = %s, want %s", k, h.String(), v)
		}
	}
	lr, err := c.Client.CoreV1().LimitRanges(ns).Get(ctx, limitRangeName, metav1.GetOptions{})
	if err != nil || len(lr.Spec.Limits) != 1 || lr.Spec.Limits[0].Default.Memory().String() != "256Mi" {
		t.Errorf("limit range (default memory capped at the smallest node): %+v %v", lr, err)
	}
	// Ingress from the namespace's pods, the slice's other parts' pods and (pod_cidrs
	// given) every address outside the pod network.
	np, err := c.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, netPolName, metav1.GetOptions{})
	if err != nil || len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 3 {
		t.Fatalf("network policy: %+v %v", np, err)
	}
	from := np.Spec.Ingress[0].From
	if from[0].PodSelector == nil || from[0].NamespaceSelector != nil ||
		from[1].PodSelector != nil || from[1].NamespaceSelector == nil ||
		!maps.Equal(from[1].NamespaceSelector.MatchLabels, map[string]string{labelManagedBy: managedBy, labelSliceKey: sliceKey("testpartlifecycle")}) ||
		from[2].IPBlock == nil || from[2].IPBlock.CIDR != "0.0.0.0/0" {
		t.Errorf("network policy peers: %+v", from)
	}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Get(ctx, tenantName, metav1.GetOptions{}); err != nil {
		t.Errorf("role binding: %v", err)
	}

	// Repeated Create and Describe: the same part and the same (stored) credential. A
	// part's namespace made before it had its slice's key gets it then.
	if _, err := c.Client.CoreV1().Namespaces().Patch(ctx, ns, types.JSONPatchType,
		[]byte(`[{"op": "remove", "path": "/metadata/labels/necos.io~1slice-key"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	again, err := p.Create(ctx, sdk.CreateRequest{Part: spec})
	if got, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil ||
		got.Labels[labelSliceKey] != sliceKey("testpartlifecycle") {
		t.Errorf("the slice's key after a repeated create: %v %v", got.Labels, err)
	}
	if err != nil || again.Credential.Secret != part.Credential.Secret || len(again.Nodes) != 3 {
		t.Errorf("second create: %v (same credential: %v)", err, again.Credential.Secret == part.Credential.Secret)
	}
	desc, err := p.Describe(ctx, sdk.DescribeRequest{Ref: spec.Ref})
	if err != nil || desc.Nodes[0].ID != part.Nodes[0].ID || desc.Credential.Secret != part.Credential.Secret {
		t.Errorf("describe: %+v %v", desc, err)
	}

	after, err := p.Offer(ctx, sdk.OfferRequest{Part: spec})
	if err != nil {
		t.Fatal(err)
	}
	other := spec
	other.Ref.PartID = "another"
	afterOther, err := p.Offer(ctx, sdk.OfferRequest{Part: other})
	if err != nil {
		t.Fatal(err)
	}
	if after.Free != before.Free {
		t.Errorf("offer for the existing part: free %+v, want %+v (the part itself left out)", after.Free, before.Free)
	}
	if want := before.Free.Sub(part.Allocated); afterOther.Free.CPUs != want.CPUs || afterOther.Free.MemoryMB != want.MemoryMB {
		t.Errorf("offer for another part: free %+v, want %+v", afterOther.Free, want)
	}

	begin = time.Now()
	if err := p.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	t.Logf("delete part: %v", time.Since(begin))
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace after delete: %v", err)
	}
	_, err = p.Describe(ctx, sdk.DescribeRequest{Ref: spec.Ref})
	wantCode(t, "describe after delete", err, sdk.CodeNotFound)
	if err := p.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

func TestTenantAccess(t *testing.T) {
	c := needCluster(t)
	u, _ := url.Parse(c.Config.Host)
	// The public endpoint differs from the provider's address; the certificate is checked
	// against the provider's name.
	p := newPlugin(t, map[string]any{"api_endpoint": "localhost:" + u.Port()})
	ctx := context.Background()
	a := create(t, p, partSpec(t, "a", worker(1, 1, 512)))
	b := create(t, p, partSpec(t, "b", worker(1, 1, 512)))
	if a.VIMRef.IPAPI != "localhost" {
		t.Errorf("vim-ref %+v, want the configured endpoint", a.VIMRef)
	}
	cs, ns := tenantClient(t, a)
	if ns != a.Attributes["namespace"] {
		t.Fatalf("kubeconfig namespace %q, want %q", ns, a.Attributes["namespace"])
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Errorf("deployment in its own namespace: %v", err)
	}
	if _, err := cs.AppsV1().Deployments(b.Attributes["namespace"]).Create(ctx, dep, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("deployment in another slice's namespace: %v, want Forbidden", err)
	}
	forbidden := map[string]error{}
	_, forbidden["list namespaces"] = cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	_, forbidden["list nodes"] = cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	_, forbidden["create cluster role"] = cs.RbacV1().ClusterRoles().Create(ctx,
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "escalate"}}, metav1.CreateOptions{})
	_, forbidden["list pods of all namespaces"] = cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	forbidden["delete its quota"] = cs.CoreV1().ResourceQuotas(ns).Delete(ctx, quotaName, metav1.DeleteOptions{})
	_, forbidden["bind cluster-admin"] = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: tenantName, Namespace: ns}},
	}, metav1.CreateOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("get its own namespace: %v", err)
	}
	if _, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, quotaName, metav1.GetOptions{}); err != nil {
		t.Errorf("read its quota: %v", err)
	}
	// A privileged pod breaks out of any share: Pod Security (baseline) refuses it.
	priv := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "priv"}, Spec: corev1.PodSpec{HostNetwork: true,
		Containers: []corev1.Container{{Name: "c", Image: "necos.local/absent:0", ImagePullPolicy: corev1.PullNever}}}}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, priv, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("host-network pod: %v, want Forbidden", err)
	}
}

// quotaPod is a pod requesting cpus CPUs that never runs: its image is on no node and is
// never pulled (nothing is pulled here), so it stays Pending.
func quotaPod(name string, cpus string) *corev1.Pod {
	rl := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpus), corev1.ResourceMemory: resource.MustParse("64Mi")}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Image: "necos.local/absent:0", ImagePullPolicy: corev1.PullNever,
			Resources: corev1.ResourceRequirements{Requests: rl, Limits: rl}}}}}
}

func TestQuotaResizeScale(t *testing.T) {
	p := newPlugin(t, nil)
	ctx := context.Background()
	spec := partSpec(t, "edge", worker(1, 1, 512))
	part := create(t, p, spec)
	cs, ns := tenantClient(t, part)

	_, err := cs.CoreV1().Pods(ns).Create(ctx, quotaPod("big", "2"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "exceeded quota") {
		t.Fatalf("pod over the quota: %v, want Forbidden (exceeded quota)", err)
	}
	part, err = p.Resize(ctx, sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", CPUs: 3})
	if err != nil {
		t.Fatalf("resize: %v", err)
	}
	if part.Allocated.CPUs != 3 || part.Nodes[0].CPUs != 3 {
		t.Errorf("after resize: %+v", part.Allocated)
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, quotaPod("big", "2"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("pod after resize: %v", err)
	}

	_, err = p.Resize(ctx, sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", CPUs: 1})
	wantCode(t, "shrink below use", err, sdk.CodeFailedPrecondition)
	if err != nil && !strings.Contains(err.Error(), "requests.cpu: 2 in use") {
		t.Errorf("shrink refusal does not say why: %v", err)
	}
	_, err = p.Scale(ctx, sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: 0})
	wantCode(t, "scale to zero under use", err, sdk.CodeFailedPrecondition)
	_, err = p.Resize(ctx, sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", CPUs: 100})
	wantCode(t, "resize beyond capacity", err, sdk.CodeResourceExhausted)

	part, err = p.Scale(ctx, sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: 2})
	if err != nil {
		t.Fatalf("scale: %v", err)
	}
	if len(part.Nodes) != 2 || part.Allocated.CPUs != 6 || part.Nodes[1].Name != "worker-2" {
		t.Errorf("after scale: %+v", part)
	}
	if part.Used.CPUs != 2 || part.Attributes["pods.pending"] != "1" {
		t.Errorf("used %+v, attributes %v", part.Used, part.Attributes)
	}

	// metrics.k8s.io measures what runs: the pod's image is not on the nodes, nothing
	// runs, nothing is used (requested CPU is not used CPU).
	samples, err := p.Metrics(ctx, sdk.MetricsRequest{Ref: spec.Ref})
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	if len(samples) != 6 {
		t.Errorf("%d samples, want 3 metrics × 2 nodes", len(samples))
	}
	for _, s := range samples {
		if s.Value != 0 {
			t.Errorf("%s %s = %v, want 0: nothing runs", s.Node, s.Metric, s.Value)
		}
	}
}

func TestRestartAndRenewal(t *testing.T) {
	p1 := newPlugin(t, map[string]any{"token_ttl": "10m"})
	ctx := context.Background()
	spec := partSpec(t, "dc", master(), worker(1, 1, 256))
	first := create(t, p1, spec)

	// A new process knows the part from the cluster alone.
	p2 := newPlugin(t, map[string]any{"token_ttl": "10m"})
	again, err := p2.Describe(ctx, sdk.DescribeRequest{Ref: spec.Ref})
	if err != nil {
		t.Fatalf("describe after restart: %v", err)
	}
	if again.Credential.Secret != first.Credential.Secret || again.Nodes[1].ID != first.Nodes[1].ID || again.Name != "dc" {
		t.Errorf("after restart the part differs: %+v", again)
	}
	// Eight of ten minutes later less than a third is left: Describe renews.
	p2.now = func() time.Time { return time.Now().Add(8 * time.Minute) }
	renewed, err := p2.Describe(ctx, sdk.DescribeRequest{Ref: spec.Ref})
	if err != nil {
		t.Fatalf("describe near expiry: %v", err)
	}
	if renewed.Credential.Secret == first.Credential.Secret || renewed.Credential.Expires.Before(first.Credential.Expires) {
		t.Errorf("credential not renewed: expires %v, was %v", renewed.Credential.Expires, first.Credential.Expires)
	}
	cs, ns := tenantClient(t, renewed)
	if _, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("renewed credential: %v", err)
	}
	scaled, err := p2.Scale(ctx, sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: 2})
	if err != nil || len(scaled.Nodes) != 3 {
		t.Errorf("scale after restart: %v", err)
	}
	if d, err := p1.Describe(ctx, sdk.DescribeRequest{Ref: spec.Ref}); err != nil || len(d.Nodes) != 3 {
		t.Errorf("the first process sees the change: %v", err)
	}
}

func TestOfferCapacity(t *testing.T) {
	ctx := context.Background()
	spec := partSpec(t, "p", master(), worker(2, 1, 256))
	none := newPlugin(t, map[string]any{"node_labels": map[string]string{"necos.io/test-pool": "no-such-pool"}})
	o, err := none.Offer(ctx, sdk.OfferRequest{Part: spec})
	if err != nil || o.Accepted || !strings.Contains(o.Reason, "CPUs") {
		t.Errorf("offer with no node selected: %+v %v", o, err)
	}
	_, err = none.Create(ctx, sdk.CreateRequest{Part: spec})
	wantCode(t, "create with no capacity", err, sdk.CodeResourceExhausted)
	if _, err := none.Describe(ctx, sdk.DescribeRequest{Ref: spec.Ref}); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Errorf("refused create left a part: %v", err)
	}

	fixed := newPlugin(t, map[string]any{"capacity": map[string]any{"cpus": 4, "memory_mb": 4096},
		"price_per_node_day": 2, "price_per_cpu_day": 0.5, "node_labels": map[string]string{"necos.io/test-pool": "default"}})
	o, err = fixed.Offer(ctx, sdk.OfferRequest{Part: spec})
	if err != nil || !o.Accepted {
		t.Fatalf("offer: %+v %v", o, err)
	}
	if want := (sdk.Resources{CPUs: 4, MemoryMB: 4096, StorageGB: 500}); o.Capacity != want {
		t.Errorf("capacity %+v, want %+v (storage from the node)", o.Capacity, want)
	}
	if o.PricePerDay != 3*2+3*0.5 {
		t.Errorf("price %v, want 7.5", o.PricePerDay)
	}
	big := partSpec(t, "big", worker(5, 1, 256))
	if o, err := fixed.Offer(ctx, sdk.OfferRequest{Part: big}); err != nil || o.Accepted || o.Reason != "not enough CPUs: need 5, 4 free" {
		t.Errorf("offer beyond capacity: %+v %v", o, err)
	}
}

// allocatable sums the schedulable nodes' allocatable resources, as the plugin should.
func allocatable(t *testing.T, c *kubetest.Cluster) sdk.Resources {
	t.Helper()
	nodes, err := c.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cpu, mem, storage int64
	for _, n := range nodes.Items {
		a := n.Status.Allocatable
		cpu += a.Cpu().MilliValue()
		mem += a.Memory().Value()
		storage += a.StorageEphemeral().Value()
	}
	return sdk.Resources{CPUs: int(cpu / 1000), MemoryMB: mem / mib, StorageGB: storage / gib}
}
