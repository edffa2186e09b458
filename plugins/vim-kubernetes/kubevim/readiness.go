package kubevim

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/necos/necos/sdk"
)

// A deployment is succeeded only when what its manifests asked to run is running:
// every Deployment, StatefulSet, ReplicaSet and DaemonSet has its replicas available,
// every Pod is Running and Ready, every Job has completed. Until then it is applied,
// with a message saying what is waited for; a pod that cannot start (its image cannot
// be pulled, its container keeps crashing) makes it failed with the container's reason.

// fatalWaiting are the reasons of a waiting container that will not start by waiting.
var fatalWaiting = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
	"CrashLoopBackOff": true, "CreateContainerConfigError": true, "CreateContainerError": true,
	"RunContainerError": true,
}

// readiness is what the workloads of a deployment are doing.
type readiness struct {
	state string // sdk.DeploySucceeded, sdk.DeployApplied or sdk.DeployFailed
	msg   string
}

// workloadReadiness evaluates the workloads among objs in namespace ns.
func workloadReadiness(ctx context.Context, k *cluster, ns string, objs []objRef) (readiness, error) {
	var waiting, failed []string
	wantPods, readyPods := 0, 0
	reasons := map[string]int{}
	checkPods := func(what string, sel *metav1.LabelSelector) error {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || s.Empty() {
			return nil
		}
		pods, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
		if err != nil {
			return apiError(err, "list pods of "+what)
		}
		for i := range pods.Items {
			pod := &pods.Items[i]
			if pod.DeletionTimestamp != nil {
				continue
			}
			if f := podFailure(pod); f != "" {
				failed = append(failed, what+": "+f)
			} else if !podReady(pod) && pod.Status.Phase != corev1.PodSucceeded {
				reasons[podWaitReason(pod)]++
			}
		}
		return nil
	}
	for _, o := range objs {
		what := o.Kind + "/" + o.Name
		var err error
		switch {
		case o.Group == "apps" && o.Kind == "Deployment":
			var d *appsv1.Deployment
			if d, err = k.cs.AppsV1().Deployments(ns).Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				want := replicasOf(d.Spec.Replicas)
				have := int(d.Status.AvailableReplicas)
				if d.Status.ObservedGeneration < d.Generation || int(d.Status.UpdatedReplicas) < want {
					have = min(have, int(d.Status.UpdatedReplicas))
				}
				wantPods, readyPods = wantPods+want, readyPods+min(have, want)
				if have < want {
					w := fmt.Sprintf("%s: %d of %d replicas available", what, have, want)
					for _, c := range d.Status.Conditions {
						// Pods the ReplicaSet could not create (over quota, say).
						if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
							w += fmt.Sprintf(", %s: %s", c.Reason, c.Message)
						}
					}
					waiting = append(waiting, w)
				}
				err = checkPods(what, d.Spec.Selector)
			}
		case o.Group == "apps" && o.Kind == "StatefulSet":
			var d *appsv1.StatefulSet
			if d, err = k.cs.AppsV1().StatefulSets(ns).Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				want, have := replicasOf(d.Spec.Replicas), int(d.Status.AvailableReplicas)
				wantPods, readyPods = wantPods+want, readyPods+min(have, want)
				if have < want || d.Status.ObservedGeneration < d.Generation {
					waiting = append(waiting, fmt.Sprintf("%s: %d of %d replicas available", what, have, want))
				}
				err = checkPods(what, d.Spec.Selector)
			}
		case o.Group == "apps" && o.Kind == "ReplicaSet":
			var d *appsv1.ReplicaSet
			if d, err = k.cs.AppsV1().ReplicaSets(ns).Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				want, have := replicasOf(d.Spec.Replicas), int(d.Status.AvailableReplicas)
				wantPods, readyPods = wantPods+want, readyPods+min(have, want)
				if have < want {
					waiting = append(waiting, fmt.Sprintf("%s: %d of %d replicas available", what, have, want))
				}
				err = checkPods(what, d.Spec.Selector)
			}
		case o.Group == "apps" && o.Kind == "DaemonSet":
			var d *appsv1.DaemonSet
			if d, err = k.cs.AppsV1().DaemonSets(ns).Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				want, have := int(d.Status.DesiredNumberScheduled), int(d.Status.NumberAvailable)
				wantPods, readyPods = wantPods+want, readyPods+min(have, want)
				if have < want || d.Status.ObservedGeneration < d.Generation {
					waiting = append(waiting, fmt.Sprintf("%s: %d of %d pods available", what, have, want))
				}
				err = checkPods(what, d.Spec.Selector)
			}
		case o.Group == "batch" && o.Kind == "Job":
			var j *batchv1.Job
			if j, err = k.cs.BatchV1().Jobs(ns).Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				done := false
				for _, c := range j.Status.Conditions {
					if c.Status != corev1.ConditionTrue {
						continue
					}
					switch c.Type {
					case batchv1.JobComplete:
						done = true
					case batchv1.JobFailed:
						failed = append(failed, fmt.Sprintf("%s: %s: %s", what, c.Reason, c.Message))
						done = true
					}
				}
				if !done {
					waiting = append(waiting, what+": not complete")
					err = checkPods(what, j.Spec.Selector)
				}
			}
		case o.Group == "" && o.Kind == "Pod":
			var pod *corev1.Pod
			if pod, err = k.cs.CoreV1().Pods(ns).Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				wantPods++
				switch f := podFailure(pod); {
				case f != "":
					failed = append(failed, what+": "+f)
				case podReady(pod):
					readyPods++
				default:
					reasons[podWaitReason(pod)]++
					waiting = append(waiting, what+": not ready")
				}
			}
		default:
			continue
		}
		if apierrors.IsNotFound(err) {
			waiting = append(waiting, what+": not found")
			continue
		}
		if err != nil {
			return readiness{}, apiError(err, "read "+what)
		}
	}
	if len(failed) > 0 {
		return readiness{state: sdk.DeployFailed, msg: "workloads cannot start: " + strings.Join(dedupe(failed), "; ")}, nil
	}
	if len(waiting) == 0 {
		return readiness{state: sdk.DeploySucceeded}, nil
	}
	msg := "applied; waiting for "
	if wantPods > 0 {
		msg += fmt.Sprintf("%d of %d pods", wantPods-readyPods, wantPods)
	} else {
		msg += "workloads"
	}
	if len(reasons) > 0 {
		var rs []string
		for r, n := range reasons {
			rs = append(rs, fmt.Sprintf("%s (%d)", r, n))
		}
		sort.Strings(rs)
		msg += ": " + strings.Join(rs, "; ")
	}
	msg += " [" + strings.Join(waiting, "; ") + "]"
	return readiness{state: sdk.DeployApplied, msg: msg}, nil
}

func replicasOf(r *int32) int {
	if r == nil {
		return 1
	}
	return int(*r)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// podReady reports whether a pod is Running and Ready.
func podReady(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podFailure is why a pod cannot start by waiting ("" when it can).
func podFailure(pod *corev1.Pod) string {
	if pod.Status.Phase == corev1.PodFailed {
		return fmt.Sprintf("pod %s Failed: %s %s", pod.Name, pod.Status.Reason, pod.Status.Message)
	}
	all := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, c := range all {
		w := c.State.Waiting
		if w == nil || !fatalWaiting[w.Reason] {
			continue
		}
		msg := fmt.Sprintf("pod %s container %s %s", pod.Name, c.Name, w.Reason)
		if t := c.LastTerminationState.Terminated; t != nil {
			msg += fmt.Sprintf(" (last exit %d: %s)", t.ExitCode, t.Reason)
		}
		if w.Message != "" {
			msg += ": " + w.Message
		}
		return msg
	}
	return ""
}

// podWaitReason says briefly why a pod is not ready yet.
func podWaitReason(pod *corev1.Pod) string {
	r := string(pod.Status.Phase)
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			r += ", " + c.Reason
			if c.Message != "" {
				r += ": " + c.Message
			}
			return r
		}
	}
	for _, c := range pod.Status.ContainerStatuses {
		if c.State.Waiting != nil && c.State.Waiting.Reason != "" {
			return r + ", " + c.Name + " " + c.State.Waiting.Reason
		}
		if !c.Ready {
			return r + ", " + c.Name + " not ready"
		}
	}
	return r
}

// hasWorkloads reports whether objs hold a kind whose readiness is evaluated.
func hasWorkloads(objs []objRef) bool {
	for _, o := range objs {
		switch {
		case o.Group == "apps" && (o.Kind == "Deployment" || o.Kind == "StatefulSet" || o.Kind == "ReplicaSet" || o.Kind == "DaemonSet"),
			o.Group == "batch" && o.Kind == "Job", o.Group == "" && o.Kind == "Pod":
			return true
		}
	}
	return false
}

// withReadiness turns a deployment whose steps succeeded into applied or failed when
// its workloads are not ready; wait > 0 polls until they are, or fail, or wait passes.
func withReadiness(ctx context.Context, k *cluster, ns string, objs []objRef, d sdk.Deployment, wait time.Duration) sdk.Deployment {
	if (d.State != sdk.DeploySucceeded && d.State != sdk.DeployApplied) || !hasWorkloads(objs) {
		return d
	}
	if wait <= 0 {
		r, err := workloadReadiness(ctx, k, ns, objs)
		if err != nil {
			d.State, d.Message = sdk.DeployApplied, "applied; workloads not evaluated: "+err.Error()
		} else {
			d.State, d.Message = r.state, r.msg
		}
		return d
	}
	// Half of what is left of the caller's deadline, so that the answer still gets
	// recorded and returned.
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/2)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		r, err := workloadReadiness(wctx, k, ns, objs)
		if err == nil && r.state != sdk.DeployApplied {
			d.State, d.Message = r.state, r.msg
			return d
		}
		if err == nil {
			d.State, d.Message = r.state, r.msg
		} else if wctx.Err() == nil {
			d.State, d.Message = sdk.DeployApplied, "applied; workloads not evaluated: "+err.Error()
		}
		select {
		case <-wctx.Done():
			return d
		case <-time.After(jobPoll):
		}
	}
}
