package spec

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Slice is a NECOS slice spec (slices: sliced: ...): what a tenant asks create_slice for,
// or, read with [ParseCreatedSlice], a slice as created with each part's [PartStatus].
type Slice struct {
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	ShortName   string `json:"short-name,omitempty"`
	Description string `json:"description,omitempty"`
	Vendor      string `json:"vendor,omitempty"`
	// Version is kept as written: version: 1.0 is "1.0".
	Version string `json:"version,omitempty"`
	Logo    string `json:"logo,omitempty"`
	// Update is created-slice: true: the document adds parts to an existing slice (what
	// the original sent for horizontal elasticity), so links may name parts of that
	// slice that this document does not hold.
	Update       bool          `json:"created-slice,omitempty"`
	Constraints  *Constraints  `json:"slice-constraints,omitempty"`
	Requirements *Requirements `json:"slice-requirements,omitempty"`
	Lifecycle    *Lifecycle    `json:"slice-lifecycle,omitempty"`
	Cost         Cost          `json:"cost"`
	Timeframe    *Timeframe    `json:"slice-timeframe,omitempty"`
	// Parts are the dc-slice-parts and Links the net-slice-parts, each in document order.
	Parts []DCPart  `json:"dc-slice-parts"`
	Links []NetPart `json:"net-slice-parts,omitempty"`
	// Extra holds the keys this package does not model, rendered back as given.
	Extra map[string]any `json:"extra,omitempty"`
	// Warnings are problems that did not stop parsing: unknown keys and the like.
	Warnings []FieldError `json:"-"`

	// root is where the slice sat in the document ("slices.sliced", "slice"...), so
	// that problems found on the model name the path the tenant wrote.
	root string
}

// Constraints is slice-constraints.
type Constraints struct {
	Geographic []string `json:"geographic,omitempty"`
	// DCParts and NetParts are the numbers of parts the tenant announces; a mismatch
	// with the parts given is a warning.
	DCParts  int            `json:"dc-slice-parts,omitempty"`
	NetParts int            `json:"net-slice-parts,omitempty"`
	Extra    map[string]any `json:"extra,omitempty"`
}

// Requirements is slice-requirements.
type Requirements struct {
	Elasticity bool `json:"elasticity"`
	// LinksOptional (links-optional: true) lets the slice be Ready with net-slice-parts
	// no WAN provider can build, each shown NotBuilt with the reason; without it such a
	// slice is refused.
	LinksOptional bool           `json:"links-optional,omitempty"`
	Reliability   *Reliability   `json:"reliability,omitempty"`
	Extra         map[string]any `json:"extra,omitempty"`
}

// Reliability is slice-requirements.reliability.
type Reliability struct {
	Description string `json:"description,omitempty"`
	Enabled     bool   `json:"enabled"`
	Value       string `json:"value,omitempty"`
}

// Lifecycle is slice-lifecycle.
type Lifecycle struct {
	Description string `json:"description,omitempty"`
	Status      string `json:"status,omitempty"`
}

// Timeframe is slice-timeframe. The format never fixed its values and the original
// never read them, so each is kept as written, as plain values (string, number, bool,
// nil, map[string]any, []any): a time may be a string ("2019-06-01 08:00"), a date
// YAML reads as one (kept as its text), a number, a mapping of date parts ({year: 2019,
// month: 6, day: 1}) or empty; a duration a number or a string ("8h").
type Timeframe struct {
	Start any `json:"service-start-time,omitempty"`
	Stop  any `json:"service-stop-time,omitempty"`
	// Duration is service-duration of the older format, unit unspecified there.
	Duration any            `json:"service-duration,omitempty"`
	Extra    map[string]any `json:"extra,omitempty"`
}

// Part types.
const (
	PartDC   = "DC"
	PartEdge = "EDGE"
)

// DCPart is a dc-slice-part: compute at one resource provider, run by one VIM.
type DCPart struct {
	Name string `json:"name"`
	// Type is PartDC or PartEdge (upper-cased on parsing), or empty.
	Type string `json:"type,omitempty"`
	// Location is dot-separated from the continent down, e.g. "EUROPE.SPAIN".
	Location   string      `json:"location,omitempty"`
	Monitoring *Monitoring `json:"monitoring-parameters,omitempty"`
	VIM        VIM         `json:"VIM"`
	// Status holds what the platform filled in, when the document described a created
	// slice; nil in a request.
	Status *PartStatus    `json:"status,omitempty"`
	Extra  map[string]any `json:"extra,omitempty"`

	// pos is the part's index in slice-parts plus one (0: not from a document).
	pos int
}

// Monitoring is monitoring-parameters.
type Monitoring struct {
	Tool            string         `json:"tool,omitempty"`
	DBIP            string         `json:"measurements-db-ip,omitempty"`
	DBPort          int            `json:"measurements-db-port,omitempty"`
	GranularitySecs int            `json:"granularity-secs,omitempty"`
	Type            string         `json:"type,omitempty"`
	Metrics         []Metric       `json:"metrics,omitempty"`
	Namespace       string         `json:"namespace,omitempty"`
	Extra           map[string]any `json:"extra,omitempty"`
}

// Metric is one metric: {metric: {name: PERCENT_CPU_UTILIZATION, granularity-secs: 10}}.
type Metric struct {
	Name            string `json:"name"`
	GranularitySecs int    `json:"granularity-secs,omitempty"`
}

// VIM is the VIM of a DC part and the VDUs it runs.
type VIM struct {
	// Name selects the VIM: KUBERNETES, xen-vim, SSH... (matched case-insensitively
	// against what the platform offers, see [Slice.CheckVIMs]).
	Name      string         `json:"name"`
	Version   string         `json:"version,omitempty"`
	Shared    bool           `json:"vim-shared,omitempty"`
	Federated bool           `json:"vim-federated,omitempty"`
	HostCount int            `json:"host-count,omitempty"`
	VDUs      []VDU          `json:"vdus"`
	Extra     map[string]any `json:"extra,omitempty"`
}

// VDU is a virtual deployment unit: a node template and how many nodes of it.
type VDU struct {
	ID          string `json:"id,omitempty"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Instances is instance-count (1 when absent): the VDU has nodes NodeName(Name, 1..n).
	Instances int    `json:"instance-count"`
	Hosting   string `json:"hosting,omitempty"`
	// Image is vdu-image.
	Image string `json:"vdu-image,omitempty"`
	// Type is the node type given explicitly (type: master|worker); see NodeType.
	Type string `json:"type,omitempty"`
	// The rest is epa-attributes.host-epa.
	CPUArchitecture string `json:"cpu-architecture,omitempty"`
	CPUs            int    `json:"cpu-number"`
	MemoryMB        int64  `json:"memory-mb"`
	// MemoryAtLeast records that memory-mb was written {greater_or_equal: N}.
	MemoryAtLeast bool  `json:"memory-at-least,omitempty"`
	StorageGB     int64 `json:"storage-gb,omitempty"`
	// OS is os-properties: architecture, type, distribution, version.
	OS        map[string]string `json:"os-properties,omitempty"`
	HostImage string            `json:"host-image,omitempty"`
	// Extra, EPAExtra and HostExtra keep unmodelled keys of the vdu, epa-attributes and
	// host-epa mappings.
	Extra     map[string]any `json:"extra,omitempty"`
	EPAExtra  map[string]any `json:"epa-extra,omitempty"`
	HostExtra map[string]any `json:"host-epa-extra,omitempty"`

	pos int
}

// NetPart is a net-slice-part: a WAN link between two DC parts.
type NetPart struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
	WIM  WIM    `json:"WIM"`
	// DCPart1 and DCPart2 name the DC parts linked.
	DCPart1 string `json:"dc-part1"`
	DCPart2 string `json:"dc-part2"`
	// DCPart1ID and DCPart2ID identify an end that is a part of an existing slice, as in
	// {dc-part1: {name: dc-slice1, id: {controller-id, slice-part-id}}}; nil otherwise.
	DCPart1ID   *PartID        `json:"dc-part1-id,omitempty"`
	DCPart2ID   *PartID        `json:"dc-part2-id,omitempty"`
	BandwidthGB float64        `json:"bandwidth-GB"`
	Status      *LinkStatus    `json:"status,omitempty"`
	Extra       map[string]any `json:"extra,omitempty"`
	// LinkExtra keeps unmodelled entries of links (other than requirements.bandwidth-GB).
	LinkExtra map[string]any `json:"link-extra,omitempty"`

	pos int
}

// WIM is the WAN infrastructure manager of a net part.
type WIM struct {
	// Name is e.g. VXLAN.
	Name      string         `json:"name,omitempty"`
	Version   string         `json:"version,omitempty"`
	Shared    bool           `json:"wim-shared,omitempty"`
	Federated bool           `json:"wim-federated,omitempty"`
	Extra     map[string]any `json:"extra,omitempty"`
}

// PartID identifies a part at its provider: dc-slice-part-id {slice-controller-id,
// slice-part-uuid} (also read from the {controller-id, slice-part-id} of link ends).
type PartID struct {
	ControllerID string `json:"slice-controller-id,omitempty"`
	PartUUID     string `json:"slice-part-uuid,omitempty"`
}

// Part returns the DC part called name.
func (s *Slice) Part(name string) (*DCPart, bool) {
	for i := range s.Parts {
		if s.Parts[i].Name == name {
			return &s.Parts[i], true
		}
	}
	return nil, false
}

// Link returns the net part called name.
func (s *Slice) Link(name string) (*NetPart, bool) {
	for i := range s.Links {
		if s.Links[i].Name == name {
			return &s.Links[i], true
		}
	}
	return nil, false
}

// VDU returns the part's VDU called name.
func (p *DCPart) VDU(name string) (*VDU, bool) {
	for i := range p.VIM.VDUs {
		if p.VIM.VDUs[i].Name == name {
			return &p.VIM.VDUs[i], true
		}
	}
	return nil, false
}

// ParseSlice parses and validates a tenant's slice spec (create_slice) with the default
// limits. Every problem is reported at once in an *[Error]; warnings (unknown keys) are
// in the result's Warnings.
func ParseSlice(data []byte) (*Slice, error) { return Parser{}.Slice(data) }

// ParseCreatedSlice parses a slice as the platform renders it after creation (or as the
// original NECOS components exchanged it: the start_management payloads). Platform-filled
// fields go to each part's Status; what only creation needs (sizes, bandwidth, link
// ends, at least one part) is optional.
func ParseCreatedSlice(data []byte) (*Slice, error) { return Parser{}.CreatedSlice(data) }

// Slice is [ParseSlice] with p's limits.
func (p Parser) Slice(data []byte) (*Slice, error) { return p.slice(data, false) }

// CreatedSlice is [ParseCreatedSlice] with p's limits.
func (p Parser) CreatedSlice(data []byte) (*Slice, error) { return p.slice(data, true) }

func (p Parser) slice(data []byte, created bool) (*Slice, error) {
	root, release, err := p.load(data)
	if err != nil {
		return nil, err
	}
	defer release()
	pr := &problems{}
	d := &decoder{p: pr}
	s := d.sliceDoc(root)
	if s != nil {
		s.check(pr, !created)
		s.Warnings = pr.warnings
	}
	if err := pr.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// SliceRef is what a NECOS delete_slice document names: the slice, as written, and the
// field that named it (for messages).
type SliceRef struct {
	// ID is the id the spec gave the slice, or the platform's own id for it.
	ID string
	// Path is the field it was read from, e.g. "slices.sliced.slice-id".
	Path string
}

// ParseSliceRef reads which slice a NECOS delete_slice document names, with the
// default limits: slices.sliced.slice-id (the original's delete body) or
// slices.sliced.id (the created slice's YAML will do); the slice may also sit at the
// top (sliced: or slice:). The rest of the document is not read.
func ParseSliceRef(data []byte) (SliceRef, error) { return Parser{}.SliceRef(data) }

// SliceRef is [ParseSliceRef] with p's limits.
func (p Parser) SliceRef(data []byte) (SliceRef, error) {
	root, release, err := p.load(data)
	if err != nil {
		return SliceRef{}, err
	}
	defer release()
	pr := &problems{}
	d := &decoder{p: pr}
	node, path := d.findSlice(root, "{slice-id: <the slice's id>}")
	if node == nil {
		return SliceRef{}, pr.err()
	}
	o := d.mapping(node, path)
	id, sid := o.str("id"), o.str("slice-id")
	switch {
	case pr.err() != nil:
	case id != "" && sid != "" && id != sid:
		pr.add(o.at("slice-id"), "names %s while id names %s: give one of them", quote(sid), quote(id))
	case id == "" && sid == "":
		pr.add(o.at("slice-id"), "required (or id): the slice to delete, by the id its spec gave it or the platform's id")
	}
	if err := pr.err(); err != nil {
		return SliceRef{}, err
	}
	if sid != "" {
		return SliceRef{ID: sid, Path: o.at("slice-id")}, nil
	}
	return SliceRef{ID: id, Path: o.at("id")}, nil
}

// findSlice finds the slice node of a document: under slices.sliced or slices.slice, or
// at the top as slice or sliced; nil (with the problem recorded) when there is none.
// expected describes the slice's content in the error messages.
func (d *decoder) findSlice(root *yaml.Node, expected string) (*yaml.Node, string) {
	if isNull(root) {
		d.p.add("", "empty document: expected slices: sliced: %s", expected)
		return nil, ""
	}
	top := d.mapping(root, "")
	if top.empty {
		return nil, ""
	}
	var node *yaml.Node
	var path string
	switch {
	case top.has("slices"):
		outer := top.sub("slices")
		node, path = d.oneOf(outer, "slices", "sliced", "slice")
		outer.rest()
	case top.has("slice") || top.has("sliced"):
		node, path = d.oneOf(top, "", "sliced", "slice")
	default:
		d.p.add("slices", "required: expected slices: sliced: %s", expected)
		return nil, ""
	}
	top.rest()
	if path == "" {
		return nil, ""
	}
	return node, path
}

// sliceDoc finds the slice in the document: under slices.sliced, slices.slice, or at
// the top as slice (start_management payloads) or sliced.
func (d *decoder) sliceDoc(root *yaml.Node) *Slice {
	node, path := d.findSlice(root, "{...}")
	if node == nil {
		return nil
	}
	s := d.slice(d.mapping(node, path))
	s.root = path
	return s
}

// oneOf returns the value of the one key of o among keys, reporting none or several.
func (d *decoder) oneOf(o *obj, path string, keys ...string) (*yaml.Node, string) {
	var found []string
	for _, k := range keys {
		if o.has(k) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		d.p.add(join(path, keys[0]), "required")
		return nil, ""
	case 1:
		return o.node(found[0]), join(path, found[0])
	}
	for _, k := range found {
		o.node(k)
	}
	d.p.add(path, "give one of %s, not several", strings.Join(found, ", "))
	return nil, ""
}

func (d *decoder) slice(o *obj) *Slice {
	s := &Slice{
		ID: o.str("id"), Name: o.str("name"), ShortName: o.str("short-name"),
		Description: o.str("description"), Vendor: o.str("vendor"), Version: o.str("version"),
		Logo: o.str("logo"), Update: o.boolean("created-slice"),
	}
	if o.has("slice-constraints") {
		c := o.sub("slice-constraints")
		s.Constraints = &Constraints{Geographic: c.strings("geographic")}
		s.Constraints.DCParts = d.count(c, "dc-slice-parts")
		s.Constraints.NetParts = d.count(c, "net-slice-parts")
		s.Constraints.Extra = c.rest()
	}
	if o.has("slice-requirements") {
		r := o.sub("slice-requirements")
		s.Requirements = &Requirements{Elasticity: r.boolean("elasticity"), LinksOptional: r.boolean("links-optional")}
		if r.has("reliability") {
			rel := r.sub("reliability")
			s.Requirements.Reliability = &Reliability{Description: rel.str("description"),
				Enabled: rel.boolean("enabled"), Value: rel.str("value")}
			rel.rest()
		}
		s.Requirements.Extra = r.rest()
	}
	if o.has("slice-lifecycle") {
		l := o.sub("slice-lifecycle")
		s.Lifecycle = &Lifecycle{Description: l.str("description"), Status: l.str("status")}
		l.rest()
	}
	if o.has("cost") {
		c := o.sub("cost")
		s.Cost.DC = d.costModel(c.node("dc-model"), c.at("dc-model"))
		s.Cost.Net = d.costModel(c.node("net-model"), c.at("net-model"))
		c.rest()
	}
	// The older format put net-model beside cost instead of inside it.
	if o.has("net-model") {
		if s.Cost.Net != nil {
			o.node("net-model")
			d.p.add(o.at("net-model"), "given twice: also as cost.net-model")
		} else {
			s.Cost.Net = d.costModel(o.node("net-model"), o.at("net-model"))
		}
	}
	if o.has("slice-timeframe") {
		// A timeframe written as a word for none ("undefined", "") is none.
		if n := o.node("slice-timeframe"); !noValue(n) || isNull(n) {
			t := o.sub("slice-timeframe")
			s.Timeframe = &Timeframe{Start: t.asWritten("service-start-time"), Stop: t.asWritten("service-stop-time"),
				Duration: t.asWritten("service-duration")}
			s.Timeframe.Extra = t.rest()
		}
	}
	for i, item := range o.list("slice-parts") {
		path := index(o.at("slice-parts"), i)
		kind, f := d.wrapped(item, path, "dc-slice-part", "net-slice-part")
		switch kind {
		case "dc-slice-part":
			p := d.dcPart(f)
			p.pos = i + 1
			s.Parts = append(s.Parts, p)
		case "net-slice-part":
			l := d.netPart(f)
			l.pos = i + 1
			s.Links = append(s.Links, l)
		}
	}
	// service: the broker's older PDT format described parts there; kept, not read.
	s.Extra = o.rest("service")
	return s
}

// granularity reads granularity-secs: seconds, or "default" (as the original's policies
// wrote it) for the platform's own.
func (d *decoder) granularity(o *obj) int {
	if n := o.node("granularity-secs"); n != nil && n.Kind == yaml.ScalarNode && strings.EqualFold(strings.TrimSpace(n.Value), "default") {
		return 0
	}
	return d.count(o, "granularity-secs")
}

// count reads a non-negative integer.
func (d *decoder) count(o *obj, key string) int {
	v, ok := o.integer(key)
	if !ok {
		return 0
	}
	if v < 0 || v > 1<<31-1 {
		d.p.add(o.at(key), "must be an integer >= 0, got %d", v)
		return 0
	}
	return int(v)
}

// wrapped reads a list item that is a mapping under one of keys, e.g.
// "- dc-slice-part: {name: ...}". The original files also have the fields beside a null
// key ("- dc-slice-part:" followed by "name: ..." at the same indentation, which YAML
// reads as {dc-slice-part: null, name: ...}); both shapes give the same fields, at the
// same paths.
func (d *decoder) wrapped(item *yaml.Node, path string, keys ...string) (string, *obj) {
	outer := d.mapping(item, path)
	if outer.empty {
		if !d.p.reported[path] {
			d.p.add(path, "expected %s: {...}", strings.Join(keys, ": {...} or "))
		}
		return "", nil
	}
	var kind string
	for _, k := range keys {
		if outer.has(k) {
			if kind != "" {
				d.p.add(path, "give one of %s, not both", strings.Join(keys, ", "))
				return "", nil
			}
			kind = k
		}
	}
	if kind == "" {
		d.p.add(path, "expected %s: {...}, got keys %s", strings.Join(keys, ": {...} or "), keyList(outer.keys))
		return "", nil
	}
	at := join(path, kind)
	inner := outer.vals[kind]
	f := d.mapping(inner, at)
	var siblings []*yaml.Node
	for _, k := range outer.keys {
		if k != kind {
			siblings = append(siblings, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, outer.vals[k])
		}
	}
	f.addPairs(siblings)
	f.empty = f.empty && len(siblings) == 0
	return kind, f
}

func (d *decoder) dcPart(o *obj) DCPart {
	p := DCPart{Name: o.str("name"), Type: strings.ToUpper(orEmpty(o.str("type"))), Location: orEmpty(o.str("location"))}
	if o.has("monitoring-parameters") {
		p.Monitoring = d.monitoring(o.sub("monitoring-parameters"))
	}
	st := &PartStatus{}
	filled := false
	v := o.sub("VIM")
	p.VIM = VIM{Name: v.str("name"), Version: v.str("version"), Shared: v.boolean("vim-shared"),
		Federated: v.boolean("vim-federated"), HostCount: d.count(v, "host-count")}
	// vim-ref is "undefined" in requests and {ip-api, ...} once created.
	if ref := v.node("vim-ref"); ref != nil && ref.Kind == yaml.MappingNode {
		st.VIMRef, filled = d.endpoint(d.mapping(ref, v.at("vim-ref"))), true
	} else if ref != nil && ref.Kind != yaml.ScalarNode {
		d.p.add(v.at("vim-ref"), "must be a mapping {ip-api, port-api, ip-ssh, port-ssh}, got %s", kindOf(ref))
	}
	if v.has("vim-credential") {
		st.Credential, filled = d.credential(v.sub("vim-credential")), true
	}
	p.VIM.VDUs, st.Nodes = d.vdus(v)
	filled = filled || len(st.Nodes) > 0
	p.VIM.Extra = v.rest()
	if o.has("dc-slice-controller") {
		c := o.sub("dc-slice-controller")
		st.Controller = Controller{Provider: orEmpty(c.str("dc-slice-provider")), IP: orEmpty(c.str("ip")), Port: d.port(c, "port")}
		c.rest()
		filled = true
	}
	if o.has("cost") {
		st.Cost, filled = d.costModel(o.node("cost"), o.at("cost")), true
	}
	if o.has("dc-slice-part-id") {
		st.ID, filled = d.partID(o.sub("dc-slice-part-id")), true
	}
	if o.has("part-state") {
		st.State, st.Reason, filled = o.str("part-state"), o.str("part-state-reason"), true
	}
	if o.has("vswitch") {
		sw := o.sub("vswitch")
		st.VSwitch, filled = VSwitch{Type: sw.str("type"), Bridge: sw.str("bridge-name")}, true
		sw.rest()
	}
	if filled {
		p.Status = st
	}
	p.Extra = o.rest()
	return p
}

func (d *decoder) monitoring(o *obj) *Monitoring {
	m := &Monitoring{Tool: o.str("tool"), Type: o.str("type"), Namespace: o.str("namespace")}
	m.DBIP = o.str("measurements-db-ip")
	if m.DBIP == "" {
		m.DBIP = o.str("measurements_db_ip")
	}
	m.DBPort = d.port(o, "measurements-db-port")
	if m.DBPort == 0 {
		m.DBPort = d.port(o, "measurements_db_port")
	}
	m.GranularitySecs = d.granularity(o)
	for i, e := range o.list("metrics") {
		path := index(o.at("metrics"), i)
		if e.Kind == yaml.ScalarNode && !isNull(e) {
			m.Metrics = append(m.Metrics, Metric{Name: e.Value})
			continue
		}
		item := d.mapping(e, path)
		mo := item
		if item.has("metric") {
			mo = item.sub("metric")
			item.rest()
		}
		met := Metric{Name: mo.str("name"), GranularitySecs: d.granularity(mo)}
		if met.Name == "" {
			d.p.add(mo.at("name"), "required: the metric's name, e.g. PERCENT_CPU_UTILIZATION")
		}
		mo.rest()
		m.Metrics = append(m.Metrics, met)
	}
	m.Extra = o.rest()
	return m
}

// vdus reads VIM.vdus. Entries with vdu-name are nodes of a rendered slice: those of
// one VDU are folded back into it, their node facts going to the part's status.
// Entries with an ip but no vdu-name (the original's created slices) are one node each.
func (d *decoder) vdus(v *obj) ([]VDU, []NodeStatus) {
	var out []VDU
	var nodes []NodeStatus
	byName := map[string]int{}
	for i, item := range v.list("vdus") {
		path := index(v.at("vdus"), i)
		kind, o := d.wrapped(item, path, "vdu")
		if kind == "" {
			continue
		}
		u := d.vdu(o)
		u.pos = i + 1
		group := o.str("vdu-name")
		ip, typ := o.str("ip"), o.str("type")
		if group == "" && ip == "" {
			out = append(out, u)
			continue
		}
		node := NodeStatus{Name: u.Name, ID: u.ID, Type: u.Type, IP: orEmpty(ip)}
		if group == "" {
			// One node of the original's created slices: the VDU is the node.
			node.VDU = u.Name
			out = append(out, u)
			nodes = append(nodes, node)
			continue
		}
		node.VDU = group
		if j, ok := byName[group]; ok {
			out[j].Instances++
		} else {
			u.Name, u.ID, u.Instances = group, o.str("vdu-id"), 1
			// The entry's type is the node's; the VDU keeps one only where its name
			// does not say it already.
			if typ := strings.ToLower(typ); typ == NodeTypeOf(group) {
				u.Type = ""
			}
			byName[group] = len(out)
			out = append(out, u)
		}
		nodes = append(nodes, node)
	}
	return out, nodes
}

func (d *decoder) vdu(o *obj) VDU {
	u := VDU{ID: o.str("id"), Name: o.str("name"), Description: o.str("description"),
		Hosting: o.str("hosting"), Image: o.str("vdu-image"), Instances: 1}
	u.Type = strings.ToLower(orEmpty(o.str("type")))
	if !noValue(o.node("instance-count")) {
		u.Instances = d.bounded(o, "instance-count", maxInstances)
	}
	if o.has("epa-attributes") {
		epa := o.sub("epa-attributes")
		h := epa.sub("host-epa")
		u.CPUArchitecture = h.str("cpu-architecture")
		u.CPUs = d.bounded(h, "cpu-number", maxCPUs)
		u.MemoryMB, u.MemoryAtLeast = d.memory(h)
		u.StorageGB = int64(d.bounded(h, "storage-gb", maxStorageGB))
		u.HostImage = h.str("host-image")
		if h.has("os-properties") {
			u.OS = d.osProperties(h.sub("os-properties"))
		}
		u.HostExtra = h.rest()
		u.EPAExtra = epa.rest()
	}
	o.str("vdu-name")
	o.str("vdu-id")
	o.str("ip")
	u.Extra = o.rest()
	return u
}

// Upper bounds of sizes: far above any real node, low enough that totals over a part
// cannot overflow, and a typo of a few digits is caught.
const (
	maxCPUs      = 1024
	maxMemoryMB  = 1 << 26 // 64 TiB
	maxStorageGB = 1 << 20 // 1 PiB
)

// bounded reads an integer that must not exceed max; a larger one is reported with
// the value as written. Absent gives 0.
func (d *decoder) bounded(o *obj, key string, max int64) int {
	n, ok := o.integer(key)
	if !ok {
		return 0
	}
	if n > max {
		d.p.add(o.at(key), "must be at most %d, got %d", max, n)
		return 0
	}
	if n < -max {
		n = -max
	}
	return int(n)
}

// memory reads memory-mb: N or {greater_or_equal: N}.
func (d *decoder) memory(h *obj) (int64, bool) {
	n := h.node("memory-mb")
	if noValue(n) {
		return 0, false
	}
	if n.Kind == yaml.MappingNode {
		m := d.mapping(n, h.at("memory-mb"))
		if !m.has("greater_or_equal") {
			d.p.add(m.at("greater_or_equal"), "required: memory-mb is a number or {greater_or_equal: N}")
		}
		v := d.bounded(m, "greater_or_equal", maxMemoryMB)
		m.rest()
		return int64(v), true
	}
	v, ok := d.integer(n, h.at("memory-mb"))
	if ok && v > maxMemoryMB {
		d.p.add(h.at("memory-mb"), "must be at most %d, got %d", maxMemoryMB, v)
		return 0, false
	}
	return v, false
}

// osProperties reads os-properties; a value may be {equal: x} as in the original.
func (d *decoder) osProperties(o *obj) map[string]string {
	out := map[string]string{}
	for _, k := range o.keys {
		n := o.node(k)
		if n.Kind == yaml.MappingNode {
			m := d.mapping(n, o.at(k))
			if v := m.str("equal"); v != "" {
				out[k] = v
			}
			m.rest()
			continue
		}
		if v := o.str(k); v != "" {
			out[k] = v
		}
	}
	return out
}

func (d *decoder) netPart(o *obj) NetPart {
	l := NetPart{Name: o.str("name"), Type: o.str("type")}
	st := &LinkStatus{}
	filled := false
	if o.has("WIM") {
		w := o.sub("WIM")
		l.WIM = WIM{Name: w.str("name"), Version: w.str("version"), Shared: w.boolean("wim-shared"), Federated: w.boolean("wim-federated")}
		l.WIM.Extra = w.rest("wim-ref")
	}
	d.links(o, &l)
	if o.has("wan-slice-controller") {
		c := o.sub("wan-slice-controller")
		st.Controller = Controller{Provider: orEmpty(c.str("wan-slice-provider")), IP: orEmpty(c.str("ip")), Port: d.port(c, "port")}
		c.rest()
		filled = true
	}
	if o.has("cost") {
		st.Cost, filled = d.costModel(o.node("cost"), o.at("cost")), true
	}
	if o.has("net-slice-part-id") {
		st.ID, filled = d.partID(o.sub("net-slice-part-id")), true
	}
	if o.has("link-ends") {
		e := o.sub("link-ends")
		st.End1IP, st.End2IP, filled = orEmpty(e.str("link-end1-ip")), orEmpty(e.str("link-end2-ip")), true
		e.rest()
	}
	if o.has("link-state") {
		st.State, st.Reason, filled = o.str("link-state"), o.str("link-state-reason"), true
	}
	if filled {
		l.Status = st
	}
	l.Extra = o.rest()
	return l
}

// links reads links: [{dc-part1: X}, {dc-part2: Y}, {requirements: {bandwidth-GB: N}}];
// a single mapping with the same keys is accepted too.
func (d *decoder) links(o *obj, l *NetPart) {
	n := o.node("links")
	path := o.at("links")
	all := &obj{d: d, path: path, vals: map[string]*yaml.Node{}, used: map[string]bool{}}
	switch {
	case isNull(n):
		all.empty = true
	case n.Kind == yaml.MappingNode:
		all = d.mapping(n, path)
	case n.Kind == yaml.SequenceNode:
		for i, e := range n.Content {
			if e.Kind != yaml.MappingNode {
				d.p.add(index(path, i), "must be a mapping such as {dc-part1: <dc part name>}, got %s", kindOf(e))
				continue
			}
			all.addPairs(e.Content)
		}
	default:
		d.p.add(path, "must be a list like [{dc-part1: A}, {dc-part2: B}, {requirements: {bandwidth-GB: 1}}], got %s", kindOf(n))
		all.empty = true
	}
	l.DCPart1, l.DCPart1ID = d.linkEnd(all, "dc-part1")
	l.DCPart2, l.DCPart2ID = d.linkEnd(all, "dc-part2")
	if all.has("requirements") {
		r := all.sub("requirements")
		if v, ok := r.number("bandwidth-GB"); ok {
			l.BandwidthGB = v
		}
		if extra := r.rest(); extra != nil {
			if l.LinkExtra == nil {
				l.LinkExtra = map[string]any{}
			}
			l.LinkExtra["requirements"] = extra
		}
	}
	for k, v := range all.rest() {
		if l.LinkExtra == nil {
			l.LinkExtra = map[string]any{}
		}
		l.LinkExtra[k] = v
	}
}

// linkEnd reads dc-partN: a part name, or {name, id: {controller-id, slice-part-id}}.
func (d *decoder) linkEnd(o *obj, key string) (string, *PartID) {
	n := o.node(key)
	if isNull(n) {
		return "", nil
	}
	if n.Kind == yaml.MappingNode {
		m := d.mapping(n, o.at(key))
		name := m.str("name")
		var id *PartID
		if m.has("id") {
			i := m.sub("id")
			id = &PartID{ControllerID: i.str("controller-id"), PartUUID: i.str("slice-part-id")}
			if id.ControllerID == "" {
				id.ControllerID = i.str("slice-controller-id")
			}
			if id.PartUUID == "" {
				id.PartUUID = i.str("slice-part-uuid")
			}
			i.rest()
		}
		m.rest()
		return name, id
	}
	return o.str(key), nil
}

func (d *decoder) partID(o *obj) PartID {
	id := PartID{ControllerID: orEmpty(o.str("slice-controller-id")), PartUUID: orEmpty(o.str("slice-part-uuid"))}
	o.rest()
	return id
}

func (d *decoder) endpoint(o *obj) Endpoint {
	e := Endpoint{IPAPI: orEmpty(o.str("ip-api")), PortAPI: d.port(o, "port-api"),
		IPSSH: orEmpty(o.str("ip-ssh")), PortSSH: d.port(o, "port-ssh")}
	o.rest()
	return e
}

// port reads a TCP port. The original wrote 'null' or "undefined" for none, and
// sometimes quoted numbers; those are accepted in that one place.
func (d *decoder) port(o *obj, key string) int {
	n := o.node(key)
	if isNull(n) {
		return 0
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		if orEmpty(n.Value) == "" {
			return 0
		}
		var v int
		if _, err := fmt.Sscanf(n.Value, "%d", &v); err == nil && fmt.Sprint(v) == n.Value && v >= 0 && v <= 65535 {
			return v
		}
	} else if v, ok := d.integer(n, o.at(key)); ok {
		if v >= 0 && v <= 65535 {
			return int(v)
		}
	} else {
		return 0
	}
	d.p.add(o.at(key), "must be a port number 0-65535, got %s", kindOf(n))
	return 0
}

// orEmpty maps the original's words for "no value" to "".
func orEmpty(s string) string {
	switch strings.ToLower(s) {
	case "null", "undefined", "indefined", "none", "n/a":
		return ""
	}
	return s
}
