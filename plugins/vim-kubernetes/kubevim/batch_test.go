package kubevim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"github.com/necos/necos/sdk"
)

// standIn serves what Metrics and MetricsBatch read of a cluster (namespaces, pods,
// quotas, and metrics.k8s.io as metrics-server serves it), and counts the requests by
// path. No metrics-server can run here; the real cluster's tests (TestPods) check the
// figures against real pods.
type standIn struct {
	namespaces []corev1.Namespace
	pods       []corev1.Pod
	quotas     []corev1.ResourceQuota
	usage      map[string]string // pod name -> CPU use ("250m")

	mu          sync.Mutex
	metricsDown bool
	hits        map[string]int
}

func (s *standIn) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *standIn) reset(metricsDown bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits, s.metricsDown = map[string]int{}, metricsDown
}

func (s *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits[r.URL.Path]++
	down := s.metricsDown
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	path := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	inNS := func(ns string) bool { // a path .../namespaces/<ns>/... reads that namespace only
		for i := 0; i+1 < len(path); i++ {
			if path[i] == "namespaces" {
				return path[i+1] == ns
			}
		}
		return true
	}
	write := func(v any) { _ = json.NewEncoder(w).Encode(v) }
	switch {
	case r.URL.Path == "/api/v1/namespaces":
		list := corev1.NamespaceList{TypeMeta: metav1.TypeMeta{Kind: "NamespaceList", APIVersion: "v1"}}
		for _, ns := range s.namespaces {
			if sel.Matches(labels.Set(ns.Labels)) {
				list.Items = append(list.Items, ns)
			}
		}
		write(list)
	case r.URL.Path == "/apis/metrics.k8s.io/v1beta1":
		_, _ = w.Write([]byte(`{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"metrics.k8s.io/v1beta1",
			"resources":[{"name":"pods","namespaced":true,"kind":"PodMetrics","verbs":["get","list"]}]}`))
	case strings.HasPrefix(r.URL.Path, "/apis/metrics.k8s.io/v1beta1/") && path[len(path)-1] == "pods":
		if down {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable","code":503}`, http.StatusServiceUnavailable)
			return
		}
		type item struct {
			Metadata   metav1.ObjectMeta `json:"metadata"`
			Containers []struct {
				Name  string            `json:"name"`
				Usage map[string]string `json:"usage"`
			} `json:"containers"`
		}
		var items []item
		for _, p := range s.pods {
			if !inNS(p.Namespace) {
				continue
			}
			it := item{Metadata: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
			it.Containers = append(it.Containers, struct {
				Name  string            `json:"name"`
				Usage map[string]string `json:"usage"`
			}{"c", map[string]string{"cpu": s.usage[p.Name], "memory": "64Mi"}})
			items = append(items, it)
		}
		write(map[string]any{"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "items": items})
	case path[len(path)-1] == "pods":
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
		for _, p := range s.pods {
			if inNS(p.Namespace) && sel.Matches(labels.Set(p.Labels)) {
				list.Items = append(list.Items, p)
			}
		}
		write(list)
	case r.URL.Path == "/api/v1/resourcequotas":
		write(corev1.ResourceQuotaList{TypeMeta: metav1.TypeMeta{Kind: "ResourceQuotaList", APIVersion: "v1"}, Items: s.quotas})
	case len(path) == 6 && path[4] == "resourcequotas":
		for _, q := range s.quotas {
			if q.Namespace == path[3] && q.Name == path[5] {
				write(q)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		write(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure", Reason: metav1.StatusReasonNotFound, Code: 404})
	default:
		http.NotFound(w, r)
	}
}

// TestMetricsBatch checks that a batch answers each part as Metrics does, with one
// list across namespaces of each object for many parts, per namespace for a few, and
// from the quotas when the metrics API is down.
func TestMetricsBatch(t *testing.T) {
	s := settings{provider: sdk.Provider{Name: "test"}}
	si := &standIn{usage: map[string]string{}}
	var refs []sdk.PartRef
	for i := range 6 {
		ref := sdk.PartRef{SliceID: "batch", PartID: fmt.Sprint("part-", i)}
		refs = append(refs, ref)
		spec := sdk.PartSpec{Ref: ref, VDUs: []sdk.VDUSpec{
			{Name: "master", Instances: 1, CPUs: 1, MemoryMB: 512, Type: sdk.NodeMaster},
			{Name: "worker", Instances: 2, CPUs: 2, MemoryMB: 1024, Type: sdk.NodeWorker}}}
		ns := newNamespace(s, spec, hclog.NewNullLogger())
		ns.Name, _ = namespaceNames(ref)
		si.namespaces = append(si.namespaces, *ns)
		// A worker pod with limits in every part but the first; a pod without a VDU
		// (the tenant's own) in every part.
		if i > 0 {
			name := fmt.Sprint("worker-", i)
			si.pods = append(si.pods, corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns.Name, Labels: map[string]string{labelVDU: "worker"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
					Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning}})
			si.usage[name] = fmt.Sprint(50*i, "m")
		}
		tenant := fmt.Sprint("tenant-", i)
		si.pods = append(si.pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: tenant, Namespace: ns.Name},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}})
		si.usage[tenant] = fmt.Sprint(100+i, "m")
		if i != 2 { // a part whose quota is not made yet reads as unused
			si.quotas = append(si.quotas, corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: quotaName, Namespace: ns.Name},
				Status: corev1.ResourceQuotaStatus{Used: corev1.ResourceList{
					corev1.ResourceRequestsCPU: resource.MustParse(fmt.Sprint(200*i, "m")), corev1.ResourceRequestsMemory: resource.MustParse("1Gi")}}})
		}
	}
	// Another provider's part on the same cluster, busy: never counted.
	otherSpec := sdk.PartSpec{Ref: sdk.PartRef{SliceID: "batch", PartID: "part-0"},
		VDUs: []sdk.VDUSpec{{Name: "worker", Instances: 1, CPUs: 1, MemoryMB: 512}}}
	other := newNamespace(settings{provider: sdk.Provider{Name: "other"}}, otherSpec, hclog.NewNullLogger())
	other.Name = "necos-other"
	si.namespaces = append(si.namespaces, *other)
	si.pods = append(si.pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "busy", Namespace: other.Name,
		Labels: map[string]string{labelVDU: "worker"}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}})
	si.usage["busy"] = "4"
	si.reset(false)
	srv := httptest.NewServer(si)
	defer srv.Close()

	newPlugin := func(t *testing.T) *Plugin {
		k, err := newCluster(&rest.Config{Host: srv.URL}, "")
		if err != nil {
			t.Fatal(err)
		}
		p := NewWithLogger(hclog.NewNullLogger())
		p.cfg, p.kube = s, k
		return p
	}
	all := []sdk.MetricsRequest{{Ref: refs[0]}, {Ref: refs[1], Names: []string{sdk.MetricCPUPercent}}, {Ref: refs[2]},
		{Ref: sdk.PartRef{SliceID: "batch", PartID: "unknown"}}, {Ref: refs[3]}, {Ref: refs[4]}, {Ref: refs[5]},
		{Ref: refs[1], Names: []string{"NO_SUCH_METRIC"}}, {Ref: refs[1], Names: []string{sdk.MetricMemoryPct}}}
	for _, tc := range []struct {
		name        string
		reqs        []sdk.MetricsRequest
		metricsDown bool
		// wantHits are the requests the batch makes, by path (others: none).
		wantHits map[string]int
	}{
		{"many parts: lists across namespaces", all, false, map[string]int{
			"/api/v1/namespaces": 1, "/apis/metrics.k8s.io/v1beta1/pods": 1, "/api/v1/pods": 1}},
		{"metrics API down: quotas across namespaces", all, true, map[string]int{
			"/api/v1/namespaces": 1, "/apis/metrics.k8s.io/v1beta1/pods": 1, "/api/v1/resourcequotas": 1}},
		{"a few parts: per namespace", all[:3], false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlugin(t)
			si.reset(tc.metricsDown)
			if !metricsServed(context.Background(), p.kube) { // discovery, once a minute
				t.Fatal("the stand-in's metrics API is not found")
			}
			si.reset(tc.metricsDown)
			got, err := p.MetricsBatch(context.Background(), sdk.MetricsBatchRequest{Parts: tc.reqs})
			if err != nil {
				t.Fatal(err)
			}
			if err := sdk.CheckMetricsBatch(tc.reqs, got); err != nil {
				t.Fatal(err)
			}
			if tc.wantHits != nil {
				total := 0
				for path, n := range tc.wantHits {
					if c := si.count(path); c != n {
						t.Errorf("%d requests to %s, want %d", c, path, n)
					}
					total += n
				}
				si.mu.Lock()
				if sum := sumHits(si.hits); sum != total {
					t.Errorf("requests %v, want only %v", si.hits, tc.wantHits)
				}
				si.mu.Unlock()
			}
			for i, r := range tc.reqs {
				want, werr := p.Metrics(context.Background(), sdk.MetricsRequest{Ref: r.Ref, Names: r.Names})
				g := got[i]
				if sdk.CodeOf(g.Err) != sdk.CodeOf(werr) {
					t.Errorf("%s: error %v, Metrics says %v", r.Ref, g.Err, werr)
					continue
				}
				if len(g.Samples) != len(want) {
					t.Errorf("%s %v: %d samples, Metrics gives %d", r.Ref, r.Names, len(g.Samples), len(want))
					continue
				}
				for j, w := range want {
					if s := g.Samples[j]; s.Node != w.Node || s.NodeType != w.NodeType || s.Metric != w.Metric || s.Value != w.Value {
						t.Errorf("%s: sample %d is %+v, Metrics gives %+v", r.Ref, j, s, w)
					}
				}
			}
			if c := sdk.CodeOf(got[len(got)-1].Err); len(tc.reqs) == len(all) && c != sdk.CodeOK {
				t.Errorf("a part asked twice: %v", got[len(got)-1].Err)
			}
			if len(tc.reqs) == len(all) {
				if sdk.CodeOf(got[3].Err) != sdk.CodeNotFound || sdk.CodeOf(got[7].Err) != sdk.CodeInvalidArgument {
					t.Errorf("per-part errors: %v, %v; want NotFound and InvalidArgument", got[3].Err, got[7].Err)
				}
				// part-1's worker pod: 50m of its 500m limit.
				for _, s := range got[1].Samples {
					if s.NodeType == sdk.NodeWorker && !tc.metricsDown && s.Value != 10 {
						t.Errorf("part-1 %s: %s %v, want 10 (%% of the VDU's limit)", s.Node, s.Metric, s.Value)
					}
				}
			}
		})
	}
}

func sumHits(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
