package xenvim

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/necos/necos/plugins/vim-xen/seed"
	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// Real guests: each node is booted from a copy-on-write overlay of its VDU's image and
// configured at first boot by a NoCloud seed (package seed) carrying its host name, the
// part's SSH public key, an SSH host key the plugin generated for the node (its private
// half goes into the seed only; the public half is pinned) and its address.

// guestPlan is what a call needs to make real guests: the pool, and each planned node's
// image as base volumes.
type guestPlan struct {
	s       *settings
	pool    *libvirt.StoragePool
	poolDir string // where the pool keeps its volumes
	partKey string // the part's public key, an authorized_keys line
	images  []guestImage
}

type guestImage struct {
	name string
	base baseSet
}

// planGuests resolves every planned node's image (all unknown ones are reported at
// once) and makes sure the images are in the pool.
func (p *Plugin) planGuests(conn *libvirt.Connect, s *settings, rec partRecord, key string, pls []planned) (*guestPlan, error) {
	var problems []string
	names := make([]string, len(pls))
	for i, pl := range pls {
		name, _, err := s.imageOf(pl.vdu.Name, pl.vdu.Image)
		if err != nil {
			problems = append(problems, strings.TrimPrefix(err.Error(), "InvalidArgument: "))
			continue
		}
		names[i] = name
	}
	if len(problems) > 0 {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "%s", strings.Join(dedupe(problems), "; "))
	}
	pub, err := publicOf(key, "")
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, "the part's key: %v", err)
	}
	pool, err := p.pool(conn, s)
	if err != nil {
		return nil, err
	}
	dir, err := poolDir(pool)
	if err != nil {
		_ = pool.Free()
		return nil, lvError(err, "storage pool %s", s.pool)
	}
	g := &guestPlan{s: s, pool: pool, poolDir: dir, partKey: pub}
	for _, name := range names {
		b, err := p.bases(conn, s, pool, name, s.images[name])
		if err != nil {
			_ = pool.Free()
			return nil, err
		}
		g.images = append(g.images, guestImage{name: name, base: b})
	}
	return g, nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// prepare makes a node's host key and seed, names its volumes and tap, and fills
// d.Guest; the volumes are made by makeVolumes once the domain is defined. A node's
// domain is defined before its volumes exist, and removed after them (removeNode), so a
// volume without its domain is never one a live plugin is making: the start-up sweep
// removes it (sweep.go).
func (g *guestPlan) prepare(d *domainSpec, pl planned, im guestImage) (iso []byte, err error) {
	hostPriv, hostPub, err := newPartKey("necos-host-" + pl.name())
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, "node %s: %v", pl.name(), err)
	}
	mac, err := newMAC()
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, "node %s: %v", pl.name(), err)
	}
	sd := seed.Seed{InstanceID: d.Name, Hostname: pl.name(), AuthorizedKeys: []string{g.partKey},
		HostKey: hostPriv, HostKeyPublic: hostPub}
	if d.IP != "" {
		ip, err := netip.ParseAddr(d.IP)
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeInternal, "node %s: %v", pl.name(), err)
		}
		sd.Interfaces = []seed.Interface{{Name: "eth0", MAC: mac,
			Addresses: []string{netip.PrefixFrom(ip, g.s.nicPrefix).String()}}}
	}
	if iso, err = seedISO(sd); err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, "node %s: %v", pl.name(), err)
	}
	var disk string
	if im.base.disk != "" {
		disk = filepath.Join(g.poolDir, overlayName(d.Name))
	}
	d.Meta.Image, d.Meta.HostKey, d.Meta.MAC = im.name, hostPub, mac
	d.Guest = &guestSpec{Kernel: im.base.kernel, Initrd: im.base.initrd, Cmdline: im.base.cmdline,
		Disk: disk, DiskFormat: "qcow2", Seed: filepath.Join(g.poolDir, seedName(d.Name)), MAC: mac, Emulated: d.Type == "qemu"}
	if d.Type == "qemu" {
		d.Guest.Emulator, d.Guest.TCGCacheMB = g.s.tcgEmulator, g.s.tcgCacheMB
	}
	if d.Type != "xen" {
		d.Guest.Firmware = g.s.bootFirmware
	}
	d.Guest.VirtioMem = d.Type != "xen" && g.s.virtioMem
	if d.Type == "xen" {
		d.Guest.Bridge = d.Bridge
	} else {
		d.Guest.Tap = tapName(d.Name)
	}
	return iso, nil
}

// makeVolumes makes the volumes prepare named for a defined node.
func (g *guestPlan) makeVolumes(conn *libvirt.Connect, d domainSpec, pl planned, im guestImage, iso []byte) error {
	disk, seedPath, err := makeVolumes(conn, g.pool, d.Name, im.base, pl.vdu.StorageGB, iso)
	if err != nil {
		return err
	}
	if disk != d.Guest.Disk || seedPath != d.Guest.Seed {
		return sdk.Errorf(sdk.CodeInternal, "node %s: volumes made at %s and %s, the domain names %s and %s",
			pl.name(), disk, seedPath, d.Guest.Disk, d.Guest.Seed)
	}
	return nil
}

// newMAC returns a random address in QEMU's locally administered range 52:54:00.
func newMAC() (string, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]), nil
}
