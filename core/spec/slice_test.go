package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// minimal is a valid slice spec: two parts and a link. Tests change it with replace.
const minimal = `slices:
  sliced:
    id: s1
    cost:
      dc-model: {model: COST_PER_PHYSICAL_MACHINE_PER_DAY, value-euros: "<=10"}
    slice-parts:
      - dc-slice-part:
          name: core
          type: DC
          location: AMERICA.BRAZIL
          VIM:
            name: KUBERNETES
            vdus:
              - vdu:
                  id: k8s-master
                  name: k8s-master
                  instance-count: 1
                  epa-attributes:
                    host-epa: {cpu-number: 2, memory-mb: 2048, storage-gb: 10}
              - vdu:
                  name: k8s-node
                  instance-count: 2
                  epa-attributes:
                    host-epa: {cpu-number: 1, memory-mb: {greater_or_equal: 1024}}
      - dc-slice-part:
          name: edge
          type: EDGE
          location: EUROPE.SPAIN
          VIM:
            name: xen-vim
            vdus:
              - vdu:
                  name: vm
                  epa-attributes:
                    host-epa: {cpu-number: 1, memory-mb: 512}
      - net-slice-part:
          name: core-to-edge
          WIM: {name: VXLAN}
          links:
            - dc-part1: core
            - dc-part2: edge
            - requirements: {bandwidth-GB: 1}
`

func replace(t *testing.T, doc, old, new string) string {
	t.Helper()
	if !strings.Contains(doc, old) {
		t.Fatalf("test document lacks %q", old)
	}
	return strings.Replace(doc, old, new, 1)
}

func TestParseMinimal(t *testing.T) {
	s, err := ParseSlice([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("warnings: %v", s.Warnings)
	}
	want := []VDU{
		{ID: "k8s-master", Name: "k8s-master", Instances: 1, CPUs: 2, MemoryMB: 2048, StorageGB: 10, pos: 1},
		{Name: "k8s-node", Instances: 2, CPUs: 1, MemoryMB: 1024, MemoryAtLeast: true, pos: 2},
	}
	if !reflect.DeepEqual(s.Parts[0].VIM.VDUs, want) {
		t.Errorf("vdus:\n%+v\nwant\n%+v", s.Parts[0].VIM.VDUs, want)
	}
	l := s.Links[0]
	if l.Name != "core-to-edge" || l.DCPart1 != "core" || l.DCPart2 != "edge" || l.BandwidthGB != 1 || l.WIM.Name != "VXLAN" {
		t.Errorf("link %+v", l)
	}
	if got := s.Parts[0].VIM.VDUs[1].NodeNames(); !reflect.DeepEqual(got, []string{"k8s-node-1", "k8s-node-2"}) {
		t.Errorf("node names %v", got)
	}
	if s.Parts[0].Status != nil {
		t.Error("a request has no status")
	}
}

func TestParseVariants(t *testing.T) {
	cases := []struct {
		name  string
		doc   string
		check func(t *testing.T, s *Slice)
	}{{
		name: "slices.slice and numbers as versions",
		doc: replace(t, replace(t, minimal, "  sliced:\n    id: s1", "  slice:\n    id: s1\n    version: 1.0"),
			"name: KUBERNETES", "name: KUBERNETES\n            version: 18.04"),
		check: func(t *testing.T, s *Slice) {
			if s.Version != "1.0" || s.Parts[0].VIM.Version != "18.04" {
				t.Errorf("versions %q %q", s.Version, s.Parts[0].VIM.Version)
			}
		},
	}, {
		name: "null-key indentation quirk",
		doc: `slices:
  sliced:
    id: s1
    slice-parts:
    - dc-slice-part:
      name: a
      VIM:
        name: SSH
        vdus:
        - vdu:
          name: web
          epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}
    - dc-slice-part: null
      name: b
      VIM: {name: SSH, vdus: [{vdu: {name: web, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}}]}
    - net-slice-part:
      name: a-b
      links: [{dc-part1: a}, {dc-part2: b}, {requirements: {bandwidth-GB: 0.5}}]
`,
		check: func(t *testing.T, s *Slice) {
			if len(s.Parts) != 2 || s.Parts[0].Name != "a" || s.Parts[0].VIM.VDUs[0].Name != "web" || s.Links[0].BandwidthGB != 0.5 {
				t.Errorf("got %+v", s)
			}
		},
	}, {
		name: "dc-part1 as {name, id} and links as one mapping",
		doc: replace(t, minimal, `          links:
            - dc-part1: core
            - dc-part2: edge
            - requirements: {bandwidth-GB: 1}`, `          links:
            dc-part1: {name: core, id: {controller-id: c1, slice-part-id: u1}}
            dc-part2: edge
            requirements: {bandwidth-GB: 1}`),
		check: func(t *testing.T, s *Slice) {
			if l := s.Links[0]; l.DCPart1 != "core" || *l.DCPart1ID != (PartID{ControllerID: "c1", PartUUID: "u1"}) {
				t.Errorf("link %+v", l)
			}
		},
	}, {
		name: "net-model beside cost (older format)",
		doc:  replace(t, minimal, "    slice-parts:", "    net-model: {model: COST_PER_LINK_PER_DAY, value-euros: 50}\n    slice-parts:"),
		check: func(t *testing.T, s *Slice) {
			if s.Cost.Net == nil || *s.Cost.Net != (CostModel{Model: CostPerLinkPerDay, Euros: 50}) {
				t.Errorf("net-model %+v", s.Cost.Net)
			}
		},
	}, {
		name: "unknown keys are warnings and kept",
		doc:  replace(t, minimal, "          type: EDGE", "          type: edge\n          colour: blue\n          Location: x"),
		check: func(t *testing.T, s *Slice) {
			p := s.Parts[1]
			if p.Type != PartEdge || p.Extra["colour"] != "blue" {
				t.Errorf("part %+v", p)
			}
			want := []FieldError{
				{Path: "slices.sliced.slice-parts[1].dc-slice-part.colour", Message: "unknown key"},
				{Path: "slices.sliced.slice-parts[1].dc-slice-part.Location", Message: "unknown key (did you mean location?)"},
			}
			if !reflect.DeepEqual(s.Warnings, want) {
				t.Errorf("warnings %v", s.Warnings)
			}
		},
	}, {
		name: "anchors, aliases and merge keys",
		doc: `slices:
  sliced:
    id: s1
    slice-parts:
      - dc-slice-part:
          name: a
          VIM: &vim
            name: SSH
            vdus:
              - vdu: &small {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
              - vdu:
                  <<: *small
                  name: vm2
      - dc-slice-part: {name: b, VIM: *vim}
`,
		check: func(t *testing.T, s *Slice) {
			if len(s.Parts) != 2 || len(s.Parts[1].VIM.VDUs) != 2 || s.Parts[0].VIM.VDUs[1].Name != "vm2" || s.Parts[0].VIM.VDUs[1].CPUs != 1 {
				t.Errorf("got %+v", s.Parts)
			}
		},
	}, {
		name: "merge of a list of mappings",
		doc: `x: &x {cpu-number: 1}
y: &y {cpu-number: 4, memory-mb: 512}
slices:
  sliced:
    id: s1
    slice-parts:
      - dc-slice-part:
          name: a
          VIM: {name: SSH, vdus: [{vdu: {name: vm, epa-attributes: {host-epa: {<<: [*x, *y], storage-gb: 3}}}}]}
`,
		check: func(t *testing.T, s *Slice) {
			if v := s.Parts[0].VIM.VDUs[0]; v.CPUs != 1 || v.MemoryMB != 512 || v.StorageGB != 3 {
				t.Errorf("earlier mappings win: %+v", v)
			}
		},
	}, {
		name: "JSON",
		doc:  `{"slices": {"sliced": {"id": "j", "slice-parts": [{"dc-slice-part": {"name": "a", "VIM": {"name": "SSH", "vdus": [{"vdu": {"name": "x", "epa-attributes": {"host-epa": {"cpu-number": 1, "memory-mb": 256}}}}]}}}]}}}`,
		check: func(t *testing.T, s *Slice) {
			if s.ID != "j" || s.Parts[0].VIM.VDUs[0].MemoryMB != 256 {
				t.Errorf("got %+v", s)
			}
		},
	}, {
		name: "update links to parts of the existing slice",
		doc:  replace(t, replace(t, minimal, "    id: s1", "    id: s1\n    created-slice: true"), "- dc-part1: core", "- dc-part1: old-core"),
		check: func(t *testing.T, s *Slice) {
			if !s.Update || s.Links[0].DCPart1 != "old-core" {
				t.Errorf("got %+v", s)
			}
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSlice([]byte(c.doc))
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, s)
		})
	}
}

func TestParseProblems(t *testing.T) {
	const part0 = "slices.sliced.slice-parts[0].dc-slice-part"
	const vdu0 = part0 + ".VIM.vdus[0].vdu"
	const host0 = vdu0 + ".epa-attributes.host-epa"
	const link = "slices.sliced.slice-parts[2].net-slice-part"
	cases := []struct {
		name, doc, path, msg string
	}{
		{"missing id", replace(t, minimal, "    id: s1\n", ""), "slices.sliced.id", "required"},
		{"bad id", replace(t, minimal, "id: s1", "id: 's 1'"), "slices.sliced.id", "must be letters, digits"},
		{"negative cpus", replace(t, minimal, "cpu-number: 2", "cpu-number: -2"), host0 + ".cpu-number", "must be a positive integer, got -2"},
		{"zero cpus", replace(t, minimal, "cpu-number: 2", "cpu-number: 0"), host0 + ".cpu-number", "positive integer"},
		{"missing cpus", replace(t, minimal, "cpu-number: 2, ", ""), host0 + ".cpu-number", "required"},
		{"string cpus", replace(t, minimal, "cpu-number: 2", `cpu-number: "two"`), host0 + ".cpu-number", `must be an integer, got string "two"`},
		{"float cpus", replace(t, minimal, "cpu-number: 2", "cpu-number: 1.5"), host0 + ".cpu-number", "must be an integer, got 1.5"},
		{"zero memory", replace(t, minimal, "memory-mb: 2048", "memory-mb: 0"), host0 + ".memory-mb", "required"},
		{"negative memory", replace(t, minimal, "memory-mb: 2048", "memory-mb: -1"), host0 + ".memory-mb", "must be a positive integer, got -1"},
		{"memory list", replace(t, minimal, "memory-mb: 2048", "memory-mb: [1]"), host0 + ".memory-mb", "must be an integer, got a list"},
		{"memory bad form", replace(t, minimal, "memory-mb: {greater_or_equal: 1024}", "memory-mb: {at_least: 1024}"),
			part0 + ".VIM.vdus[1].vdu.epa-attributes.host-epa.memory-mb.greater_or_equal", "required"},
		{"zero instances", replace(t, minimal, "instance-count: 2", "instance-count: 0"), part0 + ".VIM.vdus[1].vdu.instance-count", "must be a positive integer"},
		{"negative instances", replace(t, minimal, "instance-count: 2", "instance-count: -3"), part0 + ".VIM.vdus[1].vdu.instance-count", "got -3"},
		{"string instances", replace(t, minimal, "instance-count: 2", "instance-count: two"), part0 + ".VIM.vdus[1].vdu.instance-count", `must be an integer, got string "two"`},
		{"huge instances", replace(t, minimal, "instance-count: 2", "instance-count: 99999999999999"), part0 + ".VIM.vdus[1].vdu.instance-count", "must be at most 1000, got 99999999999999"},
		{"huge cpus", replace(t, minimal, "cpu-number: 2", "cpu-number: 4096"), host0 + ".cpu-number", "must be at most 1024, got 4096"},
		{"huge memory", replace(t, minimal, "memory-mb: 2048", "memory-mb: 1e12"), host0 + ".memory-mb", "must be at most 67108864, got 1000000000000"},
		{"huge memory at least", replace(t, minimal, "greater_or_equal: 1024", "greater_or_equal: 99999999999"), part0 + ".VIM.vdus[1].vdu.epa-attributes.host-epa.memory-mb.greater_or_equal", "at most"},
		{"out of range", replace(t, minimal, "cpu-number: 2", "cpu-number: 99999999999999999999999"), host0 + ".cpu-number", "must be an integer"},
		{"negative storage", replace(t, minimal, "storage-gb: 10", "storage-gb: -10"), host0 + ".storage-gb", ">= 0"},
		{"unknown part in link", replace(t, minimal, "dc-part2: edge", "dc-part2: egde"), link + ".links.dc-part2", `unknown part "egde": expected one of [core, edge]`},
		{"link to a link", replace(t, minimal, "dc-part2: edge", "dc-part2: core-to-edge"), link + ".links.dc-part2", "is a net-slice-part"},
		{"link to itself", replace(t, minimal, "dc-part2: edge", "dc-part2: core"), link + ".links.dc-part2", "two different parts"},
		{"missing link end", replace(t, minimal, "            - dc-part2: edge\n", ""), link + ".links.dc-part2", "required"},
		{"zero bandwidth", replace(t, minimal, "bandwidth-GB: 1", "bandwidth-GB: 0"), link + ".links.requirements.bandwidth-GB", "required: a bandwidth in GB > 0"},
		{"negative bandwidth", replace(t, minimal, "bandwidth-GB: 1", "bandwidth-GB: -1"), link + ".links.requirements.bandwidth-GB", "must be > 0, got -1"},
		{"string bandwidth", replace(t, minimal, "bandwidth-GB: 1", "bandwidth-GB: MAX"), link + ".links.requirements.bandwidth-GB", `must be a number, got string "MAX"`},
		{"duplicate part", replace(t, minimal, "name: edge", "name: core"), "slices.sliced.slice-parts[1].dc-slice-part.name", `duplicate part name "core" (also at ` + part0 + ")"},
		{"link named like a part", replace(t, minimal, "name: core-to-edge", "name: edge"), link + ".name", "duplicate part name"},
		{"duplicate vdu", replace(t, minimal, "name: k8s-node", "name: k8s-master"), part0 + ".VIM.vdus[1].vdu.name", `duplicate VDU name "k8s-master" in part core`},
		{"missing vdu name", replace(t, minimal, "                  name: vm\n", ""), "slices.sliced.slice-parts[1].dc-slice-part.VIM.vdus[0].vdu.name", "required"},
		{"bad cost", replace(t, minimal, `value-euros: "<=10"`, `value-euros: "=<10"`), "slices.sliced.cost.dc-model.value-euros", `got "=<10"`},
		{"negative cost", replace(t, minimal, `value-euros: "<=10"`, `value-euros: "<=-10"`), "slices.sliced.cost.dc-model.value-euros", "must be a number of euros >= 0"},
		{"cost list", replace(t, minimal, `value-euros: "<=10"`, `value-euros: [10]`), "slices.sliced.cost.dc-model.value-euros", "got a list"},
		{"bad location", replace(t, minimal, "location: EUROPE.SPAIN", "location: EUROPE..SPAIN"), "slices.sliced.slice-parts[1].dc-slice-part.location", "dot-separated"},
		{"location with space", replace(t, minimal, "location: EUROPE.SPAIN", "location: EUROPE SPAIN"), "slices.sliced.slice-parts[1].dc-slice-part.location", "dot-separated"},
		{"bad type", replace(t, minimal, "type: EDGE", "type: CLOUD"), "slices.sliced.slice-parts[1].dc-slice-part.type", "must be DC or EDGE"},
		{"no VIM name", replace(t, minimal, "name: xen-vim", "version: 1"), "slices.sliced.slice-parts[1].dc-slice-part.VIM.name", "required"},
		{"no vdus", replace(t, minimal, "          VIM:\n            name: xen-vim", "          VIM:\n            name: xen-vim\n            vdus: []\n            x:"), "slices.sliced.slice-parts[1].dc-slice-part.VIM.vdus", "given twice"},
		{"vdus not a list", replace(t, minimal, "          VIM:\n            name: xen-vim\n            vdus:", "          VIM:\n            name: xen-vim\n            vdus: 3\n            old:"), "slices.sliced.slice-parts[1].dc-slice-part.VIM.vdus", "must be a list, got 3"},
		{"no parts", "slices:\n  sliced:\n    id: x\n", "slices.sliced.slice-parts", "at least one dc-slice-part"},
		{"item neither", replace(t, minimal, "      - net-slice-part:", "      - link-part:"), "slices.sliced.slice-parts[2]", "expected dc-slice-part: {...} or net-slice-part: {...}, got keys link-part"},
		{"item both", replace(t, minimal, "      - net-slice-part:\n", "      - net-slice-part:\n        dc-slice-part:\n"), "slices.sliced.slice-parts[2]", "not both"},
		{"vdu without wrapper", replace(t, minimal, "              - vdu:\n                  name: vm", "              - name: vm\n                x:"), "slices.sliced.slice-parts[1].dc-slice-part.VIM.vdus[0]", `expected vdu: {...}`},
		{"key twice in both shapes", replace(t, minimal, "      - dc-slice-part:\n          name: edge", "      - name: edge2\n        dc-slice-part:\n          name: edge"), "slices.sliced.slice-parts[1].dc-slice-part.name", "given twice"},
		{"wrong bool", replace(t, minimal, "name: xen-vim", "name: xen-vim\n            vim-shared: maybe"), "slices.sliced.slice-parts[1].dc-slice-part.VIM.vim-shared", `must be true or false (yes/no, on/off), got string "maybe"`},
		{"merge of a scalar", replace(t, minimal, "          type: EDGE", "          type: EDGE\n          <<: 3"), "", "merge key (<<) takes a mapping"},
		{"merge of a list of scalars", replace(t, minimal, "          type: EDGE", "          type: EDGE\n          <<: [3]"), "", "merge key (<<) takes a mapping"},
		{"bad port", "slice: {id: x, slice-parts: [{dc-slice-part: {name: a, VIM: {vim-ref: {port-api: '22a'}}}}]}",
			"slice.slice-parts[0].dc-slice-part.VIM.vim-ref.port-api", `must be a port number 0-65535, got string "22a"`},
		{"port out of range", "slice: {id: x, slice-parts: [{dc-slice-part: {name: a, VIM: {vim-ref: {port-ssh: 70000}}}}]}",
			"slice.slice-parts[0].dc-slice-part.VIM.vim-ref.port-ssh", "must be a port number 0-65535, got 70000"},
		{"geographic", replace(t, minimal, "    cost:", "    slice-constraints: {geographic: [[x]]}\n    cost:"), "slices.sliced.slice-constraints.geographic[0]", "must be a string, got a list"},
		{"no slices", "sliced2: {}", "slices", "required"},
		{"both slice and sliced", "slices: {slice: {id: a}, sliced: {id: b}}", "slices", "give one of sliced, slice"},
		{"not a mapping", "- a\n- b\n", "", "must be a mapping, got a list"},
		{"empty", "", "", "empty document"},
		{"syntax", "slices: [", "", "not valid YAML"},
		{"two documents", minimal + "---\nfoo: 1\n", "", "one YAML document"},
		{"net-model twice", replace(t, replace(t, minimal, "    slice-parts:", "    net-model: {value-euros: 1}\n    slice-parts:"),
			"      dc-model:", "      net-model: {value-euros: 2}\n      dc-model:"), "slices.sliced.net-model", "given twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSlice([]byte(c.doc))
			wantProblem(t, err, c.path, c.msg)
		})
	}
}

// All problems of a document come at once, with each path.
func TestParseAllProblemsAtOnce(t *testing.T) {
	doc := replace(t, minimal, "    id: s1\n", "")
	doc = replace(t, doc, "cpu-number: 2", "cpu-number: -2")
	doc = replace(t, doc, "dc-part2: edge", "dc-part2: nowhere")
	doc = replace(t, doc, "bandwidth-GB: 1", "bandwidth-GB: -5")
	_, err := ParseSlice([]byte(doc))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := []string{
		"slices.sliced.id: required: the slice's id",
		"slices.sliced.slice-parts[0].dc-slice-part.VIM.vdus[0].vdu.epa-attributes.host-epa.cpu-number: must be a positive integer, got -2",
		"slices.sliced.slice-parts[2].net-slice-part.links.dc-part2: unknown part \"nowhere\": expected one of [core, edge]",
		"slices.sliced.slice-parts[2].net-slice-part.links.requirements.bandwidth-GB: must be > 0, got -5",
	}
	var got []string
	for _, p := range e.Problems {
		got = append(got, p.String())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.HasPrefix(e.Error(), "4 problems: slices.sliced.id: required") {
		t.Errorf("Error() = %s", e.Error())
	}
}

func TestCheckVIMs(t *testing.T) {
	s, err := ParseSlice([]byte(replace(t, minimal, "name: xen-vim", "name: openstack")))
	if err != nil {
		t.Fatal(err)
	}
	err = s.CheckVIMs([]string{"kubernetes", "xen-vim", "SSH"})
	wantProblem(t, err, "slices.sliced.slice-parts[1].dc-slice-part.VIM.name", `unknown VIM "openstack": this platform offers [SSH, kubernetes, xen-vim]; no example catalogue offers it`)
	if e := err.(*Error); len(e.Problems) != 1 {
		t.Errorf("KUBERNETES matches kubernetes: %v", e)
	}
}

// A VIM an example catalogue offers names it and how to run necosd with it.
func TestCheckVIMsNamesExampleCatalogues(t *testing.T) {
	s, err := ParseSlice([]byte(replace(t, minimal, "name: xen-vim", "name: KUBERNETES")))
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, s.CheckVIMs([]string{"xen-vim"}), "slices.sliced.slice-parts[1].dc-slice-part.VIM.name",
		`unknown VIM "KUBERNETES": this platform offers [xen-vim]; examples/catalogue-kubernetes.yaml offers it: run necosd with --catalogue examples/catalogue-kubernetes.yaml (./scripts/run.sh --kubernetes runs it with a Kubernetes cluster on this machine)`)
}

func TestValidateBuiltSlice(t *testing.T) {
	s, err := ParseSlice([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	// A part added in code, as horizontal elasticity does.
	np := s.Parts[1]
	np.pos = 0
	np.Name = "edge2"
	np.VIM.VDUs = append([]VDU(nil), np.VIM.VDUs...)
	np.VIM.VDUs[0].CPUs = 0
	s.Parts = append(s.Parts, np)
	s.Links = append(s.Links, NetPart{Name: "core-to-edge2", DCPart1: "core", DCPart2: "edge3", BandwidthGB: 1})
	err = s.Validate()
	wantProblem(t, err, "slices.sliced.slice-parts[2].dc-slice-part.VIM.vdus[0].vdu.epa-attributes.host-epa.cpu-number", "required")
	wantProblem(t, err, "slices.sliced.slice-parts[4].net-slice-part.links.dc-part2", `unknown part "edge3"`)
}

func TestNodeTypeOf(t *testing.T) {
	for name, want := range map[string]string{
		"k8s-master": NodeMaster, "K8S-MASTER_2": NodeMaster, "k8s-node": NodeWorker, "worker-a": NodeWorker,
		"core_vm": "", "master-node": NodeMaster, "edge_vm": "",
	} {
		if got := NodeTypeOf(name); got != want {
			t.Errorf("NodeTypeOf(%q) = %q, want %q", name, got, want)
		}
	}
	if (VDU{Name: "vm", Type: NodeMaster}).NodeType() != NodeMaster {
		t.Error("explicit type must win")
	}
}

func TestCostValue(t *testing.T) {
	cases := []struct {
		in    string
		op    string
		euros float64
		bad   bool
	}{
		{"<=10", "<=", 10, false}, {"< 12.5", "<", 12.5, false}, {"7", "", 7, false}, {" >= 0 ", ">=", 0, false},
		{"==3", "=", 3, false}, {"=3", "=", 3, false}, {">1e2", ">", 100, false},
		{"=<10", "", 0, true}, {"<=", "", 0, true}, {"ten", "", 0, true}, {"<=-1", "", 0, true},
		{"NaN", "", 0, true}, {"<=Inf", "", 0, true}, {"0x10", "", 0, true}, {"", "", 0, true}, {"1_000", "", 0, true},
	}
	for _, c := range cases {
		op, e, err := ParseCostValue(c.in)
		if (err != nil) != c.bad || op != c.op || e != c.euros {
			t.Errorf("ParseCostValue(%q) = %q, %v, %v", c.in, op, e, err)
		}
	}
	limit := CostModel{Op: "<=", Euros: 10}
	if !limit.Allows(10) || limit.Allows(10.01) || !(CostModel{Euros: 5}).Allows(5) || (CostModel{Op: ">", Euros: 5}).Allows(5) {
		t.Error("Allows")
	}
	if limit.Value() != "<=10" || (CostModel{Euros: 2.5}).Value() != "2.5" {
		t.Error("Value")
	}
}

func TestLocation(t *testing.T) {
	for loc, ok := range map[string]bool{
		"EUROPE.SPAIN": true, "AMERICA.BRAZIL.UFSCAR": true, "EUROPE.SPAIN.5TONIC": true, "GREECE": true,
		"": false, ".EUROPE": false, "EUROPE.": false, "EUROPE..SPAIN": false, "EUROPE SPAIN": false, "EUROPE/SPAIN": false,
	} {
		if ValidLocation(loc) != ok {
			t.Errorf("ValidLocation(%q) = %v", loc, !ok)
		}
	}
	if !InLocation("AMERICA.BRAZIL.UFSCAR", "america.brazil") || InLocation("AMERICA.BRAZIL", "AMERICA.BRAZIL.UFSCAR") ||
		InLocation("AMERICA.BRAZILIA", "AMERICA.BRAZIL") || !InLocation("X", "") {
		t.Error("InLocation")
	}
}

// The API returns *Error as JSON.
func TestErrorJSON(t *testing.T) {
	_, err := ParseSlice([]byte(replace(t, minimal, "    id: s1\n", "")))
	data, jerr := json.Marshal(err)
	if jerr != nil {
		t.Fatal(jerr)
	}
	if want := `{"problems":[{"path":"slices.sliced.id","message":"required: the slice's id"}]}`; string(data) != want {
		t.Errorf("got %s, want %s", data, want)
	}
}

// TestParseSliceRef reads the slice a delete_slice document names, in the original's
// shape (slice-id) and in the created slice's (id).
func TestParseSliceRef(t *testing.T) {
	good := []struct{ doc, id, path string }{
		{"slices: {sliced: {slice-id: IoTService_sliced}}", "IoTService_sliced", "slices.sliced.slice-id"},
		{"slices:\n  sliced:\n    id: cdn\n    slice-parts: []\n", "cdn", "slices.sliced.id"},
		{"slices: {sliced: {id: cdn-3f9a0c, slice-id: cdn-3f9a0c}}", "cdn-3f9a0c", "slices.sliced.slice-id"},
		{"sliced: {slice-id: 42}", "42", "sliced.slice-id"},
	}
	for _, c := range good {
		ref, err := ParseSliceRef([]byte(c.doc))
		if err != nil || ref.ID != c.id || ref.Path != c.path {
			t.Errorf("%q: %+v %v", c.doc, ref, err)
		}
	}
	bad := []struct{ doc, path, msg string }{
		{"slices: {sliced: {name: x}}", "slices.sliced.slice-id", "required"},
		{"slices: {sliced: {id: a, slice-id: b}}", "slices.sliced.slice-id", `while id names "a"`},
		{"slices: {sliced: {slice-id: [a]}}", "slices.sliced.slice-id", "must be a string"},
		{"hello: x", "slices", "required"},
	}
	for _, c := range bad {
		_, err := ParseSliceRef([]byte(c.doc))
		wantProblem(t, err, c.path, c.msg)
	}
}

// TestCheckLimits: a slice over a limit is refused at the first part, link or VDU
// beyond it, each limit named with its setting; within them it passes.
func TestCheckLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("slices:\n  sliced:\n    id: big\n    slice-parts:\n")
	for i := range 5 {
		fmt.Fprintf(&b, "      - dc-slice-part: {name: p%d, VIM: {name: xen-vim, vdus: [{vdu: {name: v, instance-count: 3, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}}]}}\n", i)
	}
	for i := range 3 {
		fmt.Fprintf(&b, "      - net-slice-part: {name: l%d, links: [{dc-part1: p0}, {dc-part2: p%d}, {requirements: {bandwidth-GB: 1}}]}\n", i, i+1)
	}
	s, err := ParseSlice([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckLimits(Limits{}); err != nil {
		t.Errorf("within the defaults: %v", err)
	}
	err = s.CheckLimits(Limits{MaxParts: 4, MaxLinks: 2, MaxInstances: 10})
	wantProblem(t, err, "slices.sliced.slice-parts[4].dc-slice-part", "at most 4 per slice (necosd --max-parts-per-slice)")
	wantProblem(t, err, "slices.sliced.slice-parts[7].net-slice-part", "at most 2 per slice (necosd --max-links-per-slice)")
	wantProblem(t, err, "slices.sliced.slice-parts[3].dc-slice-part.VIM.vdus[0].vdu.instance-count", "15 instances in all, at most 10")
}

// PartPath names each part's entry in the document, in both shapes the NECOS files use
// ({dc-slice-part: {name: x}} and {dc-slice-part: null, name: x}); a part the document
// lacks has none.
func TestPartPath(t *testing.T) {
	quirk := replace(t, minimal, "      - dc-slice-part:\n          name: edge\n", "      - name: edge\n        dc-slice-part:\n")
	quirk = strings.Replace(quirk, "          type: EDGE\n          location: EUROPE.SPAIN\n          VIM:\n            name: xen-vim\n            vdus:\n              - vdu:\n                  name: vm\n                  epa-attributes:\n                    host-epa: {cpu-number: 1, memory-mb: 512}\n",
		"        type: EDGE\n        location: EUROPE.SPAIN\n        VIM:\n          name: xen-vim\n          vdus:\n            - vdu:\n                name: vm\n                epa-attributes:\n                  host-epa: {cpu-number: 1, memory-mb: 512}\n", 1)
	for name, doc := range map[string]string{"nested": minimal, "name beside": quirk} {
		s, err := ParseSlice([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, doc)
		}
		for part, want := range map[string]string{
			"core":         "slices.sliced.slice-parts[0].dc-slice-part",
			"edge":         "slices.sliced.slice-parts[1].dc-slice-part",
			"core-to-edge": "slices.sliced.slice-parts[2].net-slice-part",
		} {
			if got, ok := s.PartPath(part); !ok || got != want {
				t.Errorf("%s: PartPath(%s) = %q, %v; want %q", name, part, got, ok, want)
			}
		}
		if got, ok := s.PartPath("edge-2"); ok {
			t.Errorf("%s: a part the document lacks has path %q", name, got)
		}
	}
}
