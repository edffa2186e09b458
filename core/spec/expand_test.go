package spec

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
)

func createdMinimal(t *testing.T) (*Slice, Status) {
	t.Helper()
	s, err := ParseSlice([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	return s, minimalStatus()
}

func TestResolver(t *testing.T) {
	s, st := createdMinimal(t)
	r := Resolver(s, st)
	for ref, want := range map[string]string{
		"slice.id":                               "s1",
		"parts.core.vdus.k8s-master.ip":          "10.10.2.1",
		"parts.core.vdus.k8s-node.ip":            "10.10.2.2",
		"parts.core.vdus.k8s-node-2.ip":          "10.10.2.3",
		"parts.core.vdus.k8s-node.ips":           "10.10.2.2 10.10.2.3",
		"parts.core.vdus.k8s-node.names":         "k8s-node-1 k8s-node-2",
		"parts.core.vdus.k8s-master.name":        "k8s-master-1",
		"parts.core.vdus.uuid-n2.name":           "k8s-node-2",
		"parts.core.vdus.k8s-node-1.id":          "uuid-n1",
		"parts.core.vdus.k8s-node.type":          "worker",
		"parts.edge.vdus.vm.type":                "",
		"parts.core.vim-ref.ip-api":              "127.0.0.1",
		"parts.core.vim-ref.port-api":            "6443",
		"parts.edge.vim-ref.port-ssh":            "22",
		"parts.edge.vim-ref.ip-api":              "",
		"parts.core.dc-slice-controller.port":    "5000",
		"parts.edge.location":                    "EUROPE.SPAIN",
		"parts.core.type":                        "DC",
		"links.core-to-edge.link-end2-ip":        "192.168.100.2",
		"links.core-to-edge.link-end3-ip":        "",
		"links.nowhere.link-end1-ip":             "",
		"parts.core.vdus.k8s-master.ip.extra":    "",
		"parts.core.vdus":                        "",
		"parts.nowhere.name":                     "",
		"slice.name":                             "",
		"parts.core.vdus.k8s-master.description": "",
	} {
		got, ok := r(ref)
		if got != want || ok != (want != "") {
			t.Errorf("%s = %q, %v; want %q", ref, got, ok, want)
		}
	}
	// A Kubernetes part's namespace; a part without one (an SSH part) has none.
	st2 := Status{Parts: map[string]PartStatus{}}
	maps.Copy(st2.Parts, st.Parts)
	core := st2.Parts["core"]
	core.Namespace = "necos-s1-core"
	st2.Parts["core"] = core
	if got, ok := Resolver(s, st2)("parts.core.namespace"); got != "necos-s1-core" || !ok {
		t.Errorf("parts.core.namespace = %q, %v; want necos-s1-core", got, ok)
	}
	if got, ok := r("parts.core.namespace"); ok {
		t.Errorf("parts.core.namespace without one = %q, want none", got)
	}
	if got, ok := r("parts.edge.namespace"); ok {
		t.Errorf("parts.edge.namespace (an SSH part) = %q, want none", got)
	}
	if _, ok := Resolver(s, Status{})("parts.core.namespace"); ok {
		t.Error("a namespace before creation")
	}
	// Before creation nothing but the spec's own facts resolves.
	r = Resolver(s, Status{})
	if _, ok := r("parts.core.vdus.k8s-master.ip"); ok {
		t.Error("no ip before creation")
	}
	if v, _ := r("parts.core.location"); v != "AMERICA.BRAZIL" {
		t.Error("location before creation")
	}
}

func TestExpand(t *testing.T) {
	s, st := createdMinimal(t)
	svc := &Service{SliceID: "s1", Parts: []ServicePart{{
		Name: "core",
		VDUs: []ServiceVDU{{
			Name:      "k8s-master",
			Namespace: "ns-${slice.id}",
			Commands: []string{
				`sed -i "s/REPLACE/${parts.core.vdus.k8s-master.ip}/" f && echo $coreip ${HOME} $${parts.core.x} ${parts.edge.vim-ref.ip-ssh}:${parts.edge.vim-ref.port-ssh}`,
				"no references here",
			},
			Manifests: []string{"data: {core: '${parts.core.vim-ref.ip-api}'}"},
		}},
		Policies: []Policy{{Name: "p", PostDeployment: &PostDeployment{Node: "${parts.core.vdus.k8s-node.name}", Commands: []string{"ping ${links.core-to-edge.link-end2-ip}"}}}},
	}}}
	orig := svc.Parts[0].Policies[0].PostDeployment
	if err := Expand(svc, Resolver(s, st)); err != nil {
		t.Fatal(err)
	}
	v := svc.Parts[0].VDUs[0]
	want := []string{
		`sed -i "s/REPLACE/10.10.2.1/" f && echo $coreip ${HOME} ${parts.core.x} 127.0.0.2:22`,
		"no references here",
	}
	if !reflect.DeepEqual(v.Commands, want) || v.Namespace != "ns-s1" || v.Manifests[0] != "data: {core: '127.0.0.1'}" {
		t.Errorf("expanded %+v", v)
	}
	pd := svc.Parts[0].Policies[0].PostDeployment
	if pd.Node != "k8s-node-1" || pd.Commands[0] != "ping 192.168.100.2" {
		t.Errorf("post-deployment %+v", pd)
	}
	if orig.Node != "${parts.core.vdus.k8s-node.name}" {
		t.Error("Expand must not change the policy it was given in place")
	}
}

func TestExpandReportsEveryUnknownReference(t *testing.T) {
	s, st := createdMinimal(t)
	svc := &Service{SliceID: "s1", Parts: []ServicePart{{
		Name: "core",
		VDUs: []ServiceVDU{{
			Name:     "k8s-master",
			Commands: []string{"ok ${slice.id}", "echo ${parts.core.vdus.k8s-mastr.ip} ${parts.edge.vdus.vm.ipp}", "${slice.id"},
		}, {
			Name:      "k8s-node",
			Namespace: "${parts.core.name}-${slice.id}-X",
			Manifests: []string{"${parts.core.vdus.a b.ip}"},
		}},
	}}}
	before := svc.Parts[0].VDUs[0].Commands[0]
	err := Expand(svc, Resolver(s, st))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := []string{
		"parts.core.vdus.k8s-master.commands[1]: unknown reference ${parts.core.vdus.k8s-mastr.ip}; unknown reference ${parts.edge.vdus.vm.ipp}",
		`parts.core.vdus.k8s-master.commands[2]: unterminated reference "${slice.id"`,
		`parts.core.vdus.k8s-node.namespace: expands to "core-s1-X", not a Kubernetes namespace`,
		`parts.core.vdus.k8s-node.manifests[0]: malformed reference "${parts.core.vdus.a b.ip}"`,
	}
	var got []string
	for _, p := range e.Problems {
		got = append(got, p.String())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if svc.Parts[0].VDUs[0].Commands[0] != before {
		t.Error("a failed Expand must leave the service unchanged")
	}
}

// The example service's references all resolve against the example slice once created.
func TestExpandExampleService(t *testing.T) {
	s, err := ParseSlice(readFile(t, "../../examples/slices/iot-dojot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ParseService(readFile(t, "../../examples/slices/iot-dojot-service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st := Status{Parts: map[string]PartStatus{}}
	for i, p := range s.Parts {
		ps := PartStatus{}
		for j, v := range p.VIM.VDUs {
			for k, n := range v.NodeNames() {
				ps.Nodes = append(ps.Nodes, NodeStatus{Name: n, VDU: v.Name, IP: fmt.Sprintf("10.10.%d.%d", i+1, 10*j+k+1)})
			}
		}
		st.Parts[p.Name] = ps
	}
	if err := Expand(svc, Resolver(s, st)); err != nil {
		t.Fatal(err)
	}
	if got := svc.Parts[0].VDUs[0].Commands[1]; !strings.Contains(got, `"s/REPLACE/10.10.1.1/"`) {
		t.Errorf("command %q", got)
	}
	if got := svc.Parts[1].VDUs[0].Manifests[0]; !strings.Contains(got, `core-host: "10.10.1.1"`) || !strings.Contains(got, `slice: "IoTService_sliced"`) {
		t.Errorf("manifest %q", got)
	}
}
