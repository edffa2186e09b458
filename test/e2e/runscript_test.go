package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
	"github.com/necos/necos/sdk/plugintest"
)

// The main job's Kubernetes mode, as a user runs it: `./scripts/run.sh --kubernetes`
// starts a cluster with real nodes and necosd on examples/catalogue-kubernetes.yaml
// (its kubeconfig paths relative to the catalogue); the README's commands create the IoT
// slice and deploy its service, whose pods on the project's images run; stopping run.sh
// leaves no process, no cluster namespace and no site namespace. Its ports, namespaces
// and data are its own (NECOS_RUN_*), so it runs beside another necos.
func TestRunScriptKubernetes(t *testing.T) {
	needRoot(t)
	if !kubetest.Available() {
		plugintest.NeedBackend(t, kubetest.MissingReason)
	}
	if !kubenode.Available() {
		plugintest.NeedBackend(t, kubenode.MissingReason)
	}
	if os.Getenv("NECOS_GUEST_IMAGE") == "" {
		plugintest.NeedBackend(t, "NECOS_GUEST_IMAGE: scripts/guest-image.sh (run.sh prepares it; its cache must be warm)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	data := t.TempDir()
	prefix := "nrun" + randomID()
	api := freeAddr(t)
	logPath := filepath.Join(data, "run.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	run := exec.Command("bash", "scripts/run.sh", "--kubernetes", "--log-level", "warn")
	run.Dir = root()
	run.Env = append(os.Environ(), "NECOS_RUN_DATA="+data, "NECOS_RUN_LISTEN="+api,
		"NECOS_RUN_INFLUX="+freeAddr(t), "NECOS_RUN_NETNS="+prefix)
	run.Stdout, run.Stderr = logf, logf
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	logTail := func() string { b, _ := os.ReadFile(logPath); return tail(string(b), 40) }
	stopped := false
	t.Cleanup(func() {
		if !stopped { // a failed test: stop it all the same, and say what was left
			_ = syscall.Kill(-run.Process.Pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(2 * time.Minute):
				_ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
			}
		}
		for _, ns := range namespacesWith(prefix + "-") {
			t.Errorf("namespace left: %s", ns)
			_ = exec.Command("ip", "netns", "delete", ns).Run()
		}
	})

	// run.sh builds, starts the cluster, then necosd.
	begin := time.Now()
	for {
		resp, err := http.Get("http://" + api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("run.sh exited (%v) before necosd was ready:\n%s", err, logTail())
		case <-ctx.Done():
			t.Fatalf("necosd not ready:\n%s", logTail())
		case <-time.After(time.Second):
		}
	}
	t.Logf("run.sh --kubernetes: necosd ready after %v", time.Since(begin).Round(time.Second))
	log, _ := os.ReadFile(logPath)
	cluster := regexp.MustCompile(`nodes (necos-k[0-9a-f]+)-n1`).FindStringSubmatch(string(log))
	if cluster == nil {
		t.Fatalf("run.sh did not say which nodes run:\n%s", logTail())
	}

	token, err := os.ReadFile(filepath.Join(data, "demo-token"))
	if err != nil {
		t.Fatal(err)
	}
	necosctl := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(root(), "bin", "necosctl"), args...)
		cmd.Dir = root()
		cmd.Env = append(os.Environ(), "NECOS_SERVER=http://"+api, "NECOS_TOKEN="+strings.TrimSpace(string(token)))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("necosctl %s: %v\n%s\nrun.sh:\n%s", strings.Join(args, " "), err, out, logTail())
		}
		return string(out)
	}
	out := necosctl("slice", "create", "-f", "examples/slices/iot-dojot.yaml", "--wait", "-o", "json")
	m := regexp.MustCompile(`"id": "([^"]+)"`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no slice id in %s", out)
	}
	slice := m[1]
	t.Logf("IoT slice %s Ready after %v", slice, time.Since(begin).Round(time.Second))
	for _, p := range []string{"UFSCAR-K8S", "SPAIN-K8S", "5TONIC-K8S"} {
		if strings.Contains(out, p) {
			t.Logf("placed at %s", p)
		}
	}
	necosctl("service", "deploy", "-f", "examples/services/iot-dojot.yaml", "--wait")

	// The kubeconfig run.sh wrote where the catalogue names it, relative to the catalogue.
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(data, "kubernetes", "kubeconfig-ufscar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every pod of the slice whose images are the project's (nothing is pulled here) runs.
	for {
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		local, running, waiting := 0, 0, []string{}
		for _, p := range pods.Items {
			if !strings.HasPrefix(p.Namespace, "necos-") || !localImages(p) {
				continue
			}
			local++
			if p.Status.Phase == corev1.PodRunning {
				running++
			} else {
				waiting = append(waiting, p.Namespace+"/"+p.Name+" "+string(p.Status.Phase))
			}
		}
		if local > 0 && running == local {
			t.Logf("%d pods Running after %v", running, time.Since(begin).Round(time.Second))
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pods on local images: %d, running %d; waiting: %v", local, running, waiting)
		}
		time.Sleep(time.Second)
	}

	// The core's GUI through `necosctl slice port-forward` (a Kubernetes part: a label
	// selector of its pods, reached through the cluster's API), after devices published at
	// the edge: the page names them.
	pf := exec.CommandContext(ctx, filepath.Join(root(), "bin", "necosctl"), "slice", "port-forward", slice, "dc-slice1/app=gui:8080", "0")
	pf.Dir = root()
	pf.Env = append(os.Environ(), "NECOS_SERVER=http://"+api, "NECOS_TOKEN="+strings.TrimSpace(string(token)))
	pfOut, err := pf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var pfErr strings.Builder
	pf.Stderr = &pfErr
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pf.Process.Signal(syscall.SIGTERM); _ = pf.Wait() })
	line, err := bufio.NewReader(pfOut).ReadString('\n')
	addr := regexp.MustCompile(`^Forwarding from (127\.0\.0\.1:\d+) -> dc-slice1/pod `).FindStringSubmatch(line)
	if err != nil || addr == nil {
		t.Fatalf("port-forward to the core's GUI: %q %v %s", line, err, pfErr.String())
	}
	necosctl("load", "mqtt", "--slice", slice, "--part", "dc-slice2", "--devices", "2", "--rate", "10", "--duration", "3s", "--prefix", "runsh-dev")
	var page string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		resp, err := http.Get("http://" + addr[1] + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = string(b)
			if resp.StatusCode == http.StatusOK && strings.Contains(page, "runsh-dev-1") && strings.Contains(page, "runsh-dev-2") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the core's GUI through port-forward never listed the devices: %v\n%s", err, page)
		}
	}
	t.Logf("the core's GUI on %s lists the edge's devices", addr[1])

	necosctl("slice", "delete", slice, "--wait")
	stopAt := time.Now()
	if err := syscall.Kill(run.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(3 * time.Minute):
		t.Fatalf("run.sh still running 3 min after SIGTERM:\n%s", logTail())
	}
	stopped = true
	t.Logf("run.sh stopped in %v", time.Since(stopAt).Round(100*time.Millisecond))
	// Nothing of it is left: no process of its group, no namespace of its cluster or of
	// its sites, no kubeconfig pointing at a cluster that is gone.
	if err := syscall.Kill(-run.Process.Pid, 0); err == nil {
		out, _ := exec.Command("ps", "-o", "pid,args", "-g", fmt.Sprint(run.Process.Pid)).CombinedOutput()
		t.Errorf("processes of run.sh left:\n%s", out)
	}
	if left := namespacesWith(cluster[1] + "-"); len(left) > 0 {
		t.Errorf("cluster namespaces left: %v", left)
	}
	if left := namespacesWith(prefix + "-"); len(left) > 0 {
		t.Errorf("site namespaces left: %v\n%s", left, logTail())
	}
	if k, _ := filepath.Glob(filepath.Join(data, "kubernetes", "kubeconfig-*")); len(k) > 0 {
		t.Errorf("kubeconfigs left: %v", k)
	}
}

func localImages(p corev1.Pod) bool {
	for _, c := range p.Spec.Containers {
		if !strings.HasPrefix(c.Image, "necos.local/") {
			return false
		}
	}
	return len(p.Spec.Containers) > 0
}

func namespacesWith(prefix string) []string {
	entries, _ := os.ReadDir("/var/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}
