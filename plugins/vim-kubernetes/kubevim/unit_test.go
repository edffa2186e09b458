package kubevim

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/necos/necos/sdk"
)

func TestNamespaceNames(t *testing.T) {
	long := strings.Repeat("very-long-slice-name-", 5)
	tests := []struct {
		ref     sdk.PartRef
		want    string
		hashed  bool
		comment string
	}{
		{sdk.PartRef{SliceID: "iot", PartID: "dc-slice1"}, "necos-iot-dc-slice1", false, "already DNS-safe"},
		{sdk.PartRef{SliceID: "IoTService_sliced", PartID: "dc-slice1"}, "necos-iotservice-sliced-dc-slice1", false, "sanitized"},
		{sdk.PartRef{SliceID: "--a..b__", PartID: "C"}, "necos-a-b-c", false, "dashes collapsed and trimmed"},
		{sdk.PartRef{SliceID: long, PartID: "edge"}, "", true, "truncated with a hash"},
	}
	for _, tt := range tests {
		primary, fallback := namespaceNames(tt.ref)
		for _, n := range []string{primary, fallback} {
			if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
				t.Errorf("%s: %q is not a DNS-1123 label: %v", tt.comment, n, errs)
			}
		}
		if tt.want != "" && primary != tt.want {
			t.Errorf("%s: primary %q, want %q", tt.comment, primary, tt.want)
		}
		suffix := "-" + partKey(tt.ref)[:8]
		if tt.hashed != strings.HasSuffix(primary, suffix) {
			t.Errorf("%s: primary %q, hash suffix %v, want %v", tt.comment, primary, !tt.hashed, tt.hashed)
		}
		if !strings.HasSuffix(fallback, suffix) || fallback == primary && !tt.hashed {
			t.Errorf("%s: fallback %q must differ from %q and end in %s", tt.comment, fallback, primary, suffix)
		}
	}
	// Two long refs differing only at the end stay apart.
	a, _ := namespaceNames(sdk.PartRef{SliceID: long, PartID: "edge-1"})
	b, _ := namespaceNames(sdk.PartRef{SliceID: long, PartID: "edge-2"})
	if a == b {
		t.Errorf("truncated names collide: %q", a)
	}
}

func TestLabelValues(t *testing.T) {
	for _, in := range []string{"IoTService_sliced", "conformance-1a2b", "a/b c", strings.Repeat("x", 80), "---", "é"} {
		got := labelValue(in)
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 || got == "" {
			t.Errorf("labelValue(%q) = %q: %v", in, got, errs)
		}
		sl := serviceLabel(in)
		if errs := validation.IsValidLabelValue(sl); len(errs) > 0 {
			t.Errorf("serviceLabel(%q) = %q: %v", in, sl, errs)
		}
	}
	if serviceLabel("a b") == serviceLabel("a_b") {
		t.Error("service labels of distinct ids collide")
	}
}

func testLayout() layout {
	return layoutOf(sdk.PartSpec{VDUs: []sdk.VDUSpec{
		{Name: "master", Type: sdk.NodeMaster, Instances: 1, CPUs: 2, MemoryMB: 2048, StorageGB: 10},
		{Name: "worker", Type: sdk.NodeWorker, Instances: 2, CPUs: 1, MemoryMB: 1024, StorageGB: 5},
	}})
}

func TestLayoutResizeScale(t *testing.T) {
	l := testLayout()
	if got, want := l.total(), (sdk.Resources{CPUs: 4, MemoryMB: 4096, StorageGB: 20, Nodes: 3}); got != want {
		t.Fatalf("total %+v, want %+v", got, want)
	}
	// One node, then the whole VDU: the node's own size follows the VDU's.
	r, err := l.resized(sdk.ResizeRequest{Node: "worker-2", MemoryMB: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.total().MemoryMB; got != 2048+1024+3000 {
		t.Errorf("after node resize: memory %d", got)
	}
	r, err = r.resized(sdk.ResizeRequest{VDU: "worker", CPUs: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range r.nodes() {
		if n.VDU == "worker" && n.CPUs != 3 {
			t.Errorf("%s: %d CPUs after VDU resize", n.Name, n.CPUs)
		}
		if n.Name == "worker-2" && n.MemoryMB != 3000 {
			t.Errorf("worker-2 lost its own memory size: %d", n.MemoryMB)
		}
	}
	// Scale down drops the highest index (and its own size), up adds default-sized nodes.
	s, err := r.scaled(sdk.ScaleRequest{VDU: "worker", Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	s, err = s.scaled(sdk.ScaleRequest{VDU: "worker", Instances: 3})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range s.nodes() {
		names = append(names, n.Name)
		if n.Name == "worker-2" && n.MemoryMB != 1024 {
			t.Errorf("re-added worker-2 kept an old size: %d MB", n.MemoryMB)
		}
	}
	if got := strings.Join(names, ","); got != "master-1,worker-1,worker-2,worker-3" {
		t.Errorf("nodes %s", got)
	}
	// The original is untouched.
	if l.total().CPUs != 4 {
		t.Error("resized modified its receiver")
	}
	// An unknown VDU or node is NotFound in every VIM (the plugin contract); malformed
	// sizes never reach the plugin (sdk.ResizeRequest.Validate).
	if _, err := l.resized(sdk.ResizeRequest{VDU: "nope", CPUs: 1}); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Errorf("resize an unknown VDU: %v, want NotFound", err)
	}
	if _, err := l.resized(sdk.ResizeRequest{VDU: "worker", Node: "worker-9", CPUs: 1}); sdk.CodeOf(err) != sdk.CodeNotFound {
		t.Errorf("resize an unknown node: %v, want NotFound", err)
	}
	// A part keeps a node: its last ones cannot be scaled away.
	none, err := l.scaled(sdk.ScaleRequest{VDU: "worker", Instances: 0})
	if err != nil {
		t.Fatalf("scale the workers to 0: %v", err)
	}
	if _, err := none.scaled(sdk.ScaleRequest{VDU: "master", Instances: 0}); sdk.CodeOf(err) != sdk.CodeFailedPrecondition {
		t.Errorf("scale the last node away: %v, want FailedPrecondition", err)
	}
	back, err := parseLayout(s.encode())
	if err != nil || back.encode() != s.encode() {
		t.Errorf("layout round trip: %v", err)
	}
}

func TestQuota(t *testing.T) {
	hard := quotaHard(testLayout().total())
	want := map[corev1.ResourceName]string{
		corev1.ResourceRequestsCPU: "4", corev1.ResourceLimitsCPU: "4",
		corev1.ResourceRequestsMemory: "4Gi", corev1.ResourceLimitsMemory: "4Gi",
		corev1.ResourceRequestsStorage: "20Gi", corev1.ResourcePods: "330",
	}
	for k, v := range want {
		q := hard[k]
		if q.Cmp(resource.MustParse(v)) != 0 {
			t.Errorf("%s = %s, want %s", k, q.String(), v)
		}
	}
	used := corev1.ResourceList{corev1.ResourceRequestsCPU: resource.MustParse("4500m"),
		corev1.ResourceRequestsMemory: resource.MustParse("1Gi")}
	over := overUsed(hard, used)
	if len(over) != 1 || !strings.HasPrefix(over[0], "requests.cpu: 4500m in use") {
		t.Errorf("overUsed = %q", over)
	}
	if u := usedResources(used); u.CPUs != 5 || u.MemoryMB != 1024 {
		t.Errorf("usedResources = %+v (CPUs round up)", u)
	}
}

func TestNeedsRenewal(t *testing.T) {
	now := time.Now()
	ttl := 3 * time.Hour
	for _, tt := range []struct {
		left time.Duration
		want bool
	}{{3 * time.Hour, false}, {61 * time.Minute, false}, {59 * time.Minute, true}, {-time.Minute, true}} {
		if got := needsRenewal(time.Time{}, now.Add(tt.left), now, ttl); got != tt.want {
			t.Errorf("%s left of %s: renew %v, want %v", tt.left, ttl, got, tt.want)
		}
	}
	if !needsRenewal(now, time.Time{}, now, ttl) {
		t.Error("unknown expiry must renew")
	}
	// The server capped the token at 30 minutes: a third of that, not of ttl.
	if needsRenewal(now.Add(-15*time.Minute), now.Add(15*time.Minute), now, ttl) {
		t.Error("capped token renewed with half its life left")
	}
	if !needsRenewal(now.Add(-25*time.Minute), now.Add(5*time.Minute), now, ttl) {
		t.Error("capped token not renewed with a sixth of its life left")
	}
}

func TestCheckConfig(t *testing.T) {
	neg := -1.0
	_, err := checkConfig(Config{TokenTTL: "5m", WaitTimeout: "soon", PodSecurity: "lax", PricePerNodeDay: &neg,
		APIEndpoint: "https://:99", NodeLabels: map[string]string{"pool": "a b"}, PodCIDRs: []string{"10.244.0.0/16", "10.244.1.7/16"}})
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	for _, key := range []string{"token_ttl", "wait_timeout", "pod_security", "price_per_node_day", "api_endpoint", "node_labels[pool]", "pod_cidrs[1]"} {
		if !strings.Contains(msg, key) {
			t.Errorf("config error %q does not name %s", msg, key)
		}
	}
	if strings.Contains(msg, "pod_cidrs[0]") {
		t.Errorf("a valid pod CIDR refused: %s", msg)
	}
	s, err := checkConfig(Config{})
	if err != nil || s.tokenTTL != DefaultTokenTTL || s.JobImage != DefaultJobImage || s.PodSecurity != DefaultPodSecurity {
		t.Errorf("defaults: %+v %v", s, err)
	}
	for in, want := range map[string]string{"10.1.0.3:21100": "10.1.0.3:21100", "https://api.example:6443": "api.example:6443",
		"api.example": "api.example:443", "http://h": "h:80"} {
		h, p, err := parseEndpoint(in)
		if err != nil || h+":"+strconv.Itoa(p) != want {
			t.Errorf("parseEndpoint(%q) = %s, %d, %v; want %s", in, h, p, err, want)
		}
	}
}

func jobWithCondition(cond string) *batchv1.Job {
	j := &batchv1.Job{}
	if cond != "" {
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobConditionType(cond), Status: corev1.ConditionTrue,
			Reason: "BackoffLimitExceeded"}}
	}
	return j
}

// TestJobScript runs the script a Job would run, with the local shell, and parses its
// output as the plugin parses a pod's log.
func TestJobScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cmds := []string{"echo one; echo two", "printf 'no newline'", "echo err >&2; exit 3", "echo never"}
	out, _ := exec.Command(sh, "-c", jobScript(cmds)).CombinedOutput()
	steps := make([]sdk.StepResult, len(cmds))
	job := jobWithCondition("Failed")
	if finished := jobSteps(job, nil, string(out), steps); !finished {
		t.Error("failed job not finished")
	}
	want := []struct {
		state, out string
		code       int
	}{
		{sdk.DeploySucceeded, "one\ntwo", 0},
		{sdk.DeploySucceeded, "no newline", 0},
		{sdk.DeployFailed, "err", 3},
		{sdk.DeploySkipped, "", 0},
	}
	for i, w := range want {
		s := steps[i]
		if s.State != w.state || s.Stdout != w.out || s.ExitCode != w.code {
			t.Errorf("step %d: %s %q exit %d; want %s %q exit %d (log %q)", i, s.State, s.Stdout, s.ExitCode,
				w.state, w.out, w.code, out)
		}
	}
	// A pending Job: nothing logged yet.
	steps = make([]sdk.StepResult, 2)
	if jobSteps(jobWithCondition(""), nil, "", steps) || steps[0].State != sdk.DeployPending {
		t.Errorf("pending job: %+v", steps)
	}
	// Complete, but no log to read: all succeeded.
	steps = make([]sdk.StepResult, 2)
	if !jobSteps(jobWithCondition("Complete"), nil, "", steps) || steps[1].State != sdk.DeploySucceeded {
		t.Errorf("complete job: %+v", steps)
	}
	if n := jobName("svc", strings.Repeat("node", 20), "x"); len(n) > 63 || len(validation.IsDNS1123Label(n)) > 0 {
		t.Errorf("job name %q", n)
	}
}

func TestSummarize(t *testing.T) {
	d := sdk.Deployment{Nodes: []sdk.NodeStatus{
		{Node: "a", Steps: []sdk.StepResult{{State: sdk.DeploySucceeded}}},
		{Node: "b", Steps: []sdk.StepResult{{State: sdk.DeploySucceeded}, {State: sdk.DeployPending}}},
	}}
	summarize(&d)
	if d.State != sdk.DeployRunning || d.Nodes[0].State != sdk.DeploySucceeded || d.Nodes[1].State != sdk.DeployRunning {
		t.Errorf("running: %+v", d)
	}
	d.Nodes[0].Steps[0].State = sdk.DeployFailed
	summarize(&d)
	if d.State != sdk.DeployFailed {
		t.Errorf("failed: %+v", d)
	}
}

func TestDecodeManifest(t *testing.T) {
	objs, err := decodeManifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n" +
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n")
	if err != nil || len(objs) != 2 || objs[1].GetKind() != "Service" {
		t.Fatalf("decode: %v %v", objs, err)
	}
	for _, bad := range []string{"kind: ConfigMap\nmetadata: {name: a}", "apiVersion: v1\nkind: ConfigMap\n", "a: [b"} {
		if _, err := decodeManifest(bad); err == nil {
			t.Errorf("decode %q: no error", bad)
		}
	}
}
