package xenvim

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/plugins/vim-xen/seed"
)

// plainBootDone is what the image's init prints once the seed is applied, right before
// init starts the SSH server: the moment a plain QEMU boot is compared at.
const plainBootDone = "necos-guest: boot done"

// plainQEMUFour boots four guests at once with QEMU alone, the baseline for the
// plugin's four at once: the same kernel, initrd, command line and data disk as the
// image's, 256 MB and one vCPU, single-threaded TCG with the plugin's translation cache,
// a seed like the plugin's (NIC address, no key) on a second virtio disk, and a NIC on
// QEMU's user network restricted to the guest (nothing reaches the host). There is no
// libvirt, no storage pool, no tap and no SSH: it returns when the last guest's init has
// applied its seed (plainBootDone on its serial console), which is when a plugin's guest
// starts its SSH server.
func plainQEMUFour(b *testing.B, cfg Config) time.Duration {
	b.Helper()
	im := cfg.Images[cfg.DefaultImage]
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		b.Fatalf("plain QEMU baseline: %v", err)
	}
	cache := cfg.TCGCacheMB
	if cache == 0 {
		cache = DefaultTCGCacheMB
	}
	dir := b.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		took time.Duration
		err  error
	}
	done := make(chan result, 4)
	start := time.Now()
	for i := range 4 {
		mac := fmt.Sprintf("52:54:00:ee:00:%02x", i+1)
		iso, err := seedISO(seed.Seed{InstanceID: fmt.Sprintf("plain-%d", i), Hostname: fmt.Sprintf("plain-%d", i),
			Interfaces: []seed.Interface{{Name: "eth0", MAC: mac, Addresses: []string{fmt.Sprintf("10.0.2.%d/24", 15+i)}}}})
		if err != nil {
			b.Fatal(err)
		}
		isoPath := filepath.Join(dir, fmt.Sprintf("seed-%d.iso", i))
		if err := os.WriteFile(isoPath, iso, 0o600); err != nil {
			b.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, qemu, "-machine", "q35", "-accel", fmt.Sprintf("tcg,thread=single,tb-size=%d", cache),
			"-cpu", "max", "-m", "256", "-smp", "1,maxcpus=4", "-nodefaults", "-no-user-config", "-display", "none",
			"-serial", "stdio", "-kernel", im.Kernel, "-initrd", im.Initrd, "-append", im.Cmdline,
			"-drive", "file="+im.Disk+",if=virtio,snapshot=on,format="+cmp.Or(im.Format, "qcow2"),
			"-drive", "file="+isoPath+",if=virtio,format=raw,readonly=on",
			"-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0,mac="+mac)
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatalf("plain QEMU: %v", err)
		}
		go func() {
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.Contains(sc.Text(), plainBootDone) {
					done <- result{took: time.Since(start)}
					return
				}
			}
			done <- result{err: fmt.Errorf("plain QEMU guest %d: console closed before %q (%v)", i, plainBootDone, ctx.Err())}
		}()
	}
	var last time.Duration
	for range 4 {
		r := <-done
		if r.err != nil {
			b.Fatal(r.err)
		}
		last = max(last, r.took)
	}
	return last
}
