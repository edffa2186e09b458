package spec

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Status is what the platform filled in for a created slice, keyed by part name; the
// core fills it and [Render] writes it into the slice document as the original did.
type Status struct {
	// Parts maps a dc-slice-part's name to its status.
	Parts map[string]PartStatus `json:"parts,omitempty"`
	// Links maps a net-slice-part's name to its status.
	Links map[string]LinkStatus `json:"links,omitempty"`
}

// PartStatus is a created DC part: the dc-slice-part fields the platform fills in.
type PartStatus struct {
	// Controller is dc-slice-controller: the provider running the part.
	Controller Controller `json:"dc-slice-controller"`
	// ID is dc-slice-part-id.
	ID PartID `json:"dc-slice-part-id"`
	// Cost is the price charged for the part (cost: {model, value-euros}).
	Cost *CostModel `json:"cost,omitempty"`
	// VIMRef is VIM.vim-ref: where the tenant reaches the part's VIM.
	VIMRef Endpoint `json:"vim-ref"`
	// Credential is VIM.vim-credential: how the tenant logs in.
	Credential *Credential `json:"vim-credential,omitempty"`
	// VSwitch is the per-slice switch the part's nodes attach to.
	VSwitch VSwitch `json:"vswitch"`
	// Nodes are the part's nodes; each is rendered as one vdu entry.
	Nodes []NodeStatus `json:"nodes,omitempty"`
	// Namespace is a Kubernetes part's namespace in its provider's cluster (the part's
	// "namespace" attribute), what ${parts.<part>.namespace} names: another part's pods
	// name the part's Services by DNS with it. It is not written into the document.
	Namespace string `json:"-"`
	// State is part-state, written only for a part its provider no longer has as
	// created (Lost), with Reason (part-state-reason) saying what is missing.
	State  string `json:"part-state,omitempty"`
	Reason string `json:"part-state-reason,omitempty"`
}

// Controller is dc-slice-controller {dc-slice-provider, ip, port} or
// wan-slice-controller {wan-slice-provider, ip, port}.
type Controller struct {
	Provider string `json:"provider,omitempty"`
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port,omitempty"`
}

// Endpoint is vim-ref {ip-api, port-api, ip-ssh, port-ssh}.
type Endpoint struct {
	IPAPI   string `json:"ip-api,omitempty"`
	PortAPI int    `json:"port-api,omitempty"`
	IPSSH   string `json:"ip-ssh,omitempty"`
	PortSSH int    `json:"port-ssh,omitempty"`
}

// Credential kinds (the same strings as the sdk's).
const (
	// CredentialKubeconfig: {type: kubeconfig, kubeconfig: <kubeconfig YAML>}, scoped
	// to the part's namespace.
	CredentialKubeconfig = "kubeconfig"
	// CredentialSSHKey: {type: ssh-key, user-ssh, ssh-private-key: <OpenSSH PEM>,
	// ssh-host-key: <host public key, authorized_keys format>}, a key made for the part.
	CredentialSSHKey = "ssh-key"
	// CredentialPassword: {user-ssh, password-ssh}, what the original handed out; read
	// for compatibility, never issued by this platform.
	CredentialPassword = "password"
)

// Credential is VIM.vim-credential. This platform hands out scoped credentials, one
// per part: a kubeconfig for a Kubernetes part, an SSH key pair for VM parts, each
// optionally expiring. The rendered slice carries them, so it is for the tenant alone.
type Credential struct {
	// Type is CredentialKubeconfig, CredentialSSHKey or CredentialPassword.
	Type       string `json:"type"`
	User       string `json:"user-ssh,omitempty"`
	Kubeconfig string `json:"kubeconfig,omitempty"`
	PrivateKey string `json:"ssh-private-key,omitempty"`
	HostKey    string `json:"ssh-host-key,omitempty"`
	Password   string `json:"password-ssh,omitempty"`
	// Expires is when the credential stops working; zero means never.
	Expires time.Time `json:"expires,omitzero"`
}

// VSwitch is vswitch {type, bridge-name}.
type VSwitch struct {
	Type   string `json:"type,omitempty"`
	Bridge string `json:"bridge-name,omitempty"`
}

// NodeStatus is one node of a created part.
type NodeStatus struct {
	// Name is the node's name, NodeName(VDU, i) for nodes this platform made.
	Name string `json:"name"`
	// VDU is the name of the VDU the node is an instance of.
	VDU string `json:"vdu"`
	// ID is the backend's identifier of the node.
	ID   string `json:"id,omitempty"`
	Type string `json:"type,omitempty"`
	IP   string `json:"ip,omitempty"`
}

// LinkStatus is a created net part: the net-slice-part fields the platform fills in.
type LinkStatus struct {
	// Controller is wan-slice-controller.
	Controller Controller `json:"wan-slice-controller"`
	// ID is net-slice-part-id.
	ID   PartID     `json:"net-slice-part-id"`
	Cost *CostModel `json:"cost,omitempty"`
	// End1IP and End2IP are link-ends {link-end1-ip, link-end2-ip}: the tunnel's
	// addresses at dc-part1 and dc-part2.
	End1IP string `json:"link-end1-ip,omitempty"`
	End2IP string `json:"link-end2-ip,omitempty"`
	// State is link-state, written only for a link that is not built (NotBuilt), with
	// Reason (link-state-reason) saying why: such a link carries no traffic.
	State  string `json:"link-state,omitempty"`
	Reason string `json:"link-state-reason,omitempty"`
}

// Status collects the Status of the slice's parts and links, as read by
// [ParseCreatedSlice].
func (s *Slice) Status() Status {
	st := Status{Parts: map[string]PartStatus{}, Links: map[string]LinkStatus{}}
	for _, p := range s.Parts {
		if p.Status != nil {
			st.Parts[p.Name] = *p.Status
		}
	}
	for _, l := range s.Links {
		if l.Status != nil {
			st.Links[l.Name] = *l.Status
		}
	}
	return st
}

// Render writes the slice in the NECOS format (slices: sliced: ...), enriched with st as
// the original returned a created slice: per dc-slice-part dc-slice-controller,
// dc-slice-part-id, cost, vswitch, VIM.vim-ref and VIM.vim-credential, and one vdu
// entry per node with its id, name, type and ip; per net-slice-part wan-slice-controller,
// net-slice-part-id, cost and link-ends. A part missing from st keeps the Status it has
// in s, if any. Keys this package does not model are written back as they were read.
//
// A node entry also says which VDU it is an instance of (vdu-name, and vdu-id when the
// VDU has an id), so that [ParseSlice] and [ParseCreatedSlice] fold the entries back
// into the VDU: parse(render(s, st)) gives s back, with st in the parts' Status.
func Render(s *Slice, st Status) ([]byte, error) {
	sl := newMap()
	putStr(sl, "id", s.ID)
	putStr(sl, "name", s.Name)
	putStr(sl, "short-name", s.ShortName)
	putStr(sl, "description", s.Description)
	putStr(sl, "vendor", s.Vendor)
	putStr(sl, "version", s.Version)
	putStr(sl, "logo", s.Logo)
	if s.Update {
		put(sl, "created-slice", boolNode(true))
	}
	if c := s.Constraints; c != nil {
		m := newMap()
		if len(c.Geographic) > 0 {
			put(m, "geographic", strList(c.Geographic))
		}
		putInt(m, "dc-slice-parts", c.DCParts)
		putInt(m, "net-slice-parts", c.NetParts)
		putExtra(m, c.Extra)
		put(sl, "slice-constraints", m)
	}
	if r := s.Requirements; r != nil {
		m := newMap()
		put(m, "elasticity", boolNode(r.Elasticity))
		if r.LinksOptional {
			put(m, "links-optional", boolNode(true))
		}
		if rel := r.Reliability; rel != nil {
			rm := newMap()
			putStr(rm, "description", rel.Description)
			put(rm, "enabled", boolNode(rel.Enabled))
			putStr(rm, "value", rel.Value)
			put(m, "reliability", rm)
		}
		putExtra(m, r.Extra)
		put(sl, "slice-requirements", m)
	}
	if l := s.Lifecycle; l != nil {
		m := newMap()
		putStr(m, "description", l.Description)
		putStr(m, "status", l.Status)
		put(sl, "slice-lifecycle", m)
	}
	if s.Cost.DC != nil || s.Cost.Net != nil {
		m := newMap()
		if s.Cost.DC != nil {
			put(m, "dc-model", costNode(s.Cost.DC))
		}
		if s.Cost.Net != nil {
			put(m, "net-model", costNode(s.Cost.Net))
		}
		put(sl, "cost", m)
	}
	if t := s.Timeframe; t != nil {
		m := newMap()
		// Each value as written (null is as good as absent).
		for _, kv := range []struct {
			key string
			v   any
		}{{"service-start-time", t.Start}, {"service-stop-time", t.Stop}, {"service-duration", t.Duration}} {
			if kv.v != nil {
				putExtra(m, map[string]any{kv.key: kv.v})
			}
		}
		putExtra(m, t.Extra)
		put(sl, "slice-timeframe", m)
	}
	parts := &yaml.Node{Kind: yaml.SequenceNode}
	for i := range s.Parts {
		p := &s.Parts[i]
		ps, ok := st.Parts[p.Name]
		if !ok && p.Status != nil {
			ps, ok = *p.Status, true
		}
		var pst *PartStatus
		if ok {
			pst = &ps
		}
		item := newMap()
		put(item, "dc-slice-part", dcPartNode(p, pst))
		parts.Content = append(parts.Content, item)
	}
	for i := range s.Links {
		l := &s.Links[i]
		ls, ok := st.Links[l.Name]
		if !ok && l.Status != nil {
			ls, ok = *l.Status, true
		}
		var lst *LinkStatus
		if ok {
			lst = &ls
		}
		item := newMap()
		put(item, "net-slice-part", netPartNode(l, lst))
		parts.Content = append(parts.Content, item)
	}
	put(sl, "slice-parts", parts)
	if err := putExtraErr(sl, s.Extra); err != nil {
		return nil, err
	}
	doc := newMap()
	outer := newMap()
	put(outer, "sliced", sl)
	put(doc, "slices", outer)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("render slice %s: %w", s.ID, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render slice %s: %w", s.ID, err)
	}
	return buf.Bytes(), nil
}

func dcPartNode(p *DCPart, st *PartStatus) *yaml.Node {
	m := newMap()
	putStr(m, "name", p.Name)
	putStr(m, "type", p.Type)
	putStr(m, "location", p.Location)
	if st != nil {
		c := newMap()
		putStr(c, "dc-slice-provider", st.Controller.Provider)
		putStr(c, "ip", st.Controller.IP)
		putInt(c, "port", st.Controller.Port)
		putMap(m, "dc-slice-controller", c)
		id := newMap()
		putStr(id, "slice-controller-id", st.ID.ControllerID)
		putStr(id, "slice-part-uuid", st.ID.PartUUID)
		putMap(m, "dc-slice-part-id", id)
		putStr(m, "part-state", st.State)
		putStr(m, "part-state-reason", st.Reason)
		if st.Cost != nil {
			put(m, "cost", costNode(st.Cost))
		}
		if st.VSwitch != (VSwitch{}) {
			sw := newMap()
			putStr(sw, "type", st.VSwitch.Type)
			putStr(sw, "bridge-name", st.VSwitch.Bridge)
			put(m, "vswitch", sw)
		}
	}
	if mon := p.Monitoring; mon != nil {
		mm := newMap()
		putStr(mm, "tool", mon.Tool)
		putStr(mm, "measurements-db-ip", mon.DBIP)
		putInt(mm, "measurements-db-port", mon.DBPort)
		putInt(mm, "granularity-secs", mon.GranularitySecs)
		putStr(mm, "type", mon.Type)
		if len(mon.Metrics) > 0 {
			ml := &yaml.Node{Kind: yaml.SequenceNode}
			for _, met := range mon.Metrics {
				mi := newMap()
				putStr(mi, "name", met.Name)
				putInt(mi, "granularity-secs", met.GranularitySecs)
				w := newMap()
				put(w, "metric", mi)
				ml.Content = append(ml.Content, w)
			}
			put(mm, "metrics", ml)
		}
		putStr(mm, "namespace", mon.Namespace)
		putExtra(mm, mon.Extra)
		put(m, "monitoring-parameters", mm)
	}
	v := newMap()
	putStr(v, "name", p.VIM.Name)
	putStr(v, "version", p.VIM.Version)
	put(v, "vim-shared", boolNode(p.VIM.Shared))
	put(v, "vim-federated", boolNode(p.VIM.Federated))
	putInt(v, "host-count", p.VIM.HostCount)
	if st != nil {
		r := newMap()
		putStr(r, "ip-api", st.VIMRef.IPAPI)
		putInt(r, "port-api", st.VIMRef.PortAPI)
		putStr(r, "ip-ssh", st.VIMRef.IPSSH)
		putInt(r, "port-ssh", st.VIMRef.PortSSH)
		putMap(v, "vim-ref", r)
		if c := st.Credential; c != nil {
			put(v, "vim-credential", credentialNode(c))
		}
	}
	vdus := &yaml.Node{Kind: yaml.SequenceNode}
	for i := range p.VIM.VDUs {
		u := &p.VIM.VDUs[i]
		var nodes []NodeStatus
		if st != nil {
			for _, n := range st.Nodes {
				if n.VDU == u.Name {
					nodes = append(nodes, n)
				}
			}
		}
		if len(nodes) == 0 {
			w := newMap()
			put(w, "vdu", vduNode(u, nil))
			vdus.Content = append(vdus.Content, w)
			continue
		}
		for i := range nodes {
			w := newMap()
			put(w, "vdu", vduNode(u, &nodes[i]))
			vdus.Content = append(vdus.Content, w)
		}
	}
	put(v, "vdus", vdus)
	putExtra(v, p.VIM.Extra)
	put(m, "VIM", v)
	putExtra(m, p.Extra)
	return m
}

// vduNode renders a VDU, or one node of it when n is not nil.
func vduNode(u *VDU, n *NodeStatus) *yaml.Node {
	m := newMap()
	if n == nil {
		putStr(m, "id", u.ID)
		putStr(m, "name", u.Name)
		putStr(m, "type", u.Type)
	} else {
		id := n.ID
		if id == "" {
			id = n.Name
		}
		putStr(m, "id", id)
		putStr(m, "name", n.Name)
		putStr(m, "vdu-name", u.Name)
		putStr(m, "vdu-id", u.ID)
		typ := n.Type
		if typ == "" {
			typ = u.NodeType()
		}
		putStr(m, "type", typ)
		putStr(m, "ip", n.IP)
	}
	putStr(m, "description", u.Description)
	if n == nil {
		putInt(m, "instance-count", u.Instances)
	}
	putStr(m, "hosting", u.Hosting)
	putStr(m, "vdu-image", u.Image)
	h := newMap()
	putStr(h, "cpu-architecture", u.CPUArchitecture)
	putInt(h, "cpu-number", u.CPUs)
	putInt64(h, "storage-gb", u.StorageGB)
	if u.MemoryAtLeast {
		ge := newMap()
		putInt64(ge, "greater_or_equal", u.MemoryMB)
		put(h, "memory-mb", ge)
	} else {
		putInt64(h, "memory-mb", u.MemoryMB)
	}
	if len(u.OS) > 0 {
		os := newMap()
		for _, k := range sortedKeys(u.OS) {
			if k == "architecture" {
				eq := newMap()
				putStr(eq, "equal", u.OS[k])
				put(os, k, eq)
				continue
			}
			putStr(os, k, u.OS[k])
		}
		put(h, "os-properties", os)
	}
	putStr(h, "host-image", u.HostImage)
	putExtra(h, u.HostExtra)
	if len(h.Content) > 0 || len(u.EPAExtra) > 0 {
		epa := newMap()
		if len(h.Content) > 0 {
			put(epa, "host-epa", h)
		}
		putExtra(epa, u.EPAExtra)
		put(m, "epa-attributes", epa)
	}
	putExtra(m, u.Extra)
	return m
}

func netPartNode(l *NetPart, st *LinkStatus) *yaml.Node {
	m := newMap()
	putStr(m, "name", l.Name)
	putStr(m, "type", l.Type)
	if st != nil {
		c := newMap()
		putStr(c, "wan-slice-provider", st.Controller.Provider)
		putStr(c, "ip", st.Controller.IP)
		putInt(c, "port", st.Controller.Port)
		putMap(m, "wan-slice-controller", c)
		id := newMap()
		putStr(id, "slice-controller-id", st.ID.ControllerID)
		putStr(id, "slice-part-uuid", st.ID.PartUUID)
		putMap(m, "net-slice-part-id", id)
		if st.Cost != nil {
			put(m, "cost", costNode(st.Cost))
		}
		e := newMap()
		putStr(e, "link-end1-ip", st.End1IP)
		putStr(e, "link-end2-ip", st.End2IP)
		putMap(m, "link-ends", e)
		putStr(m, "link-state", st.State)
		putStr(m, "link-state-reason", st.Reason)
	}
	if w := l.WIM; w.Name != "" || w.Version != "" || w.Shared || w.Federated || len(w.Extra) > 0 {
		w := newMap()
		putStr(w, "name", l.WIM.Name)
		putStr(w, "version", l.WIM.Version)
		put(w, "wim-shared", boolNode(l.WIM.Shared))
		put(w, "wim-federated", boolNode(l.WIM.Federated))
		putExtra(w, l.WIM.Extra)
		put(m, "WIM", w)
	}
	links := &yaml.Node{Kind: yaml.SequenceNode}
	end := func(key, name string, id *PartID) {
		e := newMap()
		if id == nil {
			putStr(e, key, name)
		} else {
			em := newMap()
			putStr(em, "name", name)
			im := newMap()
			putStr(im, "controller-id", id.ControllerID)
			putStr(im, "slice-part-id", id.PartUUID)
			put(em, "id", im)
			put(e, key, em)
		}
		links.Content = append(links.Content, e)
	}
	end("dc-part1", l.DCPart1, l.DCPart1ID)
	end("dc-part2", l.DCPart2, l.DCPart2ID)
	req := newMap()
	if l.BandwidthGB != 0 {
		put(req, "bandwidth-GB", floatNode(l.BandwidthGB))
	}
	extra := l.LinkExtra
	if r, ok := extra["requirements"].(map[string]any); ok {
		putExtra(req, r)
		extra = withoutKey(extra, "requirements")
	}
	if len(req.Content) > 0 {
		r := newMap()
		put(r, "requirements", req)
		links.Content = append(links.Content, r)
	}
	for _, k := range sortedKeys(extra) {
		e := newMap()
		putExtra(e, map[string]any{k: extra[k]})
		links.Content = append(links.Content, e)
	}
	put(m, "links", links)
	putExtra(m, l.Extra)
	return m
}

func withoutKey(m map[string]any, key string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func credentialNode(c *Credential) *yaml.Node {
	m := newMap()
	putStr(m, "type", c.Type)
	putStr(m, "user-ssh", c.User)
	putStr(m, "password-ssh", c.Password)
	if c.Kubeconfig != "" {
		put(m, "kubeconfig", literal(c.Kubeconfig))
	}
	if c.PrivateKey != "" {
		put(m, "ssh-private-key", literal(c.PrivateKey))
	}
	putStr(m, "ssh-host-key", c.HostKey)
	if !c.Expires.IsZero() {
		putStr(m, "expires", c.Expires.UTC().Format(time.RFC3339))
	}
	return m
}

func (d *decoder) credential(o *obj) *Credential {
	c := &Credential{Type: o.str("type"), User: o.str("user-ssh"), Kubeconfig: o.str("kubeconfig"),
		PrivateKey: o.str("ssh-private-key"), HostKey: o.str("ssh-host-key"), Password: o.str("password-ssh")}
	if e := o.str("expires"); e != "" {
		t, err := time.Parse(time.RFC3339, e)
		if err != nil {
			d.p.add(o.at("expires"), "must be a time like 2019-06-01T12:00:00Z (RFC 3339), got %s", quote(e))
		}
		c.Expires = t
	}
	if c.Type == "" {
		switch {
		case c.Kubeconfig != "":
			c.Type = CredentialKubeconfig
		case c.PrivateKey != "":
			c.Type = CredentialSSHKey
		case c.Password != "" || c.User != "":
			c.Type = CredentialPassword
		}
	}
	o.rest()
	return c
}

func costNode(c *CostModel) *yaml.Node {
	m := newMap()
	putStr(m, "model", c.Model)
	if c.Written != "" {
		put(m, "value-euros", strNode(c.Written))
	} else if c.Op == "" {
		put(m, "value-euros", floatNode(c.Euros))
	} else {
		put(m, "value-euros", strNode(c.Value()))
	}
	return m
}

func newMap() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// literal writes multi-line text (a kubeconfig, a key) as a block, readable and exact.
func literal(s string) *yaml.Node {
	n := strNode(s)
	n.Style = yaml.LiteralStyle
	return n
}

func boolNode(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

func floatNode(f float64) *yaml.Node {
	v := strconv.FormatFloat(f, 'f', -1, 64)
	tag := "!!float"
	if f == float64(int64(f)) {
		tag = "!!int"
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v}
}

func strList(l []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode}
	for _, s := range l {
		n.Content = append(n.Content, strNode(s))
	}
	return n
}

func put(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, strNode(key), v)
}

// putMap puts a mapping unless it is empty: an unset status field is left out rather
// than written as {}.
func putMap(m *yaml.Node, key string, v *yaml.Node) {
	if len(v.Content) > 0 {
		put(m, key, v)
	}
}

func putStr(m *yaml.Node, key, v string) {
	if v != "" {
		put(m, key, strNode(v))
	}
}

func putInt(m *yaml.Node, key string, v int) { putInt64(m, key, int64(v)) }

func putInt64(m *yaml.Node, key string, v int64) {
	if v != 0 {
		put(m, key, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v, 10)})
	}
}

// putExtra appends kept keys, sorted so that output is stable; a key the mapping
// already has is skipped (Extra built in code might repeat one).
func putExtra(m *yaml.Node, extra map[string]any) {
	_ = putExtraErr(m, extra)
}

func putExtraErr(m *yaml.Node, extra map[string]any) error {
	if len(extra) == 0 {
		return nil
	}
	have := scalarKeys(m.Content)
	for _, k := range sortedKeys(extra) {
		if have[k] {
			continue
		}
		var v yaml.Node
		if err := v.Encode(extra[k]); err != nil {
			return fmt.Errorf("render key %s: %w", k, err)
		}
		put(m, k, &v)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
