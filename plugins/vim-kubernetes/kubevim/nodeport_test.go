package kubevim

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestKeepClientSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec map[string]any
		want string // the externalTrafficPolicy after, "" for none
	}{
		{"cluster IP", map[string]any{"ports": []any{}}, ""},
		{"node port", map[string]any{"type": "NodePort"}, "Local"},
		{"load balancer", map[string]any{"type": "LoadBalancer"}, "Local"},
		{"external IPs", map[string]any{"externalIPs": []any{"192.0.2.1"}}, "Local"},
		{"local kept", map[string]any{"type": "NodePort", "externalTrafficPolicy": "Local"}, "Local"},
		// Left as written: the admission policy refuses it with its reason.
		{"cluster left", map[string]any{"type": "NodePort", "externalTrafficPolicy": "Cluster"}, "Cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Service",
				"metadata": map[string]any{"name": "s"}, "spec": tc.spec}}
			if err := keepClientSource(u); err != nil {
				t.Fatal(err)
			}
			got, _, _ := unstructured.NestedString(u.Object, "spec", "externalTrafficPolicy")
			if got != tc.want {
				t.Errorf("externalTrafficPolicy %q, want %q", got, tc.want)
			}
		})
	}
	bad := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"type": 3}}}
	if err := keepClientSource(bad); err == nil {
		t.Error("a spec.type that is not a string: no error")
	}
}
