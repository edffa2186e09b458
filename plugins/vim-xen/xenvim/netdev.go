package xenvim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strings"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The network of a part of real guests, on one host:
//
//   - the part's bridge (PartSpec.Bridge) in the site's namespace (PartSpec.Netns; empty
//     is the host's): the WAN plugin puts the part's links (VXLAN devices) on it;
//   - one tap per node: qemu's NIC. libvirt opens a tap in its own (the host's) network
//     namespace, so the plugin makes it there, down and without addresses, and moves it
//     into the site's namespace onto the bridge once the domain runs (qemu keeps its file
//     descriptor). The host namespace thus carries guest frames only at layer 2, for an
//     instant, and never an address;
//   - the part's endpoint namespace (necosvm-<digest>), joined to the bridge by a veth,
//     holding one address of the subnet: where the Deployer's SSH client and anyone on the
//     host (through a loopback forwarder, `necosctl slice port-forward`) reach the
//     part's nodes. Each part has its own, so two slices that use the same addresses at
//     one site stay apart and each is reachable.
//
// Ownership of the bridge, shared with the WAN plugin: the plugin creates the bridge
// when missing and tags it (bridgeTagPrefix + provider, slice, part). It deletes only a
// bridge that carries its tag, and only when no device is a port of it any more (its
// taps and veth are gone first); a bridge the WAN plugin made, or one with a link still
// on it, is left to whoever made it or to the plugin's next sweep of the namespace.

const (
	bridgeTagPrefix = "necos-vim/1 bridge?"
	// endpointTagPrefix tags the loopback device of a part's endpoint namespace, and
	// tapTagPrefix a node's tap: whose they are, for the sweep (sweep.go).
	endpointTagPrefix = "necos-vim/1 endpoint?"
	tapTagPrefix      = "necos-vim/1 tap?"
	// endpointPrefix names the parts' endpoint namespaces; it does not match the WAN
	// plugin's "necos-*" pattern, so the WAN plugin never scans them.
	endpointPrefix = "necosvm-"
	endpointDev    = "eth0"
)

func digest(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])[:12]
}

// tapName is a node's tap: "nt" and a digest of its domain (15 bytes at most).
func tapName(domain string) string { return "nt" + digest(domain) }

// EndpointNetns names the endpoint namespace of a provider's part.
func EndpointNetns(provider, slice, part string) string {
	return endpointPrefix + digest(provider, slice, part)
}

func vethName(ns string) string { return "ve" + digest(ns) }

func bridgeTag(provider, slice, part string) string {
	return ownerTag(bridgeTagPrefix, provider, slice, part, "")
}

// ownerTag is the alias the plugin gives a device it makes, saying whose it is, so that
// a sweep (sweep.go) finds what a killed process left: prefix says what the device is,
// then the provider, slice and part, and for a tap its domain. A tag too long for an
// alias (255 bytes) names the provider only; such a device is never swept.
func ownerTag(prefix, provider, slice, part, domain string) string {
	v := url.Values{}
	v.Set("p", provider)
	v.Set("s", slice)
	v.Set("part", part)
	if domain != "" {
		v.Set("d", domain)
	}
	a := prefix + v.Encode()
	if len(a) > 255 {
		a = prefix + "p=" + url.QueryEscape(provider)
	}
	return a
}

// tagOf reads a tag ownerTag made with prefix.
func tagOf(prefix, alias string) (t deviceTag, ok bool) {
	rest, found := strings.CutPrefix(alias, prefix)
	if !found {
		return t, false
	}
	v, err := url.ParseQuery(rest)
	if err != nil {
		return t, false
	}
	return deviceTag{provider: v.Get("p"), ref: sdk.PartRef{SliceID: v.Get("s"), PartID: v.Get("part")},
		domain: v.Get("d")}, true
}

// deviceTag is what a tag says.
type deviceTag struct {
	provider string
	ref      sdk.PartRef // empty in a shortened tag
	domain   string      // a tap's
}

func bridgeOwner(alias string) (provider string, ok bool) {
	t, ok := tagOf(bridgeTagPrefix, alias)
	return t.provider, ok
}

// handleIn opens a netlink handle in the named namespace ("" is the caller's).
func handleIn(name string) (*netlink.Handle, error) {
	if name == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(nsnet.Path(name))
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", name, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// ensureNamedNetns creates a named namespace when missing, on a locked thread that dies
// with its goroutine (creating one switches the thread into it).
func ensureNamedNetns(name string) error {
	if _, err := os.Stat(nsnet.Path(name)); err == nil {
		return nil
	}
	if err := nsnet.PrepareDir(); err != nil {
		return fmt.Errorf("create network namespace %s: %w", name, err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := netns.NewNamed(name)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			errc <- fmt.Errorf("create network namespace %s: %w", name, err)
			return
		}
		if err == nil {
			ns.Close()
		}
		errc <- nil
	}()
	return <-errc
}

// partNet is what a part's network is made of.
type partNet struct {
	provider, slice, part string
	netns, bridge         string
	endpoint              netip.Prefix // the endpoint's address, with the NICs' prefix length
}

func (n partNet) endpointNS() string { return EndpointNetns(n.provider, n.slice, n.part) }

// ensure makes the bridge and the endpoint namespace (idempotent).
func (n partNet) ensure() error {
	if n.netns != "" {
		if _, err := os.Stat(nsnet.Path(n.netns)); err != nil {
			return fmt.Errorf("site network namespace %s: %w", n.netns, err)
		}
	}
	h, err := handleIn(n.netns)
	if err != nil {
		return err
	}
	defer h.Close()
	br, err := h.LinkByName(n.bridge)
	if err != nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = n.bridge
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", n.bridge, err)
		}
		if br, err = h.LinkByName(n.bridge); err != nil {
			return fmt.Errorf("bridge %s: %w", n.bridge, err)
		}
		if br.Attrs().Alias == "" {
			_ = h.LinkSetAlias(br, bridgeTag(n.provider, n.slice, n.part))
		}
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("%s is a %s device, not a bridge", n.bridge, br.Type())
	}
	// No IPv6 link-local address on the bridge: it carries frames only.
	_ = h.LinkSetIP6AddrGenMode(br, 1)
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s up: %w", n.bridge, err)
	}
	if !n.endpoint.IsValid() {
		return nil
	}
	ep := n.endpointNS()
	if err := ensureNamedNetns(ep); err != nil {
		return err
	}
	eh, err := handleIn(ep)
	if err != nil {
		return err
	}
	defer eh.Close()
	// Whose the namespace is, on its loopback device: a namespace cannot carry a tag.
	if lo, err := eh.LinkByName("lo"); err == nil {
		if tag := ownerTag(endpointTagPrefix, n.provider, n.slice, n.part, ""); lo.Attrs().Alias != tag {
			_ = eh.LinkSetAlias(lo, tag)
		}
	}
	veth := vethName(ep)
	if _, err := eh.LinkByName(endpointDev); err != nil {
		if old, err := h.LinkByName(veth); err == nil {
			_ = h.LinkDel(old) // a half-made pair of a crashed call
		}
		target, err := netns.GetFromPath(nsnet.Path(ep))
		if err != nil {
			return err
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MasterIndex = veth, br.Attrs().Index
		v := &netlink.Veth{LinkAttrs: attrs, PeerName: endpointDev, PeerNamespace: netlink.NsFd(target)}
		err = h.LinkAdd(v)
		target.Close()
		if err != nil {
			return fmt.Errorf("veth %s to %s: %w", veth, ep, err)
		}
	}
	if l, err := h.LinkByName(veth); err == nil {
		_ = h.LinkSetIP6AddrGenMode(l, 1)
		if l.Attrs().MasterIndex != br.Attrs().Index {
			_ = h.LinkSetMaster(l, br)
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("veth %s up: %w", veth, err)
		}
	}
	dev, err := eh.LinkByName(endpointDev)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", endpointDev, ep, err)
	}
	a := n.endpoint
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
	if err := eh.AddrReplace(dev, addr); err != nil {
		return fmt.Errorf("address %s in %s: %w", a, ep, err)
	}
	for _, l := range []netlink.Link{dev} {
		if err := eh.LinkSetUp(l); err != nil {
			return err
		}
	}
	if lo, err := eh.LinkByName("lo"); err == nil {
		_ = eh.LinkSetUp(lo)
	}
	return nil
}

// remove deletes the endpoint namespace (its veth pair goes with it) and the bridge when
// the plugin made it and nothing is on it any more.
func (n partNet) remove() error {
	var errs []error
	ep := n.endpointNS()
	// The veth first: a deleted namespace is destroyed later, by the kernel, and its
	// end of the pair would keep the bridge busy until then.
	if h, err := handleIn(n.netns); err == nil {
		if l, err := h.LinkByName(vethName(ep)); err == nil {
			if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete veth %s: %w", l.Attrs().Name, err))
			}
		}
		h.Close()
	}
	if _, err := os.Stat(nsnet.Path(ep)); err == nil {
		if err := netns.DeleteNamed(ep); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", ep, err))
		}
	}
	if n.bridge != "" {
		if err := sweepBridge(n.netns, n.bridge, n.provider); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sweepBridge deletes bridge name in netns when it carries this provider's tag and has
// no port.
func sweepBridge(ns, name, provider string) error {
	h, err := handleIn(ns)
	if err != nil {
		if ns != "" && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer h.Close()
	br, err := h.LinkByName(name)
	if err != nil {
		return nil
	}
	if owner, ok := bridgeOwner(br.Attrs().Alias); !ok || owner != provider {
		return nil
	}
	links, err := h.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			return nil // a port someone still uses (a link's VXLAN device)
		}
	}
	if err := h.LinkDel(br); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// ensureTap makes a node's tap in the host namespace, down, tagged (ownerTag), or brings
// it back there from the site's namespace (a stopped node being started again).
func ensureTap(name, siteNS, tag string) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.LinkByName(name); err == nil {
		return nil
	}
	if siteNS != "" {
		sh, err := handleIn(siteNS)
		if err == nil {
			defer sh.Close()
			if l, err := sh.LinkByName(name); err == nil {
				_ = sh.LinkSetDown(l)
				host, err := netns.Get()
				if err != nil {
					return err
				}
				defer host.Close()
				if err := sh.LinkSetNsFd(l, int(host)); err != nil {
					return fmt.Errorf("bring tap %s back from %s: %w", name, siteNS, err)
				}
				return nil
			}
		}
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	tap := &netlink.Tuntap{LinkAttrs: attrs, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS}
	if err := h.LinkAdd(tap); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create tap %s: %w", name, err)
	}
	if l, err := h.LinkByName(name); err == nil {
		_ = h.LinkSetIP6AddrGenMode(l, 1)
		_ = h.LinkSetAlias(l, tag)
	}
	return nil
}

// plugTap moves a running node's tap into the site namespace, onto the bridge, up.
func plugTap(name, siteNS, bridge string) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	if siteNS != "" {
		if l, err := h.LinkByName(name); err == nil {
			target, err := netns.GetFromPath(nsnet.Path(siteNS))
			if err != nil {
				return err
			}
			err = h.LinkSetNsFd(l, int(target))
			target.Close()
			if err != nil {
				return fmt.Errorf("move tap %s to %s: %w", name, siteNS, err)
			}
		}
	}
	sh, err := handleIn(siteNS)
	if err != nil {
		return err
	}
	defer sh.Close()
	l, err := sh.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	br, err := sh.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	_ = sh.LinkSetIP6AddrGenMode(l, 1)
	if err := sh.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("tap %s onto %s: %w", name, bridge, err)
	}
	return sh.LinkSetUp(l)
}

// deleteTap removes a node's tap from wherever it is.
func deleteTap(name, siteNS string) error {
	nss := []string{""}
	if siteNS != "" {
		nss = append(nss, siteNS)
	}
	for _, ns := range nss {
		h, err := handleIn(ns)
		if err != nil {
			continue
		}
		l, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkDel(l)
		}
		h.Close()
		if err == nil || errors.As(err, new(netlink.LinkNotFoundError)) || errors.Is(err, unix.ENODEV) {
			continue
		}
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	return nil
}
