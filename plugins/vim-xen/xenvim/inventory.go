package xenvim

import (
	"sort"
	"strings"
	"sync"

	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// node is one of the plugin's domains as libvirt holds it now.
type node struct {
	uuid     string
	domain   string // libvirt name
	meta     nodeMeta
	state    libvirt.DomainState
	cpus     int
	maxCPUs  int
	memMB    int64
	maxMemMB int64
}

func (n node) ref() sdk.PartRef { return sdk.PartRef{SliceID: n.meta.Slice, PartID: n.meta.Part} }

func (n node) active() bool {
	switch n.state {
	case libvirt.DOMAIN_SHUTOFF, libvirt.DOMAIN_CRASHED:
		return false
	}
	return true
}

// usage is what the node holds of the provider's capacity.
func (n node) usage() sdk.Resources {
	return sdk.Resources{CPUs: n.cpus, MemoryMB: n.memMB, StorageGB: n.meta.StorageGB, Nodes: 1}
}

// listNodes reads afresh the provider's domains whose names start with prefix (one
// listing, then each matching domain's definition). Domains that vanish while being read
// are skipped.
func (p *Plugin) listNodes(conn *libvirt.Connect, s *settings, prefix string) ([]node, error) {
	nodes, _, err := p.listDomains(conn, s, prefix)
	return nodes, err
}

// listDomains is listNodes that also returns how many domains the host has, the
// provider's or not.
func (p *Plugin) listDomains(conn *libvirt.Connect, s *settings, prefix string) ([]node, int, error) {
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		return nil, 0, lvError(err, "list domains at %s", s.uri)
	}
	defer func() {
		for i := range doms {
			_ = doms[i].Free()
		}
	}()
	var out []node
	for i := range doms {
		d := &doms[i]
		name, err := d.GetName()
		if err != nil || !strings.HasPrefix(name, prefix) {
			continue
		}
		n, ok, err := readNode(d, s)
		if err != nil {
			if isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
				continue
			}
			return nil, 0, lvError(err, "read domain %s", name)
		}
		if ok {
			out = append(out, n)
		}
	}
	return out, len(doms), nil
}

// readNode reads one domain; ok is false for domains that are not this provider's.
func readNode(d *libvirt.Domain, s *settings) (node, bool, error) {
	// The persistent definition: a guest's live memory follows its balloon, which
	// reaches the size asked for only once the guest's driver runs; the size the node
	// has (and holds of the capacity) is the one defined.
	desc, err := d.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE)
	if err != nil {
		return node{}, false, err
	}
	x, err := parseDomain(desc)
	if err != nil {
		return node{}, false, err
	}
	if x.Metadata.Node == nil || x.Metadata.Node.Provider != s.provider.Name {
		return node{}, false, nil
	}
	state, _, err := d.GetState()
	if err != nil {
		return node{}, false, err
	}
	return node{
		uuid:     x.UUID,
		domain:   x.Name,
		meta:     *x.Metadata.Node,
		state:    state,
		cpus:     x.VCPU.current(),
		maxCPUs:  x.VCPU.Max,
		memMB:    x.memMB(),
		maxMemMB: x.Memory.mebibytes(),
	}, true, nil
}

// partNodes returns the nodes of one part, read afresh by their domains' names. The
// names come from what this process last read of the part (partNames), else from the
// usage index (index.go). A part the index does not hold may still have domains:
// another process made them since the index was read (the replica that led before
// this one, an operator's virsh). So when the index holds none of the part and the
// host's domain count is not the one the index expects, or what was read disagrees with
// the part's record (a node missing, or one another process added), the domains named
// after the part are found by listing the host's domains (one call, names included;
// only the part's own domains are read); when the listing finds any, the index missed a
// change and is read again at its next use.
func (p *Plugin) partNodes(conn *libvirt.Connect, s *settings, ref sdk.PartRef) ([]node, error) {
	hint := p.names.get(ref)
	if len(hint) > 0 {
		nodes, complete, err := p.readNamed(conn, s, ref, hint)
		if err != nil || complete {
			if complete {
				p.names.set(ref, nodes)
			}
			return nodes, err
		}
	}
	// Unknown to this process, or changed since it last read the part (its own scale
	// or delete): the index knows.
	if err := p.ensureIndex(conn, s); err != nil {
		return nil, err
	}
	names := p.index.partNames(ref)
	if len(names) == 0 {
		changed, err := p.index.hostChanged(conn, s)
		if err != nil {
			return nil, err
		}
		if !changed {
			p.names.set(ref, nil)
			return nil, nil
		}
	}
	if len(names) > 0 {
		nodes, complete, err := p.readNamed(conn, s, ref, names)
		if err != nil {
			return nil, err
		}
		if complete {
			p.names.set(ref, nodes)
			return nodes, nil
		}
	}
	all, err := p.listNodes(conn, s, namePrefix+cleanName(ref.SliceID)+"."+cleanName(ref.PartID)+".")
	if err != nil {
		return nil, err
	}
	var out []node
	for _, n := range all {
		if n.ref() == ref {
			out = append(out, n)
		}
	}
	if len(names) > 0 || len(out) > 0 {
		p.index.invalidate()
	}
	p.names.set(ref, out)
	return out, nil
}

// readNamed reads a part's domains by name; complete is false when the nodes read are
// not exactly those the part's record wants, or a domain is gone.
func (p *Plugin) readNamed(conn *libvirt.Connect, s *settings, ref sdk.PartRef, names []string) ([]node, bool, error) {
	var out []node
	for _, name := range names {
		d, err := conn.LookupDomainByName(name)
		if isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, lvError(err, "look up domain %s", name)
		}
		n, ok, err := readNode(d, s)
		_ = d.Free()
		if isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, lvError(err, "read domain %s", name)
		}
		if !ok || n.ref() != ref {
			return nil, false, nil
		}
		out = append(out, n)
	}
	rec := latestRecord(out)
	want := 0
	for _, v := range rec.VDUs {
		want += v.Instances
	}
	if len(out) != want || len(missingNodes(rec, out)) > 0 {
		return nil, false, nil
	}
	return out, true, nil
}

// partNames remembers the domain names of each part this process has read or made. It
// is a hint, never the truth: partNodes checks every name against libvirt and the
// part's record, and lists the host's domains when they disagree.
type partNames struct {
	mu sync.Mutex
	m  map[sdk.PartRef][]string
}

func (c *partNames) get(ref sdk.PartRef) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[ref]
}

// set records the part's nodes (none: the part is forgotten).
func (c *partNames) set(ref sdk.PartRef, nodes []node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(nodes) == 0 {
		delete(c.m, ref)
		return
	}
	if c.m == nil {
		c.m = map[sdk.PartRef][]string{}
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.domain
	}
	c.m[ref] = names
}

func usage(nodes []node) sdk.Resources {
	var r sdk.Resources
	for _, n := range nodes {
		r = r.Add(n.usage())
	}
	return r
}

// free is the capacity left, never below zero (the capacity may have been lowered
// under running parts).
func free(s *settings, used sdk.Resources) sdk.Resources {
	f := s.capacity.Sub(used)
	f.CPUs, f.MemoryMB, f.StorageGB, f.Nodes = max(f.CPUs, 0), max(f.MemoryMB, 0), max(f.StorageGB, 0), 0
	return f
}

// latestRecord returns the part record of highest generation among the part's nodes.
func latestRecord(nodes []node) partRecord {
	var best partRecord
	for i, n := range nodes {
		if i == 0 || n.meta.Record.Generation > best.Generation {
			best = n.meta.Record
		}
	}
	return best
}

// sortNodes orders nodes as the record lists their VDUs, then by index.
func sortNodes(nodes []node, r partRecord) {
	order := map[string]int{}
	for i, v := range r.VDUs {
		order[v.Name] = i
	}
	rank := func(n node) int {
		if o, ok := order[n.meta.VDU]; ok {
			return o
		}
		return len(order)
	}
	sort.SliceStable(nodes, func(i, j int) bool {
		a, b := nodes[i], nodes[j]
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra < rb
		}
		if a.meta.VDU != b.meta.VDU {
			return a.meta.VDU < b.meta.VDU
		}
		return a.meta.Index < b.meta.Index
	})
}

func nodeState(st libvirt.DomainState) string {
	switch st {
	case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED, libvirt.DOMAIN_NOSTATE:
		// Xen reports an idle guest as blocked; it still runs.
		return sdk.StateRunning
	case libvirt.DOMAIN_CRASHED:
		return sdk.StateFailed
	}
	return sdk.StateStopped
}

// partOf builds the part the tenant sees from its nodes.
func partOf(s *settings, ref sdk.PartRef, nodes []node) sdk.Part {
	rec := latestRecord(nodes)
	sortNodes(nodes, rec)
	part := sdk.Part{Ref: ref, Name: rec.Name, State: sdk.StateReady, VIMRef: s.vimRef, Bridge: rec.Bridge,
		Attributes: map[string]string{"uri": s.uri, "domain_type": s.domainType}}
	if s.subnet.IsValid() {
		part.Attributes["subnet"] = s.subnet.String()
	}
	setCredential(s, ref, rec, &part)
	if s.guests && rec.EndpointIP != "" {
		part.Attributes[AttrNetns] = EndpointNetns(s.provider.Name, ref.SliceID, ref.PartID)
	}
	var known []string
	var down, failed []string
	for _, n := range nodes {
		if n.meta.HostKey != "" && n.meta.IP != "" {
			known = append(known, n.meta.IP+" "+n.meta.HostKey)
		}
		st := nodeState(n.state)
		out := sdk.Node{Name: n.meta.Name, VDU: n.meta.VDU, ID: n.uuid, Type: n.meta.Type, State: st,
			CPUs: n.cpus, MemoryMB: n.memMB, StorageGB: n.meta.StorageGB}
		if n.meta.IP != "" {
			out.IPs = []string{n.meta.IP}
		}
		part.Nodes = append(part.Nodes, out)
		part.Allocated = part.Allocated.Add(n.usage())
		switch st {
		case sdk.StateFailed:
			failed = append(failed, n.meta.Name)
		case sdk.StateStopped:
			down = append(down, n.meta.Name)
		}
	}
	if len(known) > 0 {
		part.Attributes[AttrSSHKnownHosts] = strings.Join(known, "\n")
	}
	switch {
	case len(failed) > 0:
		part.State = sdk.StateFailed
		part.Message = "crashed: " + strings.Join(failed, ", ")
		if len(down) > 0 {
			part.Message += "; not running: " + strings.Join(down, ", ")
		}
	case len(down) > 0:
		part.State = sdk.StateStopped
		part.Message = "not running: " + strings.Join(down, ", ")
	}
	return part
}
