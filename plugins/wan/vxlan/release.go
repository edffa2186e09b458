package vxlan

import (
	"context"
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

var _ sdk.SiteReleaser = (*Plugin)(nil)

// ReleaseSites implements [sdk.SiteReleaser]: it removes the namespaces of the given
// sites that provision_sites built (the site's underlay address on wan0) when nothing
// else is in them, then the underlay namespace once no site's port is left on its
// bridge. A namespace holding anything more (a slice's bridge, a link's device, a
// guest's tap) is kept and its devices named: they belong to a slice.
func (p *Plugin) ReleaseSites(ctx context.Context, req sdk.ReleaseSitesRequest) (sdk.SiteRelease, error) {
	sites := req.Sites
	var out sdk.SiteRelease
	if err := p.begin(ctx); err != nil {
		return out, err
	}
	p.mu.Lock()
	cfg := p.cfg
	p.mu.Unlock()
	keep := func(s sdk.LinkEnd, format string, args ...any) {
		out.Kept = append(out.Kept, sdk.KeptSite{Site: s.Site, Netns: s.Netns, Reason: fmt.Sprintf(format, args...)})
	}
	// Provisioning and release of sites exclude each other: a site is never removed
	// while a connect builds it.
	p.provMu.Lock()
	defer p.provMu.Unlock()
	seen := map[string]bool{}
	for _, s := range sites {
		switch {
		case s.Netns == "":
			keep(s, "in the host's network namespace, which is never removed")
			continue
		case seen[s.Netns]:
			continue
		}
		seen[s.Netns] = true
		if cfg.Provision == nil {
			keep(s, "this WAN provider builds no sites (its configuration has no provision_sites)")
			continue
		}
		if !cfg.managesNetns(s.Netns) {
			keep(s, "namespace %s is not one this WAN provider manages (netns %v)", s.Netns, cfg.Netns)
			continue
		}
		if _, err := os.Stat(filepath.Join(p.nsDir, s.Netns)); errors.Is(err, os.ErrNotExist) {
			continue // already gone
		}
		removed, why, err := p.releaseSite(s)
		if err != nil {
			return out, sdk.Errorf(sdk.CodeInternal, "release site %s (namespace %s): %v", s.Site, s.Netns, err)
		}
		if !removed {
			keep(s, "%s", why)
			continue
		}
		out.Removed = append(out.Removed, s.Netns)
		p.log.Info("released site", "site", s.Site, "netns", s.Netns)
	}
	if cfg.Provision != nil && len(out.Removed) > 0 {
		ul := cfg.Provision.withDefaults().UnderlayNetns
		gone, err := p.releaseUnderlay(ul)
		if err != nil {
			return out, sdk.Errorf(sdk.CodeInternal, "release underlay namespace %s: %v", ul, err)
		}
		if gone {
			out.Removed = append(out.Removed, ul)
			p.log.Info("released the underlay", "netns", ul)
		}
	}
	return out, nil
}

// releaseSite removes site s's namespace when it holds only what provisioning made
// (lo, and wan0 with the site's underlay address); otherwise it says why not.
func (p *Plugin) releaseSite(s sdk.LinkEnd) (bool, string, error) {
	h, err := p.handle(s.Netns)
	if err != nil {
		return false, "", err
	}
	links, err := h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return false, "", fmt.Errorf("list devices: %w", err)
	}
	var wan netlink.Link
	var others []string
	for _, l := range links {
		switch name := l.Attrs().Name; name {
		case "lo":
		case siteDevice:
			wan = l
		default:
			others = append(others, name)
		}
	}
	if len(others) > 0 {
		sort.Strings(others)
		return false, fmt.Sprintf("in use: namespace %s holds %s (a slice's bridge, link or guest)",
			s.Netns, strings.Join(others, ", ")), nil
	}
	ip := net.ParseIP(s.Underlay)
	if wan == nil || ip == nil {
		return false, fmt.Sprintf("not built by this WAN provider: namespace %s has no %s holding %s", s.Netns, siteDevice, s.Underlay), nil
	}
	if d, err := underlayDevice(h, ip); err != nil {
		return false, "", err
	} else if d == nil || d.Attrs().Index != wan.Attrs().Index {
		return false, fmt.Sprintf("not built by this WAN provider: %s in namespace %s does not hold %s", siteDevice, s.Netns, s.Underlay), nil
	}
	// wan0 first: deleting one end of the veth deletes its peer on the underlay bridge at
	// once, where the namespace's own teardown would do it later, in the background.
	if err := h.LinkDel(wan); err != nil && !isGone(err) {
		return false, "", fmt.Errorf("delete %s: %w", siteDevice, err)
	}
	p.dropConn(s.Netns)
	if err := netns.DeleteNamed(s.Netns); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, "", fmt.Errorf("delete namespace: %w", err)
	}
	return true, "", nil
}

// releaseUnderlay removes the underlay namespace when its bridge has no port left (every
// site on it is gone) and it holds nothing else.
func (p *Plugin) releaseUnderlay(ns string) (bool, error) {
	if _, err := os.Stat(filepath.Join(p.nsDir, ns)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	h, err := p.handle(ns)
	if err != nil {
		return false, err
	}
	links, err := h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return false, fmt.Errorf("list devices: %w", err)
	}
	for _, l := range links {
		if n := l.Attrs().Name; n != "lo" && n != underlayBridge {
			return false, nil // another site's port, or someone else's device
		}
	}
	p.dropConn(ns)
	if err := netns.DeleteNamed(ns); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("delete namespace: %w", err)
	}
	return true, nil
}
