package kubevim

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/necos/necos/sdk"
)

// capacity is what the provider offers: the configured capacity, with fields left at
// zero filled from the allocatable resources of the selected, schedulable nodes (CPUs,
// memory, ephemeral storage). Nodes stays zero: a part's nodes are quota slices, and the
// number of them is bounded only by the resources.
func capacity(ctx context.Context, s settings, k *cluster) (sdk.Resources, error) {
	var r sdk.Resources
	if c := s.Capacity; c != nil {
		r = sdk.Resources{CPUs: c.CPUs, MemoryMB: c.MemoryMB, StorageGB: c.StorageGB}
	}
	if r.CPUs > 0 && r.MemoryMB > 0 && r.StorageGB > 0 {
		return r, nil
	}
	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(s.NodeLabels).String()})
	if err != nil {
		return r, apiError(err, "list nodes")
	}
	var milliCPU, memBytes, storageBytes int64
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			continue
		}
		a := n.Status.Allocatable
		milliCPU += a.Cpu().MilliValue()
		memBytes += a.Memory().Value()
		storageBytes += a.StorageEphemeral().Value()
	}
	if r.CPUs == 0 {
		r.CPUs = int(milliCPU / 1000)
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = memBytes / mib
	}
	if r.StorageGB == 0 {
		r.StorageGB = storageBytes / gib
	}
	return r, nil
}

// granted sums what the provider's parts hold, from their namespaces' layouts, leaving
// out the part with key except (empty: none). Namespaces being deleted still count:
// their workloads may still run.
func granted(ctx context.Context, s settings, k *cluster, except string) (sdk.Resources, error) {
	list, err := k.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: providerSelector(s)})
	if err != nil {
		return sdk.Resources{}, apiError(err, "list parts")
	}
	var r sdk.Resources
	for _, ns := range list.Items {
		if except != "" && ns.Labels[labelKey] == except {
			continue
		}
		l, err := parseLayout(ns.Annotations[annLayout])
		if err != nil {
			return r, sdk.Errorf(sdk.CodeInternal, "namespace %s: %v", ns.Name, err)
		}
		r = r.Add(l.total())
	}
	return r, nil
}

func providerSelector(s settings) string {
	return labels.SelectorFromSet(labels.Set{labelManagedBy: managedBy, labelProvider: labelValue(s.provider.Name)}).String()
}

// available returns capacity and what is free of it without the part with key except.
func available(ctx context.Context, s settings, k *cluster, except string) (capa, free sdk.Resources, err error) {
	if capa, err = capacity(ctx, s, k); err != nil {
		return capa, free, err
	}
	g, err := granted(ctx, s, k, except)
	if err != nil {
		return capa, free, err
	}
	free = capa.Sub(g)
	free.Nodes = 0
	// Capacity overridden below what is already granted: nothing is free, not less.
	free.CPUs, free.MemoryMB, free.StorageGB = max(free.CPUs, 0), max(free.MemoryMB, 0), max(free.StorageGB, 0)
	return capa, free, nil
}

// price is the offer's price per day for a part holding r.
func price(s settings, r sdk.Resources) float64 {
	return float64(r.Nodes)*s.pricePerNodeDay + float64(r.CPUs)*s.PricePerCPUDay
}

// Offer says whether the part fits in what is free now, and its price. A part that
// already exists is left out of the accounting, so its offer does not change once made.
func (p *Plugin) Offer(ctx context.Context, req sdk.OfferRequest) (sdk.Offer, error) {
	spec := req.Part
	s, k, err := p.state()
	if err != nil {
		return sdk.Offer{}, err
	}
	capa, free, err := available(ctx, s, k, partKey(spec.Ref))
	if err != nil {
		return sdk.Offer{}, fmt.Errorf("offer %s: %w", spec.Ref, err)
	}
	need := spec.Resources()
	o := sdk.Offer{Requested: need, Free: free, Capacity: capa, PricePerDay: price(s, need)}
	o.Accepted, o.Reason = need.Fits(free)
	p.log.Debug("offer", "part", spec.Ref.String(), "accepted", o.Accepted, "reason", o.Reason,
		"cpus", need.CPUs, "memory_mb", need.MemoryMB, "storage_gb", need.StorageGB, "free_cpus", free.CPUs)
	return o, nil
}

// podCounts counts a namespace's pods by phase, for Describe.
func podCounts(pods []corev1.Pod) map[corev1.PodPhase]int {
	out := map[corev1.PodPhase]int{}
	for _, p := range pods {
		out[p.Status.Phase]++
	}
	return out
}
