package kubevim

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/client-go/rest"
)

// TestMetricsAPIUsage checks the reading of metrics.k8s.io answers. No metrics-server
// can run here, so a stand-in serves the two documents the plugin reads (discovery and
// the pod metrics list) as metrics-server would.
func TestMetricsAPIUsage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/apis/metrics.k8s.io/v1beta1":
			_, _ = w.Write([]byte(`{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"metrics.k8s.io/v1beta1",
				"resources":[{"name":"pods","namespaced":true,"kind":"PodMetrics","verbs":["get","list"]}]}`))
		case "/apis/metrics.k8s.io/v1beta1/namespaces/necos-a-b/pods":
			_, _ = w.Write([]byte(`{"kind":"PodMetricsList","apiVersion":"metrics.k8s.io/v1beta1","items":[
				{"metadata":{"name":"p1"},"containers":[{"name":"c","usage":{"cpu":"250m","memory":"100Mi"}},
					{"name":"d","usage":{"cpu":"1500000n","memory":"28Mi"}}]},
				{"metadata":{"name":"p2"},"containers":[{"name":"c","usage":{"cpu":"1","memory":"0"}}]}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	k, err := newCluster(&rest.Config{Host: srv.URL}, "")
	if err != nil {
		t.Fatal(err)
	}
	u, err := partUsage(context.Background(), k, "necos-a-b")
	if err != nil {
		t.Fatal(err)
	}
	if u.source != sourceMetricsAPI || u.milliCPU != 1251 || u.memBytes != 128*mib {
		t.Errorf("usage %+v, want 1251m CPU and 128Mi from %s", u, sourceMetricsAPI)
	}
	if p := percent(u.milliCPU, 2000); p < 62.5 || p > 62.6 {
		t.Errorf("percent %v", p)
	}
}
