package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// policyOf reads back the policy named name of a service document.
func policyOf(t *testing.T, doc []byte, name string) map[string]any {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		t.Fatalf("tuned document does not parse: %v", err)
	}
	var found map[string]any
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if p := mapValue(n, "policy"); p != nil {
			if v := mapValue(p, "name"); v != nil && v.Value == name {
				if err := p.Decode(&found); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	if found == nil {
		t.Fatalf("no policy %s in the tuned document", name)
	}
	return found
}

func cooldownOf(p map[string]any) any {
	post, _ := p["post-deployment"].(map[string]any)
	timers, _ := post["timers"].(map[string]any)
	return timers["reactivate-elasticity"]
}

func TestTunePoliciesOfTheExamples(t *testing.T) {
	for _, tc := range []struct {
		file, part, tuned, kept string
	}{
		{"touristic-cdn-xen.yaml", cdnLoadedEdge, "cdn-spain-cpu", ""},
		{"iot-dojot.yaml", "dc-slice2", "iotagent-cpu", "dojot-core-cpu"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			doc, err := os.ReadFile("../../examples/services/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			out, note, err := tunePolicies(doc, policyTuning{threshold: 15, cooldown: 20 * time.Second}, tc.part)
			if err != nil {
				t.Fatalf("tunePolicies: %v", err)
			}
			p := policyOf(t, out, tc.tuned)
			if p["value"] != 15 && p["value"] != 15.0 {
				t.Errorf("policy %s: value %v, want 15", tc.tuned, p["value"])
			}
			if c := cooldownOf(p); c != 20 {
				t.Errorf("policy %s: reactivate-elasticity %v, want 20", tc.tuned, c)
			}
			if !strings.Contains(note, "(the service's: 80 %)") || !strings.Contains(note, tc.part+"/"+tc.tuned) {
				t.Errorf("note %q does not say what changed", note)
			}
			if tc.kept != "" {
				if k := policyOf(t, out, tc.kept); k["value"] != 80 {
					t.Errorf("policy %s of another part: value %v, want the document's 80", tc.kept, k["value"])
				}
			}
		})
	}
}

func TestTunePolicies(t *testing.T) {
	doc := []byte(`slices:
  s:
    slice-parts:
      - dc-slice-part:
          name: edge
          elasticity:
            - policy:
                name: mem
                operator: '>'
                value: 70
                metric-collector: {metric-name: PERCENT_MEMORY_UTILIZATION}
            - policy:
                name: cpu-low
                operator: '<'
                value: 10
                metric-collector: {metric-name: PERCENT_CPU_UTILIZATION}
            - policy:
                name: cpu
                operator: '>='
                value: "80"
                metric-collector: {metric-name: PERCENT_CPU_UTILIZATION}
`)
	t.Run("only high CPU policies; a missing timer is added", func(t *testing.T) {
		out, _, err := tunePolicies(doc, policyTuning{threshold: 12.5, cooldown: 30 * time.Second}, "edge")
		if err != nil {
			t.Fatal(err)
		}
		if p := policyOf(t, out, "cpu"); p["value"] != 12.5 || cooldownOf(p) != 30 {
			t.Errorf("cpu policy: %v", p)
		}
		if p := policyOf(t, out, "mem"); p["value"] != 70 || cooldownOf(p) != nil {
			t.Errorf("memory policy changed: %v", p)
		}
		if p := policyOf(t, out, "cpu-low"); p["value"] != 10 {
			t.Errorf("scale-in policy changed: %v", p)
		}
	})
	t.Run("nothing asked, the document as it was", func(t *testing.T) {
		out, note, err := tunePolicies(doc, policyTuning{}, "edge")
		if err != nil || string(out) != string(doc) || note != "" {
			t.Errorf("got %q, %q, %v", out, note, err)
		}
	})
	t.Run("a part without a CPU policy is an error naming it", func(t *testing.T) {
		_, _, err := tunePolicies(doc, policyTuning{threshold: 15}, "edge", "core")
		if err == nil || !strings.Contains(err.Error(), "part core") {
			t.Errorf("err = %v, want one naming part core", err)
		}
	})
}
