package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk/plugintest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/client-go/kubernetes"
)

// kubeCatalogue is the demo's federation with Kubernetes parts: UNICAMP runs Xen (the
// libvirt daemon), the four others are shares of one real Kubernetes cluster.
func kubeCatalogue(t *testing.T, fed *federation, kubeconfig string) string {
	uri := libvirtURI(t)
	var b strings.Builder
	b.WriteString("providers:\n")
	for i, s := range demoSites {
		fmt.Fprintf(&b, "  - name: %s\n    location: %s\n    controller: {ip: 127.0.0.1, port: %d}\n", s.Name, s.Location, 5000+i)
		if s.Name == "UNICAMP" {
			fmt.Fprintf(&b, `    dc:
      vim: xen-vim
      plugin: vim-xen
      config: {uri: "%s", capacity: {cpus: 64, memory_mb: 262144, storage_gb: 4000}, price_per_node_day: 4, subnet: 10.10.1.0/24}
`, uri)
		} else {
			types := "[EDGE]"
			if s.Name == "UFSCAR" || s.Name == "5TONIC" {
				types = "[DC, EDGE]"
			}
			fmt.Fprintf(&b, `    dc:
      vim: KUBERNETES
      part_types: %s
      plugin: vim-kubernetes
      config: {kubeconfig: "%s", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 200}, price_per_node_day: %g, pod_cidrs: [%s]}
`, types, kubeconfig, s.Price, kubenode.PodCIDRs)
		}
		if fed != nil {
			fmt.Fprintf(&b, "    site: {underlay: %s, netns: %s}\n", s.Underlay, fed.netns(s.Name))
		}
	}
	if fed != nil {
		fmt.Fprintf(&b, `  - name: WAN
    location: AMERICA.BRAZIL
    wan:
      wim: VXLAN
      plugin: wan
      config: {netns: ["%s-*"], provision_sites: {underlay_netns: %s}, price_per_link_day: 2}
`, fed.prefix, fed.netns("underlay"))
	}
	return b.String()
}

func startCluster(t *testing.T) *kubetest.Cluster {
	t.Helper()
	if !kubetest.Available() {
		plugintest.NeedBackend(t, kubetest.MissingReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := kubetest.Start(ctx, kubetest.Options{})
	if err != nil {
		t.Fatalf("start Kubernetes: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

func necosNamespaces(t *testing.T, c *kubetest.Cluster) []string {
	t.Helper()
	nss, err := c.Client.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ns := range nss.Items {
		if strings.HasPrefix(ns.Name, "necos-") && ns.Status.Phase != corev1.NamespaceTerminating {
			out = append(out, ns.Name)
		}
	}
	return out
}

// The IoT slice (two Kubernetes parts and a link) and the Touristic CDN slice (a Xen
// core and three Kubernetes edges, each linked to the core) from the examples, through
// necosd: every Kubernetes part is a capped, isolated namespace whose kubeconfig works
// inside it only; decommission leaves no namespace.
func TestDemoSlicesWithKubernetes(t *testing.T) {
	needRoot(t)
	cluster := startCluster(t)
	fed := newFederation(t)
	d := startDaemon(t, kubeCatalogue(t, fed, cluster.Kubeconfig))
	ctx := context.Background()

	r := d.do("demo", "POST", "/slice_activator/create_slice", "text/x-yaml", example(t, "iot-dojot.yaml"))
	d.expect(r, 201, "create IoT slice")
	iot, err := spec.ParseCreatedSlice(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	st := iot.Status()
	core := st.Parts["dc-slice1"]
	if core.Controller.Provider != "UFSCAR" || core.Credential == nil || core.Credential.Type != spec.CredentialKubeconfig {
		t.Fatalf("IoT core part: %+v", core)
	}
	if core.VIMRef.IPAPI != "127.0.0.1" || core.VIMRef.PortAPI == 0 {
		t.Fatalf("IoT core vim-ref: %+v", core.VIMRef)
	}
	if n := len(core.Nodes); n != 3 {
		t.Fatalf("IoT core has %d nodes, want a master and 2 workers", n)
	}
	if len(st.Links) != 1 || st.Links["pop-dc-slice1-to-pop-dc-slice2"].End1IP == "" {
		t.Fatalf("IoT links: %+v", st.Links)
	}
	if nss := necosNamespaces(t, cluster); len(nss) != 2 {
		t.Fatalf("namespaces %v, want the IoT slice's 2", nss)
	}

	// The tenant's kubeconfig works in its own namespace only.
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(core.Credential.Kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	tenant := kubernetes.NewForConfigOrDie(cfg)
	ns := necosNamespaces(t, cluster)
	var own, other string
	for _, n := range ns {
		if strings.Contains(n, "dc-slice1") {
			own = n
		} else {
			other = n
		}
	}
	one := int32(1)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "iot-platform"},
		Spec: appsv1.DeploymentSpec{Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "p"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "p"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "p", Image: "busybox"}}}}},
	}
	if _, err := tenant.AppsV1().Deployments(own).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("tenant cannot deploy in its namespace %s: %v", own, err)
	}
	if _, err := tenant.AppsV1().Deployments(other).Create(ctx, dep, metav1.CreateOptions{}); err == nil {
		t.Fatalf("tenant deployed into another part's namespace %s", other)
	}
	if _, err := tenant.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("tenant lists namespaces at cluster scope")
	}

	r = d.do("demo", "POST", "/slice_activator/create_slice", "text/x-yaml", example(t, "touristic-cdn.yaml"))
	d.expect(r, 201, "create Touristic CDN slice")
	cdn, err := spec.ParseCreatedSlice(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	cst := cdn.Status()
	if cst.Parts["core-dc"].Controller.Provider != "UNICAMP" || len(cst.Links) != 3 {
		t.Fatalf("CDN: core at %s, %d links", cst.Parts["core-dc"].Controller.Provider, len(cst.Links))
	}
	for name, p := range cst.Parts {
		if name != "core-dc" && (p.Credential == nil || p.Credential.Type != spec.CredentialKubeconfig) {
			t.Errorf("CDN edge %s has no kubeconfig: %+v", name, p.Credential)
		}
	}
	if nss := necosNamespaces(t, cluster); len(nss) != 5 {
		t.Fatalf("namespaces %v, want 2 IoT + 3 CDN edges", nss)
	}

	for _, name := range []string{"IoTService_sliced", "TouristicCDN_sliced"} {
		del := []byte("slices:\n  sliced:\n    id: " + name + "\n")
		d.expect(d.do("demo", "POST", "/slice_activator/delete_slice", "text/x-yaml", del), 200, "delete "+name)
	}
	if nss := necosNamespaces(t, cluster); len(nss) != 0 {
		t.Fatalf("namespaces left after decommission: %v", nss)
	}
	assertNoWANDevices(t, fed)
}
