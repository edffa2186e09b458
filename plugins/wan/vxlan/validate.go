package vxlan

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/necos/necos/sdk"
)

// ownNames matches the plugin's own device names (VXLAN devices, and the temporary names
// devices are created under), which a bridge may not take.
var ownNames = regexp.MustCompile(`^(vx[0-9]+|vl[0-9]+e[12]|` + tempPrefix + `[0-9a-f]{12})$`)

// validateSpec reports every problem of a link spec that is this plugin's to find, at
// once, each naming its field: what every WAN plugin needs of a link (ids, sites,
// underlay addresses, bridge and namespace names, a 24-bit VNI) the SDK has checked
// before the call ([sdk.LinkSpec.Validate]). It reads the provider name, so it runs
// under p.mu.
func (p *Plugin) validateSpec(s sdk.LinkSpec) error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ips := [2]net.IP{}
	for i, e := range []sdk.LinkEnd{s.End1, s.End2} {
		f := fmt.Sprintf("end%d", i+1)
		ips[i] = net.ParseIP(e.Underlay)
		if msg := ifnameProblem(e.Bridge); msg != "" {
			add("%s.bridge: %s", f, msg)
		}
		switch {
		case e.Netns == "":
		case !p.cfg.managesNetns(e.Netns):
			add("%s.netns: %q is not among the namespaces this plugin manages (config netns: %q)", f, e.Netns, p.cfg.Netns)
		}
	}
	if ips[0] != nil && ips[1] != nil && (ips[0].To4() == nil) != (ips[1].To4() == nil) {
		add("end2.underlay: %s and end1's %s are of different IP families", ips[1], ips[0])
	}
	switch {
	case s.End1 == s.End2:
		// The SDK has refused it.
	case isLocal(s):
		if s.End1.Bridge == s.End2.Bridge {
			add("end2.bridge: %q is end1's bridge too (a local link joins two bridges of one site)", s.End2.Bridge)
		}
	default:
		if s.End1.Site != "" && s.End1.Site == s.End2.Site {
			add("end2.site: %q is end1's site too (a link joins two different sites)", s.End2.Site)
		}
		if s.End1.Netns == s.End2.Netns {
			add("end2.netns: %q is end1's network namespace too (each site's devices live in their own)", s.End2.Netns)
		}
		if ips[0] != nil && ips[0].Equal(ips[1]) {
			add("end2.underlay: %s is end1's underlay too", ips[1])
		}
	}
	if s.BandwidthBps != 0 && s.BandwidthBps < minBandwidthBps {
		add("bandwidth_bps: %d is below the smallest rate %d bit/s (0 means no limit)", s.BandwidthBps, minBandwidthBps)
	}
	if len(problems) > 0 {
		return sdk.Errorf(sdk.CodeInvalidArgument, "link %s: %s", s.Ref, strings.Join(problems, "; "))
	}
	// The ids must fit on the devices; check with this plugin's provider name.
	for n, e := range []sdk.LinkEnd{s.End1, s.End2} {
		peer := s.End2
		if n == 1 {
			peer = s.End1
		}
		t := tag{Provider: p.provider, Ref: s.Ref, End: n + 1, Site: e.Site, Part: e.Part, Bridge: e.Bridge,
			PeerSite: peer.Site, BandwidthBps: s.BandwidthBps}
		if isLocal(s) {
			t.VNI, t.Underlay = maxVNI, canonicalIP(e.Underlay)
		}
		if _, err := t.encode(); err != nil {
			return fmt.Errorf("link %s: %w", s.Ref, err)
		}
	}
	return nil
}

// isLocal reports whether a link joins two bridges of one site: both ends at the same
// site, in the same namespace, with the same underlay address. Such a link is a veth
// pair between the two bridges, rate-limited like a tunnel, rather than a VXLAN tunnel
// to itself.
func isLocal(s sdk.LinkSpec) bool {
	return s.End1.Site != "" && s.End1.Site == s.End2.Site && s.End1.Netns == s.End2.Netns &&
		s.End1.Underlay != "" && canonicalIP(s.End1.Underlay) == canonicalIP(s.End2.Underlay)
}

// ifnameProblem says what is wrong with a device name for this plugin, or "": the SDK
// has checked that it is a Linux interface name ([sdk.LinkSpec.Validate]).
func ifnameProblem(name string) string {
	switch {
	case ownNames.MatchString(name):
		return fmt.Sprintf("%q is reserved for the plugin's own devices (vx<VNI>, vl<VNI>e1, vl<VNI>e2, %s<12 hex digits>)", name, tempPrefix)
	}
	return ""
}

// canonicalIP returns ip's canonical form, or s unchanged when it is not an address.
func canonicalIP(s string) string {
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return s
}
