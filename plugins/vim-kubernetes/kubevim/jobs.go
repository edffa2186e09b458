package kubevim

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/necos/necos/sdk"
)

// A node's commands run as one Job in the part's namespace: `sh -c` with a script that
// runs them in order, stops at the first that fails, and brackets each command's output
// with marker lines, so that the pod's log gives every step its output and exit code.
// The Job's name hashes service, node and script: deploying the same commands again
// finds the same Job and does not run them twice; changed commands make a new Job and
// the old one is deleted.
//
// The Job's deadline (activeDeadlineSeconds) is the step timeout times the number of
// commands; Deploy waits that long (and a few seconds more) and returns the steps as the
// Job left them. While the Job runs, its steps are pending or running and the
// deployment's message says where its pod is; DeployStatus keeps following the Job.
// Without a kubelet (a bare control plane) the pod is never scheduled: the steps stay
// pending until the deadline, then the first fails with the Job's reason
// ("DeadlineExceeded") and the others are skipped.

const (
	jobContainer = "commands"
	stepMarker   = "@@necos-step"
	// maxLogBytes bounds the log read of a Job's pod.
	maxLogBytes = 1 << 20
	// jobPoll paces the wait for Jobs.
	jobPoll = 500 * time.Millisecond
	// jobGrace is how much longer than a Job's deadline Deploy waits for it, so that it
	// reports the Job's end rather than racing the Job controller.
	jobGrace = 5 * time.Second
)

// jobScript is the shell script running cmds in order.
func jobScript(cmds []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "necos_mark() { printf '\\n%s %%s %%s\\n' \"$1\" \"$2\"; }\n", stepMarker)
	for i, c := range cmds {
		fmt.Fprintf(&b, "necos_mark %d begin\n(\n%s\n) 2>&1\nnecos_rc=$?\nnecos_mark %d \"exit $necos_rc\"\n", i, c, i)
		b.WriteString("[ \"$necos_rc\" -eq 0 ] || exit \"$necos_rc\"\n")
	}
	return b.String()
}

// stepLog is what the log says of one step.
type stepLog struct {
	out  string
	exit *int
}

// parseStepLog splits a Job's log into its steps' output and exit codes.
func parseStepLog(log string) map[int]*stepLog {
	out := map[int]*stepLog{}
	var cur *stepLog
	var lines []string
	flush := func() {
		if cur != nil {
			// The marker's leading newline ends a last line without one: not output.
			if n := len(lines); n > 0 && lines[n-1] == "" {
				lines = lines[:n-1]
			}
			cur.out = strings.Join(lines, "\n")
		}
	}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64*1024), maxLogBytes)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, stepMarker+" "); ok {
			f := strings.Fields(rest)
			if len(f) < 2 {
				f = []string{"", ""}
			}
			if i, err := strconv.Atoi(f[0]); err == nil {
				switch {
				case f[1] == "begin":
					flush()
					cur, lines = &stepLog{}, nil
					out[i] = cur
					continue
				case f[1] == "exit" && len(f) == 3 && cur != nil:
					flush()
					if rc, err := strconv.Atoi(f[2]); err == nil {
						cur.exit = &rc
					}
					cur, lines = nil, nil
					continue
				}
			}
		}
		if cur != nil {
			lines = append(lines, line)
		}
	}
	flush()
	return out
}

// jobName is the Job of a service's commands on a node.
func jobName(serviceID, node, script string) string {
	n := dnsLabel(node)
	if len(n) > 30 {
		n = strings.TrimRight(n[:30], "-")
	}
	return "necos-" + n + "-" + hashHex(serviceID+"\x00"+node+"\x00"+script, 10)
}

// ensureJob creates the Job running w's commands, unless it exists.
func ensureJob(ctx context.Context, tc kubernetes.Interface, s settings, ns, serviceID string, w nodeWork,
	stepTimeout time.Duration) (string, error) {
	script := jobScript(w.commands)
	name := jobName(serviceID, w.node, script)
	lbl := map[string]string{labelManagedBy: managedBy, labelService: serviceLabel(serviceID), labelNode: labelValue(w.node)}
	deadline := int64(stepTimeout/time.Second) * int64(len(w.commands))
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if s.PodSecurity == "restricted" {
		sc.RunAsNonRoot, sc.RunAsUser = ptr(true), ptr(int64(65534))
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl,
			Annotations: map[string]string{annServiceID: serviceID, annScript: hashHex(script, 64)}},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr(int32(0)),
			ActiveDeadlineSeconds: ptr(max(deadline, 1)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					// The commands need no API access; the tenant can mount a token itself.
					AutomountServiceAccountToken: ptr(false),
					Containers: []corev1.Container{{Name: jobContainer, Image: s.JobImage,
						Command: []string{"sh", "-c", script}, SecurityContext: sc}},
				},
			},
		},
	}
	_, err := tc.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{FieldManager: fieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create job %s: %w", name, err)
	}
	return name, nil
}

func deleteJob(ctx context.Context, k *cluster, ns, name string) error {
	bg := metav1.DeletePropagationBackground
	err := k.cs.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// waitJobs follows the record's Jobs until they are done or the step timeouts have
// passed, and returns the deployment with their steps.
func (p *Plugin) waitJobs(ctx context.Context, k *cluster, ns string, rec *record, stepTimeout time.Duration) sdk.Deployment {
	longest := 0
	for _, j := range rec.Jobs {
		longest = max(longest, len(j.Commands))
	}
	wctx, cancel := context.WithTimeout(ctx, stepTimeout*time.Duration(max(longest, 1))+jobGrace)
	defer cancel()
	for {
		d, done := refreshJobs(wctx, k, ns, rec)
		if done || len(rec.Jobs) == 0 {
			return d
		}
		select {
		case <-wctx.Done():
			// The answer must still be fresh: read once more outside the expired context.
			d, _ = refreshJobs(context.WithoutCancel(ctx), k, ns, rec)
			return d
		case <-time.After(jobPoll):
		}
	}
}

// refreshJobs returns the record's deployment with its command steps read from their
// Jobs, and whether every Job has finished.
func refreshJobs(ctx context.Context, k *cluster, ns string, rec *record) (sdk.Deployment, bool) {
	d := rec.Deployment
	d.Nodes = make([]sdk.NodeStatus, len(rec.Deployment.Nodes))
	for i, n := range rec.Deployment.Nodes {
		n.Steps = append([]sdk.StepResult(nil), n.Steps...)
		d.Nodes[i] = n
	}
	done := true
	var msgs []string
	for _, j := range rec.Jobs {
		var node *sdk.NodeStatus
		for i := range d.Nodes {
			if d.Nodes[i].Node == j.Node {
				node = &d.Nodes[i]
			}
		}
		if node == nil || j.First+len(j.Commands) > len(node.Steps) {
			continue // a damaged record: nothing to fill in
		}
		steps := node.Steps[j.First : j.First+len(j.Commands)]
		job, err := k.cs.BatchV1().Jobs(ns).Get(ctx, j.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				for i := range steps {
					steps[i].State, steps[i].Error = sdk.DeployFailed, "job "+j.Name+" no longer exists"
				}
				continue
			}
			msgs = append(msgs, fmt.Sprintf("job %s: %v", j.Name, err))
			done = false
			continue
		}
		pod := jobPod(ctx, k, ns, j.Name)
		finished := jobSteps(job, pod, podLog(ctx, k, pod), steps)
		if !finished {
			done = false
			msgs = append(msgs, fmt.Sprintf("job %s (node %s): %s", j.Name, j.Node, podPhase(pod)))
		}
	}
	summarize(&d)
	if d.State == sdk.DeployFailed {
		msgs = append(failedSteps(d), msgs...)
	}
	d.Message = strings.Join(msgs, "; ")
	return d, done
}

// jobPod returns the newest pod of a Job, or nil.
func jobPod(ctx context.Context, k *cluster, ns, job string) *corev1.Pod {
	pods, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil || len(pods.Items) == 0 {
		return nil
	}
	newest := &pods.Items[0]
	for i := range pods.Items {
		if pods.Items[i].CreationTimestamp.After(newest.CreationTimestamp.Time) {
			newest = &pods.Items[i]
		}
	}
	return newest
}

// podLog reads the log of a pod that has started; "" when there is none (no kubelet).
func podLog(ctx context.Context, k *cluster, pod *corev1.Pod) string {
	if pod == nil || pod.Spec.NodeName == "" {
		return ""
	}
	b, err := k.cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name,
		&corev1.PodLogOptions{Container: jobContainer, LimitBytes: ptr(int64(maxLogBytes))}).DoRaw(ctx)
	if err != nil {
		return ""
	}
	return string(b)
}

// jobSteps fills a Job's command steps from its status and log, and reports whether the
// Job has finished.
func jobSteps(job *batchv1.Job, pod *corev1.Pod, log string, steps []sdk.StepResult) bool {
	complete, failed := false, ""
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			complete = true
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			// FailureTarget comes first, while the Job's pods are being stopped.
			failed = strings.TrimSpace(c.Reason + ": " + c.Message)
		}
	}
	var started time.Time
	if job.Status.StartTime != nil {
		started = job.Status.StartTime.Time
	}
	parsed := parseStepLog(log)
	stop := false
	for i := range steps {
		st := &steps[i]
		st.Started = started
		st.Stdout, st.Error, st.ExitCode = "", "", 0
		if stop {
			st.State = sdk.DeploySkipped
			continue
		}
		r := parsed[i]
		switch {
		case r != nil && r.exit != nil:
			st.Stdout, st.ExitCode = r.out, *r.exit
			st.State = sdk.DeploySucceeded
			if *r.exit != 0 {
				st.State, st.Error, stop = sdk.DeployFailed, fmt.Sprintf("exit status %d", *r.exit), true
			}
		case r != nil && failed != "":
			st.Stdout, st.State, st.Error, stop = r.out, sdk.DeployFailed, "job failed: "+failed, true
		case r != nil:
			st.Stdout, st.State = r.out, sdk.DeployRunning
		case complete:
			// Done without a readable log: the script stops at the first failure, so a
			// complete Job ran every command successfully.
			st.State = sdk.DeploySucceeded
		case failed != "":
			st.State, st.Error, stop = sdk.DeployFailed, "job failed: "+failed+" (no log to tell which command)", true
			st.ExitCode = exitCode(pod)
		default:
			st.State = sdk.DeployPending
		}
	}
	return complete || failed != ""
}

// exitCode is the exit code of the Job's container, when it terminated.
func exitCode(pod *corev1.Pod) int {
	if pod == nil {
		return 0
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == jobContainer && cs.State.Terminated != nil {
			return int(cs.State.Terminated.ExitCode)
		}
	}
	return 0
}
