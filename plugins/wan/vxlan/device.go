package vxlan

import (
	"errors"
	"fmt"
	"net"

	"github.com/necos/necos/sdk"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// VXLAN encapsulation overhead: outer IP + UDP + VXLAN + inner Ethernet headers.
const (
	overheadIPv4 = 20 + 8 + 8 + 14
	overheadIPv6 = 40 + 8 + 8 + 14
)

// Token bucket shape: the bucket holds tbfBurstTime of traffic (at least tbfMinFrames
// full frames, so a frame always fits), and the queue tbfLatency more before tbf drops.
const (
	tbfBurstDiv  = 100 // 10 ms
	tbfMinFrames = 10
	tbfLatencyMs = 50
)

// ensureEnd makes end n (1 or 2) of the link exist as spec says: the bridge, the VXLAN
// device on it, up, with its rate limit. What it creates is pushed on made.
func (p *Plugin) ensureEnd(spec sdk.LinkSpec, n int, vni uint32, made *undoStack) error {
	end, peer := spec.End1, spec.End2
	if n == 2 {
		end, peer = peer, end
	}
	defer p.lockBridges(bridgeNode{end.Netns, end.Bridge})()
	where := nsLabel(end.Netns)
	c, err := p.conn(end.Netns)
	if err != nil {
		return fmt.Errorf("end%d: %w", n, err)
	}
	h := c.h

	local, remote := net.ParseIP(end.Underlay), net.ParseIP(peer.Underlay)
	under, err := p.underlay(end.Netns, local)
	if err != nil {
		return fmt.Errorf("end%d: %w", n, err)
	}
	if under == nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "end%d.underlay: %s is not an address in %s", n, local, where)
	}
	mtu := p.cfg.MTU
	if mtu == 0 {
		mtu = under.Attrs().MTU - overheadIPv4
		if local.To4() == nil {
			mtu = under.Attrs().MTU - overheadIPv6
		}
	}

	br, err := p.ensureBridge(c, n, spec.Ref, end, made)
	if err != nil {
		return err
	}

	alias, err := tag{
		Provider: p.provider, Ref: spec.Ref, End: n,
		Site: end.Site, Part: end.Part, Bridge: end.Bridge, PeerSite: peer.Site,
		BandwidthBps: spec.BandwidthBps, Name: spec.Name,
	}.encode()
	if err != nil {
		return err
	}
	name := deviceName(vni)
	dev, err := h.LinkByName(name)
	switch {
	case isNotFound(err):
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.MasterIndex = name, mtu, br.Attrs().Index
		vx := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(vni), SrcAddr: local, Group: remote,
			Port: p.cfg.UDPPort, Learning: true}
		if dev, err = p.createTagged(c, vx, alias); err != nil {
			return fmt.Errorf("end%d: create %s in %s: %w", n, name, where, err)
		}
		made.push(func() error { return p.deleteDevice(end.Netns, name) })
	case err != nil:
		return fmt.Errorf("end%d: look up %s in %s: %w", n, name, where, err)
	default:
		if err := p.adopt(h, n, dev, spec.Ref, vni, local, remote, alias, br, where); err != nil {
			return err
		}
	}
	if dev.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(dev); err != nil {
			return fmt.Errorf("end%d: set %s up in %s: %w", n, name, where, err)
		}
	}
	if err := setRate(h, dev, spec.BandwidthBps, mtu); err != nil {
		return fmt.Errorf("end%d: rate limit on %s in %s: %w", n, name, where, err)
	}
	return nil
}

// adopt checks that an existing vx<VNI> device is this link's end and brings its alias
// (bandwidth, name) and bridge up to date.
func (p *Plugin) adopt(h *netlink.Handle, n int, dev netlink.Link, ref sdk.LinkRef, vni uint32,
	local, remote net.IP, alias string, br netlink.Link, where string) error {
	name := dev.Attrs().Name
	vx, ok := dev.(*netlink.Vxlan)
	t, tagged := parseTag(dev.Attrs().Alias)
	if !ok || !tagged || t.Provider != p.provider || t.Ref != ref || t.End != n {
		return sdk.Errorf(sdk.CodeAlreadyExists, "end%d: device %s in %s exists and is not this link's end%d", n, name, where, n)
	}
	if uint32(vx.VxlanId) != vni || !vx.SrcAddr.Equal(local) || !vx.Group.Equal(remote) {
		return sdk.Errorf(sdk.CodeFailedPrecondition,
			"end%d: device %s in %s has VNI %d, local %s, remote %s; want %d, %s, %s",
			n, name, where, vx.VxlanId, ipString(vx.SrcAddr), ipString(vx.Group), vni, local, remote)
	}
	if dev.Attrs().Alias != alias {
		if err := h.LinkSetAlias(dev, alias); err != nil {
			return fmt.Errorf("end%d: update alias of %s in %s: %w", n, name, where, err)
		}
	}
	if dev.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.LinkSetMaster(dev, br); err != nil {
			return fmt.Errorf("end%d: put %s on bridge %s in %s: %w", n, name, br.Attrs().Name, where, err)
		}
	}
	return nil
}

// ensureBridge returns the end's bridge, creating it (tagged as the plugin's, for the
// end's slice and part) when missing.
//
// Its undo step releases the bridge rather than deleting it: another link may be on it by
// then.
func (p *Plugin) ensureBridge(c *nsConn, n int, ref sdk.LinkRef, end sdk.LinkEnd, made *undoStack) (netlink.Link, error) {
	h := c.h
	ns, name := end.Netns, end.Bridge
	where := nsLabel(ns)
	br, err := h.LinkByName(name)
	switch {
	case isNotFound(err):
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		alias := bridgeTag{Provider: p.provider, SliceID: ref.SliceID, Part: end.Part}.encode()
		if br, err = p.createTagged(c, &netlink.Bridge{LinkAttrs: attrs}, alias); err != nil {
			return nil, fmt.Errorf("end%d: create bridge %s in %s: %w", n, name, where, err)
		}
		key := linkKey{p.provider, ref}
		made.push(func() error { return p.releaseBridge(ns, name, key) })
		p.log.Debug("bridge created", "bridge", name, "where", where)
	case err != nil:
		return nil, fmt.Errorf("end%d: look up bridge %s in %s: %w", n, name, where, err)
	case br.Type() != "bridge":
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "end%d.bridge: %s in %s is a %s device, not a bridge",
			n, name, where, br.Type())
	}
	// A bridge someone else made may be down; the link needs it up. Setting it up is
	// idempotent and changes nothing else of it.
	if br.Attrs().Flags&net.FlagUp != 0 {
		return br, nil
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("end%d: set bridge %s up in %s: %w", n, name, where, err)
	}
	return br, nil
}

// removeEnd deletes end n of link key (the device at loc, when it is that end), then its
// bridge if the plugin made it and nothing else uses it (see releaseBridgeLocked).
func (p *Plugin) removeEnd(key linkKey, n int, loc *endLoc) error {
	defer p.lockBridges(bridgeNode{loc.ns, loc.bridge})()
	c, err := p.conn(loc.ns)
	if err != nil {
		if loc.ns != "" && sdk.CodeOf(err) == sdk.CodeFailedPrecondition {
			return nil // the namespace is gone, and its devices with it
		}
		return err
	}
	l, err := c.h.LinkByName(loc.dev)
	switch {
	case isNotFound(err):
	case err != nil:
		return fmt.Errorf("look up %s in %s: %w", loc.dev, nsLabel(loc.ns), err)
	default:
		if d := devOf(loc.ns, l); d != nil && d.tag.Provider == key.provider && d.tag.Ref == key.ref && d.tag.End == n {
			if !d.isLocal {
				if done, err := p.deleteWithBridge(c, loc, key, l); err != nil || done {
					return err
				}
			}
			if err := c.deleteDevices(l); err != nil {
				return fmt.Errorf("in %s: %w", nsLabel(loc.ns), err)
			}
		}
	}
	return p.releaseBridgeLocked(loc.ns, loc.bridge, key)
}

// deleteWithBridge deletes the VXLAN device dev of an end at loc together with the end's
// bridge (see deleteDevices), when the bridge is the plugin's to delete once dev is gone
// (see releaseBridgeLocked): its only port is dev and no other link is meant for it. It
// reports false, having deleted nothing, when the bridge stays; the caller then deletes
// dev alone.
func (p *Plugin) deleteWithBridge(c *nsConn, loc *endLoc, key linkKey, dev netlink.Link) (bool, error) {
	if loc.bridge == "" {
		return false, nil
	}
	br, err := c.h.LinkByName(loc.bridge)
	if err != nil || p.notOurs(br) != "" || p.meantFor(bridgeNode{loc.ns, loc.bridge}, key) != "" {
		return false, nil
	}
	if port, err := c.portOf(br.Attrs().Index, dev.Attrs().Index); err != nil || port != "" {
		return false, nil
	}
	if err := c.deleteDevices(dev, br); err != nil {
		return true, fmt.Errorf("in %s: %w", nsLabel(loc.ns), err)
	}
	p.mu.Lock()
	delete(p.pending, bridgeNode{loc.ns, loc.bridge})
	p.mu.Unlock()
	p.log.Info("bridge removed with its last link", "bridge", loc.bridge, "netns", loc.ns)
	return true, nil
}

// releaseBridge is releaseBridgeLocked under the bridge's lock.
func (p *Plugin) releaseBridge(ns, name string, skip linkKey) error {
	defer p.lockBridges(bridgeNode{ns, name})()
	return p.releaseBridgeLocked(ns, name, skip)
}

// releaseBridgeLocked deletes bridge name of namespace ns when the plugin made it (its
// tag says so, for this provider), no device is a port of it, and no link of the index
// but skip is meant for it. A port the plugin did not make (a VM's tap, a VIM's veth)
// keeps the bridge: whoever attached it still uses the bridge; the bridge is recorded in
// pending and collected by a later Disconnect once they are gone. The caller holds the
// bridge's lock.
func (p *Plugin) releaseBridgeLocked(ns, name string, skip linkKey) error {
	if name == "" {
		return nil
	}
	node := bridgeNode{ns, name}
	done := func() {
		p.mu.Lock()
		delete(p.pending, node)
		p.mu.Unlock()
	}
	c, err := p.conn(ns)
	if err != nil {
		if ns != "" && sdk.CodeOf(err) == sdk.CodeFailedPrecondition {
			done()
			return nil
		}
		return err
	}
	br, err := c.h.LinkByName(name)
	if isNotFound(err) {
		done()
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up bridge %s in %s: %w", name, nsLabel(ns), err)
	}
	if why := p.notOurs(br); why != "" {
		done()
		p.log.Debug("bridge kept", "bridge", name, "netns", ns, "because", why)
		return nil
	}
	if ref := p.meantFor(node, skip); ref != "" {
		done()
		p.log.Debug("bridge kept", "bridge", name, "netns", ns, "because", "link "+ref+" is meant for it")
		return nil
	}
	port, err := c.portOf(br.Attrs().Index, 0)
	if err != nil {
		return fmt.Errorf("list the ports of bridge %s in %s: %w", name, nsLabel(ns), err)
	}
	if port != "" {
		p.mu.Lock()
		if p.pending == nil {
			p.pending = map[bridgeNode]bool{}
		}
		p.pending[node] = true
		p.mu.Unlock()
		p.log.Debug("bridge kept", "bridge", name, "netns", ns, "because", "device "+port+" is a port of it")
		return nil
	}
	if err := c.deleteDevices(br); err != nil {
		return fmt.Errorf("bridge in %s: %w", nsLabel(ns), err)
	}
	done()
	p.log.Info("bridge removed with its last link", "bridge", name, "netns", ns)
	return nil
}

// notOurs says why the plugin may not delete bridge br whatever uses it, or "".
func (p *Plugin) notOurs(br netlink.Link) string {
	t, ours := parseBridgeTag(br.Attrs().Alias)
	switch {
	case br.Type() != "bridge" || !ours:
		return "not created by the plugin"
	case !t.ownedBy(p.provider):
		return "created for provider " + t.Provider
	}
	return ""
}

// meantFor returns a link of the index, other than skip, with an end on bridge node.
func (p *Plugin) meantFor(node bridgeNode, skip linkKey) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idx == nil {
		return ""
	}
	for k, l := range p.idx.byNode[node] {
		if k != skip && !l.leaving {
			return k.ref.String()
		}
	}
	return ""
}

// collectPending releases the bridges kept for a port (see releaseBridgeLocked): those
// whose ports are gone now are deleted. It costs the bridges pending, not the links.
func (p *Plugin) collectPending() {
	p.mu.Lock()
	nodes := make([]bridgeNode, 0, len(p.pending))
	for n := range p.pending {
		nodes = append(nodes, n)
	}
	p.mu.Unlock()
	for _, n := range nodes {
		if err := p.releaseBridge(n.ns, n.bridge, linkKey{}); err != nil {
			p.log.Warn("collecting a bridge kept for a port failed; tried again at the next disconnect",
				"bridge", n.bridge, "netns", n.ns, "error", err)
		}
	}
}

// bridgeUse is what uses the bridges of one namespace: a port by bridge index, a link
// meant for it by bridge name. Built once per device list, so that deciding for every
// bridge of a namespace costs one pass over its devices, not one per bridge.
type bridgeUse struct {
	port  map[int]string
	meant map[string]string
}

func bridgeUses(links []netlink.Link) bridgeUse {
	u := bridgeUse{port: map[int]string{}, meant: map[string]string{}}
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex != 0 {
			if _, seen := u.port[a.MasterIndex]; !seen {
				u.port[a.MasterIndex] = a.Name
			}
		}
		if tg, ok := parseTag(a.Alias); ok {
			if _, seen := u.meant[tg.Bridge]; !seen {
				u.meant[tg.Bridge] = tg.Ref.String()
			}
		}
	}
	return u
}

// keepBridgeIn says why bridge br must stay, given u, what uses the bridges of its
// namespace, or "" when the plugin may delete it (see releaseBridgeLocked).
func (p *Plugin) keepBridgeIn(br netlink.Link, u bridgeUse) string {
	if why := p.notOurs(br); why != "" {
		return why
	}
	if name, ok := u.port[br.Attrs().Index]; ok {
		return "device " + name + " is a port of it"
	}
	if ref, ok := u.meant[br.Attrs().Name]; ok {
		return "link " + ref + " is meant for it"
	}
	return ""
}

// collect removes what the plugin made that belongs to no link any more, in every
// namespace it manages: devices left under a temporary name by a process that died
// while creating them, and bridges it made that nothing uses (see keepBridgeIn), such as
// one whose last link's process died between deleting the VXLAN device and the bridge.
// The plugin's bridges kept for a port only are recorded in pending, for a later
// Disconnect to collect once the port is gone. It runs under p.mu, at start-up, and
// returns how many devices it removed.
func (p *Plugin) collect() (int, error) {
	removed := 0
	var errs []error
	for _, ns := range p.namespaces() {
		n, err := p.collectIn(ns)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

func (p *Plugin) collectIn(ns string) (int, error) {
	h, err := p.handle(ns)
	if err != nil {
		if ns != "" {
			return 0, nil // being deleted meanwhile: nothing to collect there
		}
		return 0, err
	}
	links, err := linkList(h)
	if err != nil {
		return 0, fmt.Errorf("list devices in %s: %w", nsLabel(ns), err)
	}
	removed := 0
	var errs []error
	del := func(l netlink.Link, why string) {
		if err := h.LinkDel(l); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete %s in %s: %w", l.Attrs().Name, nsLabel(ns), err))
			return
		}
		removed++
		p.log.Info("collected a device no link uses", "device", l.Attrs().Name, "type", l.Type(),
			"netns", ns, "why", why)
	}
	// Temporary devices first: one may be a port of a bridge collected next.
	var rest []netlink.Link
	for _, l := range links {
		if isTempOf(l.Attrs().Name, p.provider) {
			del(l, "left half-made by a process that died")
			continue
		}
		rest = append(rest, l)
	}
	uses := bridgeUses(rest)
	for _, l := range rest {
		if l.Type() != "bridge" {
			continue
		}
		if why := p.keepBridgeIn(l, uses); why != "" {
			if _, port := uses.port[l.Attrs().Index]; port && p.notOurs(l) == "" {
				if p.pending == nil {
					p.pending = map[bridgeNode]bool{}
				}
				p.pending[bridgeNode{ns, l.Attrs().Name}] = true
			}
			continue
		}
		t, _ := parseBridgeTag(l.Attrs().Alias)
		del(l, fmt.Sprintf("bridge of slice %q part %q with no port and no link", t.SliceID, t.Part))
	}
	return removed, errors.Join(errs...)
}

// createTagged creates link under a temporary name, then in one request gives it its
// name and alias (its tag) and turns off its IPv6 addresses (see noIPv6), so that the
// device is never seen under its own name without its tag. It returns the device as
// created, down. On failure it removes what it made.
//
// One request where there were three (address mode, alias, name) and no read-back: a
// link's Connect made 16 netlink requests under the kernel's shared lock, now 10.
func (p *Plugin) createTagged(c *nsConn, link netlink.Link, alias string) (netlink.Link, error) {
	name, tmp := link.Attrs().Name, tempName(p.provider)
	link.Attrs().Name = tmp
	if err := c.h.LinkAdd(link); err != nil {
		return nil, err
	}
	dev, err := c.h.LinkByName(tmp)
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", tmp, err)
	}
	err = c.nameTag(dev.Attrs().Index, name, alias, true)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		// No IPv6 on the device (the namespace has it off): nothing to turn off. The
		// kernel checks the address family before it changes anything.
		err = c.nameTag(dev.Attrs().Index, name, alias, false)
	}
	if err != nil {
		if derr := c.h.LinkDel(dev); derr != nil && !isGone(derr) {
			p.log.Warn("cannot remove a half-made device; the next collection will", "device", tmp, "error", derr)
		}
		if errors.Is(err, unix.EEXIST) {
			return nil, sdk.Errorf(sdk.CodeAlreadyExists, "device %s exists", name)
		}
		return nil, fmt.Errorf("name %s %s: %w", tmp, name, err)
	}
	dev.Attrs().Name, dev.Attrs().Alias = name, alias
	return dev, nil
}

// nameTag renames device index to name and sets its alias, and with noIPv6 turns off
// its IPv6 address generation, in one RTM_SETLINK: the kernel applies the name before
// the alias, under its lock. Setting the device up is left to another request: in one
// request the kernel raises it before it reads the address mode, and the device gets a
// link-local address.
func (c *nsConn) nameTag(index int, name, alias string, noIPv6 bool) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	req.Sockets = c.raw
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(alias)))
	if noIPv6 {
		mode := nl.NewRtAttr(unix.IFLA_INET6_ADDR_GEN_MODE, []byte{in6AddrGenModeNone})
		inet6 := nl.NewRtAttr(unix.AF_INET6, mode.Serialize())
		req.AddData(nl.NewRtAttr(unix.IFLA_AF_SPEC, inet6.Serialize()))
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE of linux/if_link.h.
const in6AddrGenModeNone = 1

// noIPv6 keeps the kernel from giving dev an IPv6 link-local address when it goes up:
// the plugin's devices carry frames at layer 2 only, and each address (with its routes
// and multicast memberships) makes every later device change in the namespace dearer.
// A namespace without IPv6 refuses the setting, which is then not needed.
func (p *Plugin) noIPv6(h *netlink.Handle, dev netlink.Link) {
	if err := h.LinkSetIP6AddrGenMode(dev, in6AddrGenModeNone); err != nil {
		p.log.Debug("cannot turn off IPv6 address generation", "device", dev.Attrs().Name, "error", err)
	}
}

// deleteDevice deletes device name in namespace ns, if it is there. Undo steps use it
// with a handle of their own: the Connect's handles are closed by the time they run.
func (p *Plugin) deleteDevice(ns, name string) error {
	h, err := p.handle(ns)
	if err != nil {
		return err
	}
	l, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s in %s: %w", name, nsLabel(ns), err)
	}
	if err := h.LinkDel(l); err != nil && !isGone(err) {
		return fmt.Errorf("delete %s in %s: %w", name, nsLabel(ns), err)
	}
	p.log.Debug("removed after a failed connect", "device", name, "netns", ns)
	return nil
}

// setRate puts a root tbf limiting dev's egress to bps bits/s, or removes it for 0.
func setRate(h *netlink.Handle, dev netlink.Link, bps uint64, mtu int) error {
	if bps == 0 {
		cur, err := rootTbf(h, dev)
		if err != nil || cur == nil {
			return err
		}
		return h.QdiscDel(cur)
	}
	return h.QdiscReplace(tbf(dev.Attrs().Index, bps, mtu))
}

// tbf returns the token bucket for a rate of bps bits/s on a device of the given MTU.
func tbf(index int, bps uint64, mtu int) *netlink.Tbf {
	rate := bps / 8
	burst := max(rate/tbfBurstDiv, uint64(tbfMinFrames*(mtu+14)))
	burst = min(burst, 1<<30)
	limit := min(rate*tbfLatencyMs/1000+burst, 1<<31)
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate,
		Limit:      uint32(limit),
		// The kernel takes the bucket size as the time to send it, in ticks.
		Buffer: netlink.Xmittime(rate, uint32(burst)),
	}
}

// underlayDevice returns the device holding address ip, or nil.
func underlayDevice(h *netlink.Handle, ip net.IP) (netlink.Link, error) {
	family := netlink.FAMILY_V4
	if ip.To4() == nil {
		family = netlink.FAMILY_V6
	}
	addrs, err := h.AddrList(nil, family)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return h.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// isGone reports whether a delete failed because the device is already gone (another
// caller, or its namespace, removed it meanwhile).
func isGone(err error) bool { return isNotFound(err) || errors.Is(err, unix.ENODEV) }

// ensureLocal makes a local link exist as spec says: the two bridges of one site joined
// by a veth pair vl<VNI>e1 (on end1's bridge) and vl<VNI>e2 (on end2's), both up, each
// with the link's rate limit on what it sends, so that the link is limited in each
// direction as a tunnel would be. What it creates is pushed on made.
func (p *Plugin) ensureLocal(spec sdk.LinkSpec, vni uint32, made *undoStack) error {
	defer p.lockBridges(bridgeNode{spec.End1.Netns, spec.End1.Bridge}, bridgeNode{spec.End2.Netns, spec.End2.Bridge})()
	ns := spec.End1.Netns
	where := nsLabel(ns)
	c, err := p.conn(ns)
	if err != nil {
		return fmt.Errorf("end1: %w", err)
	}
	h := c.h
	ip := net.ParseIP(spec.End1.Underlay)
	under, err := p.underlay(ns, ip)
	if err != nil {
		return fmt.Errorf("end1: %w", err)
	}
	if under == nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "end1.underlay: %s is not an address in %s", ip, where)
	}
	mtu := p.cfg.MTU
	if mtu == 0 {
		mtu = under.Attrs().MTU // no encapsulation: frames as large as the site's own
	}
	var brs [2]netlink.Link
	var aliases [2]string
	for i, end := range []sdk.LinkEnd{spec.End1, spec.End2} {
		peer := spec.End2
		if i == 1 {
			peer = spec.End1
		}
		if brs[i], err = p.ensureBridge(c, i+1, spec.Ref, end, made); err != nil {
			return err
		}
		if aliases[i], err = (tag{
			Provider: p.provider, Ref: spec.Ref, End: i + 1,
			Site: end.Site, Part: end.Part, Bridge: end.Bridge, PeerSite: peer.Site,
			BandwidthBps: spec.BandwidthBps, Name: spec.Name, VNI: vni, Underlay: ip.String(),
		}).encode(); err != nil {
			return err
		}
	}
	names := [2]string{localName(vni, 1), localName(vni, 2)}
	var devs [2]netlink.Link
	var errs [2]error
	for i := range devs {
		devs[i], errs[i] = h.LinkByName(names[i])
	}
	switch {
	case isNotFound(errs[0]) && isNotFound(errs[1]):
		if devs, err = p.createTaggedPair(h, names, aliases, brs, mtu); err != nil {
			return fmt.Errorf("create %s and %s in %s: %w", names[0], names[1], where, err)
		}
		made.push(func() error { return p.deleteDevice(ns, names[0]) })
	case errs[0] == nil && errs[1] == nil:
		for i := range devs {
			if err := p.adoptLocal(h, i+1, devs[i], spec.Ref, aliases[i], brs[i], where); err != nil {
				return err
			}
		}
	default:
		for i, e := range errs {
			if e != nil && !isNotFound(e) {
				return fmt.Errorf("end%d: look up %s in %s: %w", i+1, names[i], where, e)
			}
		}
		// One end of a veth pair cannot exist without the other: the name is taken.
		for i, e := range errs {
			if e == nil {
				return sdk.Errorf(sdk.CodeAlreadyExists, "end%d: device %s in %s exists and is not this link's end%d", i+1, names[i], where, i+1)
			}
		}
	}
	for i, dev := range devs {
		if err := h.LinkSetUp(dev); err != nil {
			return fmt.Errorf("end%d: set %s up in %s: %w", i+1, names[i], where, err)
		}
		if err := setRate(h, dev, spec.BandwidthBps, mtu); err != nil {
			return fmt.Errorf("end%d: rate limit on %s in %s: %w", i+1, names[i], where, err)
		}
	}
	return nil
}

// createTaggedPair creates a veth pair under temporary names, puts each end on its
// bridge with its alias, then gives the ends their names (see createTagged).
func (p *Plugin) createTaggedPair(h *netlink.Handle, names, aliases [2]string, brs [2]netlink.Link, mtu int) ([2]netlink.Link, error) {
	var devs [2]netlink.Link
	tmp := [2]string{tempName(p.provider), tempName(p.provider)}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.MasterIndex = tmp[0], mtu, brs[0].Attrs().Index
	v := netlink.NewVeth(attrs)
	v.PeerName, v.PeerMTU = tmp[1], uint32(mtu)
	if err := h.LinkAdd(v); err != nil {
		return devs, err
	}
	err := func() error {
		for i := range devs {
			d, err := h.LinkByName(tmp[i])
			if err != nil {
				return fmt.Errorf("read back %s: %w", tmp[i], err)
			}
			p.noIPv6(h, d)
			if err := h.LinkSetAlias(d, aliases[i]); err != nil {
				return err
			}
			if d.Attrs().MasterIndex != brs[i].Attrs().Index {
				if err := h.LinkSetMaster(d, brs[i]); err != nil {
					return err
				}
			}
		}
		for i := range devs {
			d, err := h.LinkByName(tmp[i])
			if err != nil {
				return err
			}
			if err := h.LinkSetName(d, names[i]); err != nil {
				if errors.Is(err, unix.EEXIST) {
					return sdk.Errorf(sdk.CodeAlreadyExists, "device %s exists", names[i])
				}
				return err
			}
			if devs[i], err = h.LinkByName(names[i]); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		// Deleting either end deletes the pair, under whichever name it has now.
		for _, n := range append(tmp[:], names[:]...) {
			if d, lerr := h.LinkByName(n); lerr == nil {
				if derr := h.LinkDel(d); derr == nil || isGone(derr) {
					break
				}
			}
		}
		return devs, err
	}
	return devs, nil
}

// adoptLocal checks that an existing vl<VNI>e<n> device is this local link's end n and
// brings its alias and bridge up to date.
func (p *Plugin) adoptLocal(h *netlink.Handle, n int, dev netlink.Link, ref sdk.LinkRef, alias string, br netlink.Link, where string) error {
	name := dev.Attrs().Name
	t, tagged := parseTag(dev.Attrs().Alias)
	if _, ok := dev.(*netlink.Veth); !ok || !tagged || t.Provider != p.provider || t.Ref != ref || t.End != n || t.VNI == 0 {
		return sdk.Errorf(sdk.CodeAlreadyExists, "end%d: device %s in %s exists and is not this link's end%d", n, name, where, n)
	}
	if dev.Attrs().Alias != alias {
		if err := h.LinkSetAlias(dev, alias); err != nil {
			return fmt.Errorf("end%d: update alias of %s in %s: %w", n, name, where, err)
		}
	}
	if dev.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.LinkSetMaster(dev, br); err != nil {
			return fmt.Errorf("end%d: put %s on bridge %s in %s: %w", n, name, br.Attrs().Name, where, err)
		}
	}
	return nil
}
