package xenvim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/ssh"
	"libvirt.org/go/libvirt"
)

// Real guests: these tests boot the project's guest image (NECOS_GUEST_IMAGE, from
// scripts/guest-image.sh) under qemu:///system (NECOS_QEMU_URI, from scripts/qemu.sh),
// with TCG unless the machine has working KVM.

const (
	envGuestImage = "NECOS_GUEST_IMAGE"
	envQemuURI    = "NECOS_QEMU_URI"
)

// guestEnv is a provider of real guests on its own site namespace.
type guestEnv struct {
	p        *Plugin
	provider sdk.Provider
	site     string // network namespace
	cfg      Config
}

func guestConfig(t testing.TB) (Config, bool) {
	dir, uri := os.Getenv(envGuestImage), os.Getenv(envQemuURI)
	if dir == "" || uri == "" {
		return Config{}, false
	}
	return Config{
		URI:      uri, // domain type: KVM when a probe guest runs under it, else TCG
		Capacity: Capacity{CPUs: 10, MemoryMB: 8192, StorageGB: 100},
		MaxNode:  NodeLimit{CPUs: 4, MemoryMB: 1024},
		Subnet:   "10.77.0.0/24",
		Images: map[string]Image{"necos-guest": {Disk: filepath.Join(dir, "disk.qcow2"),
			Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"), Cmdline: "console=ttyS0 quiet init_on_alloc=0 no5lvl cryptomgr.notests"}},
		DefaultImage: "necos-guest",
		StorageDir:   "/var/lib/necos/vim-xen/test-pool",
		StoragePool:  "necos-test",
		KeyDir:       t.TempDir(),
		// NECOS_TCG_EMULATOR=libvirt runs the tests and benchmarks with libvirt's own
		// emulator (multi-threaded TCG), to compare.
		TCGEmulator: os.Getenv("NECOS_TCG_EMULATOR"),
		// NECOS_TCG_CACHE_MB sets the translation cache (tcg_cache_mb), to compare.
		TCGCacheMB: envInt("NECOS_TCG_CACHE_MB"),
		// NECOS_MEMORY_HOTPLUG=balloon boots guests with their maximum memory, to compare.
		MemoryHotplug: os.Getenv("NECOS_MEMORY_HOTPLUG"),
		// NECOS_BOOT_FIRMWARE=/usr/share/qemu/qboot.rom boots guests with qboot, to compare.
		BootFirmware: os.Getenv("NECOS_BOOT_FIRMWARE"),
	}, true
}

// envInt is an integer environment variable, 0 when unset or not a number.
func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

// newSite makes a network namespace standing for a provider's site.
func newSite(t testing.TB) string {
	t.Helper()
	name := "necost-" + suffix()
	if err := ensureNamedNetns(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsnet.Remove(name) })
	return name
}

func newGuestEnv(t *testing.T, edit ...func(*Config)) *guestEnv {
	t.Helper()
	cfg, ok := guestConfig(t)
	if !ok {
		plugintest.NeedBackend(t, envGuestImage+" and "+envQemuURI+" (scripts/guest-image.sh, scripts/qemu.sh)")
	}
	for _, f := range edit {
		f(&cfg)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sweepDeadGuestEnvs(t)
	e := &guestEnv{provider: sdk.Provider{Name: "guests-" + suffix()}, site: newSite(t), cfg: cfg}
	plugintest.TakeLease(t, guestLeaseKind, e.provider.Name, mustJSON(t, guestLease{Site: e.site, Config: cfg}))
	e.p = New(plugintest.TestLogger(t))
	if err := e.p.Configure(context.Background(), sdk.Config{Provider: e.provider, JSON: raw}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.p.Close() })
	return e
}

// guestLeaseKind is the kind of the leases of guest environments (plugintest.TakeLease):
// a test binary killed at its timeout leaves its guests running, and the next test
// deletes them.
const guestLeaseKind = "vim-xen-guests"

// guestLease is what a guest environment's lease holds: enough to delete its parts.
type guestLease struct {
	Site   string
	Config Config
}

// sweepDeadGuestEnvs deletes the parts and the site of every guest environment whose
// test process died before its clean-ups.
func sweepDeadGuestEnvs(t *testing.T) {
	t.Helper()
	leases, err := plugintest.DeadLeases(guestLeaseKind)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if err := removeGuestEnv(t, l); err != nil {
			t.Logf("the guests of dead test provider %s: %v", l.ID, err)
			l.Keep()
			continue
		}
		t.Logf("removed what a killed test (provider %s) left", l.ID)
		l.Release()
	}
}

func removeGuestEnv(t *testing.T, l *plugintest.Lease) error {
	var g guestLease
	if err := json.Unmarshal(l.Data, &g); err != nil {
		return err
	}
	if _, err := os.Stat(g.Config.KeyDir); err != nil {
		g.Config.KeyDir = t.TempDir()
	}
	p := New(plugintest.TestLogger(t))
	defer p.Close()
	if err := p.Configure(context.Background(), sdk.Config{Provider: sdk.Provider{Name: l.ID}, JSON: mustJSON(t, g.Config)}); err != nil {
		return err
	}
	s, conn, err := p.session()
	if err != nil {
		return err
	}
	nodes, err := p.inventory(conn, s)
	if err != nil {
		return err
	}
	refs := map[sdk.PartRef]bool{}
	for _, n := range nodes {
		refs[n.ref()] = true
	}
	var errs []error
	for ref := range refs {
		errs = append(errs, p.Delete(context.Background(), sdk.DeleteRequest{Ref: ref}))
	}
	if err := nsnet.Remove(g.Site); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteOnCleanup deletes the part at the end of the test, also after a t.Fatal or a
// failed Create (a part that does not exist is deleted at once), and fails the test
// when that does not work: a test must leave no guest behind.
func (e *guestEnv) deleteOnCleanup(t *testing.T, ref sdk.PartRef) {
	t.Cleanup(func() {
		if err := e.p.Delete(context.Background(), sdk.DeleteRequest{Ref: ref}); err != nil {
			t.Errorf("clean-up: delete part %s: %v", ref, err)
		}
	})
}

func (e *guestEnv) spec(part string, vdus ...sdk.VDUSpec) sdk.PartSpec {
	ref := sdk.PartRef{SliceID: "guests-" + suffix(), PartID: part}
	return sdk.PartSpec{Ref: ref, Name: part, Type: "DC", Bridge: "nbt" + digest(ref.SliceID, part)[:10],
		Netns: e.site, VDUs: vdus}
}

// sshTo runs a command on a node of part as root over SSH from the part's endpoint
// namespace, pinning the node's host key.
func sshTo(t testing.TB, part sdk.Part, node string, cmd string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return guestExec(ctx, part, node, cmd)
}

// guestExec is sshTo without a test: plugintest's GuestChecks.Exec.
func guestExec(ctx context.Context, part sdk.Part, node string, cmd string) (string, error) {
	var n *sdk.Node
	for i := range part.Nodes {
		if part.Nodes[i].Name == node {
			n = &part.Nodes[i]
		}
	}
	if n == nil || len(n.IPs) == 0 {
		return "", fmt.Errorf("no node %s with an address in %+v", node, part.Nodes)
	}
	signer, err := ssh.ParsePrivateKey([]byte(part.Credential.Secret))
	if err != nil {
		return "", err
	}
	var pinned ssh.PublicKey
	for _, line := range strings.Split(part.Attributes[AttrSSHKnownHosts], "\n") {
		if ip, key, ok := strings.Cut(line, " "); ok && ip == n.IPs[0] {
			if pinned, _, _, _, err = ssh.ParseAuthorizedKey([]byte(key)); err != nil {
				return "", err
			}
		}
	}
	if pinned == nil {
		return "", fmt.Errorf("no pinned host key for %s in %q", node, part.Attributes[AttrSSHKnownHosts])
	}
	conn, err := nsnet.Dial(ctx, "tcp", nsnet.Endpoint{Netns: part.Attributes[AttrNetns], Addr: n.IPs[0] + ":22"})
	if err != nil {
		return "", err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(pinned), HostKeyAlgorithms: []string{pinned.Type()}, Timeout: 15 * time.Second}
	c, chans, reqs, err := ssh.NewClientConn(conn, n.IPs[0], cfg)
	if err != nil {
		conn.Close()
		return "", err
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

// partVolumes lists the pool's volumes of a part's nodes (plugintest's
// GuestChecks.Volumes).
func partVolumes(uri, pool string, ref sdk.PartRef) ([]string, error) {
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	p, err := conn.LookupStoragePoolByName(pool)
	if err != nil {
		return nil, err
	}
	defer p.Free()
	if err := p.Refresh(0); err != nil {
		return nil, err
	}
	vols, err := p.ListAllStorageVolumes(0)
	if err != nil {
		return nil, err
	}
	prefix := namePrefix + cleanName(ref.SliceID) + "." + cleanName(ref.PartID) + "."
	var out []string
	for _, v := range vols {
		if n, err := v.GetName(); err == nil && strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
		_ = v.Free()
	}
	return out, nil
}

// waitSSH retries cmd until the node answers or the deadline passes.
func waitSSH(t testing.TB, part sdk.Part, node, cmd string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := sshTo(t, part, node, cmd)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not answer SSH within %s: %v", node, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestRealGuestLifecycle(t *testing.T) {
	e := newGuestEnv(t)
	spec := e.spec("core-dc", sdk.VDUSpec{Name: "core_vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1})
	ctx := context.Background()
	start := time.Now()
	e.deleteOnCleanup(t, spec.Ref)
	part, err := e.p.Create(ctx, sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("create: %s", time.Since(start))
	out := waitSSH(t, part, "core_vm-1", "hostname; nproc; cat /data/README", 60*time.Second)
	t.Logf("create to SSH: %s", time.Since(start))
	if want := "core_vm-1\n1\nnecos guest data disk\n"; out != want {
		t.Errorf("guest says %q, want %q", out, want)
	}
	// Resize is a live hot-plug the guest sees.
	if part, err = e.p.Resize(ctx, sdk.ResizeRequest{Ref: spec.Ref, VDU: "core_vm", CPUs: 2}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := sshTo(t, part, "core_vm-1", "nproc")
		if err == nil && strings.TrimSpace(out) == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nproc after resizing to 2 vCPUs: %q %v", out, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The host namespace holds no address of the guest's network and no tap.
	if l, err := netlink.LinkByName(tapName(domainName(e.provider.Name, spec.Ref, "core_vm-1"))); err == nil {
		t.Errorf("tap %s is in the host namespace", l.Attrs().Name)
	}
	if err := e.p.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
		t.Fatal(err)
	}
	assertGone(t, e, spec)
}

// Live add-cpu on a busy guest, one vCPU at a time up to four (the third add is where
// QEMU 7.2 died under multi-threaded TCG; a fifth is open, README): the guest's nproc follows
// each and the domain keeps running. The guest runs fresh code all along (new copies of
// busybox, so TCG keeps translating and flushing its cache): under QEMU 7.2's
// multi-threaded TCG that made QEMU abort at the third add (README); the TCG emulator
// (scripts/qemu-tcg-single) runs it single-threaded.
func TestRealGuestAddCPUsUnderLoad(t *testing.T) {
	const top = 4
	e := newGuestEnv(t, func(c *Config) { c.MaxNode.CPUs = top })
	spec := e.spec("core-dc", sdk.VDUSpec{Name: "core_vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1})
	ctx := context.Background()
	e.deleteOnCleanup(t, spec.Ref)
	part, err := e.p.Create(ctx, sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatal(err)
	}
	waitSSH(t, part, "core_vm-1", "true", 60*time.Second)
	conn, err := libvirt.NewConnect(e.cfg.URI)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	name := domainName(e.provider.Name, spec.Ref, "core_vm-1")
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Free()
	s, _, err := e.p.session()
	if err != nil {
		t.Fatal(err)
	}
	if s.domainType == "qemu" && e.cfg.TCGEmulator == "" {
		if x, err := dom.GetXMLDesc(0); err != nil || !strings.Contains(x, "<emulator>"+DefaultTCGEmulator+"</emulator>") {
			t.Fatalf("TCG guest does not run the TCG emulator %s (scripts/qemu.sh installs it): %v\n%s", DefaultTCGEmulator, err, x)
		}
	}
	// Two loops running fresh copies of busybox, started in the background; each writes
	// its round count to /tmp/load<j>.
	load := `for j in 1 2; do (i=0; while :; do i=$((i+1)); f=/tmp/bb$j.$i; cp /bin/busybox $f && $f sh -c 'seq 1 300 | $0 md5sum' $f >/dev/null; rm -f $f; echo $i > /tmp/load$j; done) </dev/null >/dev/null 2>&1 & done; echo started`
	if out, err := sshTo(t, part, "core_vm-1", load); err != nil || strings.TrimSpace(out) != "started" {
		t.Fatalf("start load: %q %v", out, err)
	}
	for n := 2; n <= top; n++ {
		start := time.Now()
		if part, err = e.p.Resize(ctx, sdk.ResizeRequest{Ref: spec.Ref, VDU: "core_vm", CPUs: n}); err != nil {
			t.Fatalf("add vCPU %d: %v", n, err)
		}
		resized := time.Since(start)
		// Generous: every vCPU shares one host thread, taking turns, and a CPU's bring-up
		// in the guest waits on the others several times; on this machine at a load
		// average of 20 an add took 15-35 s to show in nproc.
		deadline := time.Now().Add(120 * time.Second)
		for {
			out, err := sshTo(t, part, "core_vm-1", "nproc")
			if err == nil && strings.TrimSpace(out) == strconv.Itoa(n) {
				break
			}
			if state, _, serr := dom.GetState(); serr != nil || state != libvirt.DOMAIN_RUNNING {
				t.Fatalf("after adding vCPU %d the domain is in state %d (%v); its log: /var/log/libvirt/qemu/%s.log", n, state, serr, name)
			}
			if time.Now().After(deadline) {
				diag, _ := sshTo(t, part, "core_vm-1", "cat /sys/devices/system/cpu/online /proc/loadavg; dmesg | tail -n 15")
				t.Fatalf("nproc after adding vCPU %d: %q %v; the guest:\n%s", n, out, err, diag)
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Logf("vCPU %d: Resize %s, seen by the guest after %s", n, resized.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	// Still running, still busy (the loops' round counts move within 8 s: 3 s was not
	// enough under TCG with the host loaded, four vCPUs on two cores), and Describe agrees.
	busy := `nproc; a=$(cat /tmp/load1 /tmp/load2 | tr '\n' +); sleep 8; b=$(cat /tmp/load1 /tmp/load2 | tr '\n' +); [ $((${a}0)) -lt $((${b}0)) ] && echo busy`
	if out, err := sshTo(t, part, "core_vm-1", busy); err != nil || out != strconv.Itoa(top)+"\nbusy\n" {
		diag, derr := sshTo(t, part, "core_vm-1", "cat /proc/uptime; ls /tmp; cat /tmp/load1 /tmp/load2; ps; free; dmesg | tail -n 30")
		t.Fatalf("guest after the adds: %q %v; the guest (%v):\n%s", out, err, derr, diag)
	}
	got, err := e.p.Describe(ctx, sdk.DescribeRequest{Ref: spec.Ref})
	if err != nil {
		t.Fatal(err)
	}
	if c := got.Nodes[0].CPUs; c != top {
		t.Errorf("Describe: node has %d vCPUs, want %d", c, top)
	}
}

// assertGone checks that nothing of the part is left: domains, volumes, taps, the
// endpoint namespace, the bridge, the key.
func assertGone(t *testing.T, e *guestEnv, spec sdk.PartSpec) {
	t.Helper()
	conn, err := libvirt.NewConnect(e.cfg.URI)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	prefix := namePrefix + cleanName(spec.Ref.SliceID) + "."
	doms, _ := conn.ListAllDomains(0)
	for _, d := range doms {
		if n, _ := d.GetName(); strings.HasPrefix(n, prefix) {
			t.Errorf("domain %s left", n)
		}
		_ = d.Free()
	}
	left, err := partVolumes(e.cfg.URI, e.cfg.StoragePool, spec.Ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range left {
		t.Errorf("volume %s left", n)
	}
	if _, err := os.Stat(nsnet.Path(EndpointNetns(e.provider.Name, spec.Ref.SliceID, spec.Ref.PartID))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("endpoint namespace left (%v)", err)
	}
	h, err := handleIn(e.site)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, _ := h.LinkList()
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			t.Errorf("device %s (%s) left in the site namespace", l.Attrs().Name, l.Type())
		}
	}
	if _, err := os.Stat(filepath.Join(e.cfg.KeyDir, cleanName(e.provider.Name))); err == nil {
		entries, _ := os.ReadDir(filepath.Join(e.cfg.KeyDir, cleanName(e.provider.Name)))
		if len(entries) > 0 {
			t.Errorf("key files left: %d", len(entries))
		}
	}
}

// Two slices' parts at one site: each reachable from its own endpoint, deployable over
// SSH, and neither sees the other's guests.
func TestRealGuestsDeployAndIsolation(t *testing.T) {
	e := newGuestEnv(t)
	ctx := context.Background()
	specs := []sdk.PartSpec{
		e.spec("edge-a", sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1}),
		e.spec("edge-b", sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1}),
	}
	parts := make([]sdk.Part, len(specs))
	errs := make(chan error, len(specs))
	for i := range specs {
		e.deleteOnCleanup(t, specs[i].Ref)
		go func() {
			var err error
			parts[i], err = e.p.Create(ctx, sdk.CreateRequest{Part: specs[i]})
			errs <- err
		}()
	}
	for range specs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, part := range parts {
		waitSSH(t, part, "vm-1", "true", 60*time.Second)
	}
	// The Deployer runs commands on every node, over SSH from the part's endpoint.
	for i, part := range parts {
		d, err := e.p.Deploy(ctx, sdk.DeployRequest{ServiceID: "svc", Part: part,
			Work: []sdk.NodeWork{{Commands: []string{"echo deployed-" + part.Name + " > /data/svc", "cat /data/svc"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if d.State != sdk.DeploySucceeded || strings.TrimSpace(d.Nodes[0].Steps[1].Stdout) != "deployed-"+specs[i].Name {
			t.Fatalf("deploy on %s: %+v", part.Name, d)
		}
	}
	a, b := parts[0], parts[1]
	ipA, ipB := a.Nodes[0].IPs[0], b.Nodes[0].IPs[0]
	if out, err := sshTo(t, a, "vm-1", "ping -c 1 -W 2 "+ipA); err != nil {
		t.Fatalf("a guest cannot ping itself: %v %s", err, out)
	}
	if out, err := sshTo(t, a, "vm-1", "ping -c 2 -W 2 "+ipB); err == nil {
		t.Errorf("slice A's guest reaches slice B's guest %s:\n%s", ipB, out)
	}
	if out, err := sshTo(t, b, "vm-1", "ping -c 2 -W 2 "+ipA); err == nil {
		t.Errorf("slice B's guest reaches slice A's guest %s:\n%s", ipA, out)
	}
	// B's endpoint cannot reach A's guest either.
	ctx2, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if c, err := nsnet.Dial(ctx2, "tcp", nsnet.Endpoint{Netns: b.Attributes[AttrNetns], Addr: ipA + ":22"}); err == nil {
		c.Close()
		t.Errorf("slice B's endpoint reaches slice A's guest")
	}
}

func TestConformanceRealGuests(t *testing.T) {
	e := newGuestEnv(t)
	// The suite sizes its racing parts at a fifth of the capacity each.
	e.cfg.MaxNode = NodeLimit{CPUs: 4, MemoryMB: 2048}
	plugintest.RunVIM(t, plugintest.InProcess(t, e.p, e.provider, mustJSON(t, e.cfg)), plugintest.VIMOptions{
		Capacity: sdk.Resources{CPUs: e.cfg.Capacity.CPUs, MemoryMB: e.cfg.Capacity.MemoryMB, StorageGB: e.cfg.Capacity.StorageGB},
		Node:     sdk.Resources{CPUs: 1, MemoryMB: 256, StorageGB: 1},
		Spec: func(p sdk.PartSpec) sdk.PartSpec {
			p.Bridge, p.Netns = "nbt"+digest(p.Ref.SliceID, p.Ref.PartID)[:10], e.site
			for i := range p.VDUs {
				p.VDUs[i].Image = "necos-guest"
			}
			return p
		},
		SlicePrefix: "real-" + suffix(),
		Guest: &plugintest.GuestChecks{
			Exec: guestExec,
			Volumes: func(_ context.Context, ref sdk.PartRef) ([]string, error) {
				return partVolumes(e.cfg.URI, e.cfg.StoragePool, ref)
			},
		},
	})
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A restarted plugin finds every part again from libvirt and its key store alone: the
// same nodes, addresses, pinned host keys, credentials and endpoints; the capacity they
// hold; their metrics; and it deletes them leaving nothing.
func TestRealGuestsFoundAfterRestart(t *testing.T) {
	e := newGuestEnv(t)
	ctx := context.Background()
	specs := []sdk.PartSpec{
		e.spec("core", sdk.VDUSpec{Name: "core_vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1}),
		e.spec("edge", sdk.VDUSpec{Name: "edge_vm", Instances: 2, CPUs: 1, MemoryMB: 256, StorageGB: 1}),
	}
	before := map[sdk.PartRef]sdk.Part{}
	for _, spec := range specs {
		e.deleteOnCleanup(t, spec.Ref)
		part, err := e.p.Create(ctx, sdk.CreateRequest{Part: spec})
		if err != nil {
			t.Fatal(err)
		}
		before[spec.Ref] = part
	}
	for _, part := range before {
		for _, n := range part.Nodes {
			waitSSH(t, part, n.Name, "true", 90*time.Second)
		}
	}
	free := func(p *Plugin) sdk.Resources {
		o, err := p.Offer(ctx, sdk.OfferRequest{Part: e.spec("probe", sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1})})
		if err != nil {
			t.Fatal(err)
		}
		return o.Free
	}
	freeBefore := free(e.p)

	// The restart: a new plugin on the same configuration.
	if err := e.p.Close(); err != nil {
		t.Fatal(err)
	}
	e.p = New(plugintest.TestLogger(t))
	if err := e.p.Configure(ctx, sdk.Config{Provider: e.provider, JSON: mustJSON(t, e.cfg)}); err != nil {
		t.Fatal(err)
	}
	if got := free(e.p); got != freeBefore {
		t.Errorf("free capacity after the restart %+v, before %+v", got, freeBefore)
	}
	for _, spec := range specs {
		want := before[spec.Ref]
		got, err := e.p.Describe(ctx, sdk.DescribeRequest{Ref: spec.Ref})
		if err != nil {
			t.Fatalf("describe %s after the restart: %v", spec.Ref, err)
		}
		if got.State != sdk.StateReady || len(got.Nodes) != len(want.Nodes) {
			t.Fatalf("part %s after the restart: %s with %d nodes, want Ready with %d", spec.Ref, got.State, len(got.Nodes), len(want.Nodes))
		}
		for i, n := range got.Nodes {
			w := want.Nodes[i]
			if n.Name != w.Name || n.ID != w.ID || strings.Join(n.IPs, ",") != strings.Join(w.IPs, ",") || n.State != sdk.StateRunning {
				t.Errorf("node %d of %s after the restart %+v, before %+v", i, spec.Ref, n, w)
			}
		}
		for _, a := range []string{AttrSSHKnownHosts, AttrNetns} {
			if got.Attributes[a] != want.Attributes[a] {
				t.Errorf("%s of %s after the restart %q, before %q", a, spec.Ref, got.Attributes[a], want.Attributes[a])
			}
		}
		if got.Credential.Secret != want.Credential.Secret {
			t.Errorf("the credential of %s changed across the restart", spec.Ref)
		}
		// The nodes answer with what the new plugin describes.
		for _, n := range got.Nodes {
			if out, err := sshTo(t, got, n.Name, "hostname"); err != nil || strings.TrimSpace(out) != n.Name {
				t.Errorf("node %s after the restart: %q %v", n.Name, out, err)
			}
		}
		samples, err := e.p.Metrics(ctx, sdk.MetricsRequest{Ref: spec.Ref, Names: []string{sdk.MetricCPUPercent}})
		if err != nil || len(samples) != len(got.Nodes) {
			t.Errorf("metrics of %s after the restart: %d samples (%v), want %d", spec.Ref, len(samples), err, len(got.Nodes))
		}
	}
	for _, spec := range specs {
		if err := e.p.Delete(ctx, sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
			t.Fatal(err)
		}
	}
	for _, spec := range specs { // both share the site: checked once both are gone
		assertGone(t, e, spec)
	}
}

const guestHelperEnv = "NECOS_XENVIM_GUEST_HELPER"

// TestHelperGuestEnv is, in the process TestKilledTestsGuestsAreRemoved starts and
// kills, a test with a running guest (or, with the helper variable "defined", a create
// stopped after its node's domain was defined, before its volumes were made); it does
// nothing in a normal run.
func TestHelperGuestEnv(t *testing.T) {
	mode := os.Getenv(guestHelperEnv)
	if mode == "" {
		return
	}
	e := newGuestEnv(t)
	spec := e.spec("left", sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1})
	ready := func() { fmt.Printf("ready %s %s %s %s\n", e.provider.Name, e.site, spec.Ref.SliceID, spec.Ref.PartID) }
	if mode == "defined" {
		testHookDefined = func(string) { ready(); time.Sleep(5 * time.Minute) }
	}
	if _, err := e.p.Create(context.Background(), sdk.CreateRequest{Part: spec}); err != nil {
		t.Fatal(err)
	}
	ready()
	time.Sleep(5 * time.Minute)
}

// A test binary killed before its clean-ups (at its -timeout) leaves its guests running,
// or, killed inside a create, a node's domain without its volumes; the next guest test
// deletes them, their volumes and namespaces, and the site.
func TestKilledTestsGuestsAreRemoved(t *testing.T) {
	if _, ok := guestConfig(t); !ok {
		plugintest.NeedBackend(t, envGuestImage+" and "+envQemuURI+" (scripts/guest-image.sh, scripts/qemu.sh)")
	}
	for _, mode := range []string{"running", "defined"} {
		t.Run(mode, func(t *testing.T) { killedGuestEnvIsRemoved(t, mode) })
	}
}

func killedGuestEnvIsRemoved(t *testing.T, mode string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperGuestEnv$", "-test.v")
	cmd.Env = append(os.Environ(), guestHelperEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var provider, site string
	var ref sdk.PartRef
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 5 && f[0] == "ready" {
			provider, site, ref = f[1], f[2], sdk.PartRef{SliceID: f[3], PartID: f[4]}
			break
		}
	}
	if provider == "" {
		t.Fatal("the helper test made no guest")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	cfg, _ := guestConfig(t)
	if len(domainsOf(t, cfg.URI, ref)) == 0 {
		t.Fatal("the killed test's domain is not there to be removed")
	}
	if mode == "defined" {
		if vols, err := partVolumes(cfg.URI, cfg.StoragePool, ref); err != nil || len(vols) > 0 {
			t.Fatalf("killed after the define, before the volumes: volumes %v %v", vols, err)
		}
	}

	sweepDeadGuestEnvs(t)
	if left := domainsOf(t, cfg.URI, ref); len(left) > 0 {
		t.Errorf("domains left: %v", left)
	}
	if left, err := partVolumes(cfg.URI, cfg.StoragePool, ref); err != nil || len(left) > 0 {
		t.Errorf("volumes left: %v %v", left, err)
	}
	if _, err := os.Stat(nsnet.Path(EndpointNetns(provider, ref.SliceID, ref.PartID))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("endpoint namespace left (%v)", err)
	}
	if _, err := os.Stat(nsnet.Path(site)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("site namespace %s left (%v)", site, err)
	}
	if _, err := os.Stat(filepath.Join(plugintest.LeaseDir, guestLeaseKind, provider)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead test's lease is left (%v)", err)
	}
}

// domainsOf lists the names of a part's domains at uri.
func domainsOf(t *testing.T, uri string, ref sdk.PartRef) []string {
	t.Helper()
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	prefix := namePrefix + cleanName(ref.SliceID) + "." + cleanName(ref.PartID) + "."
	for _, d := range doms {
		if n, _ := d.GetName(); strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
		_ = d.Free()
	}
	return out
}
