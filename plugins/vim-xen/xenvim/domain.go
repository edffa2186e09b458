package xenvim

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"sort"
	"strings"

	"github.com/necos/necos/sdk"
)

// Namespace is the XML namespace of the metadata the plugin writes into every domain it
// makes. The metadata is the plugin's only state: after any restart it finds its
// domains, and the parts they form, by reading it back.
const Namespace = "urn:necos:vim-xen:v1"

// namePrefix starts the name of every domain the plugin makes, so listing skips other
// domains without reading their XML.
const namePrefix = "necos."

// nodeMeta is the metadata element of one domain: which node of which part it is, and
// a copy of the part's record.
type nodeMeta struct {
	XMLName   xml.Name `xml:"urn:necos:vim-xen:v1 node"`
	Provider  string   `xml:"provider"`
	Slice     string   `xml:"slice"`
	Part      string   `xml:"part"`
	VDU       string   `xml:"vdu"`
	Name      string   `xml:"name"`
	Index     int      `xml:"index"`
	Type      string   `xml:"type,omitempty"`
	StorageGB int64    `xml:"storage-gb"`
	IP        string   `xml:"ip,omitempty"`
	Created   string   `xml:"created,omitempty"`
	// Image is the image a real guest was made from; HostKey its SSH host public key
	// (the private half went only into its seed); MAC its NIC's address.
	Image   string     `xml:"image,omitempty"`
	HostKey string     `xml:"host-key,omitempty"`
	MAC     string     `xml:"mac,omitempty"`
	Record  partRecord `xml:"part-record"`
}

// partRecord is the desired state of a part: what Create asked for, as changed since by
// Resize and Scale. Every domain of the part carries a copy, and the copy with the
// highest generation wins, so the record survives as long as one node does, also when
// a crash interrupted an update half-way.
type partRecord struct {
	Generation int    `xml:"generation,attr"`
	Name       string `xml:"name,attr,omitempty"`
	Type       string `xml:"type,attr,omitempty"`
	Location   string `xml:"location,attr,omitempty"`
	Bridge     string `xml:"bridge,attr,omitempty"`
	// Netns is the site namespace holding Bridge; EndpointIP the address of the part's
	// endpoint namespace (netdev.go), for parts of real guests.
	Netns      string      `xml:"netns,attr,omitempty"`
	EndpointIP string      `xml:"endpoint-ip,attr,omitempty"`
	Tenant     string      `xml:"tenant,attr,omitempty"`
	VDUs       []vduRecord `xml:"vdu"`
	Labels     []keyValue  `xml:"label"`
	// SSHKey is where an earlier version kept the part's private SSH key. It is only
	// read, to move the key to the key store (keys.go), and never written again.
	SSHKey string `xml:"ssh-key,omitempty"`
}

// vduRecord is one VDU's template: new nodes of the VDU are made from it.
type vduRecord struct {
	Name        string     `xml:"name,attr"`
	Instances   int        `xml:"instances,attr"`
	CPUs        int        `xml:"cpus,attr"`
	MemoryMB    int64      `xml:"memory-mb,attr"`
	StorageGB   int64      `xml:"storage-gb,attr"`
	Type        string     `xml:"type,attr,omitempty"`
	Image       string     `xml:"image,attr,omitempty"`
	CPUArch     string     `xml:"cpu-architecture,attr,omitempty"`
	Description string     `xml:"description,omitempty"`
	OS          []keyValue `xml:"os"`
}

type keyValue struct {
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

func recordOf(p sdk.PartSpec) partRecord {
	r := partRecord{Generation: 1, Name: p.Name, Type: p.Type, Location: p.Location, Bridge: p.Bridge,
		Netns: p.Netns, Tenant: p.Tenant, Labels: sortedPairs(p.Labels)}
	for _, v := range p.VDUs {
		r.VDUs = append(r.VDUs, vduRecord{Name: v.Name, Instances: v.Instances, CPUs: v.CPUs,
			MemoryMB: v.MemoryMB, StorageGB: v.StorageGB, Type: v.Type, Image: v.Image,
			CPUArch: v.CPUArchitecture, Description: v.Description, OS: sortedPairs(v.OS)})
	}
	return r
}

func (r partRecord) vdu(name string) (vduRecord, bool) {
	for _, v := range r.VDUs {
		if v.Name == name {
			return v, true
		}
	}
	return vduRecord{}, false
}

// with returns a copy of r at the next generation with VDU name changed by f.
func (r partRecord) with(name string, f func(*vduRecord)) partRecord {
	out := r
	out.Generation++
	out.VDUs = append([]vduRecord(nil), r.VDUs...)
	for i := range out.VDUs {
		if out.VDUs[i].Name == name {
			f(&out.VDUs[i])
		}
	}
	return out
}

func (r partRecord) labels() map[string]string { return pairsMap(r.Labels) }

func sortedPairs(m map[string]string) []keyValue {
	out := make([]keyValue, 0, len(m))
	for k, v := range m {
		out = append(out, keyValue{Key: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func pairsMap(kv []keyValue) map[string]string {
	if len(kv) == 0 {
		return nil
	}
	m := make(map[string]string, len(kv))
	for _, p := range kv {
		m[p.Key] = p.Value
	}
	return m
}

// domainName names a node's domain "necos.<slice>.<part>.<node>.<hash>": readable in
// virsh list, restricted to characters every hypervisor accepts, and unique because the
// hash covers the exact, unsanitized ids (and the provider, which may share a host).
func domainName(provider string, ref sdk.PartRef, node string) string {
	sum := sha256.Sum256([]byte(provider + "\x00" + ref.SliceID + "\x00" + ref.PartID + "\x00" + node))
	return namePrefix + cleanName(ref.SliceID) + "." + cleanName(ref.PartID) + "." + cleanName(node) + "." +
		hex.EncodeToString(sum[:4])
}

// cleanName keeps letters, digits, '-' and '_' (anything else becomes '_') and at most
// 40 characters.
func cleanName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// domainSpec is everything needed to define one node's domain.
type domainSpec struct {
	Name     string
	Type     string // libvirt domain type
	Meta     nodeMeta
	CPUs     int
	MaxCPUs  int
	MemoryMB int64
	MaxMemMB int64
	Bridge   string // NIC on this bridge, or
	Network  string // NIC on this libvirt network, or no NIC
	IP       string
	Prefix   int
	// GuestIP puts the address on the NIC (<ip>). Xen's libxl hands it to the vif;
	// QEMU refuses guest addresses on bridged NICs, so there it is only recorded.
	GuestIP bool
	// Guest is set for a real guest: its disks, boot and NIC.
	Guest *guestSpec
}

// guestSpec is what a real guest's domain has besides its size.
type guestSpec struct {
	Kernel, Initrd, Cmdline string
	Disk, DiskFormat        string // the overlay
	Seed                    string // the seed volume
	Tap, MAC                string // NIC: a pre-made tap (qemu) ...
	Bridge                  string // ... or the bridge (xen)
	Emulated                bool   // TCG: the maximum CPU model qemu emulates
	Emulator                string // the emulator libvirt runs; empty: its own
	Firmware                string // QEMU's -bios for a direct kernel boot; empty: libvirt's
	TCGCacheMB              int    // TCG: the translation cache (MiB)
	// VirtioMem boots the guest with its own memory and a virtio-mem device spanning the
	// rest of its maximum (memory_hotplug), instead of booting it with the maximum.
	VirtioMem bool
}

// The domain XML the plugin writes. Only the elements it sets are modelled.
type domainXML struct {
	XMLName       xml.Name     `xml:"domain"`
	Type          string       `xml:"type,attr"`
	Name          string       `xml:"name"`
	Title         string       `xml:"title,omitempty"`
	Description   string       `xml:"description,omitempty"`
	Metadata      metadataXML  `xml:"metadata"`
	MaxMemory     *maxMemXML   `xml:"maxMemory,omitempty"`
	Memory        sizeXML      `xml:"memory"`
	CurrentMemory sizeXML      `xml:"currentMemory"`
	VCPU          vcpuXML      `xml:"vcpu"`
	OS            osXML        `xml:"os"`
	OnPoweroff    string       `xml:"on_poweroff"`
	OnReboot      string       `xml:"on_reboot"`
	OnCrash       string       `xml:"on_crash"`
	Features      *featuresXML `xml:"features,omitempty"`
	CPU           *cpuXML      `xml:"cpu,omitempty"`
	Devices       devicesXML   `xml:"devices"`
}

type cpuXML struct {
	Mode string     `xml:"mode,attr"`
	NUMA *[]cellXML `xml:"numa>cell,omitempty"`
}

// cellXML is a guest NUMA node: libvirt wants one for any memory device.
type cellXML struct {
	ID     int    `xml:"id,attr"`
	CPUs   string `xml:"cpus,attr"`
	Memory uint64 `xml:"memory,attr"`
	Unit   string `xml:"unit,attr,omitempty"`
}

type maxMemXML struct {
	Slots int    `xml:"slots,attr"`
	Unit  string `xml:"unit,attr,omitempty"`
	Value uint64 `xml:",chardata"`
}

// memoryDevXML is a virtio-mem device: Size is how far it can grow the guest, Requested
// how much of it is plugged in.
type memoryDevXML struct {
	Model  string          `xml:"model,attr"`
	Target memoryTargetXML `xml:"target"`
	Alias  *aliasXML       `xml:"alias,omitempty"`
}

type memoryTargetXML struct {
	Size      sizeXML `xml:"size"`
	Node      int     `xml:"node"`
	Block     sizeXML `xml:"block"`
	Requested sizeXML `xml:"requested"`
}

type aliasXML struct {
	Name string `xml:"name,attr"`
}

type featuresXML struct {
	ACPI *struct{} `xml:"acpi,omitempty"`
	TCG  *tcgXML   `xml:"tcg,omitempty"`
}

type tcgXML struct {
	TBCache sizeXML `xml:"tb-cache"`
}

type metadataXML struct {
	Node *nodeMeta
}

type sizeXML struct {
	Unit  string `xml:"unit,attr,omitempty"`
	Value uint64 `xml:",chardata"`
}

type vcpuXML struct {
	Placement string `xml:"placement,attr,omitempty"`
	Current   int    `xml:"current,attr,omitempty"`
	Max       int    `xml:",chardata"`
}

type osXML struct {
	Type    osTypeXML  `xml:"type"`
	Loader  *loaderXML `xml:"loader,omitempty"`
	Kernel  string     `xml:"kernel,omitempty"`
	Initrd  string     `xml:"initrd,omitempty"`
	Cmdline string     `xml:"cmdline,omitempty"`
	Boot    *bootXML   `xml:"boot,omitempty"`
}

type loaderXML struct {
	Type     string `xml:"type,attr"`
	Readonly string `xml:"readonly,attr"`
	Path     string `xml:",chardata"`
}

type osTypeXML struct {
	Machine string `xml:"machine,attr,omitempty"`
	Value   string `xml:",chardata"`
}

type bootXML struct {
	Dev string `xml:"dev,attr"`
}

type devicesXML struct {
	Emulator    string          `xml:"emulator,omitempty"`
	Controllers []controllerXML `xml:"controller"`
	Disks       []diskXML       `xml:"disk"`
	Interfaces  []interfaceXML  `xml:"interface"`
	Serial      *serialXML      `xml:"serial,omitempty"`
	Console     *serialXML      `xml:"console,omitempty"`
	Balloon     *balloonXML     `xml:"memballoon,omitempty"`
	Memory      []memoryDevXML  `xml:"memory"`
}

type diskXML struct {
	Type     string        `xml:"type,attr"`
	Device   string        `xml:"device,attr"`
	Driver   diskDriverXML `xml:"driver"`
	Source   diskSourceXML `xml:"source"`
	Target   diskTargetXML `xml:"target"`
	ReadOnly *struct{}     `xml:"readonly"`
}

type diskDriverXML struct {
	Name string `xml:"name,attr"`
	Type string `xml:"type,attr"`
}

type diskSourceXML struct {
	File string `xml:"file,attr"`
}

type diskTargetXML struct {
	Dev string `xml:"dev,attr"`
	Bus string `xml:"bus,attr"`
}

type serialXML struct {
	Type   string           `xml:"type,attr"`
	Target *serialTargetXML `xml:"target,omitempty"`
}

type serialTargetXML struct {
	Type string `xml:"type,attr,omitempty"`
	Port *int   `xml:"port,attr,omitempty"`
}

type controllerXML struct {
	Type  string `xml:"type,attr"`
	Model string `xml:"model,attr,omitempty"`
}

type balloonXML struct {
	Model             string    `xml:"model,attr"`
	FreePageReporting string    `xml:"freePageReporting,attr,omitempty"`
	Stats             *statsXML `xml:"stats,omitempty"`
}

type statsXML struct {
	Period int `xml:"period,attr"`
}

type interfaceXML struct {
	Type   string     `xml:"type,attr"`
	MAC    *macXML    `xml:"mac,omitempty"`
	Source *sourceXML `xml:"source,omitempty"`
	Target *targetXML `xml:"target,omitempty"`
	Model  *modelXML  `xml:"model,omitempty"`
	ROM    *romXML    `xml:"rom,omitempty"`
	IP     []ipXML    `xml:"ip"`
}

type romXML struct {
	Enabled string `xml:"enabled,attr"`
}

type macXML struct {
	Address string `xml:"address,attr"`
}

type targetXML struct {
	Dev     string `xml:"dev,attr"`
	Managed string `xml:"managed,attr,omitempty"`
}

type modelXML struct {
	Type string `xml:"type,attr"`
}

type sourceXML struct {
	Bridge  string `xml:"bridge,attr,omitempty"`
	Network string `xml:"network,attr,omitempty"`
}

type ipXML struct {
	Address string `xml:"address,attr"`
	Prefix  int    `xml:"prefix,attr,omitempty"`
}

// xml renders the domain definition.
func (d domainSpec) xml() (string, error) {
	meta := d.Meta
	x := domainXML{
		Type:          d.Type,
		Name:          d.Name,
		Title:         fmt.Sprintf("necos slice %s part %s node %s", oneLine(meta.Slice), oneLine(meta.Part), oneLine(meta.Name)),
		Description:   fmt.Sprintf("necos slice part %q of tenant %q, node %s", meta.Record.Name, meta.Record.Tenant, meta.Name),
		Metadata:      metadataXML{Node: &meta},
		Memory:        sizeXML{Unit: "MiB", Value: uint64(d.MaxMemMB)},
		CurrentMemory: sizeXML{Unit: "MiB", Value: uint64(d.MemoryMB)},
		VCPU:          vcpuXML{Placement: "static", Current: d.CPUs, Max: d.MaxCPUs},
		// HVM boots any guest (Xen HVM/PVHVM, QEMU/KVM) without a kernel on the host.
		OS:         osXML{Type: osTypeXML{Value: "hvm"}, Boot: &bootXML{Dev: "hd"}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "restart",
	}
	var nic *interfaceXML
	switch {
	case d.Guest != nil:
		x.guest(d)
	case d.Bridge != "":
		nic = &interfaceXML{Type: "bridge", Source: &sourceXML{Bridge: d.Bridge}}
	case d.Network != "":
		nic = &interfaceXML{Type: "network", Source: &sourceXML{Network: d.Network}}
	}
	if nic != nil {
		if d.GuestIP && d.IP != "" {
			nic.IP = []ipXML{{Address: d.IP, Prefix: d.Prefix}}
		}
		x.Devices.Interfaces = []interfaceXML{*nic}
	}
	b, err := xml.MarshalIndent(x, "", "  ")
	if err != nil {
		return "", fmt.Errorf("render domain %s: %w", d.Name, err)
	}
	return string(b), nil
}

// guest adds a real guest's boot, disks, NIC, console and balloon.
func (x *domainXML) guest(d domainSpec) {
	g := d.Guest
	bus, prefix := "virtio", "vd"
	if d.Type == "xen" {
		bus, prefix = "xen", "xvd"
	}
	if g.Kernel != "" {
		x.OS.Kernel, x.OS.Initrd, x.OS.Cmdline, x.OS.Boot = g.Kernel, g.Initrd, g.Cmdline, nil
		if d.Type != "xen" && g.Firmware != "" {
			x.OS.Loader = &loaderXML{Type: "rom", Readonly: "yes", Path: g.Firmware}
			// qboot has no tables of its own (SeaBIOS makes MP and ACPI tables when QEMU
			// gives none): without QEMU's ACPI tables the guest finds no interrupt
			// routing for its PCI devices.
			x.features().ACPI = &struct{}{}
		}
	}
	if d.Type != "xen" {
		x.OS.Type.Machine = "q35"
		if g.Emulated {
			x.CPU = &cpuXML{Mode: "maximum"}
		} else {
			x.CPU = &cpuXML{Mode: "host-passthrough"}
		}
	}
	if g.Disk != "" {
		x.Devices.Disks = append(x.Devices.Disks, diskXML{Type: "file", Device: "disk",
			Driver: diskDriverXML{Name: "qemu", Type: g.DiskFormat}, Source: diskSourceXML{File: g.Disk},
			Target: diskTargetXML{Dev: prefix + "a", Bus: bus}})
	}
	x.Devices.Disks = append(x.Devices.Disks, diskXML{Type: "file", Device: "disk",
		Driver: diskDriverXML{Name: "qemu", Type: "raw"}, Source: diskSourceXML{File: g.Seed},
		Target: diskTargetXML{Dev: prefix + "b", Bus: bus}, ReadOnly: &struct{}{}})
	nic := interfaceXML{MAC: &macXML{Address: g.MAC}}
	if g.Tap != "" {
		// A tap the plugin made: libvirt opens it and leaves it alone (netdev.go).
		nic.Type, nic.Target, nic.Model = "ethernet", &targetXML{Dev: g.Tap, Managed: "no"}, &modelXML{Type: "virtio"}
		// No network boot, so no option ROM (iPXE): SeaBIOS would run it at every boot.
		nic.ROM = &romXML{Enabled: "no"}
	} else {
		nic.Type, nic.Source = "bridge", &sourceXML{Bridge: g.Bridge}
		if d.GuestIP && d.IP != "" {
			nic.IP = []ipXML{{Address: d.IP, Prefix: d.Prefix}}
		}
	}
	x.Devices.Interfaces = append(x.Devices.Interfaces, nic)
	port := 0
	x.Devices.Serial = &serialXML{Type: "pty", Target: &serialTargetXML{Port: &port}}
	x.Devices.Console = &serialXML{Type: "pty", Target: &serialTargetXML{Type: "serial", Port: &port}}
	if d.Type != "xen" {
		// Free page reporting: the guest hands the pages it frees back to the host, so an
		// idle guest holds about what it uses, not everything it ever touched.
		x.Devices.Balloon = &balloonXML{Model: "virtio", FreePageReporting: "on", Stats: &statsXML{Period: 5}}
		// No USB: nothing uses it, and it is one more device to enumerate at boot.
		x.Devices.Controllers = append(x.Devices.Controllers, controllerXML{Type: "usb", Model: "none"})
		if g.VirtioMem && d.MaxMemMB > d.MemoryMB {
			x.virtioMem(d)
		}
	}
	if g.Emulated {
		// TCG's translated-code cache defaults to 1 GiB, of which a booted guest fills
		// ~80 MB and keeps it resident (tcg_cache_mb, DefaultTCGCacheMB).
		cache := cmp.Or(g.TCGCacheMB, DefaultTCGCacheMB)
		x.features().TCG = &tcgXML{TBCache: sizeXML{Unit: "MiB", Value: uint64(cache)}}
		// Single-threaded TCG (the wrapper, README): a live add-cpu under QEMU 7.2's
		// multi-threaded TCG can abort QEMU; libvirt 9.0 cannot ask for thread=single.
		x.Devices.Emulator = g.Emulator
	}
}

// features returns the domain's <features>, made when missing.
func (x *domainXML) features() *featuresXML {
	if x.Features == nil {
		x.Features = &featuresXML{}
	}
	return x.Features
}

// virtioMemBlockMiB is the virtio-mem device's block, the unit memory is plugged in:
// QEMU's smallest on x86 (the transparent huge page size).
const virtioMemBlockMiB = 2

// virtioMemAlias names the plugin's virtio-mem device ("ua-": an alias libvirt keeps in
// the persistent definition too).
const virtioMemAlias = "ua-necos-mem"

// virtioMem boots the guest with its own memory (one NUMA node, which libvirt wants for
// memory devices) and adds a virtio-mem device spanning the rest of its maximum, nothing
// plugged: a guest booted with its maximum sizes its page map and tables for it and
// touches memory that its balloon gives back only in part (an idle 256 MB guest of a
// 1 GB maximum held 154 MB of guest RAM on the host, of 256 MB: 83).
func (x *domainXML) virtioMem(d domainSpec) {
	size := roundUp(d.MaxMemMB-d.MemoryMB, virtioMemBlockMiB)
	x.MaxMemory = &maxMemXML{Slots: 1, Unit: "MiB", Value: uint64(d.MemoryMB + size)}
	x.Memory = sizeXML{Unit: "MiB", Value: uint64(d.MemoryMB + size)}
	cells := []cellXML{{ID: 0, CPUs: fmt.Sprintf("0-%d", max(d.MaxCPUs, d.CPUs, 1)-1), Memory: uint64(d.MemoryMB), Unit: "MiB"}}
	x.CPU.NUMA = &cells
	x.Devices.Memory = append(x.Devices.Memory, memoryDevXML{Model: "virtio-mem", Alias: &aliasXML{Name: virtioMemAlias},
		Target: memoryTargetXML{Size: sizeXML{Unit: "MiB", Value: uint64(size)},
			Block: sizeXML{Unit: "MiB", Value: virtioMemBlockMiB}, Requested: sizeXML{Unit: "MiB", Value: 0}}})
}

func roundUp(v, to int64) int64 { return (v + to - 1) / to * to }

// DefaultTCGCacheMB is the default size of a TCG guest's translation cache: smaller
// caches make boots flush and translate again (16 MiB: +15 % CPU per boot), larger ones
// only cost memory.
const DefaultTCGCacheMB = 32

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// liveXML is what the plugin reads back from a domain's XML.
type liveXML struct {
	Name          string  `xml:"name"`
	UUID          string  `xml:"uuid"`
	Memory        sizeXML `xml:"memory"`
	CurrentMemory sizeXML `xml:"currentMemory"`
	VCPU          vcpuXML `xml:"vcpu"`
	Metadata      struct {
		Node *nodeMeta `xml:"urn:necos:vim-xen:v1 node"`
	} `xml:"metadata"`
	Mems []struct {
		Model     string  `xml:"model,attr"`
		Requested sizeXML `xml:"target>requested"`
	} `xml:"devices>memory"`
}

// memMB is the node's memory: its balloon's, plus what a virtio-mem device has plugged
// in (memhotplug.go).
func (x liveXML) memMB() int64 {
	mb := x.CurrentMemory.mebibytes()
	for _, m := range x.Mems {
		if m.Model == "virtio-mem" {
			mb += m.Requested.mebibytes()
		}
	}
	return mb
}

func parseDomain(s string) (liveXML, error) {
	var x liveXML
	if err := xml.Unmarshal([]byte(s), &x); err != nil {
		return liveXML{}, fmt.Errorf("parse domain XML: %w", err)
	}
	return x, nil
}

// mebibytes converts a libvirt size element to MiB (libvirt writes KiB; other units
// appear only in hand-written XML).
func (s sizeXML) mebibytes() int64 {
	v := s.Value
	switch strings.ToLower(s.Unit) {
	case "b", "bytes":
		return int64(v >> 20)
	case "", "k", "kib":
		return int64(v >> 10)
	case "kb":
		return int64(v * 1000 >> 20)
	case "m", "mib":
		return int64(v)
	case "mb":
		return int64(v * 1000 * 1000 >> 20)
	case "g", "gib":
		return int64(v << 10)
	case "gb":
		return int64(v * 1000 * 1000 * 1000 >> 20)
	}
	return int64(v >> 10)
}

// current returns the vCPUs the domain runs with.
func (v vcpuXML) current() int {
	if v.Current > 0 {
		return v.Current
	}
	return v.Max
}

// metadataContent renders meta for virDomainSetMetadata, which wants the element without
// its namespace (libvirt adds the namespace it is given).
func metadataContent(meta nodeMeta) (string, error) {
	b, err := xml.Marshal(meta)
	if err != nil {
		return "", fmt.Errorf("render metadata of %s: %w", meta.Name, err)
	}
	return strings.Replace(string(b), ` xmlns="`+Namespace+`"`, "", 1), nil
}
