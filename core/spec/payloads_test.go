package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The testdata payloads are files the original NECOS components exchanged; every one
// that is a slice or service document must parse.
func TestPayloadsParse(t *testing.T) {
	cases := []struct {
		file  string
		parse func([]byte) (any, error)
	}{
		{"deployService_IoTService_sliced_dojot_ansible.yaml", service},
		{"deploy_service_IoTService_sliced_example1.yaml", service},
		{"deploy_service_IoTService_sliced_example2.yaml", service},
		{"start_management_IoTService_sliced.yaml", created},
		{"start_management_IoTService_sliced_deploy_server_test.yaml", created},
		{"start_management_TouristicCDN_sliced.yaml", created},
		{"update_management_IoTService_sliced_dc-slice1.yaml", created},
		{"old_pdt_format_locate_slice_resources.json", created},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.file] = true
		t.Run(c.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.parse(data); err != nil {
				t.Fatalf("parse: %v", err)
			}
		})
	}
	// A new payload must be added to the table above (or to the list of those that are
	// neither a slice nor a service document).
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s is not in the table", f)
		}
	}
}

func service(b []byte) (any, error) { return ParseService(b) }
func created(b []byte) (any, error) { return ParseCreatedSlice(b) }

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestPayloadServiceMergesRepeatedPart(t *testing.T) {
	svc, err := ParseService(readFile(t, "testdata/deploy_service_IoTService_sliced_example2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Service{SliceID: "IoTService_sliced", Parts: []ServicePart{{
		Name: "dc-slice1",
		VDUs: []ServiceVDU{{Name: "k8s-master_2", VIM: "KUBERNETES", Namespace: "dojot", Commands: []string{
			"ls >> t.txt",
			"git clone https://github.com/LABORA-INF-UFG/NECOS-ansible-dojot-core.git",
			"ls >> t2.txt",
		}}},
	}}}
	if !reflect.DeepEqual(svc, want) {
		t.Errorf("got %+v\nwant %+v", svc, want)
	}
}

func TestPayloadServiceShapes(t *testing.T) {
	// example1 nests the fields under the null-valued keys' siblings with deeper
	// indentation; the ansible one has VIM in another case. Both read the same way.
	svc, err := ParseService(readFile(t, "testdata/deploy_service_IoTService_sliced_example1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Parts) != 1 || svc.Parts[0].VDUs[0].Name != "k8s-master_2" || len(svc.Parts[0].VDUs[0].Commands) != 2 {
		t.Errorf("example1: %+v", svc)
	}
	svc, err = ParseService(readFile(t, "testdata/deployService_IoTService_sliced_dojot_ansible.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Parts) != 2 || svc.Parts[1].Name != "dc-slice2" || svc.Parts[1].VDUs[0].VIM != "Kubernetes" {
		t.Fatalf("ansible: %+v", svc)
	}
	// $coreip is the shell's, not a reference: it must survive Expand untouched.
	if err := Expand(svc, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(svc.Parts[0].VDUs[0].Commands[3], "s/REPLACE/$coreip/") {
		t.Errorf("command changed: %q", svc.Parts[0].VDUs[0].Commands[3])
	}
	if err := svc.CheckVIMs([]string{"KUBERNETES", "xen-vim"}); err != nil {
		t.Errorf("VIM names must match ignoring case: %v", err)
	}
}

func TestPayloadCreatedSlice(t *testing.T) {
	s, err := ParseCreatedSlice(readFile(t, "testdata/start_management_IoTService_sliced_deploy_server_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "IoTService_sliced" || len(s.Parts) != 2 {
		t.Fatalf("got %+v", s)
	}
	p1 := s.Parts[0]
	if p1.Name != "dc-slice1" || p1.Status == nil {
		t.Fatalf("part: %+v", p1)
	}
	wantRef := Endpoint{IPAPI: "143.106.11.131", PortAPI: 21277, IPSSH: "143.106.11.131", PortSSH: 22277}
	if p1.Status.VIMRef != wantRef {
		t.Errorf("vim-ref %+v, want %+v", p1.Status.VIMRef, wantRef)
	}
	if c := p1.Status.Credential; c == nil || c.Type != CredentialPassword || c.User != "root" {
		t.Errorf("credential %+v", c)
	}
	if len(p1.Status.Nodes) != 4 || p1.Status.Nodes[2] != (NodeStatus{Name: "k8s-node2", VDU: "k8s-node2", ID: "k8s-node", Type: NodeWorker, IP: "10.10.2.3"}) {
		t.Errorf("nodes %+v", p1.Status.Nodes)
	}
	// The original's services name nodes by these names and ids.
	r := Resolver(s, s.Status())
	for ref, want := range map[string]string{
		"parts.dc-slice1.vdus.k8s-master.ip":    "10.10.2.1",
		"parts.dc-slice1.vdus.k8s-node3.ip":     "10.10.2.4",
		"parts.dc-slice2.vim-ref.port-ssh":      "22564",
		"parts.dc-slice1.vdus.k8s-node1.type":   "worker",
		"slice.id":                              "IoTService_sliced",
		"parts.dc-slice2.vdus.k8s-master.name":  "k8s-master",
		"parts.dc-slice1.vim-ref.ip-api":        "143.106.11.131",
		"parts.dc-slice1.vdus.k8s-master.id":    "k8s-master",
		"parts.dc-slice2.vdus.k8s-node.ips":     "10.10.5.2",
		"parts.dc-slice1.vdus.k8s-node2.names":  "k8s-node2",
		"parts.dc-slice2.location":              "",
		"parts.dc-slice1.vdus.k8s-nodeX.ip":     "",
		"parts.nowhere.vdus.k8s-master.ip":      "",
		"slice.nothing":                         "",
		"parts.dc-slice1.vim-ref.port-nothing":  "",
		"parts.dc-slice1.dc-slice-controller.i": "",
	} {
		got, ok := r(ref)
		if got != want || ok != (want != "") {
			t.Errorf("%s = %q, %v; want %q", ref, got, ok, want)
		}
	}

	// The Xen core of the touristic slice has 'null' for what it lacks.
	s, err = ParseCreatedSlice(readFile(t, "testdata/start_management_TouristicCDN_sliced.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	core, _ := s.Part("core-dc")
	if core.Status.VIMRef != (Endpoint{IPSSH: "143.106.11.131", PortSSH: 22131}) {
		t.Errorf("core vim-ref %+v", core.Status.VIMRef)
	}
	if core.VIM.VDUs[0].NodeType() != "" || core.Status.Nodes[0].Type != "" {
		t.Errorf("type 'null' must read as none: %+v", core.VIM.VDUs[0])
	}
}

func TestPayloadOldFormat(t *testing.T) {
	s, err := ParseCreatedSlice(readFile(t, "testdata/old_pdt_format_locate_slice_resources.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Cost{DC: &CostModel{Model: CostPerMachinePerDay, Op: "<=", Euros: 10}, Net: &CostModel{Model: CostPerLinkPerDay, Op: "<=", Euros: 50}}
	if !reflect.DeepEqual(s.Cost, want) {
		t.Errorf("cost %+v %+v", s.Cost.DC, s.Cost.Net)
	}
	if s.Version != "1.0" || s.Timeframe.Duration != int64(480) || s.Extra["service"] == nil {
		t.Errorf("got %+v", s)
	}
}

// The SRO's horizontal elasticity filled these templates into an update of the slice;
// put together, they must make a valid update.
func TestPayloadHorizontalTemplates(t *testing.T) {
	var tpl map[string]any
	if err := json.Unmarshal(readFile(t, "testdata/horizontal_elasticity_part_templates.json"), &tpl); err != nil {
		t.Fatal(err)
	}
	dc := tpl["dc-slice-part.update"].(map[string]any)
	dc["name"] = "dc-slice3"
	dc["type"] = "EDGE"
	dc["location"] = "EUROPE.GREECE"
	dc["dc-slice-controller"] = tpl["dc-slice-controller_placeholder"]
	net := tpl["net-slice-part.update"].(map[string]any)
	net["name"] = "pop-dc-slice1-to-pop-dc-slice3"
	links := tpl["net-slice-part.links_template"].([]any)
	links[1] = map[string]any{"dc-part2": "dc-slice3"}
	net["links"] = links
	doc := map[string]any{"slices": map[string]any{"sliced": map[string]any{
		"id": "IoTService_sliced", "created-slice": true,
		"slice-parts": []any{map[string]any{"dc-slice-part": dc}, map[string]any{"net-slice-part": net}},
	}}}
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSlice(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	l := s.Links[0]
	if l.DCPart1 != "dc-slice1" || l.DCPart1ID == nil || l.DCPart1ID.PartUUID != "<core part uuid>" || l.DCPart2 != "dc-slice3" || l.BandwidthGB != 1 {
		t.Errorf("link %+v", l)
	}
	v := s.Parts[0].VIM.VDUs[1]
	if v.CPUs != 4 || v.MemoryMB != 32768 || !v.MemoryAtLeast || v.OS["version"] != "18.04" || v.OS["architecture"] != "x86_64" || v.NodeType() != NodeWorker {
		t.Errorf("vdu %+v", v)
	}
	// Not an update, the link's core end is unknown.
	doc["slices"].(map[string]any)["sliced"].(map[string]any)["created-slice"] = false
	links[0] = map[string]any{"dc-part1": "dc-slice1"}
	data, _ = yaml.Marshal(doc)
	_, err = ParseSlice(data)
	wantProblem(t, err, "slices.sliced.slice-parts[1].net-slice-part.links.dc-part1", `unknown part "dc-slice1": expected one of [dc-slice3]`)
}

// wantProblem fails unless err is an *Error with a problem at path whose message
// contains msg.
func wantProblem(t *testing.T, err error, path, msg string) {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("want *Error with %s: %s, got %v", path, msg, err)
	}
	for _, p := range e.Problems {
		if p.Path == path && strings.Contains(p.Message, msg) {
			return
		}
	}
	t.Errorf("want problem %s: %s\ngot:\n%s", path, msg, problemList(e))
}

func problemList(e *Error) string {
	var b strings.Builder
	for _, p := range e.Problems {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}
