package spec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/necos/necos/examples"
)

// Validate checks a slice built or changed in code (a horizontal-elasticity part, say)
// with the rules [ParseSlice] applies, and returns every problem in an *[Error].
func (s *Slice) Validate() error {
	p := &problems{}
	s.check(p, true)
	return p.err()
}

func (s *Slice) rootPath() string {
	if s.root == "" {
		return "slices.sliced"
	}
	return s.root
}

// PartPath answers where in the tenant's document the dc-slice-part or net-slice-part
// named name is ("slices.sliced.slice-parts[2].dc-slice-part"), so that an answer about
// a part names the field its author wrote. A part the document lacks (one elasticity
// added) has none.
func (s *Slice) PartPath(name string) (string, bool) {
	for i := range s.Parts {
		if s.Parts[i].Name == name {
			return s.partPath(&s.Parts[i], i), true
		}
	}
	for i := range s.Links {
		if s.Links[i].Name == name {
			return s.linkPath(&s.Links[i], i), true
		}
	}
	return "", false
}

func (s *Slice) partPath(p *DCPart, i int) string {
	pos := p.pos
	if pos == 0 {
		pos = i + 1
	}
	return fmt.Sprintf("%s.slice-parts[%d].dc-slice-part", s.rootPath(), pos-1)
}

func (s *Slice) linkPath(l *NetPart, i int) string {
	pos := l.pos
	if pos == 0 {
		pos = len(s.Parts) + i + 1
	}
	return fmt.Sprintf("%s.slice-parts[%d].net-slice-part", s.rootPath(), pos-1)
}

func vduPath(part string, v *VDU, i int) string {
	pos := v.pos
	if pos == 0 {
		pos = i + 1
	}
	return fmt.Sprintf("%s.VIM.vdus[%d].vdu", part, pos-1)
}

// check applies the rules on the model. request: the document asks for a slice to be
// created, so what creation needs is required.
func (s *Slice) check(p *problems, request bool) {
	root := s.rootPath()
	checkName(p, join(root, "id"), s.ID, "the slice's id")
	if request && len(s.Parts) == 0 && !s.Update {
		p.add(join(root, "slice-parts"), "required: at least one dc-slice-part")
	}
	if c := s.Constraints; c != nil {
		if c.DCParts > 0 && c.DCParts != len(s.Parts) {
			p.warn(join(root, "slice-constraints.dc-slice-parts"), "says %d, the document has %d dc-slice-parts", c.DCParts, len(s.Parts))
		}
		if c.NetParts > 0 && c.NetParts != len(s.Links) {
			p.warn(join(root, "slice-constraints.net-slice-parts"), "says %d, the document has %d net-slice-parts", c.NetParts, len(s.Links))
		}
	}
	checkCost(p, join(root, "cost.dc-model"), s.Cost.DC)
	checkCost(p, join(root, "cost.net-model"), s.Cost.Net)

	names := map[string]string{} // part name -> path of its first use
	dup := func(path, name string) {
		if name == "" || !nameRE.MatchString(name) {
			return
		}
		if first, ok := names[name]; ok {
			p.add(join(path, "name"), "duplicate part name %q (also at %s)", name, first)
			return
		}
		names[name] = path
	}
	for i := range s.Parts {
		part := &s.Parts[i]
		path := s.partPath(part, i)
		checkName(p, join(path, "name"), part.Name, "the part's name")
		dup(path, part.Name)
		part.check(p, path, request)
	}
	known := make([]string, 0, len(s.Parts))
	for _, part := range s.Parts {
		if part.Name != "" {
			known = append(known, part.Name)
		}
	}
	for i := range s.Links {
		l := &s.Links[i]
		path := s.linkPath(l, i)
		checkName(p, join(path, "name"), l.Name, "the link's name")
		dup(path, l.Name)
		s.checkLink(p, l, path, known, request)
	}
}

func checkName(p *problems, path, name, what string) {
	switch {
	case name == "":
		p.add(path, "required: %s", what)
	case !nameRE.MatchString(name):
		p.add(path, "must be %s, got %s", nameRule, quote(name))
	}
}

func checkCost(p *problems, path string, c *CostModel) {
	if c == nil {
		return
	}
	switch c.Op {
	case "", "<", "<=", ">", ">=", "=":
	default:
		p.add(join(path, "value-euros"), "unknown operator %q: use <, <=, >, >= or =", c.Op)
	}
	if c.Euros < 0 {
		p.add(join(path, "value-euros"), "must be >= 0, got %s", strconv.FormatFloat(c.Euros, 'f', -1, 64))
	}
}

func (part *DCPart) check(p *problems, path string, request bool) {
	switch part.Type {
	case "", PartDC, PartEdge:
	default:
		p.add(join(path, "type"), "must be DC or EDGE, got %s", quote(part.Type))
	}
	if part.Location != "" && !ValidLocation(part.Location) {
		p.add(join(path, "location"), "must be dot-separated names from the continent down, e.g. EUROPE.SPAIN or AMERICA.BRAZIL.UFSCAR, got %s", quote(part.Location))
	}
	if request && part.VIM.Name == "" {
		p.add(join(path, "VIM.name"), "required: the VIM to run the part, e.g. KUBERNETES or xen-vim")
	}
	if part.VIM.HostCount < 0 {
		p.add(join(path, "VIM.host-count"), "must be >= 0, got %d", part.VIM.HostCount)
	}
	if request && len(part.VIM.VDUs) == 0 {
		p.add(join(path, "VIM.vdus"), "required: at least one vdu")
	}
	vdus := map[string]string{}
	for i := range part.VIM.VDUs {
		v := &part.VIM.VDUs[i]
		at := vduPath(path, v, i)
		checkName(p, join(at, "name"), v.Name, "the VDU's name")
		if first, ok := vdus[v.Name]; ok && v.Name != "" {
			p.add(join(at, "name"), "duplicate VDU name %q in part %s (also at %s)", v.Name, part.Name, first)
		} else {
			vdus[v.Name] = at
		}
		// Distinct VDU names give distinct node names: "<vdu>-<i>" never equals
		// "<other>-<j>" for an integer i unless the VDU names are equal.
		v.check(p, at, request)
	}
	if st := part.Status; st != nil {
		checkCost(p, join(path, "cost"), st.Cost)
		if c := st.Credential; c != nil {
			switch c.Type {
			case "", CredentialKubeconfig, CredentialSSHKey, CredentialPassword:
			default:
				p.add(join(path, "VIM.vim-credential.type"), "must be %s, %s or %s, got %s", CredentialKubeconfig, CredentialSSHKey, CredentialPassword, quote(c.Type))
			}
		}
	}
}

// maxInstances bounds instance-count: a slice part is a handful of nodes, and a huge
// count would make every consumer allocate for nothing.
const maxInstances = 1000

func (v *VDU) check(p *problems, path string, request bool) {
	if v.Instances <= 0 || v.Instances > maxInstances {
		p.add(join(path, "instance-count"), "must be a positive integer, got %d", v.Instances)
	}
	if v.CPUs > maxCPUs {
		p.add(join(path, "epa-attributes.host-epa.cpu-number"), "must be at most %d, got %d", maxCPUs, v.CPUs)
	}
	if v.MemoryMB > maxMemoryMB {
		p.add(join(path, "epa-attributes.host-epa.memory-mb"), "must be at most %d, got %d", maxMemoryMB, v.MemoryMB)
	}
	if v.StorageGB > maxStorageGB {
		p.add(join(path, "epa-attributes.host-epa.storage-gb"), "must be at most %d, got %d", maxStorageGB, v.StorageGB)
	}
	host := join(path, "epa-attributes.host-epa")
	if (request || v.CPUs != 0) && v.CPUs <= 0 {
		if v.CPUs == 0 {
			p.add(join(host, "cpu-number"), "required: a positive integer (vCPUs per node)")
		} else {
			p.add(join(host, "cpu-number"), "must be a positive integer, got %d", v.CPUs)
		}
	}
	if (request || v.MemoryMB != 0) && v.MemoryMB <= 0 {
		if v.MemoryMB == 0 {
			p.add(join(host, "memory-mb"), "required: a positive integer (MB per node), or {greater_or_equal: N}")
		} else {
			p.add(join(host, "memory-mb"), "must be a positive integer, got %d", v.MemoryMB)
		}
	}
	if v.StorageGB < 0 {
		p.add(join(host, "storage-gb"), "must be an integer >= 0, got %d", v.StorageGB)
	}
	switch v.Type {
	case "", NodeMaster, NodeWorker:
	default:
		p.add(join(path, "type"), "must be master or worker, got %s", quote(v.Type))
	}
}

func (s *Slice) checkLink(p *problems, l *NetPart, path string, known []string, request bool) {
	links := join(path, "links")
	ends := []struct {
		key, name string
		id        *PartID
	}{{"dc-part1", l.DCPart1, l.DCPart1ID}, {"dc-part2", l.DCPart2, l.DCPart2ID}}
	for _, e := range ends {
		at := join(links, e.key)
		switch {
		case e.name == "":
			if request {
				p.add(at, "required: the name of a dc-slice-part (one of %s)", list(known))
			}
		case contains(known, e.name):
		case s.Update || e.id != nil:
			// An update names parts of the existing slice; the core checks those.
		default:
			if _, isLink := s.Link(e.name); isLink {
				p.add(at, "%q is a net-slice-part; a link joins dc-slice-parts (one of %s)", e.name, list(known))
			} else {
				p.add(at, "unknown part %q: expected one of %s", e.name, list(known))
			}
		}
	}
	if l.DCPart1 != "" && l.DCPart1 == l.DCPart2 {
		p.add(join(links, "dc-part2"), "a link joins two different parts, got %s at both ends", l.DCPart1)
	}
	bw := join(links, "requirements.bandwidth-GB")
	switch {
	case l.BandwidthGB < 0 || (l.BandwidthGB == 0 && request):
		if l.BandwidthGB == 0 {
			p.add(bw, "required: a bandwidth in GB > 0")
		} else {
			p.add(bw, "must be > 0, got %s", strconv.FormatFloat(l.BandwidthGB, 'f', -1, 64))
		}
	}
	if st := l.Status; st != nil {
		checkCost(p, join(path, "cost"), st.Cost)
	}
}

// list formats names for a message: "[a, b]", or "none" when empty.
func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// CheckVIMs reports every part whose VIM is not among those the platform offers
// (matched ignoring case), naming the ones it offers.
func (s *Slice) CheckVIMs(offered []string) error {
	p := &problems{}
	for i := range s.Parts {
		part := &s.Parts[i]
		if part.VIM.Name != "" && !matchFold(offered, part.VIM.Name) {
			p.add(join(s.partPath(part, i), "VIM.name"), "unknown VIM %q: this platform offers %s%s", part.VIM.Name, list(sorted(offered)), vimHint(part.VIM.Name))
		}
	}
	return p.err()
}

// vimHint is the next step for a VIM the running catalogue lacks: the example
// catalogues that offer it, or how a catalogue comes to offer it.
func vimHint(vim string) string {
	cats := examples.CataloguesOffering(vim)
	if len(cats) == 0 {
		return "; no example catalogue offers it: a provider needs dc.vim: " + vim + " in necosd's catalogue and a VIM plugin serving it (docs/plugin-contract.md)"
	}
	hint := fmt.Sprintf("; %s offers it: run necosd with --catalogue %s", strings.Join(cats, " and "), cats[0])
	if cats[0] == examples.KubernetesCatalogue {
		hint += " (./scripts/run.sh --kubernetes runs it with a Kubernetes cluster on this machine)"
	}
	return hint
}

func matchFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

func sorted(l []string) []string {
	c := append([]string(nil), l...)
	sort.Strings(c)
	return c
}

// Default limits of a slice's size (necosd --max-parts-per-slice and the like): the
// demo's slices have 2 to 4 parts of 1 to 3 nodes; each part costs an offer call to
// every eligible provider and each node a VM or a pod.
const (
	DefaultMaxParts     = 32
	DefaultMaxLinks     = 64
	DefaultMaxInstances = 256
)

// Limits bound the size of a slice a tenant may ask for. Zero fields take the defaults.
type Limits struct {
	// MaxParts bounds the dc-slice-parts, MaxLinks the net-slice-parts, MaxInstances
	// the nodes of all VDUs (instance-count summed over the slice).
	MaxParts, MaxLinks, MaxInstances int
}

// CheckLimits reports every limit the slice exceeds, at the first part, link or VDU
// beyond it, naming the setting that bounds it.
func (s *Slice) CheckLimits(l Limits) error {
	maxParts, maxLinks, maxInst := orDefault(l.MaxParts, DefaultMaxParts), orDefault(l.MaxLinks, DefaultMaxLinks),
		orDefault(l.MaxInstances, DefaultMaxInstances)
	p := &problems{}
	if n := len(s.Parts); n > maxParts {
		p.add(s.partPath(&s.Parts[maxParts], maxParts), "one DC part too many: the slice has %d, at most %d per slice (necosd --max-parts-per-slice)", n, maxParts)
	}
	if n := len(s.Links); n > maxLinks {
		p.add(s.linkPath(&s.Links[maxLinks], maxLinks), "one net part too many: the slice has %d, at most %d per slice (necosd --max-links-per-slice)", n, maxLinks)
	}
	nodes, first := 0, ""
	for i := range s.Parts {
		part := &s.Parts[i]
		for j := range part.VIM.VDUs {
			v := &part.VIM.VDUs[j]
			nodes += v.Instances
			if nodes > maxInst && first == "" {
				first = vduPath(s.partPath(part, i), v, j) + ".instance-count"
			}
		}
	}
	if first != "" {
		p.add(first, "the slice's VDUs have %d instances in all, at most %d per slice (necosd --max-instances-per-slice)", nodes, maxInst)
	}
	return p.err()
}
