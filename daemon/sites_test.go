package daemon_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netns"
)

// Close releases the site namespaces the real WAN plugin built that no slice holds
// anything at, and keeps one where a slice holds a reservation; with KeepSites it
// keeps them all.
func TestCloseReleasesSites(t *testing.T) {
	if os.Geteuid() != 0 {
		plugintest.NeedBackend(t, "root, to build network namespaces")
	}
	plugins := testenv.PluginDir(t, "vim-xen", "wan")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	prefix := "necos-dt" + hex.EncodeToString(b)
	ns := func(s string) string { return prefix + "-" + s }
	t.Cleanup(func() {
		for _, s := range []string{"a", "b", "ul"} {
			_ = netns.DeleteNamed(ns(s))
		}
	})
	cat, err := providers.Parse(fmt.Appendf(nil, `
providers:
  - name: A
    location: AMERICA.BRAZIL
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 500}}}
    site: {underlay: 10.96.0.1, netns: %[1]s-a}
  - name: B
    location: EUROPE.GREECE
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 500}}}
    site: {underlay: 10.96.0.2, netns: %[1]s-b}
  - name: WAN
    location: AMERICA.BRAZIL
    wan: {wim: VXLAN, plugin: wan, config: {netns: ["%[1]s-*"], provision_sites: {underlay_netns: %[1]s-ul}}}
`, prefix))
	if err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(t.TempDir(), "store")
	start := func(keep bool) *daemon.Daemon {
		d, err := daemon.Start(context.Background(), daemon.Config{
			Logger: plugintest.TestLogger(t), Catalogue: cat, Store: store.Options{Dir: storeDir},
			Plugins: pluginhost.Options{Dir: plugins}, Off: daemon.EngineOnly(), KeepSites: keep,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	// The WAN plugin builds both sites for a link, which is then removed.
	build := func(d *daemon.Daemon) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		w, err := d.Registry().WAN(ctx, "WAN")
		if err != nil {
			t.Fatal(err)
		}
		spec := sdk.LinkSpec{Ref: sdk.LinkRef{SliceID: "s", LinkID: "l"},
			End1: sdk.LinkEnd{Site: "A", Part: "p1", Underlay: "10.96.0.1", Netns: ns("a"), Bridge: "br" + prefix[8:]},
			End2: sdk.LinkEnd{Site: "B", Part: "p2", Underlay: "10.96.0.2", Netns: ns("b"), Bridge: "br" + prefix[8:]}}
		if _, err := w.Connect(ctx, sdk.ConnectRequest{Link: spec}); err != nil {
			t.Fatal(err)
		}
		if err := w.Disconnect(ctx, sdk.DisconnectRequest{Ref: spec.Ref}); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(s string) bool {
		_, err := os.Stat(filepath.Join("/var/run/netns", ns(s)))
		return err == nil
	}

	d := start(true)
	build(d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !exists("a") || !exists("b") || !exists("ul") {
		t.Fatal("KeepSites: a site's namespace was removed at Close")
	}

	d = start(false)
	// A slice's reservation at B keeps B's site.
	if err := d.Store().Reserve(context.Background(), "B", "live-slice/edge",
		store.Hold{Resources: sdk.Resources{CPUs: 1}}, store.Hold{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if exists("a") {
		t.Error("site A, which no slice uses, was kept at Close")
	}
	if !exists("b") || !exists("ul") {
		t.Error("site B, held by a slice, or the underlay it is on, was removed at Close")
	}
}
