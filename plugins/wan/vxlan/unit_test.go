package vxlan

import (
	"context"
	"strings"
	"testing"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netlink"
)

func TestTagRoundTrip(t *testing.T) {
	in := tag{Provider: "wan-eu", Ref: sdk.LinkRef{SliceID: "IoTService_sliced", LinkID: "core/edge 1&2"}, End: 2,
		Site: "ufscar", Part: "edge-dc", Bridge: "br-iot", PeerSite: "ufpa", BandwidthBps: 1_000_000_000,
		Name: "pop-dc-slice1-to-pop-dc-slice2"}
	alias, err := in.encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(alias) > maxAlias || !strings.HasPrefix(alias, tagPrefix) {
		t.Fatalf("alias %q", alias)
	}
	out, ok := parseTag(alias)
	if !ok || out != in {
		t.Errorf("parseTag(encode(x)):\n got  %+v (%v)\n want %+v", out, ok, in)
	}
}

func TestTagTooLong(t *testing.T) {
	long := strings.Repeat("x", 80)
	base := tag{Provider: "p", Ref: sdk.LinkRef{SliceID: long, LinkID: "l"}, End: 1, Site: "a", Bridge: "b", PeerSite: "c"}

	// A long name is dropped, the rest kept.
	named := base
	named.Name = strings.Repeat("n", 200)
	alias, err := named.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := parseTag(alias)
	if !ok || got.Name != "" || got.Ref != base.Ref {
		t.Errorf("long name: got %+v, want the tag without its name", got)
	}

	// Ids that cannot fit are refused.
	huge := base
	huge.Ref.LinkID = strings.Repeat("y", 200)
	if _, err := huge.encode(); sdk.CodeOf(err) != sdk.CodeInvalidArgument {
		t.Errorf("too long ids: %v, want InvalidArgument", err)
	}
}

func TestParseTagRejects(t *testing.T) {
	for _, alias := range []string{
		"", "some operator note", tagPrefix + "%zz", tagPrefix + "s=a&l=b&e=3&bw=0",
		tagPrefix + "s=a&l=b&e=1&bw=x", tagPrefix + "s=&l=b&e=1&bw=0", bridgeAlias,
	} {
		if _, ok := parseTag(alias); ok {
			t.Errorf("parseTag(%q) accepted", alias)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := Config{
		MaxBandwidthBps: 0, VNIMin: 20, VNIMax: 10, UDPPort: 70000, MTU: 10, PricePerLinkDay: -1,
		Pairs: []PairConfig{{Sites: []string{"a"}}, {Sites: []string{"a", "b"}, MaxBandwidthBps: 1},
			{Sites: []string{"b", "a"}, MaxBandwidthBps: 1}},
		Sites: map[string]SiteConfig{"a": {}},
		Netns: []string{"necos-*", "["},
	}
	err := bad.validate()
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument {
		t.Fatalf("bad config: %v, want InvalidArgument", err)
	}
	for _, want := range []string{"max_bandwidth_bps", "vni_min", "udp_port", "mtu", "price_per_link_day",
		"pairs[0].sites", "pairs[2]: same sites as pairs[1]", "sites.a.max_bandwidth_bps", "netns[1]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestConfigure(t *testing.T) {
	p := &Plugin{log: plugintest.TestLogger(t), cfg: DefaultConfig()}
	ctx := context.Background()
	if err := p.Configure(ctx, sdk.Config{JSON: []byte(`{"vni_min": 5000, "udp_port": 8472}`),
		Provider: sdk.Provider{Name: "prov"}}); err != nil {
		t.Fatal(err)
	}
	if p.cfg.VNIMin != 5000 || p.cfg.UDPPort != 8472 || p.cfg.VNIMax != maxVNI || p.provider != "prov" ||
		p.cfg.MaxBandwidthBps != defaultMaxBandwidthBps {
		t.Errorf("configured %+v provider %q", p.cfg, p.provider)
	}
	for _, raw := range []string{`{"vni_min": 0}`, `{"bogus": 1}`, `{"pairs": [{"sites": ["a"], "max_bandwidth_bps": 1}]}`} {
		if err := p.Configure(ctx, sdk.Config{JSON: []byte(raw)}); sdk.CodeOf(err) != sdk.CodeInvalidArgument {
			t.Errorf("Configure(%s): %v, want InvalidArgument", raw, err)
		}
	}
	// The schema accepts every key Config has, and only those.
	s := schema()
	if err := s.Validate([]byte(`{"max_bandwidth_bps": 1, "pairs": [], "sites": {}, "price_per_link_day": 1.5,
		"vni_min": 1, "vni_max": 2, "udp_port": 1, "mtu": 0, "netns": ["necos-*"]}`)); err != nil {
		t.Errorf("schema refuses a full config: %v", err)
	}
}

func TestPairCapacity(t *testing.T) {
	c := DefaultConfig()
	c.Pairs = []PairConfig{{Sites: []string{"b", "a"}, MaxBandwidthBps: 5}}
	if got := c.pairCapacity("a", "b"); got != 5 {
		t.Errorf("a-b: %d, want 5", got)
	}
	if got := c.pairCapacity("a", "c"); got != defaultMaxBandwidthBps {
		t.Errorf("a-c: %d, want the default", got)
	}
}

func TestValidateSpec(t *testing.T) {
	p := &Plugin{provider: "prov", cfg: DefaultConfig()}
	p.cfg.Netns = []string{"n?"}
	good := sdk.LinkSpec{
		Ref:  sdk.LinkRef{SliceID: "s", LinkID: "l"},
		End1: sdk.LinkEnd{Site: "a", Underlay: "10.0.0.1", Netns: "na", Bridge: "br-s"},
		End2: sdk.LinkEnd{Site: "b", Underlay: "10.0.0.2", Netns: "nb", Bridge: "br-s"},
	}
	// As a call sees a spec: the SDK's checks first (the gRPC server runs them before
	// the plugin), then the plugin's own.
	check := func(s sdk.LinkSpec) error {
		if err := s.Validate(); err != nil {
			return err
		}
		return p.validateSpec(s)
	}
	if err := check(good); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*sdk.LinkSpec)
		want []string
	}{
		{"empty", func(s *sdk.LinkSpec) { *s = sdk.LinkSpec{} },
			[]string{"ref.slice_id", "ref.link_id", "end1.site", "end1.underlay", "end1.bridge", "end2.bridge", "end2: same as end1"}},
		{"bad underlay", func(s *sdk.LinkSpec) { s.End1.Underlay = "host-a" }, []string{`end1.underlay: "host-a"`}},
		{"mixed families", func(s *sdk.LinkSpec) { s.End2.Underlay = "fd00::2" }, []string{"different IP families"}},
		{"long bridge", func(s *sdk.LinkSpec) { s.End2.Bridge = "bridge-name-too-long" }, []string{"end2.bridge", "15 bytes"}},
		{"bridge with slash", func(s *sdk.LinkSpec) { s.End1.Bridge = "a/b" }, []string{"end1.bridge"}},
		{"bridge named like a vxlan", func(s *sdk.LinkSpec) { s.End1.Bridge = "vx1000" }, []string{"reserved"}},
		{"same site", func(s *sdk.LinkSpec) { s.End2.Site = "a" }, []string{"end2.site"}},
		{"same netns", func(s *sdk.LinkSpec) { s.End2.Netns = "na" }, []string{"end2.netns"}},
		{"same underlay", func(s *sdk.LinkSpec) { s.End2.Underlay = "10.0.0.1" }, []string{"end2.underlay"}},
		{"bad netns", func(s *sdk.LinkSpec) { s.End1.Netns = "../x" }, []string{"end1.netns"}},
		{"unmanaged netns", func(s *sdk.LinkSpec) { s.End2.Netns = "cni-1234" }, []string{"end2.netns", "not among"}},
		{"vni", func(s *sdk.LinkSpec) { s.VNI = 1 << 24 }, []string{"vni"}},
		{"tiny rate", func(s *sdk.LinkSpec) { s.BandwidthBps = 100 }, []string{"bandwidth_bps"}},
		{"ids too long", func(s *sdk.LinkSpec) { s.Ref.SliceID = strings.Repeat("s", 250) }, []string{"too long"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.mod(&s)
			err := check(s)
			if sdk.CodeOf(err) != sdk.CodeInvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestTbfShape(t *testing.T) {
	q := tbf(7, 30_000_000, 1450)
	if q.Rate != 3_750_000 || q.LinkIndex != 7 || q.Parent != netlink.HANDLE_ROOT {
		t.Errorf("tbf %+v", q)
	}
	// 10 ms of 3.75 MB/s is 37500 bytes; the queue holds 50 ms more.
	if q.Limit != 3_750_000*50/1000+37_500 {
		t.Errorf("limit %d", q.Limit)
	}
	if q.Buffer == 0 {
		t.Error("zero buffer")
	}
	// At a low rate the bucket still holds whole frames.
	slow := tbf(1, minBandwidthBps, 1500)
	if slow.Limit < tbfMinFrames*1514 {
		t.Errorf("slow limit %d below %d frames", slow.Limit, tbfMinFrames)
	}
}

func TestJoined(t *testing.T) {
	at := func(ns, br string) *endLoc { return &endLoc{ns: ns, bridge: br} }
	k := func(id string) linkKey { return linkKey{"p", sdk.LinkRef{SliceID: "s", LinkID: id}} }
	s := &snapshot{links: map[linkKey]*linkDevs{
		k("ab"): {key: k("ab"), at: [2]*endLoc{at("a", "br"), at("b", "br")}},
		k("bc"): {key: k("bc"), at: [2]*endLoc{at("b", "br"), at("c", "br")}},
		// Half a link (found by a scan with one end's device missing) joins nothing.
		k("cd"): {key: k("cd"), at: [2]*endLoc{at("c", "br"), nil}},
	}}
	spec := func(a, b string) sdk.LinkSpec {
		return sdk.LinkSpec{End1: sdk.LinkEnd{Netns: a, Bridge: "br"}, End2: sdk.LinkEnd{Netns: b, Bridge: "br"}}
	}
	if s.joined(spec("c", "a"), k("new")) == nil {
		t.Error("a-b-c then c-a: not seen as a loop")
	}
	if s.joined(spec("c", "d"), k("new")) != nil {
		t.Error("c-d: seen as a loop")
	}
	if s.joined(spec("a", "b"), k("ab")) != nil {
		t.Error("re-connecting ab: its own devices seen as a loop")
	}
}

func TestManagesNetns(t *testing.T) {
	c := DefaultConfig()
	if !c.managesNetns("anything") {
		t.Error("no patterns: want every namespace managed")
	}
	c.Netns = []string{"necos-*", "site?"}
	for name, want := range map[string]bool{"necos-core": true, "site1": true, "site12": false, "cni-1": false} {
		if got := c.managesNetns(name); got != want {
			t.Errorf("managesNetns(%q) = %v, want %v", name, got, want)
		}
	}
}
