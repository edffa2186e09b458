package spec

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Reference prefixes: text "${" followed by one of them is a reference to the slice;
// any other "${...}" or "$name" is left to the shell. docs/service-references.md
// describes the syntax.
var refPrefixes = []string{"parts.", "slice.", "links."}

var refRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Expand substitutes the references ${parts.<part>.vdus.<vdu-or-node>.ip},
// ${slice.id}... in the service's commands, manifests, namespaces and policy
// post-deployment commands and nodes, using resolve (see [Resolver] for one built on a
// created slice). Text like $coreip or ${HOME} is not a reference and is left as is;
// "$${parts." writes a literal "${parts.".
//
// Every unknown or malformed reference is reported, each with where it appears, in one
// *[Error]; the service is then left unchanged.
func Expand(svc *Service, resolve func(ref string) (string, bool)) error {
	p := &problems{}
	out := make([]ServicePart, len(svc.Parts))
	for i, part := range svc.Parts {
		np := ServicePart{Name: part.Name}
		for _, v := range part.VDUs {
			nv := v
			nv.Namespace = expandString(p, vduRef(part.Name, v.Name, "namespace"), v.Namespace, resolve)
			if nv.Namespace != v.Namespace && !namespaceRE.MatchString(nv.Namespace) {
				p.add(vduRef(part.Name, v.Name, "namespace"), "expands to %s, not a Kubernetes namespace", quote(nv.Namespace))
			}
			nv.Commands = expandAll(p, vduRef(part.Name, v.Name, "commands"), v.Commands, resolve)
			nv.Manifests = expandAll(p, vduRef(part.Name, v.Name, "manifests"), v.Manifests, resolve)
			np.VDUs = append(np.VDUs, nv)
		}
		for _, pol := range part.Policies {
			if pd := pol.PostDeployment; pd != nil {
				at := "parts." + part.Name + ".elasticity." + pol.Name + ".post-deployment"
				c := *pd
				c.Node = expandString(p, join(at, "node"), pd.Node, resolve)
				c.Commands = expandAll(p, join(at, "commands"), pd.Commands, resolve)
				pol.PostDeployment = &c
			}
			np.Policies = append(np.Policies, pol)
		}
		out[i] = np
	}
	if err := p.err(); err != nil {
		return err
	}
	svc.Parts = out
	return nil
}

func expandAll(p *problems, path string, in []string, resolve func(string) (string, bool)) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expandString(p, index(path, i), s, resolve)
	}
	return out
}

// expandString substitutes the references in s, reporting each bad one at path (all of
// them, one message per string).
func expandString(p *problems, path, s string, resolve func(string) (string, bool)) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	var bad []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		rest := s[i+2:]
		if !hasRefPrefix(rest) {
			b.WriteString(s[:i+2])
			s = rest
			continue
		}
		if i > 0 && s[i-1] == '$' {
			// "$${parts." is the escape for a literal "${parts.".
			b.WriteString(s[:i-1] + "${")
			s = rest
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			bad = append(bad, fmt.Sprintf("unterminated reference %s", quote("${"+rest)))
			b.WriteString(s[i:])
			break
		}
		ref := rest[:end]
		s = rest[end+1:]
		if !refRE.MatchString(ref) {
			bad = append(bad, fmt.Sprintf("malformed reference %s", quote("${"+ref+"}")))
			continue
		}
		v, ok := resolve(ref)
		if !ok {
			bad = append(bad, "unknown reference ${"+ref+"}")
			continue
		}
		b.WriteString(v)
	}
	if len(bad) > 0 {
		p.add(path, "%s", strings.Join(bad, "; "))
	}
	return b.String()
}

func hasRefPrefix(s string) bool {
	for _, pre := range refPrefixes {
		if strings.HasPrefix(s, pre) {
			return true
		}
	}
	return false
}

// Resolver returns a resolve function for [Expand] over a created slice: st (or, for
// a part missing from it, the part's own Status). It knows:
//
//	slice.id, slice.name
//	parts.<part>.name | type | location
//	parts.<part>.namespace   (a Kubernetes part's namespace: PartStatus.Namespace)
//	parts.<part>.vim-ref.ip-api | port-api | ip-ssh | port-ssh
//	parts.<part>.dc-slice-controller.ip | port
//	parts.<part>.vdus.<vdu-or-node>.ip | name | id | type   (a VDU: its first node)
//	parts.<part>.vdus.<vdu>.ips | names                      (all nodes, space-separated)
//	links.<link>.link-end1-ip | link-end2-ip
func Resolver(s *Slice, st Status) func(ref string) (string, bool) {
	return func(ref string) (string, bool) {
		f := strings.Split(ref, ".")
		switch {
		case len(f) == 2 && f[0] == "slice":
			switch f[1] {
			case "id":
				return nonEmpty(s.ID)
			case "name":
				return nonEmpty(s.Name)
			}
		case len(f) >= 3 && f[0] == "parts":
			part, ok := s.Part(f[1])
			if !ok {
				return "", false
			}
			ps, ok := st.Parts[part.Name]
			if !ok && part.Status != nil {
				ps, ok = *part.Status, true
			}
			return resolvePart(part, ps, ok, f[2:])
		case len(f) == 3 && f[0] == "links":
			l, ok := s.Link(f[1])
			if !ok {
				return "", false
			}
			ls, ok := st.Links[l.Name]
			if !ok && l.Status != nil {
				ls, ok = *l.Status, true
			}
			if !ok {
				return "", false
			}
			switch f[2] {
			case "link-end1-ip":
				return nonEmpty(ls.End1IP)
			case "link-end2-ip":
				return nonEmpty(ls.End2IP)
			}
		}
		return "", false
	}
}

func resolvePart(part *DCPart, ps PartStatus, created bool, f []string) (string, bool) {
	switch {
	case len(f) == 1:
		switch f[0] {
		case "name":
			return nonEmpty(part.Name)
		case "type":
			return nonEmpty(part.Type)
		case "location":
			return nonEmpty(part.Location)
		case "namespace":
			if created {
				return nonEmpty(ps.Namespace)
			}
		}
	case len(f) == 2 && created && f[0] == "vim-ref":
		r := ps.VIMRef
		switch f[1] {
		case "ip-api":
			return nonEmpty(r.IPAPI)
		case "port-api":
			return port(r.PortAPI)
		case "ip-ssh":
			return nonEmpty(r.IPSSH)
		case "port-ssh":
			return port(r.PortSSH)
		}
	case len(f) == 2 && created && f[0] == "dc-slice-controller":
		switch f[1] {
		case "ip":
			return nonEmpty(ps.Controller.IP)
		case "port":
			return port(ps.Controller.Port)
		}
	case len(f) == 3 && created && f[0] == "vdus":
		nodes := nodesOf(part, ps, f[1])
		if len(nodes) == 0 {
			return "", false
		}
		switch f[2] {
		case "ip":
			return nonEmpty(nodes[0].IP)
		case "name":
			return nonEmpty(nodes[0].Name)
		case "id":
			return nonEmpty(nodes[0].ID)
		case "type":
			if nodes[0].Type != "" {
				return nodes[0].Type, true
			}
			if v, ok := part.VDU(nodes[0].VDU); ok {
				return nonEmpty(v.NodeType())
			}
		case "ips", "names":
			var vals []string
			for _, n := range nodes {
				v := n.IP
				if f[2] == "names" {
					v = n.Name
				}
				if v == "" {
					return "", false
				}
				vals = append(vals, v)
			}
			return strings.Join(vals, " "), true
		}
	}
	return "", false
}

// nodesOf finds the nodes a service names: a node by name or id, else a VDU's nodes
// (by VDU name or id).
func nodesOf(part *DCPart, ps PartStatus, name string) []NodeStatus {
	for _, n := range ps.Nodes {
		if n.Name == name || n.ID == name {
			return []NodeStatus{n}
		}
	}
	vdu := name
	if _, ok := part.VDU(name); !ok {
		for _, v := range part.VIM.VDUs {
			if v.ID == name {
				vdu = v.Name
			}
		}
	}
	var out []NodeStatus
	for _, n := range ps.Nodes {
		if n.VDU == vdu {
			out = append(out, n)
		}
	}
	return out
}

func nonEmpty(s string) (string, bool) { return s, s != "" }

func port(p int) (string, bool) {
	if p == 0 {
		return "", false
	}
	return strconv.Itoa(p), true
}
