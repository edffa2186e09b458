package service_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/necos/necos/core/service"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk"
)

// TestExamples checks examples/services against the slices of examples/slices they are
// deployed onto: they parse without warnings, every part and VDU they name exists,
// manifests go onto Kubernetes parts only, and every reference resolves against what a
// created slice holds — node addresses for VM parts, the API endpoint and the
// namespace for Kubernetes parts (whose nodes have no addresses of
// their own).
func TestExamples(t *testing.T) {
	for _, c := range []struct{ service, slice string }{
		{"touristic-cdn.yaml", "touristic-cdn.yaml"},
		{"iot-dojot.yaml", "iot-dojot.yaml"},
		{"touristic-cdn-xen.yaml", "touristic-cdn-xen.yaml"},
	} {
		t.Run(c.service, func(t *testing.T) {
			root := testenv.Root()
			doc, err := os.ReadFile(filepath.Join(root, "examples", "services", c.service))
			if err != nil {
				t.Fatal(err)
			}
			sdoc, err := os.ReadFile(filepath.Join(root, "examples", "slices", c.slice))
			if err != nil {
				t.Fatal(err)
			}
			sl, err := spec.ParseSlice(sdoc)
			if err != nil {
				t.Fatal(err)
			}
			svc, err := spec.ParseService(doc)
			if err != nil {
				t.Fatal(err)
			}
			if len(svc.Warnings) > 0 {
				t.Errorf("warnings: %v", svc.Warnings)
			}
			if svc.SliceID != sl.ID {
				t.Errorf("the service is for slice %s, the slice is %s", svc.SliceID, sl.ID)
			}
			st := spec.Status{Parts: map[string]spec.PartStatus{}}
			for i, p := range sl.Parts {
				ps := spec.PartStatus{}
				kube := strings.EqualFold(p.VIM.Name, service.VIMKubernetes)
				if kube {
					ps.VIMRef = spec.Endpoint{IPAPI: "192.0.2.10", PortAPI: 6443}
					ps.Namespace = "necos-example-" + p.Name
				} else {
					ps.VIMRef = spec.Endpoint{IPSSH: "192.0.2.20", PortSSH: 22}
				}
				for _, v := range p.VIM.VDUs {
					for n := 1; n <= v.Instances; n++ {
						ns := spec.NodeStatus{Name: sdk.NodeName(v.Name, n), VDU: v.Name, ID: "uuid"}
						if !kube {
							ns.IP = "10.10." + string(rune('1'+i)) + "." + string(rune('0'+n))
						}
						ps.Nodes = append(ps.Nodes, ns)
					}
				}
				st.Parts[p.Name] = ps
			}
			for _, sp := range svc.Parts {
				part, ok := sl.Part(sp.Name)
				if !ok {
					t.Errorf("the slice has no part %s", sp.Name)
					continue
				}
				for _, v := range sp.VDUs {
					if _, ok := part.VDU(v.Name); !ok {
						t.Errorf("part %s has no VDU %s", sp.Name, v.Name)
					}
					if len(v.Manifests) > 0 && !strings.EqualFold(part.VIM.Name, service.VIMKubernetes) {
						t.Errorf("manifests on %s, a %s part", sp.Name, part.VIM.Name)
					}
					if !strings.EqualFold(v.VIM, part.VIM.Name) {
						t.Errorf("vdu %s of %s says VIM %s, the part runs %s", v.Name, sp.Name, v.VIM, part.VIM.Name)
					}
				}
			}
			if len(svc.Policies()) == 0 {
				t.Error("no elasticity policy")
			}
			for _, pol := range svc.Policies() {
				if pol.Operator != ">" || pol.Value != 80 || pol.Collector.Metric != sdk.MetricCPUPercent {
					t.Errorf("policy %s is not the demo's CPU > 80 %%: %+v", pol.Name, pol)
				}
			}
			if err := spec.Expand(svc, spec.Resolver(sl, st)); err != nil {
				t.Fatalf("references: %v", err)
			}
			if service.DeriveID(svc) == "" {
				t.Error("no id")
			}
		})
	}
}
