package xenvim

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// What a plugin killed halfway leaves of its parts' networks is swept at the next
// start-up; what a part with domains, another provider, or the WAN plugin (a foreign
// port on a bridge) still uses stays.
func TestSweepRemovesWhatNoDomainBacks(t *testing.T) {
	if os.Geteuid() != 0 {
		plugintest.NeedBackend(t, "root (network namespaces)")
	}
	p, prov := newTestPlugin(t, Config{})
	s, conn, err := p.session()
	if err != nil {
		t.Fatal(err)
	}
	site := newSite(t)
	ep := netip.MustParsePrefix("10.99.0.1/24")
	netOf := func(provider string, ref sdk.PartRef, ns string) partNet {
		n := partNet{provider: provider, slice: ref.SliceID, part: ref.PartID, netns: ns,
			bridge: "nbt" + digest(provider, ref.SliceID, ref.PartID)[:10], endpoint: ep}
		t.Cleanup(func() { _ = n.remove() })
		if err := n.ensure(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	tap := func(provider string, ref sdk.PartRef, domain, ns, bridge string) string {
		name := tapName(domain)
		t.Cleanup(func() { _ = deleteTap(name, ns) })
		if err := ensureTap(name, ns, ownerTag(tapTagPrefix, provider, ref.SliceID, ref.PartID, domain)); err != nil {
			t.Fatal(err)
		}
		if bridge != "" {
			if err := plugTap(name, ns, bridge); err != nil {
				t.Fatal(err)
			}
		}
		return name
	}
	ref := func(part string) sdk.PartRef { return sdk.PartRef{SliceID: "sweep-" + suffix(), PartID: part} }

	// A part with a domain: its bridge, tap and endpoint stay.
	live := ref("live")
	mustCreate(t, p, partSpec(live, sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 128}))
	liveNet := netOf(prov.Name, live, site)
	liveTap := tap(prov.Name, live, domainName(prov.Name, live, "vm-1"), site, liveNet.bridge)
	// A part without domains: its bridge with a tap on it, and its endpoint, go.
	a := ref("a")
	aNet := netOf(prov.Name, a, site)
	aTap := tap(prov.Name, a, domainName(prov.Name, a, "vm-1"), site, aNet.bridge)
	// A tap left in the host's namespace (made, its domain never started): goes.
	b := ref("b")
	bTap := tap(prov.Name, b, domainName(prov.Name, b, "vm-1"), "", "")
	// An endpoint whose site namespace is gone: goes.
	c := ref("c")
	gone := "necost-" + suffix()
	if err := ensureNamedNetns(gone); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsnet.Remove(gone) })
	cNet := netOf(prov.Name, c, gone)
	if err := netns.DeleteNamed(gone); err != nil {
		t.Fatal(err)
	}
	// Another provider's part without domains: stays.
	other := ref("other")
	otherNet := netOf("other-"+suffix(), other, site)
	// A part without domains whose bridge holds a link (the WAN plugin's): the bridge
	// stays, the endpoint goes.
	e := ref("e")
	eNet := netOf(prov.Name, e, site)
	h, err := handleIn(site)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	br, err := h.LinkByName(eNet.bridge)
	if err != nil {
		t.Fatal(err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MasterIndex = "nlk"+suffix(), br.Attrs().Index
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "nlp" + suffix()}); err != nil {
		t.Fatal(err)
	}

	r, err := p.sweep(conn, s)
	if err != nil {
		t.Fatal(err)
	}
	if want := (sweepResult{Taps: 2, Bridges: 1, Endpoints: 2}); r != want {
		t.Errorf("swept %+v, want %+v", r, want)
	}
	exists := func(ns, name string) bool {
		h, err := handleIn(ns)
		if err != nil {
			return false
		}
		defer h.Close()
		_, err = h.LinkByName(name)
		return err == nil
	}
	nsExists := func(name string) bool {
		_, err := os.Stat(nsnet.Path(name))
		return !errors.Is(err, os.ErrNotExist)
	}
	for _, c := range []struct {
		what      string
		got, want bool
	}{
		{"the live part's bridge", exists(site, liveNet.bridge), true},
		{"the live part's tap", exists(site, liveTap), true},
		{"the live part's endpoint", nsExists(liveNet.endpointNS()), true},
		{"the orphan part's bridge", exists(site, aNet.bridge), false},
		{"the orphan part's tap", exists(site, aTap), false},
		{"the orphan part's endpoint", nsExists(aNet.endpointNS()), false},
		{"the host's orphan tap", exists("", bTap), false},
		{"the endpoint of a gone site", nsExists(cNet.endpointNS()), false},
		{"another provider's bridge", exists(site, otherNet.bridge), true},
		{"another provider's endpoint", nsExists(otherNet.endpointNS()), true},
		{"a bridge holding a link", exists(site, eNet.bridge), true},
		{"the endpoint of a bridge holding a link", nsExists(eNet.endpointNS()), false},
	} {
		if c.got != c.want {
			t.Errorf("%s: present %v, want %v", c.what, c.got, c.want)
		}
	}
	// A second sweep finds nothing more.
	if r, err := p.sweep(conn, s); err != nil || r.total() != 0 {
		t.Errorf("second sweep: %+v %v", r, err)
	}
}

// A node's volume whose domain does not exist (left by a plugin version that made the
// volumes before the domain, killed in between, or by a removal killed halfway) is swept
// at start-up; a volume whose domain exists, one just made (such a version may be making
// it) and any other volume of the pool stay. Real libvirtd, a pool of the test's own.
func TestSweepRemovesVolumesNoDomainBacks(t *testing.T) {
	sfx := suffix()
	dir := "/var/lib/necos/vim-xen/test-sweep-" + sfx
	e := newGuestEnv(t, func(c *Config) { c.StoragePool, c.StorageDir = "necos-sweep-"+sfx, dir })
	s, conn, err := e.p.session()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := e.p.pool(conn, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if vols, err := pool.ListAllStorageVolumes(0); err == nil {
			for _, v := range vols {
				_ = v.Delete(0)
				_ = v.Free()
			}
		}
		_ = pool.Destroy()
		_ = pool.Undefine()
		_ = pool.Free()
		_ = os.RemoveAll(dir)
	})
	old := time.Now().Add(-2 * volumeGrace)
	vol := func(name string, aged bool) {
		t.Helper()
		v, err := pool.StorageVolCreateXML(fmt.Sprintf("<volume><name>%s</name><capacity unit='bytes'>4096</capacity>"+
			"<target><format type='raw'/></target></volume>", name), 0)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Free()
		path, err := v.GetPath()
		if err != nil {
			t.Fatal(err)
		}
		if aged {
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	ref := func(part string) sdk.PartRef { return sdk.PartRef{SliceID: "sweepvol-" + sfx, PartID: part} }
	orphan := domainName(e.provider.Name, ref("orphan"), "vm-1")
	vol(overlayName(orphan), true)
	vol(seedName(orphan), true)
	young := domainName(e.provider.Name, ref("young"), "vm-1")
	vol(seedName(young), false)
	backed := domainName(e.provider.Name, ref("backed"), "vm-1")
	dom, err := conn.DomainDefineXML(fmt.Sprintf("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>"+
		"<os><type arch='x86_64'>hvm</type></os></domain>", backed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dom.Undefine(); _ = dom.Free() })
	vol(overlayName(backed), true)
	vol(seedName(backed), true)
	vol(basePrefix+"0123456789abcdef01234567", true)
	vol("someone-else.qcow2", true)

	r, err := e.p.sweep(conn, s)
	if err != nil {
		t.Fatal(err)
	}
	if r.Volumes != 2 {
		t.Errorf("swept %d volumes, want 2 (%+v)", r.Volumes, r)
	}
	have := map[string]bool{}
	vols, err := pool.ListAllStorageVolumes(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if n, err := v.GetName(); err == nil {
			have[n] = true
		}
		_ = v.Free()
	}
	for name, want := range map[string]bool{
		overlayName(orphan): false, seedName(orphan): false, seedName(young): true,
		overlayName(backed): true, seedName(backed): true,
		basePrefix + "0123456789abcdef01234567": true, "someone-else.qcow2": true,
	} {
		if have[name] != want {
			t.Errorf("volume %s: present %v, want %v", name, have[name], want)
		}
	}
}

func TestNodeOfVolume(t *testing.T) {
	for name, want := range map[string]string{
		"necos.s.p.vm-1.0a1b2c3d.qcow2": "necos.s.p.vm-1.0a1b2c3d",
		"necos.s.p.vm-1.0a1b2c3d.seed":  "necos.s.p.vm-1.0a1b2c3d",
		"necos..qcow2":                  "",
		"base-0123.qcow2":               "",
		"necos.s.p.vm-1.0a1b2c3d.raw":   "",
	} {
		got, ok := nodeOfVolume(name)
		if got != want || ok != (want != "") {
			t.Errorf("nodeOfVolume(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}
