package xenvim

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/necos/necos/sdk"
)

// DefaultURI is the libvirt connection used when the configuration names none.
const DefaultURI = "xen:///system"

// Config is the plugin's configuration, one per provider. Its JSON keys are those of
// [Plugin.ConfigSchema].
type Config struct {
	// URI is the libvirt connection, e.g. "xen:///system", "qemu:///system" or, in tests,
	// "test:///default".
	URI string `json:"uri"`
	// DomainType overrides the libvirt domain type derived from the URI.
	DomainType string `json:"domain_type"`
	// Capacity is what the provider sells; offers and creates never exceed it.
	Capacity Capacity `json:"capacity"`
	// MaxNode caps a single node; it is also how far Resize can grow a node while it
	// runs (its maximum vCPUs and memory). Zero fields mean the provider's capacity.
	MaxNode NodeLimit `json:"max_node"`
	// PricePerNodeDay is the price of one node for one day, in euros; an offer costs
	// nodes × PricePerNodeDay.
	PricePerNodeDay float64 `json:"price_per_node_day"`
	// Subnet is the CIDR node addresses are assigned from (lowest free address first).
	Subnet string `json:"subnet"`
	// Network is the libvirt network that nodes of a part without a bridge attach to;
	// empty means such nodes get no NIC.
	Network string `json:"network"`
	// SSH is the endpoint handed to tenants as the part's vim-ref ip-ssh/port-ssh, and
	// how the Deployer reaches the nodes (see [SSHConfig]).
	SSH *SSHConfig `json:"ssh"`
	// API is the endpoint handed to tenants as the part's vim-ref ip-api/port-api.
	API *Endpoint `json:"api"`
	// Images are the base images a VDU's vdu-image names (see [Image]). With images and
	// a hypervisor URI (qemu://, xen://) nodes are real guests: a copy-on-write disk of the
	// image, a NoCloud seed, a NIC on the part's bridge. Without, domains have no disk.
	Images map[string]Image `json:"images"`
	// DefaultImage is the image of VDUs that name none (or an unknown one is an error).
	DefaultImage string `json:"default_image"`
	// StoragePool is the libvirt storage pool (a directory pool, made when missing at
	// StorageDir) holding the nodes' disks and seeds and the images' base volumes.
	StoragePool string `json:"storage_pool"`
	StorageDir  string `json:"storage_dir"`
	// KeyDir keeps each part's private SSH key (0600 files, one per part), out of the
	// domains' XML, which anyone with read access to libvirt can see.
	KeyDir string `json:"key_dir"`
	// SliceNetwork is the network the nodes of one slice share across its links (e.g.
	// 10.10.0.0/16 when each site's subnet is a /24 of it): nodes get its prefix length on
	// their NIC, so they reach the nodes of linked parts at other sites directly. Default:
	// the subnet.
	SliceNetwork string `json:"slice_network"`
	// TCGEmulator is the emulator of guests under TCG (domain type qemu): empty means
	// [DefaultTCGEmulator] when it is installed (scripts/qemu.sh installs it), else
	// libvirt's own; "libvirt" means libvirt's own. See the README on live add-cpu.
	TCGEmulator string `json:"tcg_emulator"`
	// TCGCacheMB is the size of a TCG guest's translated-code cache in MiB (default
	// [DefaultTCGCacheMB]): what an idle guest's qemu keeps resident for it, against how
	// often a boot flushes it and translates again.
	TCGCacheMB int `json:"tcg_cache_mb"`
	// MemoryHotplug is how a real guest under QEMU (KVM or TCG) grows past the memory it
	// has: [MemoryHotplugVirtioMem] (the default) boots it with its own size and plugs
	// memory in on a Resize; [MemoryHotplugBalloon] boots it with max_node's memory and
	// balloons down to its size, for images without virtio-mem. Xen guests always
	// balloon.
	MemoryHotplug string `json:"memory_hotplug"`
	// BootFirmware is the firmware of QEMU guests whose image boots a kernel directly:
	// empty or "libvirt" means libvirt's (SeaBIOS); else an absolute path to a BIOS
	// image (QEMU's -bios), e.g. [QbootFirmware]. Such guests also get QEMU's ACPI
	// tables, which SeaBIOS made up for. Guests booting from their disk always get
	// libvirt's.
	BootFirmware string `json:"boot_firmware"`
}

// QbootFirmware is qboot, QEMU's minimal firmware (Debian's qemu-system-data ships it):
// it loads the kernel and initrd QEMU hands it and jumps in, where SeaBIOS first
// initializes every device and runs option ROMs (README, "Real guests").
const QbootFirmware = "/usr/share/qemu/qboot.rom"

// The ways a guest grows past its memory (Config.MemoryHotplug).
const (
	// MemoryHotplugVirtioMem boots a guest with its own size and a virtio-mem device
	// spanning the rest of max_node's memory, of which a Resize plugs what it asks for:
	// an idle guest holds no page tables or page map for memory it does not have. The
	// guest needs the virtio_mem driver and hot-plugged memory onlined (the project's
	// image does both; a standard image needs memhp_default_state=online_movable).
	MemoryHotplugVirtioMem = "virtio-mem"
	// MemoryHotplugBalloon boots a guest with max_node's memory and gives back what it
	// does not have through its balloon.
	MemoryHotplugBalloon = "balloon"
)

// DefaultTCGEmulator is where scripts/qemu.sh installs the wrapper that runs QEMU's TCG
// single-threaded (thread=single), under which a live vCPU hot-plug cannot abort QEMU 7.2.
const DefaultTCGEmulator = "/var/lib/necos/qemu/qemu-system-x86_64-tcg-single"

// Image is a base image: a disk, and optionally a kernel, initrd and command line to boot
// it directly (as the project's small guest does); without a kernel the disk boots itself
// (a cloud image). Paths are files on the plugin's host; the plugin uploads them into the
// storage pool once (by content), so the hypervisor can read them.
type Image struct {
	Disk    string `json:"disk"`
	Format  string `json:"format"`
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
}

// Defaults of the storage and key locations.
const (
	DefaultStoragePool = "necos"
	DefaultStorageDir  = "/var/lib/necos/vim-xen/pool"
	DefaultKeyDir      = "/var/lib/necos/vim-xen/keys"
)

// Capacity is the compute a provider sells.
type Capacity struct {
	// CPUs is the number of vCPUs the provider's nodes may hold together.
	CPUs int `json:"cpus"`
	// MemoryMB is the memory they may hold together.
	MemoryMB int64 `json:"memory_mb"`
	// StorageGB is the storage they may claim together (recorded, not allocated).
	StorageGB int64 `json:"storage_gb"`
}

// NodeLimit is the largest node a provider makes.
type NodeLimit struct {
	// CPUs is a node's maximum vCPUs; 0 means the capacity's CPUs.
	CPUs int `json:"cpus"`
	// MemoryMB is a node's maximum memory; 0 means the capacity's memory.
	MemoryMB int64 `json:"memory_mb"`
}

// Endpoint is an address and port tenants reach the provider at.
type Endpoint struct {
	// IP is an IPv4 or IPv6 address.
	IP string `json:"ip"`
	// Port is a TCP port.
	Port int `json:"port"`
}

// schema is what ConfigSchema returns; kept next to Config so both change together.
var schema = sdk.ConfigSchema{Fields: []sdk.ConfigField{
	{Name: "uri", Type: sdk.FieldString, Default: DefaultURI,
		Description: "libvirt connection URI (xen:///system, qemu:///system, test:///default for tests)"},
	{Name: "domain_type", Type: sdk.FieldString,
		Description: "libvirt domain type; default from the URI: xen for xen:// and test://; for qemu:// kvm when a probe guest runs under KVM, else qemu (TCG)"},
	{Name: "capacity", Type: sdk.FieldObject, Required: true,
		Description: "what the provider sells: {cpus, memory_mb, storage_gb}; offers and creates never exceed it"},
	{Name: "max_node", Type: sdk.FieldObject,
		Description: "largest node, and how far Resize grows a running node: {cpus, memory_mb}; default the capacity"},
	{Name: "price_per_node_day", Type: sdk.FieldNumber, Default: 0.0,
		Description: "euros per node per day; an offer costs nodes × this"},
	{Name: "subnet", Type: sdk.FieldString,
		Description: "CIDR node addresses are assigned from and recorded in (and set on the node's NIC on Xen)"},
	{Name: "network", Type: sdk.FieldString,
		Description: "libvirt network for nodes of parts without a bridge; empty: such nodes get no NIC"},
	{Name: "ssh", Type: sdk.FieldObject, Description: "SSH endpoint handed to tenants (vim-ref ip-ssh/port-ssh) and how " +
		"services are deployed over SSH: {ip, port, user (default root), host_key (authorized_keys line of the host key " +
		"to pin) and/or known_hosts (file), target (gateway: every node at ip:port; node: each node at its own " +
		"address, port 22; default gateway when ip is set), step_timeout (default 5m)}"},
	{Name: "api", Type: sdk.FieldObject, Description: "API endpoint handed to tenants (vim-ref ip-api/port-api): {ip, port}"},
	{Name: "images", Type: sdk.FieldObject, Description: "base images by vdu-image name: {NAME: {disk, format (qcow2|raw), " +
		"kernel, initrd, cmdline}}; paths may use ${VAR}; with images and a qemu:// or xen:// URI nodes are real guests"},
	{Name: "default_image", Type: sdk.FieldString, Description: "image of VDUs that name none"},
	{Name: "storage_pool", Type: sdk.FieldString, Default: DefaultStoragePool,
		Description: "libvirt directory pool for the nodes' disks and seeds (made when missing)"},
	{Name: "storage_dir", Type: sdk.FieldString, Default: DefaultStorageDir, Description: "directory of storage_pool when it is made"},
	{Name: "key_dir", Type: sdk.FieldString, Default: DefaultKeyDir, Description: "directory keeping each part's private SSH key (0600)"},
	{Name: "slice_network", Type: sdk.FieldString,
		Description: "CIDR the nodes of a slice share across links; its prefix length goes on the nodes' NICs (default: subnet)"},
	{Name: "tcg_cache_mb", Type: sdk.FieldInt, Default: DefaultTCGCacheMB,
		Description: "TCG guests' translated-code cache in MiB (resident in an idle guest's qemu; smaller: more retranslation at boot)"},
	{Name: "memory_hotplug", Type: sdk.FieldString, Default: MemoryHotplugVirtioMem,
		Description: "how QEMU guests grow past their memory: virtio-mem (boot with the node's size, plug memory in on a resize; " +
			"the image needs the virtio_mem driver and memhp_default_state=online_movable) or balloon (boot with max_node's memory, " +
			"balloon down to the node's size)"},
	{Name: "boot_firmware", Type: sdk.FieldString,
		Description: "firmware of QEMU guests whose image boots a kernel directly: an absolute path to a BIOS image, e.g. " +
			QbootFirmware + " (qboot: loads the kernel and jumps in; the guest gets QEMU's ACPI tables); default: libvirt's (SeaBIOS)"},
	{Name: "tcg_emulator", Type: sdk.FieldString,
		Description: "emulator of TCG guests (domain type qemu): an absolute path; default " + DefaultTCGEmulator +
			" when installed (scripts/qemu.sh: single-threaded TCG, so live add-cpu cannot abort QEMU), else libvirt's; \"libvirt\": libvirt's own"},
}}

// settings is a checked Config with defaults applied.
type settings struct {
	uri        string
	domainType string // empty until the connection tells (qemu://)
	capacity   sdk.Resources
	maxCPUs    int
	maxMemMB   int64
	price      float64
	subnet     netip.Prefix // invalid when no subnet
	network    string
	vimRef     sdk.Endpoint
	provider   sdk.Provider
	ssh        sshSettings

	images       map[string]Image
	defaultImage string
	// guests is true when nodes are real guests (images and a hypervisor URI).
	guests     bool
	pool       string
	storageDir string
	keyDir     string
	nicPrefix  int // prefix length on the nodes' NICs
	// tcgEmulator is the <emulator> of TCG guests; empty: libvirt's own.
	tcgEmulator string
	// tcgCacheMB is the TCG guests' translation cache (MiB).
	tcgCacheMB int
	// virtioMem: QEMU guests grow through a virtio-mem device (memory_hotplug).
	virtioMem bool
	// bootFirmware is the -bios of QEMU guests booting a kernel directly; empty:
	// libvirt's.
	bootFirmware string
}

// check validates c and reports every problem at once, each naming its key.
func (c Config) check(provider sdk.Provider) (settings, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	s := settings{uri: c.URI, domainType: c.DomainType, price: c.PricePerNodeDay, network: c.Network,
		provider: provider}
	if s.uri == "" {
		s.uri = DefaultURI
	}
	if s.domainType == "" {
		switch scheme(s.uri) {
		case "xen", "test":
			// The test driver accepts (and keeps) type='xen', so tests define the same
			// domains production does.
			s.domainType = "xen"
		case "qemu":
			// Decided at connect time: kvm when a probe guest runs under it (accel.go).
		default:
			bad("domain_type: required for URI scheme %q (e.g. xen, kvm, qemu)", scheme(s.uri))
		}
	}
	if c.Capacity.CPUs <= 0 {
		bad("capacity.cpus: must be > 0, got %d", c.Capacity.CPUs)
	}
	if c.Capacity.MemoryMB <= 0 {
		bad("capacity.memory_mb: must be > 0, got %d", c.Capacity.MemoryMB)
	}
	if c.Capacity.StorageGB < 0 {
		bad("capacity.storage_gb: must be >= 0, got %d", c.Capacity.StorageGB)
	}
	s.capacity = sdk.Resources{CPUs: c.Capacity.CPUs, MemoryMB: c.Capacity.MemoryMB, StorageGB: c.Capacity.StorageGB}
	s.maxCPUs, s.maxMemMB = c.MaxNode.CPUs, c.MaxNode.MemoryMB
	switch {
	case s.maxCPUs < 0:
		bad("max_node.cpus: must be >= 0, got %d", s.maxCPUs)
	case s.maxCPUs == 0 || s.maxCPUs > s.capacity.CPUs:
		s.maxCPUs = s.capacity.CPUs
	}
	switch {
	case s.maxMemMB < 0:
		bad("max_node.memory_mb: must be >= 0, got %d", s.maxMemMB)
	case s.maxMemMB == 0 || s.maxMemMB > s.capacity.MemoryMB:
		s.maxMemMB = s.capacity.MemoryMB
	}
	if c.PricePerNodeDay < 0 {
		bad("price_per_node_day: must be >= 0, got %g", c.PricePerNodeDay)
	}
	if c.Subnet != "" {
		p, err := netip.ParsePrefix(c.Subnet)
		switch {
		case err != nil:
			bad("subnet: expected a CIDR such as 10.10.2.0/24: %v", err)
		case hostCount(p.Masked()) < 1:
			bad("subnet: %s holds no host address", c.Subnet)
		default:
			s.subnet = p.Masked()
		}
	}
	s.ssh = c.SSH.check(bad)
	if e := c.SSH; e != nil && (e.IP != "" || e.Port != 0) {
		s.vimRef.IPSSH, s.vimRef.PortSSH = e.IP, e.Port
		checkEndpoint("ssh", Endpoint{IP: e.IP, Port: e.Port}, bad)
	}
	if e := c.API; e != nil {
		s.vimRef.IPAPI, s.vimRef.PortAPI = e.IP, e.Port
		checkEndpoint("api", *e, bad)
	}
	s.pool, s.storageDir, s.keyDir = or(c.StoragePool, DefaultStoragePool), or(c.StorageDir, DefaultStorageDir), or(c.KeyDir, DefaultKeyDir)
	s.images = map[string]Image{}
	for name, im := range c.Images {
		im.Disk, im.Kernel, im.Initrd = os.ExpandEnv(im.Disk), os.ExpandEnv(im.Kernel), os.ExpandEnv(im.Initrd)
		if im.Disk == "" && im.Kernel == "" {
			bad("images.%s: a disk or a kernel is required", name)
		}
		if im.Initrd != "" && im.Kernel == "" {
			bad("images.%s.initrd: needs a kernel", name)
		}
		switch im.Format {
		case "":
			im.Format = "raw"
			if strings.HasSuffix(im.Disk, ".qcow2") {
				im.Format = "qcow2"
			}
		case "raw", "qcow2":
		default:
			bad("images.%s.format: expected qcow2 or raw, got %q", name, im.Format)
		}
		s.images[name] = im
	}
	s.defaultImage = c.DefaultImage
	if s.defaultImage != "" {
		if _, ok := s.images[s.defaultImage]; !ok {
			bad("default_image: %q is not one of images", s.defaultImage)
		}
	}
	s.guests = len(s.images) > 0 && scheme(s.uri) != "test"
	switch e := os.ExpandEnv(c.TCGEmulator); {
	case e == "":
		if executable(DefaultTCGEmulator) == nil {
			s.tcgEmulator = DefaultTCGEmulator
		}
	case e == "libvirt":
	case !filepath.IsAbs(e):
		bad("tcg_emulator: expected an absolute path or \"libvirt\", got %q", c.TCGEmulator)
	default:
		if err := executable(e); err != nil {
			bad("tcg_emulator: %v", err)
		}
		s.tcgEmulator = e
	}
	switch {
	case c.TCGCacheMB == 0:
		s.tcgCacheMB = DefaultTCGCacheMB
	case c.TCGCacheMB < 1 || c.TCGCacheMB > 4096:
		bad("tcg_cache_mb: expected 1 to 4096 (MiB), got %d", c.TCGCacheMB)
	default:
		s.tcgCacheMB = c.TCGCacheMB
	}
	switch e := os.ExpandEnv(c.BootFirmware); {
	case e == "", e == "libvirt":
	case !filepath.IsAbs(e):
		bad("boot_firmware: expected an absolute path or \"libvirt\", got %q", c.BootFirmware)
	default:
		if fi, err := os.Stat(e); err != nil {
			bad("boot_firmware: %v", err)
		} else if !fi.Mode().IsRegular() {
			bad("boot_firmware: expected a firmware file, %s is not a regular file", e)
		}
		s.bootFirmware = e
	}
	switch c.MemoryHotplug {
	case "", MemoryHotplugVirtioMem:
		s.virtioMem = true
	case MemoryHotplugBalloon:
	default:
		bad("memory_hotplug: expected %q or %q, got %q", MemoryHotplugVirtioMem, MemoryHotplugBalloon, c.MemoryHotplug)
	}
	if s.guests && !s.subnet.IsValid() {
		bad("subnet: required with images (nodes of real guests need addresses)")
	}
	if s.subnet.IsValid() {
		s.nicPrefix = s.subnet.Bits()
	}
	if c.SliceNetwork != "" {
		p, err := netip.ParsePrefix(c.SliceNetwork)
		switch {
		case err != nil:
			bad("slice_network: expected a CIDR such as 10.10.0.0/16: %v", err)
		case s.subnet.IsValid() && (!p.Masked().Contains(s.subnet.Addr()) || p.Bits() > s.subnet.Bits()):
			bad("slice_network: %s does not contain subnet %s", c.SliceNetwork, s.subnet)
		default:
			s.nicPrefix = p.Bits()
		}
	}
	if len(problems) > 0 {
		return settings{}, sdk.Errorf(sdk.CodeInvalidArgument, "config: %s", strings.Join(problems, "; "))
	}
	return s, nil
}

func checkEndpoint(key string, e Endpoint, bad func(string, ...any)) {
	if _, err := netip.ParseAddr(e.IP); err != nil {
		bad("%s.ip: expected an IP address, got %q", key, e.IP)
	}
	if e.Port <= 0 || e.Port > 65535 {
		bad("%s.port: expected 1-65535, got %d", key, e.Port)
	}
}

// scheme returns the driver part of a libvirt URI: "xen" for "xen+ssh://host/system".
func scheme(uri string) string {
	s, _, ok := strings.Cut(uri, ":")
	if !ok {
		return ""
	}
	s, _, _ = strings.Cut(s, "+")
	return strings.ToLower(s)
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// imageOf resolves a VDU's vdu-image: the named image, or the default for none. An
// unknown name is InvalidArgument naming the VDU and the images the provider has.
func (s *settings) imageOf(vdu, name string) (string, Image, error) {
	if name == "" {
		name = s.defaultImage
	}
	if im, ok := s.images[name]; ok {
		return name, im, nil
	}
	have := make([]string, 0, len(s.images))
	for n := range s.images {
		have = append(have, n)
	}
	sort.Strings(have)
	return "", Image{}, sdk.Errorf(sdk.CodeInvalidArgument, "vdu %s: unknown vdu-image %q at provider %s (images: %s)",
		vdu, name, s.provider.Name, strings.Join(have, ", "))
}

// executable reports why path is not an executable file, or nil.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}
