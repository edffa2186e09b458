package kubevim

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/necos/necos/sdk"
)

var _ sdk.MetricsBatcher = (*Plugin)(nil)

// perNamespaceMax is the most namespaces a batch reads one by one; a larger batch
// reads each kind of object (pod metrics, pods, quotas) with one list across
// namespaces, whose size grows with the cluster rather than with the batch.
const perNamespaceMax = 4

// MetricsBatch measures many parts of the provider at once: one listing of the
// provider's namespaces finds every part, then for a few parts each namespace is read
// as Metrics reads it, and for more one list across namespaces of pod metrics
// (metrics.k8s.io) and of the VDUs' pods (or of the quotas, without the metrics API)
// serves them all. Each part's samples are those Metrics gives; a part not found, or
// whose usage could not be read, has its own error.
func (p *Plugin) MetricsBatch(ctx context.Context, req sdk.MetricsBatchRequest) ([]sdk.PartMetrics, error) {
	reqs := req.Parts
	s, k, err := p.state()
	if err != nil {
		return nil, err
	}
	list, err := k.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: providerSelector(s)})
	if err != nil {
		return nil, apiError(err, "list the provider's parts")
	}
	byKey := make(map[string]*corev1.Namespace, len(list.Items))
	for i := range list.Items {
		byKey[list.Items[i].Labels[labelKey]] = &list.Items[i]
	}
	out := make([]sdk.PartMetrics, len(reqs))
	layouts := make([]layout, len(reqs))
	spaces := make([]string, len(reqs))
	var names []string
	seen := map[string]bool{}
	for i, r := range reqs {
		out[i].Ref = r.Ref
		if out[i].Err = checkMetricNames(r.Names); out[i].Err != nil {
			continue
		}
		ns := byKey[partKey(r.Ref)]
		if ns == nil || !ownedBy(ns, s, r.Ref) {
			out[i].Err = sdk.Errorf(sdk.CodeNotFound, "part %s not found at provider %s", r.Ref, s.provider.Name)
			continue
		}
		l, err := parseLayout(ns.Annotations[annLayout])
		if err != nil {
			out[i].Err = sdk.Errorf(sdk.CodeInternal, "metrics of part %s: namespace %s: %v", r.Ref, ns.Name, err)
			continue
		}
		layouts[i], spaces[i] = l, ns.Name
		if !seen[ns.Name] {
			seen[ns.Name] = true
			names = append(names, ns.Name)
		}
	}
	usages, errs := partUsages(ctx, k, names)
	now := p.now()
	for i, r := range reqs {
		if out[i].Err != nil {
			continue
		}
		if err := errs[spaces[i]]; err != nil {
			out[i].Err = sdk.Errorf(sdk.CodeOf(err), "metrics of part %s: %v", r.Ref, err)
			continue
		}
		out[i].Samples = partSamples(layouts[i], usages[spaces[i]], r.Names, now)
	}
	p.log.Debug("metrics batch", "parts", len(reqs), "namespaces", len(names))
	return out, nil
}

// partUsages reads the usage of namespaces, as partUsage reads one: each on its own
// for a few, with lists across namespaces for more. A namespace whose usage could not
// be read has its error.
func partUsages(ctx context.Context, k *cluster, namespaces []string) (map[string]usage, map[string]error) {
	out := make(map[string]usage, len(namespaces))
	errs := map[string]error{}
	if len(namespaces) <= perNamespaceMax {
		for _, ns := range namespaces {
			if out[ns], errs[ns] = partUsage(ctx, k, ns); errs[ns] == nil {
				delete(errs, ns)
			}
		}
		return out, errs
	}
	want := make(map[string]bool, len(namespaces))
	for _, ns := range namespaces {
		want[ns] = true
	}
	us, err := clusterUsages(ctx, k, want)
	if err != nil {
		for _, ns := range namespaces {
			errs[ns] = err
		}
		return out, errs
	}
	for _, ns := range namespaces {
		if u := us[ns]; u != nil {
			out[ns] = *u
		} else {
			out[ns] = usage{source: us[""].source}
		}
	}
	return out, errs
}

// clusterUsages reads the usage of the namespaces in want with one list across
// namespaces of each kind of object. The entry "" carries only the source used, for
// namespaces without pods.
func clusterUsages(ctx context.Context, k *cluster, want map[string]bool) (map[string]*usage, error) {
	if metricsServed(ctx, k) {
		us, err := clusterMetricsUsages(ctx, k, want)
		if err == nil {
			// Without the pods' labels and limits the parts' figures still hold.
			if pods, err := k.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: labelVDU}); err == nil {
				addVDUUsages(pods.Items, us)
			}
			us[""] = &usage{source: sourceMetricsAPI}
			return us, nil
		}
		// The API is registered but its backend may be down: fall back, do not fail.
		if !apierrors.IsNotFound(err) && !apierrors.IsServiceUnavailable(err) {
			return nil, apiError(err, "read "+metricsGroupVersion)
		}
	}
	qs, err := k.cs.CoreV1().ResourceQuotas("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", quotaName).String()})
	if err != nil {
		return nil, apiError(err, "list quotas")
	}
	us := map[string]*usage{"": {source: sourceQuota}}
	for _, q := range qs.Items {
		if !want[q.Namespace] {
			continue
		}
		u := &usage{source: sourceQuota}
		if v, ok := q.Status.Used[corev1.ResourceRequestsCPU]; ok {
			u.milliCPU = v.MilliValue()
		}
		if v, ok := q.Status.Used[corev1.ResourceRequestsMemory]; ok {
			u.memBytes = v.Value()
		}
		us[q.Namespace] = u
	}
	return us, nil
}

// clusterMetricsUsages reads the pod metrics of every namespace at once and sums those
// of the namespaces in want. Namespaces without pods get an empty usage.
func clusterMetricsUsages(ctx context.Context, k *cluster, want map[string]bool) (map[string]*usage, error) {
	raw, err := k.cs.Discovery().RESTClient().Get().AbsPath("/apis", metricsGroupVersion, "pods").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	us, err := podMetricsUsages(raw, "", want)
	if err != nil {
		return nil, err
	}
	for ns := range want {
		if us[ns] == nil {
			us[ns] = &usage{source: sourceMetricsAPI, pods: map[string]usage{}}
		}
	}
	return us, nil
}
