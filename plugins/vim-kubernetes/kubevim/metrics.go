package kubevim

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/necos/necos/sdk"
)

// Where a part's usage comes from.
const (
	// sourceMetricsAPI is metrics.k8s.io (metrics-server): what the pods really use.
	sourceMetricsAPI = "metrics.k8s.io"
	// sourceQuota is the quota's status: what the pods request. Used when the cluster
	// serves no metrics API.
	sourceQuota = "quota"
)

const metricsGroupVersion = "metrics.k8s.io/v1beta1"

// metricsRecheck is how long the answer of the discovery check holds.
const metricsRecheck = time.Minute

// usage is what a part's pods use (or request): CPU in millicores, memory in bytes.
// From metrics.k8s.io it also holds, per VDU (by its label value), what the VDU's pods
// use and their limits.
type usage struct {
	milliCPU int64
	memBytes int64
	source   string
	vdus     map[string]*vduUsage
	pods     map[string]usage // by pod name, from metrics.k8s.io
}

type vduUsage struct {
	milliCPU, limitMilliCPU int64
	memBytes, limitMem      int64
}

// Metrics measures the part's nodes. A node is a share of the part's quota, not a
// machine. With metrics.k8s.io, every node of a VDU whose workloads run pods reports
// those pods' use over their limits (a CPU-bound pod at its limit reads 100 %); the
// nodes of other VDUs report the part's use over what the part holds. Without it, the
// part's quota's used requests over what it holds. MEMORY_USED_MB is the node's share
// of the used memory.
func (p *Plugin) Metrics(ctx context.Context, req sdk.MetricsRequest) ([]sdk.Sample, error) {
	ref := req.Ref
	names := req.Names
	if err := checkMetricNames(names); err != nil {
		return nil, err
	}
	s, k, err := p.state()
	if err != nil {
		return nil, err
	}
	ns, err := mustFind(ctx, s, k, ref)
	if err != nil {
		return nil, err
	}
	l, err := parseLayout(ns.Annotations[annLayout])
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, "metrics of part %s: namespace %s: %v", ref, ns.Name, err)
	}
	u, err := partUsage(ctx, k, ns.Name)
	if err != nil {
		return nil, fmt.Errorf("metrics of part %s: %w", ref, err)
	}
	out := partSamples(l, u, names, p.now())
	p.log.Debug("metrics", "part", ref.String(), "source", u.source, "samples", len(out))
	return out, nil
}

// knownMetrics are the metrics the plugin measures.
var knownMetrics = []string{sdk.MetricCPUPercent, sdk.MetricMemoryPct, sdk.MetricMemoryUsedMB}

// checkMetricNames refuses a metric the plugin does not measure with InvalidArgument, as
// every VIM does (the plugin contract): a caller that asks for a metric by name learns
// that it will never come rather than reading no samples.
func checkMetricNames(names []string) error {
	for i, n := range names {
		if !slices.Contains(knownMetrics, n) {
			return sdk.Errorf(sdk.CodeInvalidArgument, "names[%d]: unknown metric %q (known: %s)",
				i, n, strings.Join(knownMetrics, ", "))
		}
	}
	return nil
}

// partSamples turns a part's usage into the samples of its nodes (see Metrics).
func partSamples(l layout, u usage, names []string, now time.Time) []sdk.Sample {
	total := l.total()
	cpuPct := percent(u.milliCPU, int64(total.CPUs)*1000)
	memPct := percent(u.memBytes, total.MemoryMB*mib)
	want := func(m string) bool { return len(names) == 0 || slices.Contains(names, m) }
	var out []sdk.Sample
	for _, n := range l.nodes() {
		cpuPct, memPct := cpuPct, memPct
		if v := u.vdus[labelValue(n.VDU)]; v != nil && v.limitMilliCPU > 0 {
			cpuPct = percent(v.milliCPU, v.limitMilliCPU)
			if v.limitMem > 0 {
				memPct = percent(v.memBytes, v.limitMem)
			}
		}
		values := []struct {
			metric string
			value  float64
		}{
			{sdk.MetricCPUPercent, cpuPct},
			{sdk.MetricMemoryPct, memPct},
			{sdk.MetricMemoryUsedMB, memPct / 100 * float64(n.MemoryMB)},
		}
		for _, v := range values {
			if want(v.metric) {
				out = append(out, sdk.Sample{Node: n.Name, NodeType: n.Type, Metric: v.metric, Value: v.value, Time: now})
			}
		}
	}
	return out
}

// percent is 100·used/of, within 0 and 100 (pods may briefly exceed their share).
func percent(used, of int64) float64 {
	if of <= 0 || used <= 0 {
		return 0
	}
	return min(100, 100*float64(used)/float64(of))
}

// partUsage reads the namespace's usage from metrics.k8s.io when the cluster serves it,
// else from its quota status.
func partUsage(ctx context.Context, k *cluster, ns string) (usage, error) {
	if metricsServed(ctx, k) {
		u, err := metricsAPIUsage(ctx, k, ns)
		if err == nil {
			// Without the pods' labels and limits the part's figures still hold.
			_ = vduUsages(ctx, k, ns, &u)
			return u, nil
		}
		// The API is registered but its backend may be down: fall back, do not fail.
		if !apierrors.IsNotFound(err) && !apierrors.IsServiceUnavailable(err) {
			return usage{}, apiError(err, "read "+metricsGroupVersion)
		}
	}
	u := usage{source: sourceQuota}
	q, err := k.cs.CoreV1().ResourceQuotas(ns).Get(ctx, quotaName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return u, nil // a part being made or repaired: nothing is admitted without it
	}
	if err != nil {
		return usage{}, apiError(err, "get quota")
	}
	if v, ok := q.Status.Used[corev1.ResourceRequestsCPU]; ok {
		u.milliCPU = v.MilliValue()
	}
	if v, ok := q.Status.Used[corev1.ResourceRequestsMemory]; ok {
		u.memBytes = v.Value()
	}
	return u, nil
}

// metricsServed asks discovery whether the cluster serves metrics.k8s.io, at most once
// per metricsRecheck (a metrics-server may be installed or removed at any time).
func metricsServed(ctx context.Context, k *cluster) bool {
	k.metricsMu.Lock()
	defer k.metricsMu.Unlock()
	if time.Since(k.metricsChecked) < metricsRecheck {
		return k.metricsOK
	}
	_, err := k.cs.Discovery().ServerResourcesForGroupVersionWithContext(ctx, metricsGroupVersion)
	k.metricsOK, k.metricsChecked = err == nil, time.Now()
	return k.metricsOK
}

func metricsAPIUsage(ctx context.Context, k *cluster, ns string) (usage, error) {
	raw, err := k.cs.Discovery().RESTClient().Get().
		AbsPath("/apis", metricsGroupVersion, "namespaces", ns, "pods").DoRaw(ctx)
	if err != nil {
		return usage{}, err
	}
	us, err := podMetricsUsages(raw, ns, nil)
	if err != nil {
		return usage{}, err
	}
	if u := us[ns]; u != nil {
		return *u, nil
	}
	return usage{source: sourceMetricsAPI, pods: map[string]usage{}}, nil
}

// podMetricsUsages sums a metrics.k8s.io pod metrics list by namespace: every item in
// ns when set (a namespace's own list), else in the item's own namespace when want
// holds it.
func podMetricsUsages(raw []byte, ns string, want map[string]bool) (map[string]*usage, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
			Containers []struct {
				Usage map[string]resource.Quantity `json:"usage"`
			} `json:"containers"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decode %s pod metrics: %w", metricsGroupVersion, err)
	}
	out := map[string]*usage{}
	// metrics-server reports nanocores: rounding each to millicores adds up.
	nano := map[string]int64{}
	for _, pod := range list.Items {
		at := ns
		if at == "" {
			if at = pod.Metadata.Namespace; !want[at] {
				continue
			}
		}
		u := out[at]
		if u == nil {
			u = &usage{source: sourceMetricsAPI, pods: map[string]usage{}}
			out[at] = u
		}
		var podNano, podMem int64
		for _, c := range pod.Containers {
			if q, ok := c.Usage["cpu"]; ok {
				podNano += q.ScaledValue(resource.Nano)
			}
			if q, ok := c.Usage["memory"]; ok {
				podMem += q.Value()
			}
		}
		nano[at] += podNano
		u.memBytes += podMem
		u.pods[pod.Metadata.Name] = usage{milliCPU: podNano / 1e6, memBytes: podMem}
	}
	for at, u := range out {
		u.milliCPU = nano[at] / 1e6
	}
	return out, nil
}

// vduUsages sums, per VDU, the use and the limits of the running pods of its workloads.
func vduUsages(ctx context.Context, k *cluster, ns string, u *usage) error {
	pods, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labelVDU})
	if err != nil {
		return apiError(err, "list pods")
	}
	addVDUUsages(pods.Items, map[string]*usage{ns: u})
	return nil
}

// addVDUUsages adds the pods of the namespaces of us to their VDUs' use and limits.
func addVDUUsages(pods []corev1.Pod, us map[string]*usage) {
	for _, u := range us {
		u.vdus = map[string]*vduUsage{}
	}
	for _, pod := range pods {
		u := us[pod.Namespace]
		if u == nil {
			continue
		}
		pu, measured := u.pods[pod.Name]
		if pod.Status.Phase != corev1.PodRunning || !measured {
			continue
		}
		v := u.vdus[pod.Labels[labelVDU]]
		if v == nil {
			v = &vduUsage{}
			u.vdus[pod.Labels[labelVDU]] = v
		}
		v.milliCPU += pu.milliCPU
		v.memBytes += pu.memBytes
		for _, c := range pod.Spec.Containers {
			v.limitMilliCPU += c.Resources.Limits.Cpu().MilliValue()
			v.limitMem += c.Resources.Limits.Memory().Value()
		}
	}
}
