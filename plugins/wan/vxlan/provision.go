package vxlan

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ProvisionConfig makes the plugin build the sites of a one-machine federation: a named
// namespace per site, joined by an underlay bridge in a namespace of its own, each site
// holding its underlay address on a device wan0. Sites are made on first use (an offer
// or a connect naming them) and kept: they are the federation's fixed network, not any
// link's. Ends in the host's namespace are never touched.
type ProvisionConfig struct {
	// UnderlayNetns is the namespace of the underlay bridge; default necos-underlay.
	UnderlayNetns string `json:"underlay_netns"`
	// PrefixLen is the prefix length of the sites' underlay addresses; default 24.
	PrefixLen int `json:"prefix_len"`
}

const (
	defaultUnderlayNetns = "necos-underlay"
	underlayBridge       = "underlay0"
	siteDevice           = "wan0"
)

func (c *ProvisionConfig) withDefaults() ProvisionConfig {
	out := *c
	if out.UnderlayNetns == "" {
		out.UnderlayNetns = defaultUnderlayNetns
	}
	if out.PrefixLen == 0 {
		out.PrefixLen = 24
	}
	return out
}

// provisionSites makes the sites of spec's ends that are missing, when configured to.
func (p *Plugin) provisionSites(spec sdk.LinkSpec) error {
	if p.cfg.Provision == nil {
		return nil
	}
	pc := p.cfg.Provision.withDefaults()
	for _, end := range []sdk.LinkEnd{spec.End1, spec.End2} {
		if end.Netns == "" || p.siteReady(end) {
			continue
		}
		p.provMu.Lock()
		err := p.provisionSite(pc, end)
		p.provMu.Unlock()
		if err != nil {
			return sdk.Errorf(sdk.CodeFailedPrecondition, "provision site %s (namespace %s, underlay %s): %v",
				end.Site, end.Netns, end.Underlay, err)
		}
	}
	return nil
}

// siteReady reports whether end's site holds its underlay address already.
func (p *Plugin) siteReady(end sdk.LinkEnd) bool {
	ip := net.ParseIP(end.Underlay)
	if ip == nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(p.nsDir, end.Netns)); err != nil {
		return false
	}
	d, err := p.underlay(end.Netns, ip)
	return err == nil && d != nil
}

func (p *Plugin) provisionSite(pc ProvisionConfig, end sdk.LinkEnd) error {
	ip := net.ParseIP(end.Underlay)
	if ip == nil {
		return fmt.Errorf("underlay %q is not an IP address", end.Underlay)
	}
	if err := ensureNamed(p.nsDir, end.Netns); err != nil {
		return err
	}
	h, err := p.handle(end.Netns)
	if err != nil {
		return err
	}
	if d, err := underlayDevice(h, ip); err != nil {
		return err
	} else if d != nil {
		return nil // the site is there
	}
	if err := ensureNamed(p.nsDir, pc.UnderlayNetns); err != nil {
		return err
	}
	uh, err := p.handle(pc.UnderlayNetns)
	if err != nil {
		return err
	}
	br, err := uh.LinkByName(underlayBridge)
	if err != nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = underlayBridge
		if err := uh.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("underlay bridge: %w", err)
		}
		if br, err = uh.LinkByName(underlayBridge); err != nil {
			return fmt.Errorf("underlay bridge: %w", err)
		}
	}
	if err := uh.LinkSetUp(br); err != nil {
		return fmt.Errorf("underlay bridge up: %w", err)
	}

	// The site's device and its peer on the underlay bridge; the peer's name is a digest
	// of the site's namespace (interface names have at most 15 bytes).
	sum := sha256.Sum256([]byte(end.Netns))
	peer := "ul" + hex.EncodeToString(sum[:])[:12]
	dev, err := h.LinkByName(siteDevice)
	if err != nil {
		target, err := netns.GetFromName(end.Netns)
		if err != nil {
			return err
		}
		defer target.Close()
		attrs := netlink.NewLinkAttrs()
		attrs.Name = peer
		attrs.MasterIndex = br.Attrs().Index
		v := netlink.NewVeth(attrs)
		v.PeerName, v.PeerNamespace = siteDevice, netlink.NsFd(target)
		if err := uh.LinkAdd(v); err != nil {
			return fmt.Errorf("veth %s/%s: %w", peer, siteDevice, err)
		}
		if dev, err = h.LinkByName(siteDevice); err != nil {
			return err
		}
	}
	if l, err := uh.LinkByName(peer); err == nil {
		if err := uh.LinkSetUp(l); err != nil {
			return err
		}
	}
	bits := 32
	if ip.To4() == nil {
		bits = 128
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(pc.PrefixLen, bits)}}
	if err := h.AddrAdd(dev, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("address %s on %s: %w", addr, siteDevice, err)
	}
	for _, name := range []string{"lo", siteDevice} {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s up: %w", name, err)
		}
	}
	p.log.Info("provisioned site", "site", end.Site, "netns", end.Netns, "underlay", end.Underlay)
	return nil
}

// ensureNamed creates the named network namespace when it does not exist. Creating one
// switches the calling thread into it, so it is done on a locked thread of its own that
// switches back (or, failing that, dies with its goroutine).
func ensureNamed(dir, name string) error {
	if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
		return nil
	}
	if err := nsnet.PrepareDir(); err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			errc <- fmt.Errorf("create namespace %s: %w", name, err)
			return
		}
		ns.Close()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("switch back from namespace %s: %w", name, err)
			return // the thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}
