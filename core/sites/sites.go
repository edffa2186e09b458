// Package sites releases the providers' network sites that WAN plugins built for a
// one-machine federation (a network namespace per site) once no live slice uses them:
// when necosd stops, and when an operator asks (POST /v1/sites/release).
package sites

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// WANSource gives a WAN provider's plugin client; *providers.Registry is one.
type WANSource interface {
	WAN(ctx context.Context, provider string) (sdk.WAN, error)
}

// Ledgers gives what slices hold at a provider; *store.Store is one.
type Ledgers interface {
	GetLedger(ctx context.Context, provider string) (*store.Ledger, error)
}

// ErrUnknownSite: a site asked for is not in the catalogue.
var ErrUnknownSite = errors.New("no site")

// Kept is a site that was not released, and why.
type Kept struct {
	// Site names the providers at the site (their sites are one namespace).
	Site   string `json:"site"`
	Netns  string `json:"netns"`
	Reason string `json:"reason"`
	// Slices are the live slices holding resources at the site, when that is why.
	Slices []string `json:"slices,omitempty"`
}

// Result is what Release did.
type Result struct {
	// Removed lists the network namespaces removed.
	Removed []string `json:"removed"`
	Kept    []Kept   `json:"kept"`
}

// site is one namespace of the catalogue and the providers whose site it is.
type site struct {
	netns     string
	providers []string
	underlay  string
}

func (s *site) name() string { return strings.Join(s.providers, ",") }

// Release asks every WAN provider of the catalogue to remove the sites it built that no
// live slice uses. A site where a slice holds resources (a part at one of its providers)
// is kept and the slices named; a site a WAN plugin keeps (something of someone else in
// its namespace) is kept with the plugin's reason. only, when not empty, limits the
// release to those sites (provider names or namespaces); naming one the catalogue does
// not have is an error.
func Release(ctx context.Context, cat *providers.Catalogue, wans WANSource, ledgers Ledgers, only []string) (Result, error) {
	out := Result{Removed: []string{}, Kept: []Kept{}}
	if cat == nil {
		return out, nil
	}
	all, err := catalogueSites(cat, only)
	if err != nil {
		return out, err
	}
	var free []*site
	for _, s := range all {
		slices, err := holders(ctx, ledgers, s.providers)
		if err != nil {
			return out, err
		}
		if len(slices) > 0 {
			out.Kept = append(out.Kept, Kept{Site: s.name(), Netns: s.netns, Slices: slices,
				Reason: fmt.Sprintf("used by %s: delete %s first (necosctl slice delete ID --wait)",
					plural(len(slices), "live slice", "live slices")+" "+strings.Join(slices, ", "),
					plural(len(slices), "it", "them"))})
			continue
		}
		free = append(free, s)
	}
	if len(free) == 0 {
		return out, nil
	}
	byNetns := map[string]*site{}
	for _, s := range free {
		byNetns[s.netns] = s
	}
	removed := map[string]bool{}
	reasons := map[string][]string{}
	asked := false
	for _, p := range cat.Providers {
		if p.WAN == nil {
			continue
		}
		var ends []sdk.LinkEnd
		for _, s := range free {
			if joins(p.WAN, s.providers) && !removed[s.netns] {
				ends = append(ends, sdk.LinkEnd{Site: s.name(), Underlay: s.underlay, Netns: s.netns})
			}
		}
		if len(ends) == 0 {
			continue
		}
		asked = true
		w, err := wans.WAN(ctx, p.Name)
		if err != nil {
			return out, fmt.Errorf("WAN provider %s: %w", p.Name, err)
		}
		rel, ok := w.(sdk.SiteReleaser)
		var got sdk.SiteRelease
		if ok {
			got, err = rel.ReleaseSites(ctx, sdk.ReleaseSitesRequest{Sites: ends})
		}
		if !ok || sdk.CodeOf(err) == sdk.CodeUnimplemented {
			for _, e := range ends {
				reasons[e.Netns] = append(reasons[e.Netns], fmt.Sprintf("WAN provider %s builds no sites", p.Name))
			}
			continue
		}
		if err != nil {
			return out, fmt.Errorf("WAN provider %s: release sites: %w", p.Name, err)
		}
		for _, ns := range got.Removed {
			removed[ns] = true
			out.Removed = append(out.Removed, ns)
		}
		for _, k := range got.Kept {
			reasons[k.Netns] = append(reasons[k.Netns], fmt.Sprintf("%s: %s", p.Name, k.Reason))
		}
	}
	for _, s := range free {
		if removed[s.netns] || len(reasons[s.netns]) == 0 {
			continue // removed, or already gone
		}
		out.Kept = append(out.Kept, Kept{Site: s.name(), Netns: s.netns, Reason: strings.Join(reasons[s.netns], "; ")})
	}
	if !asked {
		for _, s := range free {
			out.Kept = append(out.Kept, Kept{Site: s.name(), Netns: s.netns, Reason: "no WAN provider of the catalogue joins this site"})
		}
	}
	sort.Slice(out.Kept, func(i, j int) bool { return out.Kept[i].Netns < out.Kept[j].Netns })
	return out, nil
}

// catalogueSites lists the catalogue's sites in named namespaces, one per namespace.
func catalogueSites(cat *providers.Catalogue, only []string) ([]*site, error) {
	want := map[string]bool{}
	for _, o := range only {
		want[o] = false
	}
	var out []*site
	by := map[string]*site{}
	for _, p := range cat.Providers {
		if p.Site == nil || p.Site.Netns == "" {
			continue
		}
		_, byName := want[p.Name]
		_, byNS := want[p.Site.Netns]
		if len(only) > 0 && !byName && !byNS {
			continue
		}
		if byName {
			want[p.Name] = true
		}
		if byNS {
			want[p.Site.Netns] = true
		}
		s := by[p.Site.Netns]
		if s == nil {
			s = &site{netns: p.Site.Netns, underlay: p.Site.Underlay}
			by[s.netns] = s
			out = append(out, s)
		}
		s.providers = append(s.providers, p.Name)
	}
	var unknown []string
	for o, found := range want {
		if !found {
			unknown = append(unknown, o)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		var known []string
		for _, p := range cat.Providers {
			if p.Site != nil && p.Site.Netns != "" {
				known = append(known, p.Name+" ("+p.Site.Netns+")")
			}
		}
		if len(known) == 0 {
			known = []string{"none: no provider's site is in a network namespace"}
		}
		return nil, fmt.Errorf("%w %s in the catalogue; its sites are %s",
			ErrUnknownSite, strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return out, nil
}

// holders returns the slices holding resources at any of the providers, sorted.
func holders(ctx context.Context, ledgers Ledgers, provs []string) ([]string, error) {
	set := map[string]bool{}
	for _, p := range provs {
		l, err := ledgers.GetLedger(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("what slices hold at %s: %w", p, err)
		}
		for h := range l.Holds {
			slice, _, _ := strings.Cut(h, "/")
			set[slice] = true
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// joins reports whether the WAN offer joins any of the providers' sites.
func joins(w *providers.WANOffer, provs []string) bool {
	if len(w.Sites) == 0 {
		return true
	}
	for _, p := range provs {
		for _, s := range w.Sites {
			if strings.EqualFold(s, p) {
				return true
			}
		}
	}
	return false
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
