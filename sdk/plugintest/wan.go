package plugintest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/necos/necos/sdk"
)

// WANOptions says what [RunWAN] may use.
type WANOptions struct {
	// Ends are the places the suite joins: at least two, at most three, each at its own
	// site. Site, Underlay and Netns are used as given; Part and Bridge are chosen by
	// the suite (fresh bridge names per run, so links never join the same two bridges
	// twice and never meet bridges of anything else). Ends[0] and Ends[1] carry most
	// checks; a third end adds the check that two links can share Ends[0]'s bridge.
	//
	// The sites must not be used by anything else while the suite runs: it checks that
	// the bandwidth offered between Ends[0] and Ends[1] drops by exactly what it connects.
	Ends []sdk.LinkEnd
	// BandwidthBps is the rate of the links the suite builds, in bits per second each
	// direction. Zero means 10 Mbit/s. The plugin must offer at least this much between
	// Ends[0] and Ends[1].
	BandwidthBps uint64
}

// wanDefaultBps is the suite's link rate when WANOptions.BandwidthBps is zero.
const wanDefaultBps = 10_000_000

// RunWAN runs the WAN conformance suite against client, whose plugin must serve
// [sdk.KindWAN] and be configured. Every check is a subtest:
//
//   - Connect is idempotent: a second Connect returns the same link and VNI.
//   - DescribeLink after Connect reports the spec: VNI, both ends (site, underlay,
//     netns, bridge) and the bandwidth, in state [sdk.StateReady].
//   - A caller's VNI is kept, and a Connect asking for a VNI another link holds fails
//     with CodeAlreadyExists; links connected at the same time never share a VNI.
//   - Disconnect is idempotent, a disconnected link is NotFound, and disconnecting an
//     unknown link is not an error; DescribeLink of an unknown link is CodeNotFound.
//   - OfferLink reports the bandwidth left between two sites, which drops by a
//     connected link's rate and comes back after Disconnect; an offer above it is
//     refused with a reason (Accepted false), not an error.
//   - Bad requests (missing ref ids, an end without underlay or bridge, the same end
//     twice) get CodeInvalidArgument from OfferLink, Connect, DescribeLink and
//     Disconnect, and leave nothing behind.
//   - With three ends: two links of one slice share Ends[0]'s bridge, and removing one
//     leaves the other intact.
//
// Every link the suite connects is disconnected in t.Cleanup, also when a check fails.
func RunWAN(t *testing.T, client *sdk.Client, opts WANOptions) {
	t.Helper()
	if len(opts.Ends) < 2 || len(opts.Ends) > 3 {
		t.Fatalf("RunWAN: WANOptions.Ends: need 2 or 3 ends, got %d", len(opts.Ends))
	}
	if opts.BandwidthBps == 0 {
		opts.BandwidthBps = wanDefaultBps
	}
	wan, err := client.WAN()
	if err != nil {
		t.Fatalf("RunWAN: %v", err)
	}
	s := &wanSuite{wan: wan, opts: opts, run: wanRandomHex(4)}

	t.Run("BadRequests", s.testBadRequests)
	t.Run("ConnectIsIdempotent", s.testConnectIdempotent)
	t.Run("DescribeMatches", s.testDescribeMatches)
	t.Run("CallerVNI", s.testCallerVNI)
	t.Run("VNIsAreUnique", s.testVNIsUnique)
	t.Run("DisconnectIsIdempotent", s.testDisconnectIdempotent)
	t.Run("DescribeUnknown", s.testDescribeUnknown)
	t.Run("OfferBandwidth", s.testOfferBandwidth)
	if len(opts.Ends) == 3 {
		t.Run("SharedBridge", s.testSharedBridge)
	}
}

type wanSuite struct {
	wan  sdk.WAN
	opts WANOptions
	// run makes the ids and bridge names of this run unique.
	run string

	mu     sync.Mutex
	slices map[string]int // slice id -> its number in this run
}

// slice returns a fresh slice id; every slice has its own bridges.
func (s *wanSuite) slice() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slices == nil {
		s.slices = map[string]int{}
	}
	n := len(s.slices) + 1
	id := fmt.Sprintf("conf-%s-%d", s.run, n)
	s.slices[id] = n
	return id
}

// bridgeName is unique per run, slice and end, and fits IFNAMSIZ (at most 15 bytes:
// "cb" + 8 hex digits + up to 3 digits + the end's letter).
func (s *wanSuite) bridgeName(slice string, end int) string {
	s.mu.Lock()
	n := s.slices[slice]
	s.mu.Unlock()
	return fmt.Sprintf("cb%s%d%c", s.run, n%1000, 'a'+end)
}

// spec returns a link from Ends[a] to Ends[b] in slice, with the suite's bandwidth.
func (s *wanSuite) spec(slice, link string, a, b int) sdk.LinkSpec {
	end := func(i int) sdk.LinkEnd {
		e := s.opts.Ends[i]
		e.Part = fmt.Sprintf("part-%d", i)
		e.Bridge = s.bridgeName(slice, i)
		return e
	}
	return sdk.LinkSpec{
		Ref:          sdk.LinkRef{SliceID: slice, LinkID: link},
		Name:         fmt.Sprintf("%s-%d-to-%d", link, a, b),
		End1:         end(a),
		End2:         end(b),
		BandwidthBps: s.opts.BandwidthBps,
	}
}

// connect connects spec and disconnects it when the test ends.
func (s *wanSuite) connect(t *testing.T, spec sdk.LinkSpec) sdk.Link {
	t.Helper()
	s.cleanup(t, spec.Ref)
	l, err := s.wan.Connect(ctx(t), sdk.ConnectRequest{Link: spec})
	if err != nil {
		t.Fatalf("Connect %s: %v", spec.Ref, err)
	}
	return l
}

// cleanup disconnects ref when the test ends, with a context of its own because the
// test's may be gone by then.
func (s *wanSuite) cleanup(t *testing.T, ref sdk.LinkRef) {
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if err := s.wan.Disconnect(c, sdk.DisconnectRequest{Ref: ref}); err != nil {
			t.Errorf("cleanup: Disconnect %s: %v", ref, err)
		}
	})
}

func (s *wanSuite) testBadRequests(t *testing.T) {
	slice := s.slice()
	good := s.spec(slice, "bad", 0, 1)
	cases := []struct {
		name string
		mod  func(*sdk.LinkSpec)
	}{
		{"missing slice id", func(l *sdk.LinkSpec) { l.Ref.SliceID = "" }},
		{"missing link id", func(l *sdk.LinkSpec) { l.Ref.LinkID = "" }},
		{"end1 without underlay", func(l *sdk.LinkSpec) { l.End1.Underlay = "" }},
		{"end2 without underlay", func(l *sdk.LinkSpec) { l.End2.Underlay = "" }},
		{"end1 without bridge", func(l *sdk.LinkSpec) { l.End1.Bridge = "" }},
		{"end2 without bridge", func(l *sdk.LinkSpec) { l.End2.Bridge = "" }},
		{"same end twice", func(l *sdk.LinkSpec) { l.End2 = l.End1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := good
			tc.mod(&spec)
			if spec.Ref.SliceID != "" && spec.Ref.LinkID != "" {
				// A plugin that wrongly accepted the request must not leak the link.
				s.cleanup(t, spec.Ref)
			}
			if _, err := s.wan.OfferLink(ctx(t), sdk.OfferLinkRequest{Link: spec}); sdk.CodeOf(err) != sdk.CodeInvalidArgument {
				t.Errorf("OfferLink: got %v (code %s), want CodeInvalidArgument", err, sdk.CodeOf(err))
			}
			if _, err := s.wan.Connect(ctx(t), sdk.ConnectRequest{Link: spec}); sdk.CodeOf(err) != sdk.CodeInvalidArgument {
				t.Errorf("Connect: got %v (code %s), want CodeInvalidArgument", err, sdk.CodeOf(err))
			}
			if spec.Ref.SliceID != "" && spec.Ref.LinkID != "" {
				if _, err := s.wan.DescribeLink(ctx(t), sdk.DescribeLinkRequest{Ref: spec.Ref}); !sdk.IsNotFound(err) {
					t.Errorf("DescribeLink after a refused Connect: got %v, want CodeNotFound (nothing made)", err)
				}
			}
		})
	}
	t.Run("empty ref", func(t *testing.T) {
		if _, err := s.wan.DescribeLink(ctx(t), sdk.DescribeLinkRequest{Ref: sdk.LinkRef{}}); sdk.CodeOf(err) != sdk.CodeInvalidArgument {
			t.Errorf("DescribeLink: got %v (code %s), want CodeInvalidArgument", err, sdk.CodeOf(err))
		}
		if err := s.wan.Disconnect(ctx(t), sdk.DisconnectRequest{Ref: sdk.LinkRef{SliceID: slice}}); sdk.CodeOf(err) != sdk.CodeInvalidArgument {
			t.Errorf("Disconnect: got %v (code %s), want CodeInvalidArgument", err, sdk.CodeOf(err))
		}
	})
}

func (s *wanSuite) testConnectIdempotent(t *testing.T) {
	spec := s.spec(s.slice(), "idem", 0, 1)
	first := s.connect(t, spec)
	if first.VNI == 0 {
		t.Fatalf("Connect %s returned VNI 0", spec.Ref)
	}
	second, err := s.wan.Connect(ctx(t), sdk.ConnectRequest{Link: spec})
	if err != nil {
		t.Fatalf("second Connect %s: %v", spec.Ref, err)
	}
	if second.VNI != first.VNI {
		t.Errorf("second Connect: VNI %d, first gave %d", second.VNI, first.VNI)
	}
	if second.Ref != spec.Ref {
		t.Errorf("second Connect: ref %s, want %s", second.Ref, spec.Ref)
	}
	// Asking again with the VNI the plugin chose is the same request.
	spec.VNI = first.VNI
	third, err := s.wan.Connect(ctx(t), sdk.ConnectRequest{Link: spec})
	if err != nil {
		t.Fatalf("Connect %s with its own VNI %d: %v", spec.Ref, first.VNI, err)
	}
	if third.VNI != first.VNI {
		t.Errorf("Connect with its own VNI: VNI %d, want %d", third.VNI, first.VNI)
	}
}

func (s *wanSuite) testDescribeMatches(t *testing.T) {
	spec := s.spec(s.slice(), "desc", 0, 1)
	made := s.connect(t, spec)
	wanCheckLink(t, "Connect", made, spec, made.VNI)
	got, err := s.wan.DescribeLink(ctx(t), sdk.DescribeLinkRequest{Ref: spec.Ref})
	if err != nil {
		t.Fatalf("DescribeLink %s: %v", spec.Ref, err)
	}
	wanCheckLink(t, "DescribeLink", got, spec, made.VNI)
	if got.State != sdk.StateReady {
		t.Errorf("DescribeLink: state %q (%s), want %q", got.State, got.Message, sdk.StateReady)
	}
}

// wanCheckLink compares a returned link with the spec it was built from.
func wanCheckLink(t *testing.T, call string, got sdk.Link, spec sdk.LinkSpec, vni uint32) {
	t.Helper()
	if got.Ref != spec.Ref {
		t.Errorf("%s: ref %s, want %s", call, got.Ref, spec.Ref)
	}
	if got.VNI != vni {
		t.Errorf("%s: VNI %d, want %d", call, got.VNI, vni)
	}
	if got.BandwidthBps != spec.BandwidthBps {
		t.Errorf("%s: bandwidth %d bit/s, want %d", call, got.BandwidthBps, spec.BandwidthBps)
	}
	for i, pair := range [][2]sdk.LinkEnd{{got.End1, spec.End1}, {got.End2, spec.End2}} {
		g, w := pair[0], pair[1]
		if g.Underlay != w.Underlay {
			t.Errorf("%s: end%d underlay %q, want %q", call, i+1, g.Underlay, w.Underlay)
		}
		if g.Bridge != w.Bridge {
			t.Errorf("%s: end%d bridge %q, want %q", call, i+1, g.Bridge, w.Bridge)
		}
		if g.Site != w.Site {
			t.Errorf("%s: end%d site %q, want %q", call, i+1, g.Site, w.Site)
		}
		if g.Netns != w.Netns {
			t.Errorf("%s: end%d netns %q, want %q", call, i+1, g.Netns, w.Netns)
		}
	}
}

func (s *wanSuite) testCallerVNI(t *testing.T) {
	// A VNI the plugin chose is one it accepts: free it, then ask for it by number.
	probe := s.spec(s.slice(), "probe", 0, 1)
	vni := s.connect(t, probe).VNI
	if err := s.wan.Disconnect(ctx(t), sdk.DisconnectRequest{Ref: probe.Ref}); err != nil {
		t.Fatalf("Disconnect %s: %v", probe.Ref, err)
	}

	spec := s.spec(s.slice(), "fixed", 0, 1)
	spec.VNI = vni
	l := s.connect(t, spec)
	if l.VNI != vni {
		t.Fatalf("Connect with VNI %d: got VNI %d", vni, l.VNI)
	}
	got, err := s.wan.DescribeLink(ctx(t), sdk.DescribeLinkRequest{Ref: spec.Ref})
	if err != nil {
		t.Fatalf("DescribeLink %s: %v", spec.Ref, err)
	}
	if got.VNI != vni {
		t.Errorf("DescribeLink: VNI %d, want %d", got.VNI, vni)
	}

	other := s.spec(s.slice(), "clash", 0, 1)
	other.VNI = vni
	s.cleanup(t, other.Ref)
	if _, err := s.wan.Connect(ctx(t), sdk.ConnectRequest{Link: other}); sdk.CodeOf(err) != sdk.CodeAlreadyExists {
		t.Errorf("Connect %s with VNI %d held by %s: got %v (code %s), want CodeAlreadyExists",
			other.Ref, vni, spec.Ref, err, sdk.CodeOf(err))
	}
	if _, err := s.wan.DescribeLink(ctx(t), sdk.DescribeLinkRequest{Ref: other.Ref}); !sdk.IsNotFound(err) {
		t.Errorf("DescribeLink %s after its refused Connect: got %v, want CodeNotFound", other.Ref, err)
	}
}

func (s *wanSuite) testVNIsUnique(t *testing.T) {
	// Connected at the same time: the plugin must allocate atomically.
	const n = 4
	specs := make([]sdk.LinkSpec, n)
	for i := range specs {
		specs[i] = s.spec(s.slice(), "uniq", 0, 1)
		specs[i].BandwidthBps = 0 // rate-free, so the bandwidth budget is no concern
		s.cleanup(t, specs[i].Ref)
	}
	links := make([]sdk.Link, n)
	errs := make([]error, n)
	c := ctx(t)
	var wg sync.WaitGroup
	for i := range specs {
		wg.Go(func() { links[i], errs[i] = s.wan.Connect(c, sdk.ConnectRequest{Link: specs[i]}) })
	}
	wg.Wait()
	seen := map[uint32]sdk.LinkRef{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("Connect %s: %v", specs[i].Ref, err)
			continue
		}
		if prev, ok := seen[links[i].VNI]; ok {
			t.Errorf("links %s and %s share VNI %d", prev, specs[i].Ref, links[i].VNI)
		}
		seen[links[i].VNI] = specs[i].Ref
	}
}

func (s *wanSuite) testDisconnectIdempotent(t *testing.T) {
	spec := s.spec(s.slice(), "disc", 0, 1)
	s.connect(t, spec)
	for i := 1; i <= 2; i++ {
		if err := s.wan.Disconnect(ctx(t), sdk.DisconnectRequest{Ref: spec.Ref}); err != nil {
			t.Fatalf("Disconnect #%d %s: %v", i, spec.Ref, err)
		}
	}
	if _, err := s.wan.DescribeLink(ctx(t), sdk.DescribeLinkRequest{Ref: spec.Ref}); !sdk.IsNotFound(err) {
		t.Errorf("DescribeLink after Disconnect: got %v, want CodeNotFound", err)
	}
	unknown := sdk.LinkRef{SliceID: s.slice(), LinkID: "never-made"}
	if err := s.wan.Disconnect(ctx(t), sdk.DisconnectRequest{Ref: unknown}); err != nil {
		t.Errorf("Disconnect of unknown link %s: %v, want nil", unknown, err)
	}
}

func (s *wanSuite) testDescribeUnknown(t *testing.T) {
	ref := sdk.LinkRef{SliceID: s.slice(), LinkID: "never-made"}
	_, err := s.wan.DescribeLink(ctx(t), sdk.DescribeLinkRequest{Ref: ref})
	if !sdk.IsNotFound(err) {
		t.Errorf("DescribeLink of unknown link %s: got %v (code %s), want CodeNotFound", ref, err, sdk.CodeOf(err))
	}
}

func (s *wanSuite) testOfferBandwidth(t *testing.T) {
	spec := s.spec(s.slice(), "bw", 0, 1)
	before, err := s.wan.OfferLink(ctx(t), sdk.OfferLinkRequest{Link: spec})
	if err != nil {
		t.Fatalf("OfferLink %s: %v", spec.Ref, err)
	}
	if !before.Accepted {
		t.Fatalf("OfferLink of %d bit/s refused (%s); WANOptions.BandwidthBps must fit between the sites",
			spec.BandwidthBps, before.Reason)
	}
	if before.AvailableBps < spec.BandwidthBps {
		t.Fatalf("OfferLink accepted %d bit/s but says only %d bit/s are left", spec.BandwidthBps, before.AvailableBps)
	}
	if before.PricePerDay < 0 {
		t.Errorf("OfferLink: negative price %v", before.PricePerDay)
	}

	s.connect(t, spec)
	next := s.spec(s.slice(), "bw-next", 0, 1)
	during, err := s.wan.OfferLink(ctx(t), sdk.OfferLinkRequest{Link: next})
	if err != nil {
		t.Fatalf("OfferLink %s: %v", next.Ref, err)
	}
	if want := before.AvailableBps - spec.BandwidthBps; during.AvailableBps != want {
		t.Errorf("after connecting %d bit/s: %d bit/s left, want %d", spec.BandwidthBps, during.AvailableBps, want)
	}

	if during.AvailableBps < math.MaxUint64 {
		over := next
		over.BandwidthBps = during.AvailableBps + 1
		o, err := s.wan.OfferLink(ctx(t), sdk.OfferLinkRequest{Link: over})
		if err != nil {
			t.Errorf("OfferLink above the bandwidth left: error %v, want a refusal", err)
		} else {
			if o.Accepted {
				t.Errorf("OfferLink of %d bit/s with %d left: accepted", over.BandwidthBps, during.AvailableBps)
			}
			if o.Reason == "" {
				t.Errorf("OfferLink refusal without a reason")
			}
		}
	}
	if during.AvailableBps > 0 {
		exact := next
		exact.BandwidthBps = during.AvailableBps
		if o, err := s.wan.OfferLink(ctx(t), sdk.OfferLinkRequest{Link: exact}); err != nil || !o.Accepted {
			t.Errorf("OfferLink of exactly the %d bit/s left: %+v, %v; want accepted", exact.BandwidthBps, o, err)
		}
	}

	if err := s.wan.Disconnect(ctx(t), sdk.DisconnectRequest{Ref: spec.Ref}); err != nil {
		t.Fatalf("Disconnect %s: %v", spec.Ref, err)
	}
	after, err := s.wan.OfferLink(ctx(t), sdk.OfferLinkRequest{Link: next})
	if err != nil {
		t.Fatalf("OfferLink %s: %v", next.Ref, err)
	}
	if after.AvailableBps != before.AvailableBps {
		t.Errorf("after Disconnect: %d bit/s left, want %d as before", after.AvailableBps, before.AvailableBps)
	}
}

func (s *wanSuite) testSharedBridge(t *testing.T) {
	slice := s.slice()
	a := s.spec(slice, "hub-1", 0, 1)
	b := s.spec(slice, "hub-2", 0, 2)
	a.BandwidthBps, b.BandwidthBps = 0, 0
	la := s.connect(t, a)
	lb := s.connect(t, b)
	if la.VNI == lb.VNI {
		t.Errorf("links %s and %s share VNI %d", a.Ref, b.Ref, la.VNI)
	}
	if la.End1.Bridge != lb.End1.Bridge {
		t.Fatalf("links of one slice at one site use bridges %q and %q, want one", la.End1.Bridge, lb.End1.Bridge)
	}
	if err := s.wan.Disconnect(ctx(t), sdk.DisconnectRequest{Ref: a.Ref}); err != nil {
		t.Fatalf("Disconnect %s: %v", a.Ref, err)
	}
	got, err := s.wan.DescribeLink(ctx(t), sdk.DescribeLinkRequest{Ref: b.Ref})
	if err != nil {
		t.Fatalf("DescribeLink %s after its neighbour's Disconnect: %v", b.Ref, err)
	}
	wanCheckLink(t, "DescribeLink", got, b, lb.VNI)
	if got.State != sdk.StateReady {
		t.Errorf("DescribeLink %s after its neighbour's Disconnect: state %q (%s), want %q",
			b.Ref, got.State, got.Message, sdk.StateReady)
	}
}

// wanRandomHex returns 2n random hex digits.
func wanRandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
