package sdk

import "context"

// WAN builds net slice parts: links joining the per-slice bridges of two DC slice parts
// at different sites. Every call is idempotent and keyed by [LinkRef], and takes one
// request struct, which the SDK validates (its Validate method) before the plugin sees
// it.
//
// Errors carry a [Code], one per kind of failure, the same in every WAN plugin:
//   - CodeInvalidArgument: a malformed link (see [LinkSpec.Validate]) or one this plugin
//     cannot build at all (a namespace it does not manage, a rate below what it shapes);
//   - CodeNotFound: an unknown link (DescribeLink; Disconnect of one is done);
//   - CodeAlreadyExists: a VNI that another link holds;
//   - CodeUnavailable: the backend does not answer.
//
// A link the plugin could build but not now (no bandwidth left) is refused by OfferLink
// with Accepted false, not an error.
type WAN interface {
	// OfferLink says whether the link can be built and at what price. A refusal is an
	// offer with Accepted false and a Reason, not an error.
	OfferLink(ctx context.Context, req OfferLinkRequest) (LinkOffer, error)
	// Connect builds the link (and the bridges it needs) and returns it with State
	// StateReady. Asking for a VNI that another link holds is CodeAlreadyExists.
	Connect(ctx context.Context, req ConnectRequest) (Link, error)
	// DescribeLink returns the link as the backend holds it now: State StateReady, or
	// StateFailed with a Message saying what is wrong at which end.
	DescribeLink(ctx context.Context, req DescribeLinkRequest) (Link, error)
	// Disconnect removes every device the link made; an unknown link is not an error.
	Disconnect(ctx context.Context, req DisconnectRequest) error
}

// LinkRef names a net slice part: the slice's id and the link's id within it.
type LinkRef struct {
	SliceID string
	LinkID  string
}

// String returns "slice/link".
func (r LinkRef) String() string { return r.SliceID + "/" + r.LinkID }

// Validate checks that both ids are set.
func (r LinkRef) Validate() error {
	if r.SliceID == "" || r.LinkID == "" {
		return Errorf(CodeInvalidArgument, "ref: slice_id and link_id are required (got %q)", r.String())
	}
	return nil
}

// LinkEnd is one side of a link: a DC part's bridge at its provider's site.
type LinkEnd struct {
	// Site is the provider's name.
	Site string
	// Part is the DC part's name.
	Part string
	// Underlay is the site's WAN endpoint address.
	Underlay string
	// Netns is the named network namespace holding the site's devices; empty is the host's.
	Netns string
	// Bridge is the part's per-slice bridge: a Linux interface name, at most 15 bytes.
	Bridge string
}

// LinkSpec is a link to build.
type LinkSpec struct {
	Ref  LinkRef
	Name string
	End1 LinkEnd
	End2 LinkEnd
	// BandwidthBps is the rate limit in bits per second in each direction; zero is none.
	BandwidthBps uint64
	// VNI is the VXLAN network identifier chosen by the caller; zero lets the plugin choose.
	VNI uint32
}

// Link is a link as the backend holds it.
type Link struct {
	Ref          LinkRef
	Name         string
	State        string
	Message      string
	VNI          uint32
	End1         LinkEnd
	End2         LinkEnd
	BandwidthBps uint64
}

// LinkOffer is the answer to "can you build this link?".
type LinkOffer struct {
	Accepted    bool
	Reason      string
	PricePerDay float64
	// AvailableBps is the bandwidth still free between the two sites.
	AvailableBps uint64
	// CapacityBps is the total bandwidth between the two sites.
	CapacityBps uint64
}

// SiteReleaser is served by a WAN plugin that builds sites itself (a one-machine
// federation, where each site is a network namespace the plugin made on first use). It
// is optional: a plugin without it answers CodeUnimplemented, which callers read as
// "nothing to release".
type SiteReleaser interface {
	// ReleaseSites removes the given sites that the plugin built and that nothing uses
	// (no device but the plugin's own underlay device in the site's namespace), and the
	// underlay joining them once no site is left on it. Only each end's Site, Underlay and
	// Netns are read. A site still in use, or not built by the plugin, is kept and said
	// why; a site already gone is neither removed nor kept.
	ReleaseSites(ctx context.Context, req ReleaseSitesRequest) (SiteRelease, error)
}

// SiteRelease is what [SiteReleaser.ReleaseSites] did.
type SiteRelease struct {
	// Removed lists the network namespaces removed.
	Removed []string
	// Kept lists the sites kept, with why.
	Kept []KeptSite
}

// KeptSite is a site that was not released, and why.
type KeptSite struct {
	Site   string
	Netns  string
	Reason string
}
