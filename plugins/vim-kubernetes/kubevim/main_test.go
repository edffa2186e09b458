package kubevim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
)

// One cluster serves every test of the package: a control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler) and two real nodes (kubenode), started by the
// first test that needs it, stopped after the last.
var (
	clusterOnce sync.Once
	cluster0    *kubetest.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster0 != nil {
		if err := cluster0.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop test cluster:", err)
		}
	}
	os.Exit(code)
}

// needCluster returns the package's cluster, skipping (or failing, with
// NECOS_REQUIRE_BACKENDS) when the Kubernetes binaries are missing.
func needCluster(t testing.TB) *kubetest.Cluster {
	t.Helper()
	if !kubetest.Available() {
		plugintest.NeedBackend(t, kubetest.MissingReason)
	}
	if !kubenode.Available() {
		plugintest.NeedBackend(t, kubenode.MissingReason)
	}
	clusterOnce.Do(func() {
		cluster0, clusterErr = kubetest.Start(context.Background(), kubetest.Options{RealNodes: 2})
		if clusterErr == nil {
			t.Logf("cluster with %d real nodes ready in %v; controller-manager flags: %s", len(cluster0.Data.Nodes),
				cluster0.Started, strings.Join(cluster0.ControllerManagerArgs, " "))
		}
	})
	if clusterErr != nil {
		t.Fatalf("start test cluster: %v", clusterErr)
	}
	return cluster0
}

// testJobImage runs command Jobs: built by scripts/images.sh, present on every node.
const testJobImage = "necos.local/busybox:1.35"

// testProvider is the provider of the package's tests; the conformance suite runs as
// plugintest.Provider, so the two never count each other's parts.
var testProvider = sdk.Provider{Name: "test", Location: "EUROPE.TEST"}

// configJSON is a configuration for the test cluster with extra keys.
func configJSON(t testing.TB, c *kubetest.Cluster, extra map[string]any) []byte {
	t.Helper()
	// The real nodes' pod network: NodePorts answer from any node, other parts' pods
	// are kept out (kube-router enforces the parts' policies).
	cfg := map[string]any{"kubeconfig": c.Kubeconfig, "token_ttl": "1h", "wait_timeout": "60s", "job_image": testJobImage,
		"pod_cidrs": []string{kubenode.PodCIDRs}}
	for k, v := range extra {
		cfg[k] = v
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newPlugin returns a plugin configured for the test cluster, called directly.
func newPlugin(t testing.TB, extra map[string]any) *Plugin {
	t.Helper()
	c := needCluster(t)
	p := NewWithLogger(plugintest.TestLogger(t))
	if err := p.Configure(context.Background(), sdk.Config{APIVersion: sdk.APIVersion1, Provider: testProvider,
		JSON: configJSON(t, c, extra)}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return p
}

// partSpec is a part of its own slice (named after the test) with the given VDUs.
func partSpec(t *testing.T, part string, vdus ...sdk.VDUSpec) sdk.PartSpec {
	slice := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	return sdk.PartSpec{Ref: sdk.PartRef{SliceID: slice, PartID: part}, Name: part, Type: "DC",
		Location: "EUROPE.TEST", Tenant: "tenant-" + part, VDUs: vdus}
}

func worker(n, cpus int, mem int64) sdk.VDUSpec {
	return sdk.VDUSpec{Name: "worker", Type: sdk.NodeWorker, Instances: n, CPUs: cpus, MemoryMB: mem}
}

func master() sdk.VDUSpec {
	return sdk.VDUSpec{Name: "master", Type: sdk.NodeMaster, Instances: 1, CPUs: 1, MemoryMB: 512, StorageGB: 1}
}

// create creates a part and deletes it when the test ends.
func create(t *testing.T, p *Plugin, spec sdk.PartSpec) sdk.Part {
	t.Helper()
	t.Cleanup(func() {
		if err := p.Delete(context.Background(), sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
			t.Errorf("cleanup: delete %s: %v", spec.Ref, err)
		}
	})
	part, err := p.Create(context.Background(), sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatalf("create %s: %v", spec.Ref, err)
	}
	return part
}

func wantCode(t *testing.T, what string, err error, code sdk.Code) {
	t.Helper()
	if sdk.CodeOf(err) != code {
		t.Errorf("%s: got %v (code %v), want %v", what, err, sdk.CodeOf(err), code)
	}
}
