package kubevim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// What the nodes of a VDU mean for the workloads deployed onto it. A part's nodes are
// shares of its quota; the workloads a service deploys for a VDU (its work names the VDU
// or one of its nodes) are labelled necos.io/vdu and follow the VDU's nodes:
//
//   - replicas: a Deployment, StatefulSet or ReplicaSet runs the replicas its manifest
//     asks for plus one per node the VDU has beyond those it was created with
//     (add-node: one more replica; removing a node: one fewer, never below zero);
//   - size: every container's CPU (and memory) requests and limits, as the manifest
//     states them, scale with the VDU's nodes' average CPUs (memory) over the size the
//     VDU was created with; running pods are resized in place (the pods' resize
//     subresource: no restart), new pods start from their template's size and are
//     resized by the next Resize, Scale or Deploy.
//
// Both are derived, never accumulated, so a retried call changes nothing more.

const (
	labelVDU = "necos.io/vdu"
	// annReplicas holds the replicas a workload's manifest asked for.
	annReplicas = "necos.io/replicas"
	// annResources, on a pod template, holds the containers' resources as the
	// manifest stated them (JSON: container -> {requests, limits}).
	annResources = "necos.io/resources"
)

// scalable are the kinds whose replicas follow a VDU's nodes.
var scalable = map[string]bool{"Deployment": true, "StatefulSet": true, "ReplicaSet": true}

// withTemplates are the kinds with a pod template at spec.template.
var withTemplates = map[string]bool{"Deployment": true, "StatefulSet": true, "ReplicaSet": true, "DaemonSet": true,
	"Job": true}

// vduOfWork returns the VDU a work's node names: a VDU, a node of one, or "" (the part).
func vduOfWork(l layout, node string) string {
	if i, ok := l.vdu(node); ok {
		return l.VDUs[i].Name
	}
	if i, ok := l.nodeVDU(node); ok {
		return l.VDUs[i].Name
	}
	return ""
}

// extraNodes is how many nodes the VDU has beyond those it was created with.
func (v vduLayout) extraNodes() int {
	if v.Base == nil {
		return 0
	}
	return v.Instances - v.Base.Instances
}

// factors are the VDU's nodes' average CPUs and memory over the size it was created
// with (1 when unknown).
func (v vduLayout) factors() (cpu, mem float64) {
	cpu, mem = 1, 1
	if v.Base == nil || v.Instances == 0 {
		return
	}
	var cpus, memMB float64
	for i := 1; i <= v.Instances; i++ {
		s := v.size(i)
		cpus += float64(s.CPUs)
		memMB += float64(s.MemoryMB)
	}
	if v.Base.CPUs > 0 {
		cpu = cpus / float64(v.Instances) / float64(v.Base.CPUs)
	}
	if v.Base.MemoryMB > 0 {
		mem = memMB / float64(v.Instances) / float64(v.Base.MemoryMB)
	}
	return
}

// replicasFor is what a workload of v whose manifest asks for want replicas runs.
func (v vduLayout) replicasFor(want int64) int64 {
	if v.Instances == 0 {
		return 0
	}
	return max(want+int64(v.extraNodes()), 0)
}

// shapeForVDU labels a workload (and its pods) with its VDU, records what its manifest
// asks for, and sets its replicas for the VDU's nodes now.
func shapeForVDU(u *unstructured.Unstructured, v vduLayout) error {
	lbl := u.GetLabels()
	if lbl == nil {
		lbl = map[string]string{}
	}
	lbl[labelVDU] = labelValue(v.Name)
	u.SetLabels(lbl)
	kind := u.GetKind()
	if !withTemplates[kind] {
		return nil
	}
	if err := unstructured.SetNestedField(u.Object, labelValue(v.Name), "spec", "template", "metadata", "labels", labelVDU); err != nil {
		return fmt.Errorf("%s %s: spec.template.metadata.labels: %v", kind, u.GetName(), err)
	}
	containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	base := map[string]corev1.ResourceRequirements{}
	for _, c := range containers {
		cm, _ := c.(map[string]any)
		name, _ := cm["name"].(string)
		res, _ := cm["resources"].(map[string]any)
		b, _ := json.Marshal(res)
		var rr corev1.ResourceRequirements
		if err := json.Unmarshal(b, &rr); err != nil {
			return fmt.Errorf("%s %s: container %s: resources: %v", kind, u.GetName(), name, err)
		}
		base[name] = rr
	}
	b, _ := json.Marshal(base)
	if err := unstructured.SetNestedField(u.Object, string(b), "spec", "template", "metadata", "annotations", annResources); err != nil {
		return fmt.Errorf("%s %s: spec.template.metadata.annotations: %v", kind, u.GetName(), err)
	}
	if scalable[kind] {
		want := int64(1)
		if r, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "replicas"); found {
			// Decoded YAML holds numbers as int64 or float64.
			switch n := r.(type) {
			case int64:
				want = n
			case float64:
				want = int64(n)
			default:
				return fmt.Errorf("%s %s: spec.replicas: expected a number, got %v", kind, u.GetName(), r)
			}
		}
		ann := u.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[annReplicas] = strconv.FormatInt(want, 10)
		u.SetAnnotations(ann)
		if err := unstructured.SetNestedField(u.Object, v.replicasFor(want), "spec", "replicas"); err != nil {
			return err
		}
	}
	return nil
}

// scaled returns base scaled: CPU by cpu, memory by mem (CPU in millicores, memory in
// whole MiB when scaled).
func scaledResources(base corev1.ResourceRequirements, cpu, mem float64) corev1.ResourceRequirements {
	scale := func(l corev1.ResourceList) corev1.ResourceList {
		if l == nil {
			return nil
		}
		out := corev1.ResourceList{}
		for name, q := range l {
			switch name {
			case corev1.ResourceCPU:
				out[name] = *resource.NewMilliQuantity(int64(float64(q.MilliValue())*cpu+0.5), resource.DecimalSI)
			case corev1.ResourceMemory:
				if mem == 1 {
					out[name] = q.DeepCopy()
				} else {
					out[name] = *resource.NewQuantity(int64(float64(q.Value())*mem/mib+0.5)*mib, resource.BinarySI)
				}
			default:
				out[name] = q.DeepCopy()
			}
		}
		return out
	}
	return corev1.ResourceRequirements{Requests: scale(base.Requests), Limits: scale(base.Limits)}
}

// sameResources compares the CPU and memory of two requirements.
func sameResources(a, b corev1.ResourceRequirements) bool {
	for _, pair := range [][2]corev1.ResourceList{{a.Requests, b.Requests}, {a.Limits, b.Limits}} {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			x, xok := pair[0][name]
			y, yok := pair[1][name]
			if xok != yok || (xok && x.Cmp(y) != 0) {
				return false
			}
		}
	}
	return true
}

// syncWorkloads brings the workloads of every VDU of the part to what its nodes mean:
// replicas, and the size of running pods (resized in place).
func syncWorkloads(ctx context.Context, k *cluster, ns string, l layout) error {
	var errs []error
	for _, v := range l.VDUs {
		sel := labels.SelectorFromSet(labels.Set{labelVDU: labelValue(v.Name), labelManagedBy: managedBy}).String()
		if err := syncReplicas(ctx, k, ns, sel, v); err != nil {
			errs = append(errs, err)
		}
		cpu, mem := v.factors()
		pods, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labelVDU + "=" + labelValue(v.Name)})
		if err != nil {
			errs = append(errs, apiError(err, "list pods of VDU "+v.Name))
			continue
		}
		for i := range pods.Items {
			if err := resizePod(ctx, k, &pods.Items[i], cpu, mem); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func syncReplicas(ctx context.Context, k *cluster, ns, sel string, v vduLayout) error {
	var errs []error
	set := func(kind, name string, annotations map[string]string, get func() (int32, error), update func(int32) error) {
		want, err := strconv.ParseInt(annotations[annReplicas], 10, 64)
		if err != nil {
			return // not deployed by this plugin's Deployer
		}
		have, err := get()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", kind, name, err))
			return
		}
		if n := int32(v.replicasFor(want)); n != have {
			if err := update(n); err != nil {
				errs = append(errs, fmt.Errorf("scale %s %s to %d: %w", kind, name, n, err))
			}
		}
	}
	deps, err := k.cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return apiError(err, "list deployments")
	}
	for _, d := range deps.Items {
		name := d.Name
		set("Deployment", name, d.Annotations, func() (int32, error) {
			s, err := k.cs.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
			if err != nil {
				return 0, err
			}
			return s.Spec.Replicas, nil
		}, func(n int32) error {
			s, err := k.cs.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Spec.Replicas = n
			_, err = k.cs.AppsV1().Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{FieldManager: fieldManager})
			return err
		})
	}
	sts, err := k.cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return apiError(err, "list stateful sets")
	}
	for _, d := range sts.Items {
		name := d.Name
		set("StatefulSet", name, d.Annotations, func() (int32, error) {
			s, err := k.cs.AppsV1().StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
			if err != nil {
				return 0, err
			}
			return s.Spec.Replicas, nil
		}, func(n int32) error {
			s, err := k.cs.AppsV1().StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Spec.Replicas = n
			_, err = k.cs.AppsV1().StatefulSets(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{FieldManager: fieldManager})
			return err
		})
	}
	return errors.Join(errs...)
}

// resizePod resizes a running or pending pod's containers in place to their manifest's
// resources scaled by cpu and mem.
func resizePod(ctx context.Context, k *cluster, pod *corev1.Pod, cpu, mem float64) error {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	raw, ok := pod.Annotations[annResources]
	if !ok {
		return nil
	}
	var base map[string]corev1.ResourceRequirements
	if err := json.Unmarshal([]byte(raw), &base); err != nil {
		return fmt.Errorf("pod %s: annotation %s: %v", pod.Name, annResources, err)
	}
	changed := false
	p := pod.DeepCopy()
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		b, ok := base[c.Name]
		if !ok || (len(b.Requests) == 0 && len(b.Limits) == 0) {
			continue
		}
		want := scaledResources(b, cpu, mem)
		// What the manifest did not state (defaults from the LimitRange) stays.
		for name, q := range want.Requests {
			if c.Resources.Requests == nil {
				c.Resources.Requests = corev1.ResourceList{}
			}
			if cur := c.Resources.Requests[name]; cur.Cmp(q) != 0 {
				c.Resources.Requests[name], changed = q, true
			}
		}
		for name, q := range want.Limits {
			if c.Resources.Limits == nil {
				c.Resources.Limits = corev1.ResourceList{}
			}
			if cur := c.Resources.Limits[name]; cur.Cmp(q) != 0 {
				c.Resources.Limits[name], changed = q, true
			}
		}
	}
	if !changed {
		return nil
	}
	_, err := k.cs.CoreV1().Pods(pod.Namespace).UpdateResize(ctx, pod.Name, p, metav1.UpdateOptions{FieldManager: fieldManager})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or changed meanwhile: the next sync sees it as it is
	}
	if err != nil {
		return fmt.Errorf("resize pod %s: %w", pod.Name, err)
	}
	return nil
}
