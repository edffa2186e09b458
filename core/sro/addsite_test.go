package sro_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// siteVIMs makes every VIM refuse a part whose site namespace does not exist, as the
// VIM of real guests does (it plugs the part's bridge into that namespace), and fail
// every create while failCreate is set.
type siteVIMs struct {
	sro.Plugins
	failCreate atomic.Bool
}

func (s *siteVIMs) VIM(ctx context.Context, provider string) (sdk.VIM, error) {
	v, err := s.Plugins.VIM(ctx, provider)
	if err != nil {
		return nil, err
	}
	return &siteVIM{VIM: v, parent: s}, nil
}

type siteVIM struct {
	sdk.VIM
	parent *siteVIMs
}

func (v *siteVIM) Create(ctx context.Context, req sdk.CreateRequest) (sdk.Part, error) {
	spec := req.Part
	if spec.Netns != "" {
		if _, err := os.Stat(nsnet.Path(spec.Netns)); err != nil {
			return sdk.Part{}, fmt.Errorf("site network namespace %s: %w", spec.Netns, err)
		}
	}
	if v.parent.failCreate.Load() {
		return sdk.Part{}, fmt.Errorf("create refused by the test")
	}
	return v.VIM.Create(ctx, sdk.CreateRequest{Part: spec})
}

// siteCatalogue is catalogue's providers with WAN sites in namespaces nobody has made
// yet, and a WAN provider that provisions a site on first use (its offer or connect).
// It returns the namespaces, removed when the test ends.
func siteCatalogue(t *testing.T) (*providers.Catalogue, map[string]string) {
	t.Helper()
	if os.Geteuid() != 0 {
		plugintest.NeedBackend(t, "network namespaces and VXLAN devices need root")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	ns := map[string]string{}
	for _, p := range []string{"BR", "ES", "GR", "ul"} {
		ns[p] = fmt.Sprintf("necos-sro-%s-%s", id, strings.ToLower(p))
	}
	t.Cleanup(func() {
		for _, n := range ns {
			_ = netns.DeleteNamed(n)
		}
	})
	c := catalogue(t, fmt.Sprintf(`  - name: WAN
    location: EUROPE
    wan: {plugin: wan, wim: VXLAN, config: {netns: ["necos-sro-%s-*"], price_per_link_day: 1, provision_sites: {underlay_netns: %s}}}
`, id, ns["ul"]))
	underlay := map[string]string{"BR": "10.78.0.1", "ES": "10.78.0.2", "GR": "10.78.0.3"}
	for i := range c.Providers {
		pr := &c.Providers[i]
		if ul, ok := underlay[pr.Name]; ok {
			pr.Site = &providers.Site{Underlay: ul, Netns: ns[pr.Name]}
		}
	}
	return c, ns
}

// vxlans lists the VXLAN devices in namespace name.
func vxlans(t *testing.T, name string) []string {
	t.Helper()
	n, err := netns.GetFromName(name)
	if err != nil {
		return nil
	}
	defer n.Close()
	h, err := netlink.NewHandleAt(n)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Type() == "vxlan" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// Horizontal elasticity at a site that holds no part of the slice yet: the new part's
// link is placed first (the WAN provider provisions the site's namespace), then the
// part is created in that site, then the link is connected. A create that fails there
// leaves no part, link, VNI, VXLAN device or reservation behind.
func TestAddPartAtNewSite(t *testing.T) {
	cat, ns := siteCatalogue(t)
	var vims *siteVIMs
	env := startWith(t, cat, startOptions{plugins: []string{"wan"},
		wrap: func(p sro.Plugins) sro.Plugins { vims = &siteVIMs{Plugins: p}; return vims }})
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("cdn", part("core", "AMERICA.BRAZIL", 1, 1), part("edge", "EUROPE.SPAIN", 1, 1),
		link("core-to-edge", "core", "edge")))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	if _, err := os.Stat(nsnet.Path(ns["GR"])); err == nil {
		t.Fatalf("site %s exists before any part or link is there", ns["GR"])
	}

	// A failed create at the new site undoes the link planned for it.
	vims.failCreate.Store(true)
	_, err = env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "EUROPE.GREECE"})
	vims.failCreate.Store(false)
	if err == nil || !strings.Contains(err.Error(), "create refused by the test") {
		t.Fatalf("add part with a failing create: %v", err)
	}
	v, err := env.engine.Get(ctx, "alice", sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Parts) != 2 || len(v.Links) != 1 {
		t.Fatalf("failed add left parts %d, links %d: %+v", len(v.Parts), len(v.Links), v.Links)
	}
	if h := hold(t, env, "GR", sl.ID+"/edge-h1"); h.Nodes != 0 {
		t.Fatalf("failed add still holds %+v at GR", h)
	}
	if d := vxlans(t, ns["GR"]); len(d) != 0 {
		t.Fatalf("failed add left VXLAN devices %v in %s", d, ns["GR"])
	}

	np, err := env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "EUROPE.GREECE"})
	if err != nil {
		t.Fatalf("add part at a new site: %v", err)
	}
	if np.Provider != "GR" || np.State != store.PartReady {
		t.Fatalf("added part at %s, state %s", np.Provider, np.State)
	}
	v, err = env.engine.Get(ctx, "alice", sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	var nl *store.Link
	for _, l := range v.Links {
		if l.Name == "core-to-edge-h1" {
			nl = l
		}
	}
	if nl == nil || nl.State != store.LinkReady || nl.Spec.End2.Netns != ns["GR"] {
		t.Fatalf("link of the new part: %+v", nl)
	}
	if d := vxlans(t, ns["GR"]); len(d) != 1 || d[0] != fmt.Sprintf("vx%d", nl.Spec.VNI) {
		t.Fatalf("VXLAN devices in %s: %v (VNI %d)", ns["GR"], d, nl.Spec.VNI)
	}

	if _, err := env.engine.Decommission(ctx, "alice", sl.ID); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := env.engine.WaitGone(wctx, sl.ID); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"BR", "ES", "GR"} {
		if d := vxlans(t, ns[p]); len(d) != 0 {
			t.Errorf("VXLAN devices %v outlived the slice in %s", d, ns[p])
		}
	}
}
