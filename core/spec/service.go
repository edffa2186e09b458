package spec

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Service is a service deployment (deploy_service): what to run on which node of a
// created slice, and the elasticity policies of each part.
//
//	slices:
//	  sliced:
//	    id: IoTService_sliced
//	    slice-parts:
//	      - dc-slice-part:
//	          name: dc-slice1
//	          vdus:
//	            - vdu:
//	                name: k8s-master            # a VDU or node of the part
//	                VIM: KUBERNETES
//	                namespace: dojot
//	                commands: [...]             # run on that node
//	                manifests: [...]            # necos: Kubernetes objects to apply
//	          elasticity:
//	            - policy: {...}
//
// Both indentation shapes of the original files are read (see [ParseSlice]). A part
// named twice is merged in document order: its VDUs' commands and manifests are
// appended, as the original ran them one file section after the other.
type Service struct {
	// SliceID is the slice the service goes onto (sliced.id).
	SliceID string        `json:"slice-id"`
	Parts   []ServicePart `json:"parts"`
	// Warnings are problems that did not stop parsing: unknown keys and the like.
	Warnings []FieldError `json:"-"`
}

// ServicePart is what goes onto one dc-slice-part.
type ServicePart struct {
	Name     string       `json:"name"`
	VDUs     []ServiceVDU `json:"vdus,omitempty"`
	Policies []Policy     `json:"elasticity,omitempty"`
}

// ServiceVDU is what goes onto one VDU (all its nodes) or one node of a part.
type ServiceVDU struct {
	// Name is a VDU or node name of the part (or a node id of the original's slices).
	Name string `json:"name"`
	// VIM names the part's VIM as the tenant wrote it (KUBERNETES, Kubernetes...).
	VIM string `json:"VIM,omitempty"`
	// Namespace is the Kubernetes namespace to deploy into.
	Namespace string `json:"namespace,omitempty"`
	// Commands are shell commands run on the node, in order.
	Commands []string `json:"commands,omitempty"`
	// Manifests are Kubernetes manifests (YAML text, each possibly several documents)
	// applied in the part's namespace: a necos extension. The document gives them as a
	// string, or a list of strings and mappings (a mapping is one object).
	Manifests []string `json:"manifests,omitempty"`
}

// Part returns the service's part called name.
func (s *Service) Part(name string) (*ServicePart, bool) {
	for i := range s.Parts {
		if s.Parts[i].Name == name {
			return &s.Parts[i], true
		}
	}
	return nil, false
}

// Policies returns every policy of the service, each with its Part set.
func (s *Service) Policies() []Policy {
	var out []Policy
	for _, p := range s.Parts {
		out = append(out, p.Policies...)
	}
	return out
}

// ParseService parses and validates a service deployment (deploy_service) with the
// default limits; every problem is in an *[Error].
func ParseService(data []byte) (*Service, error) { return Parser{}.Service(data) }

// Service is [ParseService] with p's limits.
func (p Parser) Service(data []byte) (*Service, error) {
	root, release, err := p.load(data)
	if err != nil {
		return nil, err
	}
	defer release()
	pr := &problems{}
	d := &decoder{p: pr}
	svc := d.serviceDoc(root)
	if err := pr.err(); err != nil {
		return nil, err
	}
	svc.Warnings = pr.warnings
	return svc, nil
}

func (d *decoder) serviceDoc(root *yaml.Node) *Service {
	svc := &Service{}
	node, path := d.findSlice(root, "{id, slice-parts}")
	if node == nil {
		return svc
	}
	o := d.mapping(node, path)
	svc.SliceID = o.str("id")
	checkName(d.p, o.at("id"), svc.SliceID, "the id of the slice to deploy onto")
	items := o.list("slice-parts")
	if len(items) == 0 && !d.p.reported[o.at("slice-parts")] {
		d.p.add(o.at("slice-parts"), "required: at least one dc-slice-part")
	}
	for i, item := range items {
		at := index(o.at("slice-parts"), i)
		kind, f := d.wrapped(item, at, "dc-slice-part", "net-slice-part")
		switch kind {
		case "":
			continue
		case "net-slice-part":
			d.p.add(join(at, kind), "a service deploys onto dc-slice-parts only")
			continue
		}
		d.servicePart(svc, f)
	}
	o.rest()
	return svc
}

// servicePart reads one dc-slice-part and merges it into the service.
func (d *decoder) servicePart(svc *Service, o *obj) {
	name := o.str("name")
	checkName(d.p, o.at("name"), name, "the name of a dc-slice-part of the slice")
	part, ok := svc.Part(name)
	if !ok {
		svc.Parts = append(svc.Parts, ServicePart{Name: name})
		part = &svc.Parts[len(svc.Parts)-1]
	}
	for i, item := range o.list("vdus") {
		at := index(o.at("vdus"), i)
		kind, f := d.wrapped(item, at, "vdu")
		if kind == "" {
			continue
		}
		v := d.serviceVDU(f)
		mergeVDU(d.p, part, v, f.path)
	}
	for i, item := range o.list("elasticity") {
		at := index(o.at("elasticity"), i)
		kind, f := d.wrapped(item, at, "policy")
		if kind == "" {
			continue
		}
		pol := d.policy(f)
		requireValue(d.p, f)
		switch {
		case pol.Part == "":
			pol.Part = name
		case pol.Part != name:
			d.p.add(f.at("part"), "a policy under part %s watches that part, got %s", name, quote(pol.Part))
		}
		pol.check(d.p, f.path)
		for _, other := range part.Policies {
			if other.Name == pol.Name && pol.Name != "" {
				d.p.add(f.at("name"), "duplicate policy name %q in part %s", pol.Name, name)
			}
		}
		part.Policies = append(part.Policies, *pol)
	}
	o.rest()
}

// mergeVDU adds v to the part, appending to a VDU of the same name.
func mergeVDU(p *problems, part *ServicePart, v ServiceVDU, path string) {
	for i := range part.VDUs {
		u := &part.VDUs[i]
		if u.Name != v.Name {
			continue
		}
		if v.VIM != "" && u.VIM != "" && !strings.EqualFold(u.VIM, v.VIM) {
			p.add(join(path, "VIM"), "vdu %s was given VIM %s before, got %s", v.Name, u.VIM, v.VIM)
		} else if u.VIM == "" {
			u.VIM = v.VIM
		}
		if v.Namespace != "" && u.Namespace != "" && u.Namespace != v.Namespace {
			p.add(join(path, "namespace"), "vdu %s was given namespace %s before, got %s", v.Name, u.Namespace, v.Namespace)
		} else if u.Namespace == "" {
			u.Namespace = v.Namespace
		}
		u.Commands = append(u.Commands, v.Commands...)
		u.Manifests = append(u.Manifests, v.Manifests...)
		return
	}
	part.VDUs = append(part.VDUs, v)
}

// namespaceRE is a Kubernetes namespace: a DNS-1123 label.
var namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (d *decoder) serviceVDU(o *obj) ServiceVDU {
	v := ServiceVDU{Name: o.str("name"), VIM: o.str("VIM"), Namespace: o.str("namespace")}
	checkName(d.p, o.at("name"), v.Name, "a VDU or node name of the part")
	if v.Namespace != "" && !strings.Contains(v.Namespace, "${") && !namespaceRE.MatchString(v.Namespace) {
		d.p.add(o.at("namespace"), "must be a Kubernetes namespace (lower-case letters, digits and '-', at most 63), got %s", quote(v.Namespace))
	}
	v.Commands = d.commands(o, "commands")
	v.Manifests = d.manifests(o, "manifests")
	o.rest()
	return v
}

// manifests reads manifests: a string, or a list of strings and mappings.
func (d *decoder) manifests(o *obj, key string) []string {
	n := o.node(key)
	if isNull(n) {
		return nil
	}
	items := []*yaml.Node{n}
	paths := []string{o.at(key)}
	if n.Kind == yaml.SequenceNode {
		items, paths = n.Content, nil
		for i := range n.Content {
			paths = append(paths, index(o.at(key), i))
		}
	}
	var out []string
	for i, e := range items {
		switch {
		case e.Kind == yaml.ScalarNode && e.ShortTag() == "!!str" && strings.TrimSpace(e.Value) != "":
			out = append(out, e.Value)
		case e.Kind == yaml.MappingNode:
			m := d.mapping(e, paths[i])
			if m.str("apiVersion") == "" || m.str("kind") == "" {
				d.p.add(paths[i], "a manifest object needs apiVersion and kind")
				continue
			}
			text, err := yaml.Marshal(e)
			if err != nil {
				d.p.add(paths[i], "cannot be written as YAML: %v", err)
				continue
			}
			out = append(out, string(text))
		default:
			d.p.add(paths[i], "must be a Kubernetes manifest: YAML text or a mapping, got %s", kindOf(e))
		}
	}
	return out
}

// CheckVIMs reports every VDU whose VIM is not among those the platform offers
// (matched ignoring case), naming the ones it offers.
func (s *Service) CheckVIMs(offered []string) error {
	p := &problems{}
	for _, part := range s.Parts {
		for _, v := range part.VDUs {
			if v.VIM != "" && !matchFold(offered, v.VIM) {
				p.add(vduRef(part.Name, v.Name, "VIM"), "unknown VIM %q: this platform offers %s%s", v.VIM, list(sorted(offered)), vimHint(v.VIM))
			}
		}
	}
	return p.err()
}

// vduRef names a field of a merged service's VDU, in the style of references:
// parts.<part>.vdus.<vdu>.<field>.
func vduRef(part, vdu, field string) string {
	return "parts." + part + ".vdus." + vdu + "." + field
}
