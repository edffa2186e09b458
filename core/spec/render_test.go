package spec

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// status is what the core would fill in for the minimal slice.
func minimalStatus() Status {
	return Status{
		Parts: map[string]PartStatus{
			"core": {
				Controller: Controller{Provider: "unicamp", IP: "127.0.0.1", Port: 5000},
				ID:         PartID{ControllerID: "ctl-1", PartUUID: "0d6f2a3e-1111-4c1e-9a2b-000000000001"},
				Cost:       &CostModel{Model: CostPerMachinePerDay, Euros: 7.5},
				VIMRef:     Endpoint{IPAPI: "127.0.0.1", PortAPI: 6443, IPSSH: "127.0.0.1", PortSSH: 2222},
				Credential: &Credential{Type: CredentialKubeconfig, Kubeconfig: "apiVersion: v1\nkind: Config\nclusters: []\n",
					Expires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
				VSwitch: VSwitch{Type: "linux-bridge", Bridge: "necos-s1"},
				Nodes: []NodeStatus{
					{Name: "k8s-master-1", VDU: "k8s-master", ID: "uuid-m1", Type: NodeMaster, IP: "10.10.2.1"},
					{Name: "k8s-node-1", VDU: "k8s-node", ID: "uuid-n1", Type: NodeWorker, IP: "10.10.2.2"},
					{Name: "k8s-node-2", VDU: "k8s-node", ID: "uuid-n2", Type: NodeWorker, IP: "10.10.2.3"},
				},
			},
			"edge": {
				Controller: Controller{Provider: "5tonic", IP: "127.0.0.2", Port: 5000},
				ID:         PartID{ControllerID: "ctl-2", PartUUID: "u-2"},
				VIMRef:     Endpoint{IPSSH: "127.0.0.2", PortSSH: 22},
				Credential: &Credential{Type: CredentialSSHKey, User: "necos",
					PrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
					HostKey:    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE example"},
				Nodes: []NodeStatus{{Name: "vm-1", VDU: "vm", ID: "dom-7", Type: "", IP: "10.10.5.1"}},
			},
		},
		Links: map[string]LinkStatus{
			"core-to-edge": {Controller: Controller{Provider: "wan-idc", IP: "127.0.0.3", Port: 3030},
				ID: PartID{ControllerID: "wan-1", PartUUID: "l-1"}, Cost: &CostModel{Model: CostPerLinkPerDay, Euros: 3},
				End1IP: "192.168.100.1", End2IP: "192.168.100.2"},
		},
	}
}

func TestRenderRoundTrip(t *testing.T) {
	s, err := ParseSlice([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	st := minimalStatus()
	out, err := Render(s, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"dc-slice-controller:\n", "dc-slice-provider: unicamp", "slice-part-uuid: 0d6f2a3e", "vim-ref:\n", "port-api: 6443",
		"vim-credential:\n", "type: kubeconfig", "kubeconfig: |", "vswitch:\n", "bridge-name: necos-s1",
		"name: k8s-node-2", "vdu-name: k8s-node", "ip: 10.10.2.3", "type: worker", "link-ends:\n", "link-end2-ip: 192.168.100.2",
		"wan-slice-controller:\n", "net-slice-part-id:\n", "expires: \"2030-01-02T03:04:05Z\"", "value-euros: 7.5",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered slice lacks %q:\n%s", want, out)
		}
	}
	for _, parse := range []func([]byte) (*Slice, error){ParseSlice, ParseCreatedSlice} {
		back, err := parse(out)
		if err != nil {
			t.Fatalf("parse(render): %v\n%s", err, out)
		}
		if len(back.Warnings) > 0 {
			t.Errorf("warnings: %v", back.Warnings)
		}
		if got := back.Status(); !reflect.DeepEqual(got, st) {
			t.Errorf("status after round trip:\n%+v\nwant\n%+v", got, st)
		}
		for i := range back.Parts {
			back.Parts[i].Status = nil
		}
		for i := range back.Links {
			back.Links[i].Status = nil
		}
		if !reflect.DeepEqual(back, s) {
			t.Errorf("slice after round trip:\n%+v\nwant\n%+v", back, s)
		}
		// And rendering what was read gives the same document.
		again, err := Render(back, st)
		if err != nil || string(again) != string(out) {
			t.Errorf("render(parse(render)) differs (%v):\n%s", err, again)
		}
	}
}

// A slice read from the original's created-slice files renders and reads back the same.
func TestRenderOriginalCreatedSlices(t *testing.T) {
	files, _ := filepath.Glob("testdata/*management*.yaml")
	for _, f := range files {
		s, err := ParseCreatedSlice(readFile(t, f))
		if err != nil {
			t.Fatal(err)
		}
		out, err := Render(s, Status{})
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseCreatedSlice(out)
		if err != nil {
			t.Fatalf("%s: %v\n%s", f, err, out)
		}
		if !reflect.DeepEqual(back.Status(), s.Status()) {
			t.Errorf("%s: status\n%+v\nwant\n%+v", f, back.Status(), s.Status())
		}
	}
}

func TestRenderKeepsUnknownKeys(t *testing.T) {
	doc := replace(t, minimal, "          type: EDGE", "          type: EDGE\n          colour: {r: 1, list: [a, 2, true, null]}")
	doc = replace(t, doc, "host-epa: {cpu-number: 1, memory-mb: 512}", "host-epa: {cpu-number: 1, memory-mb: 512, cpu-vendor: Intel}\n                    vswitch-epa: {type: openvswitch}")
	doc = replace(t, doc, "    slice-parts:", "    service: [1, 2]\n    slice-parts:")
	s, err := ParseSlice([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(s, Status{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSlice(out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("got\n%+v\nwant\n%+v\n%s", back, s, out)
	}
	if v := back.Parts[1].VIM.VDUs[0]; v.HostExtra["cpu-vendor"] != "Intel" || v.EPAExtra["vswitch-epa"] == nil {
		t.Errorf("vdu %+v", v)
	}
}

// The examples must pass validation, and render to what reads back the same.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/slices/*.yaml")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data := readFile(t, f)
			if strings.HasSuffix(f, "-service.yaml") {
				svc, err := ParseService(data)
				if err != nil {
					t.Fatal(err)
				}
				if len(svc.Warnings) > 0 {
					t.Errorf("warnings: %v", svc.Warnings)
				}
				return
			}
			s, err := ParseSlice(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Warnings) > 0 {
				t.Errorf("warnings: %v", s.Warnings)
			}
			if err := s.CheckVIMs([]string{"KUBERNETES", "xen-vim", "SSH"}); err != nil {
				t.Error(err)
			}
			// The API returns the model as JSON too.
			if _, err := json.Marshal(s); err != nil {
				t.Error(err)
			}
			for _, p := range s.Parts {
				for _, v := range p.VIM.VDUs {
					if v.CPUs > 2 || v.MemoryMB < 512 || v.MemoryMB > 2048 {
						t.Errorf("%s/%s: keep examples modest: %d CPUs, %d MB", p.Name, v.Name, v.CPUs, v.MemoryMB)
					}
				}
			}
			out, err := Render(s, Status{})
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseSlice(out)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, s) {
				t.Errorf("round trip differs:\n%s", out)
			}
		})
	}
}

func TestExampleScenarios(t *testing.T) {
	load := func(name string) *Slice {
		s, err := ParseSlice(readFile(t, filepath.Join("../../examples/slices", name)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	type partShape struct {
		name, typ, loc, vim string
		nodes               []string
	}
	shape := func(s *Slice) []partShape {
		var out []partShape
		for _, p := range s.Parts {
			ps := partShape{p.Name, p.Type, p.Location, p.VIM.Name, nil}
			for _, v := range p.VIM.VDUs {
				for range v.Instances {
					ps.nodes = append(ps.nodes, v.NodeType())
				}
			}
			out = append(out, ps)
		}
		return out
	}
	links := func(s *Slice) []string {
		var out []string
		for _, l := range s.Links {
			out = append(out, l.DCPart1+"-"+l.DCPart2)
		}
		return out
	}
	xen := load("touristic-cdn-xen.yaml")
	if got, want := shape(xen), []partShape{
		{"core-dc", "DC", "AMERICA.BRAZIL", "xen-vim", []string{""}},
		{"edge-dc-slice-spain", "EDGE", "EUROPE.SPAIN", "xen-vim", []string{""}},
		{"edge-dc-slice-greece", "EDGE", "EUROPE.GREECE", "xen-vim", []string{""}},
		{"edge-dc-slice-brazil", "EDGE", "AMERICA.BRAZIL.UFSCAR", "xen-vim", []string{""}},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("touristic-cdn-xen: %+v", got)
	}
	wantLinks := []string{"core-dc-edge-dc-slice-spain", "core-dc-edge-dc-slice-greece", "core-dc-edge-dc-slice-brazil"}
	if !reflect.DeepEqual(links(xen), wantLinks) {
		t.Errorf("touristic-cdn-xen links %v", links(xen))
	}
	cdn := load("touristic-cdn.yaml")
	got := shape(cdn)
	if got[0].vim != "xen-vim" || len(got) != 4 || !reflect.DeepEqual(links(cdn), wantLinks) {
		t.Errorf("touristic-cdn: %+v", got)
	}
	for _, p := range got[1:] {
		if p.vim != "KUBERNETES" || !reflect.DeepEqual(p.nodes, []string{NodeMaster, NodeWorker}) {
			t.Errorf("touristic-cdn edge %+v", p)
		}
	}
	iot := load("iot-dojot.yaml")
	if got, want := shape(iot), []partShape{
		{"dc-slice1", "DC", "AMERICA.BRAZIL", "KUBERNETES", []string{NodeMaster, NodeWorker, NodeWorker}},
		{"dc-slice2", "EDGE", "EUROPE.SPAIN", "KUBERNETES", []string{NodeMaster, NodeWorker}},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("iot-dojot: %+v", got)
	}
	if !reflect.DeepEqual(links(iot), []string{"dc-slice1-dc-slice2"}) {
		t.Errorf("iot links %v", links(iot))
	}
}

// Render writes keys in the format's order: the document reads like the original's.
func TestRenderShape(t *testing.T) {
	s, err := ParseSlice([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(s, minimalStatus())
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	sliced := doc.Content[0].Content[1].Content[1]
	var keys []string
	for i := 0; i < len(sliced.Content); i += 2 {
		keys = append(keys, sliced.Content[i].Value)
	}
	if !reflect.DeepEqual(keys, []string{"id", "cost", "slice-parts"}) {
		t.Errorf("keys %v", keys)
	}
	if !strings.HasPrefix(string(out), "slices:\n  sliced:\n    id: s1\n") {
		t.Errorf("indentation:\n%s", out)
	}
}

// links-optional and a link's link-state (NotBuilt, with its reason) render and read back.
func TestRenderLinkNotBuilt(t *testing.T) {
	s, err := ParseSlice([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	s.Requirements = &Requirements{LinksOptional: true}
	st := minimalStatus()
	st.Links["core-to-edge"] = LinkStatus{State: "NotBuilt", Reason: "not built: no WAN provider in the catalogue builds links"}
	out, err := Render(s, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"links-optional: true", "link-state: NotBuilt", "link-state-reason: 'not built: no WAN provider"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered slice lacks %q:\n%s", want, out)
		}
	}
	back, err := ParseCreatedSlice(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Warnings) > 0 || back.Requirements == nil || !back.Requirements.LinksOptional {
		t.Errorf("read back: warnings %v, requirements %+v", back.Warnings, back.Requirements)
	}
	if got := back.Status().Links["core-to-edge"]; got.State != "NotBuilt" || got.Reason != st.Links["core-to-edge"].Reason {
		t.Errorf("link status read back %+v", got)
	}
	if _, err := ParseSlice([]byte(strings.Replace(minimal, "    cost:", "    slice-requirements: {links-optional: maybe}\n    cost:", 1))); err == nil ||
		!strings.Contains(err.Error(), "links-optional") {
		t.Errorf("links-optional: maybe: %v", err)
	}
}
