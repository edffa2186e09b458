package xenvim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"libvirt.org/go/libvirt"
)

func TestDomainName(t *testing.T) {
	ref := sdk.PartRef{SliceID: "IoTService_sliced", PartID: "dc slice/1"}
	name := domainName("prov", ref, "k8s-node-1")
	if !strings.HasPrefix(name, "necos.IoTService_sliced.dc_slice_1.k8s-node-1.") {
		t.Errorf("name %q does not show slice, part and node", name)
	}
	for _, r := range name {
		if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", r) {
			t.Errorf("name %q holds %q", name, r)
		}
	}
	// Ids that sanitize alike, another provider, and long ids still give distinct names.
	others := []string{
		domainName("prov", sdk.PartRef{SliceID: "IoTService_sliced", PartID: "dc_slice_1"}, "k8s-node-1"),
		domainName("other", ref, "k8s-node-1"),
		domainName("prov", ref, "k8s-node-2"),
	}
	for _, o := range others {
		if o == name {
			t.Errorf("collision: %q", o)
		}
	}
	long := domainName("prov", sdk.PartRef{SliceID: strings.Repeat("s", 300), PartID: strings.Repeat("p", 300)}, "n-1")
	if len(long) > 150 {
		t.Errorf("name of %d characters", len(long))
	}
}

func TestDomainXMLRoundTrip(t *testing.T) {
	rec := recordOf(sdk.PartSpec{Name: "core-dc", Type: "DC", Location: "EUROPE.SPAIN", Bridge: "br-s1",
		Tenant: "t<&>", Labels: map[string]string{"b": "2", "a": "1"},
		VDUs: []sdk.VDUSpec{{Name: "core_vm", Instances: 1, CPUs: 2, MemoryMB: 1024, StorageGB: 10,
			Type: "master", Image: "core-vm-template", Description: "load balancer\nand content",
			OS: map[string]string{"distribution": "ubuntu"}}}})
	meta := nodeMeta{Provider: "p", Slice: "s", Part: "x", VDU: "core_vm", Name: "core_vm-1", Index: 1,
		Type: "master", StorageGB: 10, IP: "10.10.2.1", Created: "2019-01-01T00:00:00Z", Record: rec}
	for _, guestIP := range []bool{true, false} {
		d := domainSpec{Name: "necos.s.x.core_vm-1.0000", Type: "xen", Meta: meta, CPUs: 2, MaxCPUs: 8,
			MemoryMB: 1024, MaxMemMB: 4096, Bridge: "br-s1", IP: "10.10.2.1", Prefix: 24, GuestIP: guestIP}
		x, err := d.xml()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(x, `<ip address="10.10.2.1" prefix="24">`); got != guestIP {
			t.Errorf("guest IP %v: NIC address present %v:\n%s", guestIP, got, x)
		}
		back, err := parseDomain(x)
		if err != nil {
			t.Fatal(err)
		}
		if back.Metadata.Node == nil {
			t.Fatalf("no metadata read back from:\n%s", x)
		}
		got := *back.Metadata.Node
		got.XMLName = meta.XMLName
		if !reflect.DeepEqual(got, meta) {
			t.Errorf("metadata read back\n%+v\nwant\n%+v", got, meta)
		}
		if back.VCPU.current() != 2 || back.VCPU.Max != 8 || back.CurrentMemory.mebibytes() != 1024 ||
			back.Memory.mebibytes() != 4096 {
			t.Errorf("sizes read back: %+v", back)
		}
	}
}

func TestMetadataContentHasNoNamespace(t *testing.T) {
	c, err := metadataContent(nodeMeta{Name: "n-1"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c, "xmlns") || !strings.HasPrefix(c, "<node>") {
		t.Errorf("content %q", c)
	}
}

func TestSizeUnits(t *testing.T) {
	for _, tc := range []struct {
		unit string
		v    uint64
		want int64
	}{{"KiB", 1 << 20, 1024}, {"", 2048, 2}, {"MiB", 5, 5}, {"GiB", 2, 2048}, {"bytes", 3 << 20, 3}} {
		if got := (sizeXML{Unit: tc.unit, Value: tc.v}).mebibytes(); got != tc.want {
			t.Errorf("%d %s = %d MiB, want %d", tc.v, tc.unit, got, tc.want)
		}
	}
}

func TestAllocator(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("10.0.0.0/29"), []string{"10.0.0.1", "10.0.0.3", "junk"})
	var got []string
	for {
		ip, ok := a.next()
		if !ok {
			break
		}
		got = append(got, ip.String())
	}
	want := []string{"10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"} // .0 network, .7 broadcast
	if !reflect.DeepEqual(got, want) {
		t.Errorf("allocated %v, want %v", got, want)
	}
	a = newAllocator(netip.MustParsePrefix("fd00::/126"), nil)
	if ip, _ := a.next(); ip.String() != "fd00::1" {
		t.Errorf("first IPv6 address %s", ip)
	}
	if n := hostCount(netip.MustParsePrefix("10.0.0.0/24")); n != 254 {
		t.Errorf("hostCount /24 = %d", n)
	}
	if n := hostCount(netip.MustParsePrefix("10.0.0.1/32")); n != 1 {
		t.Errorf("hostCount /32 = %d", n)
	}
}

func TestConfigCheck(t *testing.T) {
	provider := sdk.Provider{Name: "p"}
	ok := Config{Capacity: Capacity{CPUs: 4, MemoryMB: 1024}}
	s, err := ok.check(provider)
	if err != nil {
		t.Fatal(err)
	}
	if s.uri != DefaultURI || s.domainType != "xen" || s.maxCPUs != 4 || s.maxMemMB != 1024 || s.tcgCacheMB != DefaultTCGCacheMB || !s.virtioMem {
		t.Errorf("defaults: %+v", s)
	}
	s, err = Config{URI: "qemu+ssh://host/system", Capacity: ok.Capacity, MaxNode: NodeLimit{CPUs: 2},
		MemoryHotplug: MemoryHotplugBalloon}.check(provider)
	if err != nil || s.domainType != "" || s.maxCPUs != 2 || s.virtioMem {
		t.Errorf("qemu: %+v, %v", s, err)
	}

	bad := Config{URI: "vbox:///session", Capacity: Capacity{CPUs: 0, MemoryMB: -1, StorageGB: -1},
		MaxNode: NodeLimit{CPUs: -1}, PricePerNodeDay: -1, Subnet: "10.0.0.0/33",
		SSH: &SSHConfig{IP: "host", Port: 0}, API: &Endpoint{IP: "10.0.0.1", Port: 70000}, TCGCacheMB: -16,
		MemoryHotplug: "dimm", BootFirmware: "qboot.rom"}
	_, err = bad.check(provider)
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument {
		t.Fatalf("bad config: %v", err)
	}
	for _, key := range []string{"domain_type", "capacity.cpus", "capacity.memory_mb", "capacity.storage_gb",
		"max_node.cpus", "price_per_node_day", "subnet", "ssh.ip", "ssh.port", "api.port", "tcg_cache_mb", "memory_hotplug",
		"boot_firmware"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

func TestConfigureRejectsUnknownKeys(t *testing.T) {
	p := New(plugintest.TestLogger(t))
	err := p.Configure(context.Background(), sdk.Config{JSON: []byte(`{"capacity":{"cpus":1,"memory_mb":1,"disks":3}}`)})
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument || !strings.Contains(err.Error(), "disks") {
		t.Errorf("unknown nested key: %v", err)
	}
}

func TestScheme(t *testing.T) {
	for uri, want := range map[string]string{"xen:///system": "xen", "test+unix:///default": "test",
		"QEMU+ssh://h/system": "qemu", "nonsense": ""} {
		if got := scheme(uri); got != want {
			t.Errorf("scheme(%q) = %q, want %q", uri, got, want)
		}
	}
}

func TestCPUTracker(t *testing.T) {
	var c cpuTracker
	t0 := time.Now()
	if _, ok := c.observe("d", 0, t0, 2); ok {
		t.Error("first reading gave a value")
	}
	// One vCPU busy out of two for a second: 50 %.
	if pct, ok := c.observe("d", uint64(time.Second), t0.Add(time.Second), 2); !ok || pct != 50 {
		t.Errorf("got %v, %v; want 50", pct, ok)
	}
	// A restarted domain's CPU time starts again from zero: no value, not a negative one.
	if _, ok := c.observe("d", 10, t0.Add(2*time.Second), 2); ok {
		t.Error("CPU time going back gave a value")
	}
	if pct, _ := c.observe("d", 10+uint64(5*time.Second), t0.Add(3*time.Second), 2); pct != 100 {
		t.Errorf("clamped to %v, want 100", pct)
	}
	c.forget("d")
	if _, ok := c.observe("d", 0, t0.Add(4*time.Second), 2); ok {
		t.Error("forgotten domain gave a value")
	}
}

// ---- against the test driver ----

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newTestPlugin configures a plugin on the test driver, as its own provider.
func newTestPlugin(t *testing.T, cfg Config) (*Plugin, sdk.Provider) {
	t.Helper()
	if cfg.URI == "" {
		cfg.URI = "test:///default"
	}
	if cfg.Capacity.CPUs == 0 {
		cfg.Capacity = Capacity{CPUs: 8, MemoryMB: 4096, StorageGB: 50}
	}
	if cfg.KeyDir == "" {
		cfg.KeyDir = t.TempDir()
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	provider := sdk.Provider{Name: "unit-" + suffix()}
	p := New(plugintest.TestLogger(t))
	if err := p.Configure(context.Background(), sdk.Config{Provider: provider, JSON: raw}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, provider
}

func partSpec(ref sdk.PartRef, vdus ...sdk.VDUSpec) sdk.PartSpec {
	return sdk.PartSpec{Ref: ref, Name: "core-dc", Type: "DC", Bridge: "br-unit", VDUs: vdus}
}

func mustCreate(t *testing.T, p *Plugin, spec sdk.PartSpec) sdk.Part {
	t.Helper()
	t.Cleanup(func() { _ = p.Delete(context.Background(), sdk.DeleteRequest{Ref: spec.Ref}) })
	part, err := p.Create(context.Background(), sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return part
}

func TestCreateRecordsMetadataAndAddresses(t *testing.T) {
	p, provider := newTestPlugin(t, Config{Subnet: "10.10.2.0/24", SSH: &SSHConfig{IP: "192.0.2.1", Port: 22131}})
	ref := sdk.PartRef{SliceID: "TouristicCDN_sliced", PartID: "core-" + suffix()}
	part := mustCreate(t, p, partSpec(ref, sdk.VDUSpec{Name: "core_vm", Instances: 2, CPUs: 2, MemoryMB: 512,
		StorageGB: 10, Type: "master"}))
	if part.VIMRef.IPSSH != "192.0.2.1" || part.VIMRef.PortSSH != 22131 || part.Bridge != "br-unit" {
		t.Errorf("vim-ref %+v, bridge %q", part.VIMRef, part.Bridge)
	}
	var ips []string
	for _, n := range part.Nodes {
		ips = append(ips, strings.Join(n.IPs, ","))
	}
	if !reflect.DeepEqual(ips, []string{"10.10.2.1", "10.10.2.2"}) {
		t.Errorf("addresses %v", ips)
	}
	// What an operator sees in virsh: the name, and the metadata under our namespace.
	_, conn, err := p.session()
	if err != nil {
		t.Fatal(err)
	}
	dom, err := conn.LookupDomainByUUIDString(part.Nodes[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dom.Free() }()
	name, _ := dom.GetName()
	if want := domainName(provider.Name, ref, "core_vm-1"); name != want {
		t.Errorf("domain name %q, want %q", name, want)
	}
	meta, err := dom.GetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, Namespace, libvirt.DOMAIN_AFFECT_CONFIG)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<slice>TouristicCDN_sliced</slice>", "<vdu>core_vm</vdu>", "<name>core_vm-1</name>",
		"<type>master</type>", "<storage-gb>10</storage-gb>", "<ip>10.10.2.1</ip>"} {
		if !strings.Contains(meta, want) {
			t.Errorf("metadata lacks %s:\n%s", want, meta)
		}
	}
	desc, _ := dom.GetXMLDesc(0)
	if !strings.Contains(desc, "<source bridge='br-unit'/>") || !strings.Contains(desc, "address='10.10.2.1'") {
		t.Errorf("NIC not on the bridge with its address:\n%s", desc)
	}
}

func TestNewProcessFindsParts(t *testing.T) {
	// A second plugin instance (a fresh connection, nothing in memory) sees the parts of
	// the first through the domains' metadata alone.
	p1, provider := newTestPlugin(t, Config{})
	ref := sdk.PartRef{SliceID: "s-" + suffix(), PartID: "p"}
	created := mustCreate(t, p1, partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 2, CPUs: 1, MemoryMB: 256}))
	raw, _ := json.Marshal(Config{URI: "test:///default", Capacity: Capacity{CPUs: 8, MemoryMB: 4096, StorageGB: 50}})
	p2 := New(plugintest.TestLogger(t))
	if err := p2.Configure(context.Background(), sdk.Config{Provider: provider, JSON: raw}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p2.Close() }()
	got, err := p2.Describe(context.Background(), sdk.DescribeRequest{Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Nodes, created.Nodes) {
		t.Errorf("second instance sees %+v, want %+v", got.Nodes, created.Nodes)
	}
	o, err := p2.Offer(context.Background(), sdk.OfferRequest{Part: partSpec(sdk.PartRef{SliceID: "x", PartID: "y"},
		sdk.VDUSpec{Name: "w", Instances: 1, CPUs: 1, MemoryMB: 1})})
	if err != nil || o.Free.CPUs != 6 || o.Free.MemoryMB != 4096-512 {
		t.Errorf("offer after the other instance's part: %+v, %v", o, err)
	}
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	p, provider := newTestPlugin(t, Config{})
	ref := sdk.PartRef{SliceID: "s-" + suffix(), PartID: "p"}
	// A foreign domain already holds the name the part's third node would get, so its
	// define fails after two nodes were made.
	_, conn, err := p.session()
	if err != nil {
		t.Fatal(err)
	}
	blocker := domainName(provider.Name, ref, "w-3")
	dom, err := conn.DomainDefineXML("<domain type='xen'><name>" + blocker +
		"</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dom.Undefine(); _ = dom.Free() })

	spec := partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 3, CPUs: 1, MemoryMB: 128})
	t.Cleanup(func() { _ = p.Delete(context.Background(), sdk.DeleteRequest{Ref: ref}) })
	if _, err := p.Create(context.Background(), sdk.CreateRequest{Part: spec}); err == nil {
		t.Fatal("create succeeded over a name clash")
	}
	if _, err := p.Describe(context.Background(), sdk.DescribeRequest{Ref: ref}); !sdk.IsNotFound(err) {
		t.Errorf("after a failed create: %v, want NotFound", err)
	}
	for _, n := range []string{"w-1", "w-2"} {
		if d, err := conn.LookupDomainByName(domainName(provider.Name, ref, n)); err == nil {
			_ = d.Free()
			t.Errorf("node %s left behind", n)
		}
	}
	if active, _ := dom.IsActive(); active {
		t.Error("the foreign domain was touched")
	}
}

func TestResizedTemplateScalesAlike(t *testing.T) {
	p, _ := newTestPlugin(t, Config{})
	ref := sdk.PartRef{SliceID: "s-" + suffix(), PartID: "p"}
	mustCreate(t, p, partSpec(ref, sdk.VDUSpec{Name: "master", Instances: 1, CPUs: 1, MemoryMB: 256, Type: "master"},
		sdk.VDUSpec{Name: "worker", Instances: 1, CPUs: 1, MemoryMB: 256, Type: "worker"}))
	ctx := context.Background()
	if _, err := p.Resize(ctx, sdk.ResizeRequest{Ref: ref, VDU: "worker", CPUs: 2, MemoryMB: 512}); err != nil {
		t.Fatal(err)
	}
	part, err := p.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "worker", Instances: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range part.NodesOf("worker") {
		if n.CPUs != 2 || n.MemoryMB != 512 || n.Type != "worker" {
			t.Errorf("node %s: %+v, want the resized template", n.Name, n)
		}
	}
	// The worker VDU can go to zero (the master keeps the part), and come back.
	if part, err = p.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "worker", Instances: 0}); err != nil ||
		len(part.NodesOf("worker")) != 0 {
		t.Fatalf("scale to 0: %v, %+v", err, part.Nodes)
	}
	if part, err = p.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "worker", Instances: 1}); err != nil ||
		len(part.NodesOf("worker")) != 1 || part.NodesOf("worker")[0].CPUs != 2 {
		t.Fatalf("scale back to 1: %v, %+v", err, part.Nodes)
	}
	// The last nodes of a part stay: it lives in its domains.
	if _, err := p.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "worker", Instances: 0}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Scale(ctx, sdk.ScaleRequest{Ref: ref, VDU: "master", Instances: 0})
	if sdk.CodeOf(err) != sdk.CodeFailedPrecondition {
		t.Errorf("scaling away the last node: %v, want FailedPrecondition", err)
	}
}

func TestResizeBeyondNodeMaximum(t *testing.T) {
	p, provider := newTestPlugin(t, Config{MaxNode: NodeLimit{CPUs: 2, MemoryMB: 1024}})
	ref := sdk.PartRef{SliceID: "s-" + suffix(), PartID: "p"}
	mustCreate(t, p, partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 1, CPUs: 1, MemoryMB: 256}))
	ctx := context.Background()
	part, err := p.Resize(ctx, sdk.ResizeRequest{Ref: ref, VDU: "w", CPUs: 2, MemoryMB: 1024})
	if err != nil || part.Nodes[0].CPUs != 2 || part.Nodes[0].MemoryMB != 1024 {
		t.Fatalf("resize to the maximum: %v, %+v", err, part.Nodes)
	}
	// The running domain has them, not only its definition (a node read from the usage
	// index once carried its state from before it started, and the live change was skipped).
	_, conn, err := p.session()
	if err != nil {
		t.Fatal(err)
	}
	dom, err := conn.LookupDomainByName(domainName(provider.Name, ref, part.Nodes[0].Name))
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Free()
	if live, err := dom.GetVcpusFlags(libvirt.DOMAIN_VCPU_LIVE); err != nil || live != 2 {
		t.Errorf("running domain's vCPUs after the resize: %d, %v; want 2", live, err)
	}
	if info, err := dom.GetInfo(); err != nil || info.Memory != 1024<<10 {
		t.Errorf("running domain's memory after the resize: %+v, %v; want 1 GiB", info, err)
	}
	_, err = p.Resize(ctx, sdk.ResizeRequest{Ref: ref, VDU: "w", CPUs: 3})
	if sdk.CodeOf(err) != sdk.CodeFailedPrecondition {
		t.Errorf("resize beyond the node maximum: %v, want FailedPrecondition", err)
	}
	o, err := p.Offer(ctx, sdk.OfferRequest{Part: partSpec(ref, sdk.VDUSpec{Name: "big", Instances: 1, CPUs: 3, MemoryMB: 256})})
	if err != nil || o.Accepted || !strings.Contains(o.Reason, "at most 2 vCPUs") {
		t.Errorf("offer of a node above max_node: %+v, %v", o, err)
	}
}

func TestOfferPriceAndSubnet(t *testing.T) {
	p, _ := newTestPlugin(t, Config{PricePerNodeDay: 1.5, Subnet: "10.0.0.0/30"}) // 2 addresses
	ctx := context.Background()
	ref := sdk.PartRef{SliceID: "s-" + suffix(), PartID: "p"}
	o, err := p.Offer(ctx, sdk.OfferRequest{Part: partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 2, CPUs: 1, MemoryMB: 64})})
	if err != nil || !o.Accepted || o.PricePerDay != 3 {
		t.Errorf("offer of 2 nodes: %+v, %v", o, err)
	}
	o, err = p.Offer(ctx, sdk.OfferRequest{Part: partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 3, CPUs: 1, MemoryMB: 64})})
	if err != nil || o.Accepted || !strings.Contains(o.Reason, "addresses") {
		t.Errorf("offer of 3 nodes in a /30: %+v, %v", o, err)
	}
	_, err = p.Create(ctx, sdk.CreateRequest{Part: partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 3, CPUs: 1, MemoryMB: 64})})
	t.Cleanup(func() { _ = p.Delete(ctx, sdk.DeleteRequest{Ref: ref}) })
	if sdk.CodeOf(err) != sdk.CodeResourceExhausted {
		t.Errorf("create of 3 nodes in a /30: %v, want ResourceExhausted", err)
	}
	// Without a bridge or network a node has no NIC, and gets no address.
	spec := partSpec(ref, sdk.VDUSpec{Name: "w", Instances: 3, CPUs: 1, MemoryMB: 64})
	spec.Bridge = ""
	part := mustCreate(t, p, spec)
	for _, n := range part.Nodes {
		if len(n.IPs) != 0 {
			t.Errorf("node %s without NIC has addresses %v", n.Name, n.IPs)
		}
	}
}

func TestNotConfigured(t *testing.T) {
	_, err := New(plugintest.TestLogger(t)).Describe(context.Background(), sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: "s", PartID: "p"}})
	if sdk.CodeOf(err) != sdk.CodeFailedPrecondition {
		t.Errorf("describe before configure: %v", err)
	}
}
