package xenvim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// A QEMU guest with virtio-mem boots with its own memory (its NUMA node) and a device
// spanning the rest of its maximum, nothing plugged in; with the balloon, or on Xen, or
// at its maximum already, it boots with the maximum and no device.
func TestVirtioMemDomainXML(t *testing.T) {
	for _, tc := range []struct {
		name          string
		typ           string
		virtioMem     bool
		memMB, maxMB  int64
		want, wantNot []string
	}{
		{name: "virtio-mem", typ: "qemu", virtioMem: true, memMB: 256, maxMB: 1024,
			want: []string{`<maxMemory slots="1" unit="MiB">1024</maxMemory>`, `<memory unit="MiB">1024</memory>`,
				`<currentMemory unit="MiB">256</currentMemory>`, `<cell id="0" cpus="0-3" memory="256" unit="MiB">`,
				`<memory model="virtio-mem">`, `<size unit="MiB">768</size>`, `<block unit="MiB">2</block>`,
				`<requested unit="MiB">0</requested>`, `<alias name="ua-necos-mem">`, `<memballoon model="virtio"`}},
		{name: "odd size rounds the device up to its block", typ: "kvm", virtioMem: true, memMB: 255, maxMB: 1024,
			want: []string{`<size unit="MiB">770</size>`, `<memory unit="MiB">1025</memory>`, `<cell id="0" cpus="0-3" memory="255" unit="MiB">`}},
		{name: "balloon", typ: "qemu", memMB: 256, maxMB: 1024,
			want:    []string{`<memory unit="MiB">1024</memory>`, `<currentMemory unit="MiB">256</currentMemory>`},
			wantNot: []string{"virtio-mem", "maxMemory", "numa"}},
		{name: "at its maximum", typ: "qemu", virtioMem: true, memMB: 1024, maxMB: 1024,
			want: []string{`<memory unit="MiB">1024</memory>`}, wantNot: []string{"virtio-mem", "maxMemory", "numa"}},
		{name: "xen", typ: "xen", memMB: 256, maxMB: 1024, wantNot: []string{"virtio-mem", "maxMemory", "numa"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := domainSpec{Name: "n", Type: tc.typ, CPUs: 1, MaxCPUs: 4, MemoryMB: tc.memMB, MaxMemMB: tc.maxMB,
				Guest: &guestSpec{Kernel: "/k", Seed: "/s", Tap: "t", MAC: "52:54:00:00:00:01",
					Emulated: tc.typ == "qemu", VirtioMem: tc.virtioMem}}
			if tc.typ == "xen" {
				d.Guest.Tap, d.Guest.Bridge = "", "br0"
			}
			x, err := d.xml()
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(x, w) {
					t.Errorf("no %s in\n%s", w, x)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(x, w) {
					t.Errorf("%s in\n%s", w, x)
				}
			}
		})
	}
}

// libvirtVirtioMem is a running domain's XML as libvirt 9.0 writes it, cut to what
// the plugin reads.
const libvirtVirtioMem = `<domain type='qemu' id='3'>
  <name>necos.s.p.vm-1.0123abcd</name>
  <maxMemory slots='1' unit='KiB'>1048576</maxMemory>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <cpu mode='maximum' check='none'>
    <numa>
      <cell id='0' cpus='0-3' memory='262144' unit='KiB'/>
    </numa>
  </cpu>
  <devices>
    <memballoon model='virtio' freePageReporting='on'/>
    <memory model='virtio-mem'>
      <target>
        <size unit='KiB'>786432</size>
        <node>0</node>
        <block unit='KiB'>2048</block>
        <requested unit='KiB'>262144</requested>
        <current unit='KiB'>262144</current>
      </target>
      <alias name='ua-necos-mem'/>
      <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
    </memory>
  </devices>
</domain>`

func TestReadVirtioMem(t *testing.T) {
	v, ok, err := readVirtioMem(libvirtVirtioMem)
	if err != nil || !ok {
		t.Fatalf("readVirtioMem: ok %v, %v", ok, err)
	}
	if v.bootMB != 256 || v.sizeMB != 768 || v.currentMB != 256 {
		t.Errorf("boot %d, size %d, current %d MB; want 256, 768, 256", v.bootMB, v.sizeMB, v.currentMB)
	}
	dev, err := v.withRequested(512)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"<requested unit='KiB'>524288</requested>", "<alias name='ua-necos-mem'/>", "<address type='pci'"} {
		if !strings.Contains(dev, w) {
			t.Errorf("device to update has no %s:\n%s", w, dev)
		}
	}
	if strings.Count(dev, "<requested") != 1 || !strings.HasPrefix(dev, "<memory model='virtio-mem'>") {
		t.Errorf("device to update:\n%s", dev)
	}
	// How much is plugged for a node's size: none at or below the boot size, whole
	// blocks above it, at most the device.
	for memMB, want := range map[int64]int64{128: 0, 256: 0, 257: 2, 512: 256, 1024: 768, 4096: 768} {
		if got := v.plugFor(memMB); got != want {
			t.Errorf("plugFor(%d) = %d, want %d", memMB, got, want)
		}
	}
	// A node's size is its balloon plus its plugged memory.
	x, err := parseDomain(libvirtVirtioMem)
	if err != nil {
		t.Fatal(err)
	}
	if got := x.memMB(); got != 512 {
		t.Errorf("memMB = %d, want 512 (256 balloon + 256 plugged)", got)
	}
	// Domains without the plugin's device are ballooned.
	for _, desc := range []string{
		`<domain><memory unit='KiB'>1048576</memory><currentMemory unit='KiB'>262144</currentMemory></domain>`,
		strings.Replace(libvirtVirtioMem, "ua-necos-mem", "ua-other", 1),
	} {
		if _, ok, err := readVirtioMem(desc); ok || err != nil {
			t.Errorf("a domain without the plugin's device: ok %v, %v", ok, err)
		}
	}
	if _, _, err := readVirtioMem(strings.Replace(libvirtVirtioMem, "<cell id='0' cpus='0-3' memory='262144' unit='KiB'/>", "", 1)); err == nil ||
		!strings.Contains(err.Error(), "NUMA") {
		t.Errorf("a device without a NUMA node: %v, want an error naming it", err)
	}
}

// A real guest with virtio-mem (memory_hotplug's default) grows past the memory it
// booted with, shrinks back (unplugging), goes below its boot size (the balloon) and
// grows again, each seen by the guest (MemTotal) and each the size Describe reports.
func TestRealGuestMemoryHotplug(t *testing.T) {
	e := newGuestEnv(t, func(c *Config) { c.MemoryHotplug = MemoryHotplugVirtioMem })
	ctx := context.Background()
	spec := e.spec("mem", sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 256, StorageGB: 1})
	t.Cleanup(func() { _ = e.p.Delete(context.Background(), sdk.DeleteRequest{Ref: spec.Ref}) })
	part, err := e.p.Create(ctx, sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatal(err)
	}
	memTotal := func() int {
		out := waitSSH(t, part, "vm-1", "awk '/^MemTotal:/ {print $2}' /proc/meminfo", 2*time.Minute)
		kb, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("MemTotal: %q: %v", out, err)
		}
		return kb / 1024
	}
	boot := memTotal()
	if boot > 256 {
		t.Fatalf("the guest booted with MemTotal %d MB, want at most its 256 MB (not max_node's %d)", boot, e.cfg.MaxNode.MemoryMB)
	}
	for _, step := range []struct {
		memMB int64
		want  func(mb int) bool
		what  string
	}{
		{512, func(mb int) bool { return mb > boot+200 }, fmt.Sprintf("> %d", boot+200)},
		{384, func(mb int) bool { return mb < boot+200 && mb > boot+64 }, fmt.Sprintf("%d to %d", boot+64, boot+200)},
		{192, func(mb int) bool { return mb < boot-32 }, fmt.Sprintf("< %d", boot-32)},
		{512, func(mb int) bool { return mb > boot+200 }, fmt.Sprintf("> %d", boot+200)},
	} {
		if part, err = e.p.Resize(ctx, sdk.ResizeRequest{Ref: spec.Ref, VDU: "vm", MemoryMB: step.memMB}); err != nil {
			t.Fatalf("resize to %d MB: %v", step.memMB, err)
		}
		if got := part.Nodes[0].MemoryMB; got != step.memMB {
			t.Errorf("resize to %d MB: the node is described with %d MB", step.memMB, got)
		}
		mb := 0
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
			if mb = memTotal(); step.want(mb) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("resize to %d MB: the guest's MemTotal is %d MB after 2 minutes, want %s", step.memMB, mb, step.what)
			}
		}
		t.Logf("resized to %d MB: MemTotal %d MB", step.memMB, mb)
	}
}
