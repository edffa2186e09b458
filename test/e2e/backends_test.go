package e2e

import (
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"libvirt.org/go/libvirt"
)

// libvirtURI is the libvirt daemon the e2e catalogues point their providers at, so that
// the tests see the same domains the plugins made (scripts/libvirtd.sh).
func libvirtURI(t *testing.T) string {
	t.Helper()
	uri := os.Getenv("NECOS_LIBVIRT_URI")
	if uri == "" {
		plugintest.NeedBackend(t, "NECOS_LIBVIRT_URI: a libvirt daemon serving the test driver (scripts/libvirtd.sh)")
	}
	return uri
}

// domain is what libvirt holds of one of a slice's nodes.
type domain struct {
	Name     string
	VCPUs    int
	MemoryMB int64
	Active   bool
}

// domains lists the domains of a slice (by the vim-xen naming: necos.<slice>.<...>).
func domains(t *testing.T, uri, sliceID string) []domain {
	t.Helper()
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	defer conn.Close()
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		t.Fatal(err)
	}
	var out []domain
	for _, d := range doms {
		name, err := d.GetName()
		if err == nil && strings.HasPrefix(name, "necos."+sliceID+".") {
			info, err := d.GetInfo()
			if err != nil {
				t.Fatal(err)
			}
			active, _ := d.IsActive()
			out = append(out, domain{Name: name, VCPUs: int(info.NrVirtCpu), MemoryMB: int64(info.Memory / 1024), Active: active})
		}
		d.Free()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// needRoot skips (or fails in CI) tests that build network namespaces.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		plugintest.NeedBackend(t, "root, to build the federation's network namespaces")
	}
}

// federation names the namespaces of one test's sites and removes them at the end.
type federation struct {
	prefix string
}

func newFederation(t *testing.T) *federation {
	f := &federation{prefix: "necos-e2e" + randomID()}
	t.Cleanup(func() {
		entries, _ := os.ReadDir("/var/run/netns")
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), f.prefix+"-") {
				_ = netns.DeleteNamed(e.Name())
			}
		}
	})
	return f
}

func (f *federation) netns(site string) string { return f.prefix + "-" + strings.ToLower(site) }

// assertNoWANDevices fails when a site namespace of the federation still holds a VXLAN
// device or a local link's veth.
func assertNoWANDevices(t *testing.T, f *federation) {
	t.Helper()
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), f.prefix+"-") {
			continue
		}
		ns, err := netns.GetFromName(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			t.Fatal(err)
		}
		links, err := h.LinkList()
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Type() == "vxlan" || strings.HasPrefix(l.Attrs().Name, "vl") && l.Type() == "veth" {
				t.Errorf("namespace %s still holds %s device %s of a link", e.Name(), l.Type(), l.Attrs().Name)
			}
		}
	}
}
