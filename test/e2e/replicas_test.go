package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk/plugintest"
)

// Two necosd replicas on one existing etcd: either serves the API, one reconciles; when
// the leader dies the other takes over and finishes the work.
func TestReplicasShareAnEtcd(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	etcdBin := filepath.Join(assets, "etcd")
	if _, err := os.Stat(etcdBin); assets == "" || err != nil {
		plugintest.NeedBackend(t, "KUBEBUILDER_ASSETS with an etcd binary (scripts/kube-binaries.sh)")
	}
	client, peer := freeAddr(t), freeAddr(t)
	etcd := exec.Command(etcdBin, "--data-dir", t.TempDir(), "--name", "e2e",
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "e2e=http://"+peer, "--log-level", "error")
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Process.Kill(); _ = etcd.Wait() })

	cat := xenCatalogue(t, nil, "")
	// Replicas share the key their store's secrets are sealed with.
	keyFile := filepath.Join(t.TempDir(), "secret.key")
	if _, err := store.LoadSecretKey(keyFile); err != nil {
		t.Fatal(err)
	}
	args := []string{"--etcd-endpoints", "http://" + client, "--store-prefix", "/e2e-" + randomID() + "/", "--secret-key-file", keyFile}
	a := startDaemon(t, cat, args...)
	b := startDaemon(t, cat, args...)
	// A replica given another key (here: its own, made in its data directory) is
	// refused at start, saying why, rather than seal secrets the others cannot open.
	out, err := exec.Command(filepath.Join(bin, "necosd"), "--listen", freeAddr(t), "--data-dir", t.TempDir(),
		"--plugin-dir", filepath.Join(bin, "plugins"), "--etcd-endpoints", "http://"+client, "--store-prefix", args[3]).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the secret key does not open the store's secrets") {
		t.Errorf("a replica with another key: %v\n%s", err, tail(string(out), 10))
	}
	// Each replica registered its own tenants' tokens in the shared store.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(a.log.String(), "leading") && !strings.Contains(b.log.String(), "leading") {
		if time.Now().After(deadline) {
			t.Fatal("no replica leads")
		}
		time.Sleep(50 * time.Millisecond)
	}
	leader, follower := a, b
	if strings.Contains(b.log.String(), "leading") {
		leader, follower = b, a
	}

	// Created through the follower, built by the leader.
	r := follower.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", exampleUnlinked(t, "touristic-cdn-xen.yaml"))
	follower.expect(r, 201, "create through the follower")

	// The leader dies; the follower takes over and decommissions.
	leader.kill9()
	id := listSlices(t, follower, "demo")[0].ID
	follower.expect(follower.do("demo", "DELETE", "/v1/slices/"+id+"?wait=true", "", nil), 204, "delete after the leader died")
	if !strings.Contains(follower.log.String(), "leading") {
		t.Fatal("the follower never took the lead")
	}
	if left := domains(t, libvirtURI(t), id); len(left) != 0 {
		t.Fatalf("domains left: %+v", left)
	}
}
