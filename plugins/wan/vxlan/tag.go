package vxlan

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/necos/necos/sdk"
)

// The plugin keeps no state of its own: what it knows of a link is written on the link's
// VXLAN devices (their IFLA_IFALIAS) and read back from them, so a restarted plugin finds
// every link again. A bridge the plugin created carries a bridge tag (bridgeAlias, then
// the provider, slice and part it was made for), which is what allows the plugin to
// delete it later: a bridge without one is never removed.
const (
	tagPrefix   = "necos-wan/1?"
	bridgeAlias = "necos-wan/1 bridge"
	// maxAlias is IFALIASZ (256) less the terminating NUL.
	maxAlias = 255
)

// tag is what a link's VXLAN device at one end records of the link.
type tag struct {
	Provider string
	Ref      sdk.LinkRef
	// End is 1 or 2: which end of the spec this device is.
	End int
	// Site, Part and Bridge are this end's; PeerSite the other end's site.
	Site, Part, Bridge string
	PeerSite           string
	BandwidthBps       uint64
	// Name is the link's name; dropped from the alias when it does not fit.
	Name string
	// VNI and Underlay are recorded on a local link's devices (veths carry neither);
	// zero and "" on a VXLAN device, which holds them itself.
	VNI      uint32
	Underlay string
}

// encode returns the device alias for t. The name is left out when the whole would
// not fit the kernel's alias size; the rest must fit.
func (t tag) encode() (string, error) {
	v := url.Values{}
	v.Set("p", t.Provider)
	v.Set("s", t.Ref.SliceID)
	v.Set("l", t.Ref.LinkID)
	v.Set("e", strconv.Itoa(t.End))
	v.Set("site", t.Site)
	v.Set("part", t.Part)
	v.Set("br", t.Bridge)
	v.Set("ps", t.PeerSite)
	v.Set("bw", strconv.FormatUint(t.BandwidthBps, 10))
	if t.VNI != 0 {
		v.Set("vni", strconv.FormatUint(uint64(t.VNI), 10))
		v.Set("ul", t.Underlay)
	}
	bare := tagPrefix + v.Encode()
	if len(bare) > maxAlias {
		return "", sdk.Errorf(sdk.CodeInvalidArgument,
			"ref, sites, part and bridge of end%d are too long to be recorded on the device (%d bytes of alias, at most %d)",
			t.End, len(bare), maxAlias)
	}
	if t.Name == "" {
		return bare, nil
	}
	v.Set("n", t.Name)
	if full := tagPrefix + v.Encode(); len(full) <= maxAlias {
		return full, nil
	}
	return bare, nil
}

// parseTag reads a device alias written by encode; ok is false for any other alias.
func parseTag(alias string) (t tag, ok bool) {
	rest, found := strings.CutPrefix(alias, tagPrefix)
	if !found {
		return tag{}, false
	}
	v, err := url.ParseQuery(rest)
	if err != nil {
		return tag{}, false
	}
	end, err := strconv.Atoi(v.Get("e"))
	if err != nil || (end != 1 && end != 2) {
		return tag{}, false
	}
	bw, err := strconv.ParseUint(v.Get("bw"), 10, 64)
	if err != nil {
		return tag{}, false
	}
	var vni uint64
	if raw := v.Get("vni"); raw != "" {
		if vni, err = strconv.ParseUint(raw, 10, 32); err != nil || vni == 0 || vni > maxVNI {
			return tag{}, false
		}
	}
	t = tag{
		VNI:          uint32(vni),
		Underlay:     v.Get("ul"),
		Provider:     v.Get("p"),
		Ref:          sdk.LinkRef{SliceID: v.Get("s"), LinkID: v.Get("l")},
		End:          end,
		Site:         v.Get("site"),
		Part:         v.Get("part"),
		Bridge:       v.Get("br"),
		PeerSite:     v.Get("ps"),
		BandwidthBps: bw,
		Name:         v.Get("n"),
	}
	if t.Ref.SliceID == "" || t.Ref.LinkID == "" {
		return tag{}, false
	}
	return t, true
}

// bridgeTag is what a bridge the plugin made records: whose it is. Bridges made by
// earlier versions carry the bare bridgeAlias, read as a tag with no provider.
type bridgeTag struct {
	Provider string
	SliceID  string
	Part     string
}

// encode returns the bridge's alias; what does not fit is left out, part first.
func (b bridgeTag) encode() string {
	v := url.Values{}
	v.Set("p", b.Provider)
	v.Set("s", b.SliceID)
	v.Set("part", b.Part)
	if a := bridgeAlias + "?" + v.Encode(); len(a) <= maxAlias {
		return a
	}
	v.Del("part")
	if a := bridgeAlias + "?" + v.Encode(); len(a) <= maxAlias {
		return a
	}
	return bridgeAlias
}

// parseBridgeTag reads a bridge alias written by encode (or by an earlier version).
func parseBridgeTag(alias string) (bridgeTag, bool) {
	if alias == bridgeAlias {
		return bridgeTag{}, true
	}
	rest, found := strings.CutPrefix(alias, bridgeAlias+"?")
	if !found {
		return bridgeTag{}, false
	}
	v, err := url.ParseQuery(rest)
	if err != nil {
		return bridgeTag{}, false
	}
	return bridgeTag{Provider: v.Get("p"), SliceID: v.Get("s"), Part: v.Get("part")}, true
}

// ownedBy reports whether a bridge with this tag is provider's to collect. A bridge of
// an earlier version names no provider: whichever instance finds it unused may remove it.
func (b bridgeTag) ownedBy(provider string) bool { return b.Provider == "" || b.Provider == provider }

// Devices are created under a temporary name, tagged, then renamed: the kernel ignores
// IFLA_IFALIAS when it creates a device, so a process killed between the creation and
// the alias would otherwise leave a device nobody could tell as the plugin's. The
// temporary name says whose it is (tempPrefix, then a digest of the provider), so the
// provider's next collection removes it.
const (
	tempPrefix    = "nwt"
	tempOwnerLen  = 4 // hex digits of the provider's digest
	tempRandomLen = 8 // hex digits of randomness: 3 + 4 + 8 = 15 = IFNAMSIZ - 1
)

// tempOwner is the part of temporary names that identifies the provider.
func tempOwner(provider string) string {
	sum := sha256.Sum256([]byte(provider))
	return tempPrefix + hex.EncodeToString(sum[:])[:tempOwnerLen]
}

// tempName returns a fresh temporary device name of the provider.
func tempName(provider string) string {
	b := make([]byte, tempRandomLen/2)
	_, _ = rand.Read(b)
	return tempOwner(provider) + hex.EncodeToString(b)
}

// isTempOf reports whether name is a temporary device name of provider.
func isTempOf(name, provider string) bool {
	return len(name) == len(tempPrefix)+tempOwnerLen+tempRandomLen && strings.HasPrefix(name, tempOwner(provider))
}

// localName is the name of end n (1 or 2) of a local link: a veth pair joining two
// bridges of one site ("vl16777215e1" is 12 bytes).
func localName(vni uint32, n int) string { return fmt.Sprintf("vl%de%d", vni, n) }

// deviceName is the name of a link's VXLAN device at either end. VNIs are unique per
// link, so the name is too, and it fits IFNAMSIZ ("vx16777215" is 10 bytes).
func deviceName(vni uint32) string { return fmt.Sprintf("vx%d", vni) }
