package xenvim

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirt"
)

// The start-up sweep: what a plugin killed halfway (between deleting a part's domains and
// its network, or inside a Create whose clean-up never ran) left of this provider's parts
// on the host. Every device and namespace the plugin makes carries a tag (ownerTag)
// naming its provider, slice and part (a tap also its domain), so the sweep removes only
// what is this provider's and no domain backs:
//   - a tap whose domain does not exist, wherever it is (the host's namespace or a
//     site's);
//   - a bridge of a part without domains, with the ports the plugin made on it (taps,
//     the endpoint's veth) and the part's endpoint namespace; a bridge with any other
//     port (a link's VXLAN device: the WAN plugin's) is left alone;
//   - an endpoint namespace of a part without domains (its site's namespace may be gone);
//   - a node's volume (<domain>.qcow2, <domain>.seed) in the provider's pool whose domain
//     does not exist. A node's domain is defined before its volumes are made and removed
//     after them, so such a volume is never one a live plugin is making (a create killed
//     between the two leaves a domain without volumes, which the part's next Create or
//     Delete handles). Plugin versions before this order made the volumes first: a
//     volume younger than volumeGrace is left for a later sweep.
//
// Each part is locked while it is looked at, so a call of this process never loses its
// network. Processes serving one provider on one host are not coordinated (as for
// capacity).

// sweepResult counts what a sweep removed.
type sweepResult struct{ Taps, Bridges, Endpoints, Volumes int }

func (r sweepResult) total() int { return r.Taps + r.Bridges + r.Endpoints + r.Volumes }

// volumeGrace is how old a volume without its domain must be to be swept.
const volumeGrace = time.Minute

// sweep removes what parts of this provider left without a domain (see above).
func (p *Plugin) sweep(conn *libvirt.Connect, s *settings) (sweepResult, error) {
	var r sweepResult
	var errs []error
	sites := namespaces()
	for _, ns := range sites {
		n, err := p.sweepTaps(conn, s, ns)
		r.Taps += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	n, err := p.sweepNetworks(conn, s, sites)
	r.Bridges += n
	if err != nil {
		errs = append(errs, err)
	}
	n, err = p.sweepEndpoints(conn, s)
	r.Endpoints += n
	if err != nil {
		errs = append(errs, err)
	}
	n, err = p.sweepVolumes(conn, s)
	r.Volumes += n
	if err != nil {
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

// nodeOfVolume returns the domain a node's volume is named after, or false for other
// volumes (the images' bases, anything else in the pool).
func nodeOfVolume(name string) (string, bool) {
	if !strings.HasPrefix(name, namePrefix) {
		return "", false
	}
	for _, suffix := range []string{overlayName(""), seedName("")} {
		if d, ok := strings.CutSuffix(name, suffix); ok && d != namePrefix {
			return d, true
		}
	}
	return "", false
}

// sweepVolumes deletes the nodes' volumes in the provider's pool whose domain does not
// exist (see above). A pool that does not exist holds nothing.
func (p *Plugin) sweepVolumes(conn *libvirt.Connect, s *settings) (int, error) {
	pool, err := conn.LookupStoragePoolByName(s.pool)
	if err != nil {
		if isLibvirtCode(err, libvirt.ERR_NO_STORAGE_POOL) {
			return 0, nil
		}
		return 0, lvError(err, "storage pool %s", s.pool)
	}
	defer pool.Free()
	if active, err := pool.IsActive(); err != nil || !active {
		return 0, nil
	}
	_ = pool.Refresh(0)
	vols, err := pool.ListAllStorageVolumes(0)
	if err != nil {
		return 0, lvError(err, "list volumes of pool %s", s.pool)
	}
	defer func() {
		for i := range vols {
			_ = vols[i].Free()
		}
	}()
	removed := 0
	var errs []error
	for i := range vols {
		v := &vols[i]
		name, err := v.GetName()
		if err != nil {
			continue
		}
		domain, ok := nodeOfVolume(name)
		if !ok {
			continue
		}
		d, err := conn.LookupDomainByName(domain)
		if err == nil {
			_ = d.Free()
			continue
		}
		if !isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
			errs = append(errs, lvError(err, "look up domain %s of volume %s", domain, name))
			continue
		}
		if path, err := v.GetPath(); err == nil {
			if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) < volumeGrace {
				continue
			}
		}
		if err := v.Delete(0); err != nil && !isLibvirtCode(err, libvirt.ERR_NO_STORAGE_VOL) {
			errs = append(errs, lvError(err, "delete volume %s", name))
			continue
		}
		p.log.Info("swept a volume without its domain", "pool", s.pool, "volume", name)
		removed++
	}
	return removed, errors.Join(errs...)
}

// isTapName says whether a device name is one tapName makes.
func isTapName(name string) bool {
	if len(name) != 14 || !strings.HasPrefix(name, "nt") {
		return false
	}
	_, err := hex.DecodeString(name[2:])
	return err == nil
}

// namespaces lists the host's network namespace ("") and every named one but the parts'
// endpoints (which hold no bridge and no tap).
func namespaces() []string {
	out := []string{""}
	entries, _ := os.ReadDir(filepath.Dir(nsnet.Path("x")))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), endpointPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// endpointNamespaces lists the named namespaces that are parts' endpoints.
func endpointNamespaces() []string {
	var out []string
	entries, _ := os.ReadDir(filepath.Dir(nsnet.Path("x")))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), endpointPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// mine says whether a tag names this provider and a whole part.
func (t deviceTag) mine(s *settings) bool {
	return t.provider == s.provider.Name && t.ref.SliceID != "" && t.ref.PartID != ""
}

// sweepTaps deletes this provider's taps in ns whose domain does not exist.
func (p *Plugin) sweepTaps(conn *libvirt.Connect, s *settings, ns string) (int, error) {
	h, err := handleIn(ns)
	if err != nil {
		return 0, nil // gone meanwhile
	}
	links, err := h.LinkList()
	h.Close()
	if err != nil {
		return 0, fmt.Errorf("list devices of %q: %w", ns, err)
	}
	removed := 0
	var errs []error
	for _, l := range links {
		t, ok := tagOf(tapTagPrefix, l.Attrs().Alias)
		if !ok || !t.mine(s) || t.domain == "" || !isTapName(l.Attrs().Name) {
			continue
		}
		done, err := p.sweepTap(conn, ns, l.Attrs().Name, t)
		if err != nil {
			errs = append(errs, err)
		}
		if done {
			removed++
		}
	}
	return removed, errors.Join(errs...)
}

func (p *Plugin) sweepTap(conn *libvirt.Connect, ns, name string, t deviceTag) (bool, error) {
	unlock := p.parts.lock(t.ref)
	defer unlock()
	d, err := conn.LookupDomainByName(t.domain)
	if err == nil {
		_ = d.Free()
		return false, nil
	}
	if !isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
		return false, lvError(err, "look up domain %s of tap %s", t.domain, name)
	}
	h, err := handleIn(ns)
	if err != nil {
		return false, nil
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return false, nil
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return false, fmt.Errorf("delete tap %s of part %s: %w", name, t.ref, err)
	}
	p.log.Info("swept a tap without its domain", "netns", ns, "tap", name, "domain", t.domain, "part", t.ref.String())
	return true, nil
}

// sweepNetworks removes, in the given namespaces, the bridges tagged for this provider
// whose part has no domain (sweepBridgeOf).
func (p *Plugin) sweepNetworks(conn *libvirt.Connect, s *settings, sites []string) (removed int, err error) {
	var errs []error
	for _, ns := range sites {
		h, err := handleIn(ns)
		if err != nil {
			continue // gone meanwhile
		}
		links, err := h.LinkList()
		h.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("list devices of %q: %w", ns, err))
			continue
		}
		for _, br := range links {
			t, ok := tagOf(bridgeTagPrefix, br.Attrs().Alias)
			if !ok || br.Type() != "bridge" || !t.mine(s) {
				continue
			}
			done, err := p.sweepBridgeOf(conn, s, ns, br.Attrs().Name, t.ref)
			if err != nil {
				errs = append(errs, err)
			}
			if done {
				removed++
			}
		}
	}
	return removed, errors.Join(errs...)
}

// sweepBridgeOf removes one bridge of part ref in ns, and what the plugin made on it,
// when the part has no domain and the bridge no port the plugin did not make.
func (p *Plugin) sweepBridgeOf(conn *libvirt.Connect, s *settings, ns, bridge string, ref sdk.PartRef) (bool, error) {
	unlock := p.parts.lock(ref)
	defer unlock()
	nodes, err := p.partNodes(conn, s, ref)
	if err != nil || len(nodes) > 0 {
		return false, err
	}
	h, err := handleIn(ns)
	if err != nil {
		return false, nil
	}
	defer h.Close()
	br, err := h.LinkByName(bridge)
	if err != nil {
		return false, nil
	}
	links, err := h.LinkList()
	if err != nil {
		return false, err
	}
	n := partNet{provider: s.provider.Name, slice: ref.SliceID, part: ref.PartID, netns: ns, bridge: bridge}
	veth := vethName(n.endpointNS())
	var taps []netlink.Link
	for _, l := range links {
		if l.Attrs().MasterIndex != br.Attrs().Index {
			continue
		}
		switch name := l.Attrs().Name; {
		case name == veth:
		case l.Type() == "tuntap" && isTapName(name):
			taps = append(taps, l)
		default:
			p.log.Info("left a part's bridge: a port is not the plugin's", "netns", ns, "bridge", bridge,
				"part", ref.String(), "port", name)
			return false, nil
		}
	}
	for _, l := range taps {
		if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return false, fmt.Errorf("delete tap %s of part %s: %w", l.Attrs().Name, ref, err)
		}
	}
	if err := n.remove(); err != nil {
		return false, fmt.Errorf("network of part %s: %w", ref, err)
	}
	if _, err := h.LinkByName(bridge); err == nil {
		return false, nil // someone else's port came meanwhile
	}
	p.log.Info("swept the network of a part without domains", "netns", ns, "bridge", bridge,
		"part", ref.String(), "taps", len(taps))
	return true, nil
}

// sweepEndpoints removes the endpoint namespaces of this provider's parts that have no
// domain.
func (p *Plugin) sweepEndpoints(conn *libvirt.Connect, s *settings) (int, error) {
	removed := 0
	var errs []error
	for _, ep := range endpointNamespaces() {
		h, err := handleIn(ep)
		if err != nil {
			continue
		}
		lo, err := h.LinkByName("lo")
		h.Close()
		if err != nil {
			continue
		}
		t, ok := tagOf(endpointTagPrefix, lo.Attrs().Alias)
		if !ok || !t.mine(s) || EndpointNetns(t.provider, t.ref.SliceID, t.ref.PartID) != ep {
			continue
		}
		done, err := p.sweepEndpoint(conn, s, t.ref)
		if err != nil {
			errs = append(errs, err)
		}
		if done {
			removed++
		}
	}
	return removed, errors.Join(errs...)
}

func (p *Plugin) sweepEndpoint(conn *libvirt.Connect, s *settings, ref sdk.PartRef) (bool, error) {
	unlock := p.parts.lock(ref)
	defer unlock()
	nodes, err := p.partNodes(conn, s, ref)
	if err != nil || len(nodes) > 0 {
		return false, err
	}
	n := partNet{provider: s.provider.Name, slice: ref.SliceID, part: ref.PartID}
	if err := n.remove(); err != nil {
		return false, fmt.Errorf("endpoint of part %s: %w", ref, err)
	}
	p.log.Info("swept the endpoint namespace of a part without domains", "netns", n.endpointNS(), "part", ref.String())
	return true, nil
}
