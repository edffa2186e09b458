package main

import (
	"strings"
	"testing"

	v1 "github.com/necos/necos/api/v1"
)

// A Kubernetes part is reached with its own kubeconfig, in its namespace; a part without
// one is refused with the reason (a tenant who does not own the slice gets no
// credential).
func TestPartKube(t *testing.T) {
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t0k}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: necos-s-edge}}]
current-context: x
`
	cred := &v1.Credential{Kind: "kubeconfig", Secret: kc}
	for _, c := range []struct {
		name   string
		part   v1.Part
		ns     string
		errHas string
	}{
		{"namespace attribute", v1.Part{Name: "edge", Credential: cred, Attributes: map[string]string{"namespace": "necos-attr"}}, "necos-attr", ""},
		{"namespace of the kubeconfig", v1.Part{Name: "edge", Credential: cred}, "necos-s-edge", ""},
		{"no credential", v1.Part{Name: "edge"}, "", "part edge has no kubeconfig credential"},
		{"an SSH key", v1.Part{Name: "edge", Credential: &v1.Credential{Kind: "ssh-key", Secret: "k"}}, "", "no kubeconfig credential"},
		{"a broken kubeconfig", v1.Part{Name: "edge", Credential: &v1.Credential{Kind: "kubeconfig", Secret: "{"}}, "", "part edge's kubeconfig"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, ns, err := partKube(c.part)
			if c.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), c.errHas) {
					t.Fatalf("error %v, want one naming %q", err, c.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ns != c.ns || cfg.Host != "https://127.0.0.1:6443" || cfg.BearerToken != "t0k" {
				t.Errorf("namespace %q, host %q, token %q", ns, cfg.Host, cfg.BearerToken)
			}
		})
	}
}
