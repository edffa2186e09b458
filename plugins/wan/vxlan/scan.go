package vxlan

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/necos/necos/sdk"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where named network namespaces are mounted (the iproute2 convention,
// which netns.NewNamed and netns.GetFromName follow).
const netnsDir = "/var/run/netns"

// handle returns the plugin's netlink handle inside the named namespace ("" is the
// plugin's own, the host's), kept between calls (see conn). The handle's sockets live in
// that namespace, so no OS thread of the plugin ever switches namespace.
func (p *Plugin) handle(name string) (*netlink.Handle, error) {
	c, err := p.conn(name)
	if err != nil {
		return nil, err
	}
	return c.h, nil
}

// namespaces lists where links may live: the host's namespace ("") and every named
// one the configuration lets the plugin manage. A named namespace that is the host's own is left out, so each device is seen once.
func (p *Plugin) namespaces() []string {
	names := []string{""}
	entries, err := os.ReadDir(p.nsDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			p.log.Warn("cannot list named network namespaces", "dir", p.nsDir, "error", err)
		}
		return names
	}
	for _, e := range entries {
		if !p.cfg.managesNetns(e.Name()) {
			continue
		}
		ns, err := netns.GetFromPath(filepath.Join(p.nsDir, e.Name()))
		if err != nil {
			continue // being deleted, or not a namespace
		}
		if !ns.Equal(p.host) {
			names = append(names, e.Name())
		}
		ns.Close()
	}
	return names
}

// vxdev is one end of a necos-wan link as found in a namespace: a VXLAN device, or a
// veth of a local link.
type vxdev struct {
	ns     string
	link   netlink.Link
	vni    uint32
	local  net.IP
	remote net.IP
	up     bool
	// master is the name of the bridge the device is enslaved to, "" when none.
	master string
	tag    tag
	// rateBytes is the root tbf's rate in bytes/s; hasTbf says whether there is one.
	rateBytes uint64
	hasTbf    bool
	// isLocal marks an end of a local link (a veth between two bridges of one site).
	isLocal bool
}

// linkKey names a link across providers: two plugin instances for different providers
// may share a machine, and each handles its own links only.
type linkKey struct {
	provider string
	ref      sdk.LinkRef
}

// linkDevs is a link as the index holds it: as a scan found its devices (an end is nil
// when its device is missing), or as this process connected it (spec and v).
type linkDevs struct {
	key  linkKey
	ends [2]*vxdev
	// at is where each end's device is (or is being made); nil when unknown.
	at [2]*endLoc
	// spec is what this process connected (or is connecting), with VNI v; nil for a link
	// known from a scan only.
	spec *sdk.LinkSpec
	v    uint32
	// leaving marks a link being disconnected: its bridges are no longer meant for it.
	leaving bool
}

// snapshot is every necos-wan link and every VNI in use, read from the devices; kept up
// to date by the calls, it is the plugin's index.
type snapshot struct {
	links map[linkKey]*linkDevs
	// vnis maps each VNI of any VXLAN device (necos-wan's or not) to where it is.
	vnis map[uint32]string

	// Kept by put and drop, so that admission costs what a link touches, not what
	// exists: the links on each bridge, and the WAN bandwidth used per site pair and per
	// site, by provider (local links use none).
	byNode   map[bridgeNode]map[linkKey]*linkDevs
	pairUsed map[pairUse]uint64
	siteUsed map[[2]string]uint64
}

// pairUse names the bandwidth a provider's links use between a pair of sites.
type pairUse struct {
	provider string
	pair     [2]string
}

// reindex computes byNode, pairUsed and siteUsed from links.
func (s *snapshot) reindex() {
	s.byNode = map[bridgeNode]map[linkKey]*linkDevs{}
	s.pairUsed = map[pairUse]uint64{}
	s.siteUsed = map[[2]string]uint64{}
	for _, l := range s.links {
		s.account(l, true)
	}
}

// put enters link l in the index.
func (s *snapshot) put(l *linkDevs) {
	if s.byNode == nil {
		s.reindex()
	}
	s.drop(l.key)
	s.links[l.key] = l
	s.account(l, true)
}

// drop removes link k from the index.
func (s *snapshot) drop(k linkKey) {
	l := s.links[k]
	if l == nil {
		return
	}
	if s.byNode == nil {
		s.reindex()
	}
	s.account(l, false)
	delete(s.links, k)
}

// account adds l's bridges and bandwidth to the sums, or takes them off.
func (s *snapshot) account(l *linkDevs, add bool) {
	for _, n := range l.nodes() {
		m := s.byNode[n]
		if add {
			if m == nil {
				m = map[linkKey]*linkDevs{}
				s.byNode[n] = m
			}
			m[l.key] = l
		} else if m != nil {
			delete(m, l.key)
			if len(m) == 0 {
				delete(s.byNode, n)
			}
		}
	}
	if l.local() {
		return
	}
	bw := l.bandwidth()
	s1, s2 := l.sites()
	pk := pairUse{l.key.provider, pairKey(s1, s2)}
	if add {
		s.pairUsed[pk] += bw
	} else if s.pairUsed[pk] -= bw; s.pairUsed[pk] == 0 {
		delete(s.pairUsed, pk)
	}
	for _, site := range []string{s1, s2} {
		k := [2]string{l.key.provider, site}
		if add {
			s.siteUsed[k] += bw
		} else if s.siteUsed[k] -= bw; s.siteUsed[k] == 0 {
			delete(s.siteUsed, k)
		}
		if s2 == s1 {
			break
		}
	}
}

// scan reads every namespace. A named namespace that cannot be read (it may be being
// deleted right now) is skipped; the host's must be readable.
func (p *Plugin) scan() (*snapshot, error) {
	s := &snapshot{links: map[linkKey]*linkDevs{}, vnis: map[uint32]string{}}
	names := p.namespaces()
	p.dropConns(names)
	for _, name := range names {
		if err := p.scanNamespace(s, name); err != nil {
			if name == "" {
				return nil, err
			}
			p.log.Debug("skipping namespace", "netns", name, "error", err)
		}
	}
	for _, l := range s.links {
		for i, d := range l.ends {
			if d != nil {
				l.at[i] = &endLoc{ns: d.ns, dev: d.link.Attrs().Name, bridge: d.tag.Bridge, underlay: ipString(d.local)}
			}
		}
	}
	s.reindex()
	return s, nil
}

func (p *Plugin) scanNamespace(s *snapshot, ns string) error {
	h, err := p.handle(ns)
	if err != nil {
		return err
	}
	links, err := linkList(h)
	if err != nil {
		return fmt.Errorf("list devices in %s: %w", nsLabel(ns), err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	// One dump of the namespace's qdiscs instead of one request per device: with
	// 1,000 links a request per device made every call cost seconds.
	tbfs, tbfErr := rootTbfs(h)
	if tbfErr != nil {
		p.log.Warn("cannot read qdiscs", "netns", ns, "error", tbfErr)
	}
	for _, l := range links {
		attrs := l.Attrs()
		where := nsLabel(ns) + " device " + attrs.Name
		if vx, ok := l.(*netlink.Vxlan); ok {
			s.vnis[uint32(vx.VxlanId)] = where
		}
		d := devOf(ns, l)
		if d == nil {
			continue
		}
		if d.isLocal {
			s.vnis[d.vni] = where
		}
		d.master = names[attrs.MasterIndex]
		if tbf := tbfs[attrs.Index]; tbf != nil {
			d.hasTbf, d.rateBytes = true, tbf.Rate
		}
		t := d.tag
		k := linkKey{provider: t.Provider, ref: t.Ref}
		ld := s.links[k]
		if ld == nil {
			ld = &linkDevs{key: k}
			s.links[k] = ld
		}
		if prev := ld.ends[t.End-1]; prev != nil {
			// Two devices claim the same end: keep both visible as a problem rather than
			// silently picking one; the later one wins the slot, the earlier is logged.
			p.log.Warn("two devices claim one link end", "link", t.Ref.String(), "end", t.End,
				"first", nsLabel(prev.ns)+"/"+prev.link.Attrs().Name, "second", where)
		}
		ld.ends[t.End-1] = d
	}
	return nil
}

// devOf returns device l of namespace ns as a link end when its tag says it is one (a
// tagged VXLAN device, or a tagged veth of a local link), else nil. Its master and rate
// limit are left for the caller to fill in.
func devOf(ns string, l netlink.Link) *vxdev {
	var d *vxdev
	switch dev := l.(type) {
	case *netlink.Vxlan:
		t, ok := parseTag(dev.Alias)
		if !ok {
			return nil
		}
		d = &vxdev{vni: uint32(dev.VxlanId), local: dev.SrcAddr, remote: dev.Group, tag: t}
	case *netlink.Veth:
		// A local link's end: what a VXLAN device holds itself is on its tag.
		t, ok := parseTag(dev.Alias)
		if !ok || t.VNI == 0 {
			return nil
		}
		ip := net.ParseIP(t.Underlay)
		d = &vxdev{vni: t.VNI, local: ip, remote: ip, tag: t, isLocal: true}
	default:
		return nil
	}
	d.ns, d.link, d.up = ns, l, l.Attrs().Flags&net.FlagUp != 0
	return d
}

// readEnd reads end n of link key from the kernel: the device at loc, when it is there
// and tagged as that end. A named namespace that cannot be opened holds no end.
func (p *Plugin) readEnd(key linkKey, n int, loc *endLoc) (*vxdev, error) {
	c, err := p.conn(loc.ns)
	if err != nil {
		if loc.ns != "" {
			return nil, nil
		}
		return nil, err
	}
	l, err := c.h.LinkByName(loc.dev)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s in %s: %w", loc.dev, nsLabel(loc.ns), err)
	}
	d := devOf(loc.ns, l)
	if d == nil || d.tag.Provider != key.provider || d.tag.Ref != key.ref || d.tag.End != n {
		return nil, nil
	}
	if mi := l.Attrs().MasterIndex; mi != 0 {
		m, err := c.h.LinkByIndex(mi)
		if err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("look up the master of %s in %s: %w", loc.dev, nsLabel(loc.ns), err)
		}
		if m != nil {
			d.master = m.Attrs().Name
		}
	}
	if d.rateBytes, d.hasTbf, err = c.rootTbfOf(l.Attrs().Index); err != nil {
		return nil, fmt.Errorf("read the qdisc of %s in %s: %w", loc.dev, nsLabel(loc.ns), err)
	}
	return d, nil
}

// linkList lists a namespace's devices, retrying a dump the kernel interrupted because
// devices changed meanwhile.
func linkList(h *netlink.Handle) ([]netlink.Link, error) {
	var err error
	for range 5 {
		var links []netlink.Link
		links, err = h.LinkList()
		if err == nil {
			return links, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
	}
	return nil, err
}

// rootTbfs returns the root tbf qdiscs of a namespace by device index, from one dump.
func rootTbfs(h *netlink.Handle) (map[int]*netlink.Tbf, error) {
	var qs []netlink.Qdisc
	var err error
	for range 5 {
		if qs, err = h.QdiscList(nil); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	out := map[int]*netlink.Tbf{}
	for _, q := range qs {
		if tbf, ok := q.(*netlink.Tbf); ok && q.Attrs().Parent == netlink.HANDLE_ROOT {
			out[q.Attrs().LinkIndex] = tbf
		}
	}
	return out, nil
}

// rootTbf returns the tbf qdisc at the root of link, or nil.
func rootTbf(h *netlink.Handle, link netlink.Link) (*netlink.Tbf, error) {
	qs, err := h.QdiscList(link)
	if err != nil {
		return nil, err
	}
	for _, q := range qs {
		if tbf, ok := q.(*netlink.Tbf); ok && q.Attrs().Parent == netlink.HANDLE_ROOT {
			return tbf, nil
		}
	}
	return nil, nil
}

func nsLabel(ns string) string {
	if ns == "" {
		return "host namespace"
	}
	return fmt.Sprintf("namespace %q", ns)
}

// vni returns the link's VNI as its devices hold it.
func (l *linkDevs) vni() uint32 {
	if l.spec != nil {
		return l.v
	}
	for _, d := range l.ends {
		if d != nil {
			return d.vni
		}
	}
	return 0
}

// local reports whether the link is a local link (a veth pair within one site).
func (l *linkDevs) local() bool {
	if l.spec != nil {
		return isLocal(*l.spec)
	}
	for _, d := range l.ends {
		if d != nil {
			return d.isLocal
		}
	}
	return false
}

// bandwidth returns the link's rate as recorded on its devices.
func (l *linkDevs) bandwidth() uint64 {
	if l.spec != nil {
		return l.spec.BandwidthBps
	}
	for _, d := range l.ends {
		if d != nil {
			return d.tag.BandwidthBps
		}
	}
	return 0
}

// sites returns the sites the link joins, from whichever device is present.
func (l *linkDevs) sites() (string, string) {
	if l.spec != nil {
		return l.spec.End1.Site, l.spec.End2.Site
	}
	for _, d := range l.ends {
		if d != nil {
			if d.tag.End == 1 {
				return d.tag.Site, d.tag.PeerSite
			}
			return d.tag.PeerSite, d.tag.Site
		}
	}
	return "", ""
}

// bridgeNode names a bridge on a machine: namespace and bridge name.
type bridgeNode struct{ ns, bridge string }

// nodes returns the bridges the link joins (only those of ends whose place is known).
func (l *linkDevs) nodes() []bridgeNode {
	var out []bridgeNode
	for _, a := range l.at {
		if a != nil {
			out = append(out, bridgeNode{a.ns, a.bridge})
		}
	}
	return out
}

// describe turns the devices into the SDK's Link, checking that they are whole: both
// devices up, on their bridge, pointing at each other, rate-limited as recorded.
func (l *linkDevs) describe() sdk.Link {
	link := sdk.Link{Ref: l.key.ref, State: sdk.StateReady}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ends := [2]*sdk.LinkEnd{&link.End1, &link.End2}
	for i, d := range l.ends {
		if d == nil {
			bad("end%d: VXLAN device missing", i+1)
			continue
		}
		e := ends[i]
		e.Site, e.Part, e.Bridge, e.Netns = d.tag.Site, d.tag.Part, d.tag.Bridge, d.ns
		e.Underlay = ipString(d.local)
		if link.VNI == 0 {
			link.VNI = d.vni
		} else if link.VNI != d.vni {
			bad("end%d: VNI %d, end1 has %d", i+1, d.vni, link.VNI)
		}
		if link.Name == "" {
			link.Name = d.tag.Name
		}
		link.BandwidthBps = d.tag.BandwidthBps
		name := d.link.Attrs().Name
		if !d.up {
			bad("end%d: %s is down", i+1, name)
		}
		if d.master != d.tag.Bridge {
			bad("end%d: %s is not on bridge %s", i+1, name, d.tag.Bridge)
		}
		switch want := d.tag.BandwidthBps / 8; {
		case want > 0 && !d.hasTbf:
			bad("end%d: %s has no rate limit", i+1, name)
		case want > 0 && d.rateBytes != want:
			bad("end%d: %s is limited to %d bit/s, want %d", i+1, name, d.rateBytes*8, d.tag.BandwidthBps)
		case want == 0 && d.hasTbf:
			bad("end%d: %s is rate-limited but the link has no bandwidth", i+1, name)
		}
	}
	// Fill in what the present end knows of a missing one.
	for i, d := range l.ends {
		other := l.ends[1-i]
		if d == nil || other == nil {
			if d == nil && other != nil {
				ends[i].Underlay = ipString(other.remote)
				ends[i].Site = other.tag.PeerSite
			}
			continue
		}
		if !d.remote.Equal(other.local) {
			bad("end%d: remote %s is not end%d's underlay %s", i+1, ipString(d.remote), 2-i, ipString(other.local))
		}
	}
	if len(problems) > 0 {
		link.State = sdk.StateFailed
		sort.Strings(problems)
		link.Message = strings.Join(problems, "; ")
	}
	return link
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}
