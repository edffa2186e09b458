package vxlan

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/necos/necos/sdk"
)

// The plugin keeps no state of its own: what it knows of a link is written on the link's
// VXLAN devices (their IFLA_IFALIAS) and read back from them, so a restarted plugin finds
// every link again. A bridge the plugin created carries bridgeAlias, which is what allows
// the plugin to delete it later: a bridge without it is never removed.
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
	t = tag{
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

// deviceName is the name of a link's VXLAN device at either end. VNIs are unique per
// link, so the name is too, and it fits IFNAMSIZ ("vx16777215" is 10 bytes).
func deviceName(vni uint32) string { return fmt.Sprintf("vx%d", vni) }
