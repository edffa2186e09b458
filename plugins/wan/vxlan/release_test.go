package vxlan

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netns"
)

// ReleaseSites removes the sites provision_sites built once no link uses them (and the
// underlay with the last of them), keeps a site in use naming what uses it, and never
// removes a namespace the plugin did not build.
func TestReleaseSites(t *testing.T) {
	needNetns(t)
	id := randomHex(3)
	ul, s1, s2, foreign := "necos-wr-"+id+"-ul", "necos-wr-"+id+"-a", "necos-wr-"+id+"-b", "necos-wr-"+id+"-x"
	t.Cleanup(func() {
		for _, ns := range []string{ul, s1, s2, foreign} {
			_ = netns.DeleteNamed(ns)
		}
	})
	cfg, _ := json.Marshal(map[string]any{
		"netns":           []string{"necos-wr-" + id + "-*"},
		"provision_sites": map[string]any{"underlay_netns": ul, "prefix_len": 24},
	})
	c := plugintest.InProcess(t, New(), sdk.Provider{Name: "wan-" + id}, cfg)
	wan, err := c.WAN()
	if err != nil {
		t.Fatal(err)
	}
	rel, ok := wan.(sdk.SiteReleaser)
	if !ok {
		t.Fatal("the WAN client does not offer ReleaseSites")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := sdk.LinkEnd{Site: "A", Part: "core", Underlay: "10.97.0.1", Netns: s1, Bridge: "rbr" + id}
	b := sdk.LinkEnd{Site: "B", Part: "edge", Underlay: "10.97.0.2", Netns: s2, Bridge: "rbr" + id}
	spec := sdk.LinkSpec{Ref: sdk.LinkRef{SliceID: "s-" + id, LinkID: "a-b"}, End1: a, End2: b}
	if _, err := wan.Connect(ctx, sdk.ConnectRequest{Link: spec}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	// A namespace of someone else's, managed by the plugin's globs but not built by it.
	if err := ensureNamed(netnsDir, foreign); err != nil {
		t.Fatal(err)
	}
	other := sdk.LinkEnd{Site: "X", Underlay: "10.97.0.9", Netns: foreign}
	host := sdk.LinkEnd{Site: "H", Underlay: "127.0.0.1"}

	// While the link is up, both sites hold its devices: kept, and said why.
	got, err := rel.ReleaseSites(ctx, sdk.ReleaseSitesRequest{Sites: []sdk.LinkEnd{a, b, other, host}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Removed) != 0 {
		t.Fatalf("removed %v while a link uses the sites", got.Removed)
	}
	reasons := map[string]string{}
	for _, k := range got.Kept {
		reasons[k.Site] = k.Reason
	}
	for site, want := range map[string]string{"A": "in use", "B": "in use", "X": "not built by", "H": "host's network namespace"} {
		if !strings.Contains(reasons[site], want) {
			t.Errorf("site %s kept for %q, want a reason with %q", site, reasons[site], want)
		}
	}
	if !strings.Contains(reasons["A"], "rbr"+id) {
		t.Errorf("site A's reason %q does not name the slice's bridge", reasons["A"])
	}
	for _, ns := range []string{s1, s2, ul, foreign} {
		assertNetns(t, ns, true)
	}

	// Once the link is gone, the sites and the underlay go; the foreign namespace stays.
	if err := wan.Disconnect(ctx, sdk.DisconnectRequest{Ref: spec.Ref}); err != nil {
		t.Fatal(err)
	}
	got, err = rel.ReleaseSites(ctx, sdk.ReleaseSitesRequest{Sites: []sdk.LinkEnd{a, b, other}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Removed, " ") != strings.Join([]string{s1, s2, ul}, " ") {
		t.Fatalf("removed %v, want %s %s %s", got.Removed, s1, s2, ul)
	}
	if len(got.Kept) != 1 || got.Kept[0].Site != "X" {
		t.Fatalf("kept %+v, want only X", got.Kept)
	}
	for ns, want := range map[string]bool{s1: false, s2: false, ul: false, foreign: true} {
		assertNetns(t, ns, want)
	}
	// Released sites are built again on their next use.
	if _, err := wan.Connect(ctx, sdk.ConnectRequest{Link: spec}); err != nil {
		t.Fatalf("connect after release: %v", err)
	}
	if err := ping(s1, b.Underlay, 5*time.Second); err != nil {
		t.Fatalf("site A does not reach site B once rebuilt: %v", err)
	}
	if err := wan.Disconnect(ctx, sdk.DisconnectRequest{Ref: spec.Ref}); err != nil {
		t.Fatal(err)
	}
	// A second release removes what the first left, and a site already gone is no error.
	if got, err = rel.ReleaseSites(ctx, sdk.ReleaseSitesRequest{Sites: []sdk.LinkEnd{a, b}}); err != nil || len(got.Removed) != 3 {
		t.Fatalf("release after rebuild: %+v %v", got, err)
	}
	if got, err = rel.ReleaseSites(ctx, sdk.ReleaseSitesRequest{Sites: []sdk.LinkEnd{a, b}}); err != nil || len(got.Removed)+len(got.Kept) != 0 {
		t.Fatalf("release of gone sites: %+v %v", got, err)
	}
}

func assertNetns(t *testing.T, name string, want bool) {
	t.Helper()
	_, err := os.Stat(filepath.Join(netnsDir, name))
	if got := err == nil; got != want {
		t.Errorf("namespace %s exists: %v, want %v", name, got, want)
	}
}
