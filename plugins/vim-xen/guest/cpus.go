package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// sciPoll is how often the listener reads the ACPI interrupt's count (a hot-add raises
// it; reading a small proc file once a second costs an idle guest nothing measurable).
const sciPoll = time.Second

// onlineCPUs onlines every present CPU that is offline, lowest first, and returns how
// many it onlined: at boot, and by hand (`necos-guest online-cpus`).
func onlineCPUs() (int, error) { return onlineSome(-1) }

// onlineSome onlines up to limit offline CPUs (all when limit < 0), lowest first, and
// returns how many it onlined. It stops at the first CPU the kernel cannot wake: vCPUs
// are added in order, so the ones after it are not there either.
func onlineSome(limit int) (int, error) {
	files, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/online")
	num := func(f string) int {
		n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(f)), "cpu"))
		return n
	}
	sort.Slice(files, func(i, j int) bool { return num(files[i]) < num(files[j]) })
	n := 0
	for _, f := range files {
		if limit >= 0 && n >= limit {
			break
		}
		b, err := os.ReadFile(f)
		if err != nil || strings.TrimSpace(string(b)) != "0" {
			continue
		}
		if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
			return n, fmt.Errorf("%s: %w", f, err)
		}
		n++
	}
	return n, nil
}

// sciRetries is how many times a CPU announced by the ACPI interrupt is looked for
// again (a second apart) when it is not there yet: the kernel registers it shortly
// after the interrupt. An interrupt that was not a CPU's (the power button, say) is
// forgotten after that.
const sciRetries = 5

// watchCPUs onlines CPUs as they are hot-plugged. It never returns unless the uevent
// socket fails.
//
// QEMU raises the ACPI interrupt (SCI) at each vCPU it adds, and that is what counts
// here: each rise of the interrupt's count in /proc/interrupts lets one more CPU be
// onlined, the lowest offline first. The CPUs' "add" uevents cannot be the signal: at
// the first hot-add the guest's kernel registers every possible CPU (their uevents come
// then, not when QEMU gets them), and waking one QEMU does not have yet blocks 10 s and
// fails, while a wake-up QEMU's add overtakes may leave the CPU unusable. Uevents are
// kept for hypervisors that add CPUs without the ACPI interrupt: a CPU's uevent onlines
// every offline CPU unless the interrupt has announced a hot-add by then.
func watchCPUs() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return fmt.Errorf("uevent socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		return fmt.Errorf("uevent bind: %w", err)
	}
	var (
		mu       sync.Mutex
		pending  int  // CPUs the interrupt announced, not onlined yet
		sciSeen  bool // the interrupt has announced a hot-add: uevents are ignored
		uevented bool // a CPU's uevent came, to be acted on if the interrupt says nothing
	)
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	go func() {
		last := sciCount()
		for range time.Tick(sciPoll) {
			n := sciCount()
			if n > last {
				mu.Lock()
				pending += int(n - last)
				sciSeen = true
				mu.Unlock()
				signal()
			}
			last = n
		}
	}()
	failed := make(chan error, 1)
	go func() {
		buf := make([]byte, 8192)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				failed <- fmt.Errorf("uevent read: %w", err)
				return
			}
			// "add@/devices/system/cpu/cpu3\0ACTION=add\0..."
			head, _, _ := bytes.Cut(buf[:n], []byte{0})
			if action, path, ok := strings.Cut(string(head), "@"); ok && action == "add" &&
				strings.HasPrefix(path, "/devices/system/cpu/cpu") {
				// Acted on once the interrupt's count has been read after it.
				time.AfterFunc(2*sciPoll, func() {
					mu.Lock()
					uevented = true
					mu.Unlock()
					signal()
				})
			}
		}
	}()
	// CPUs added before the socket listened.
	if _, err := onlineCPUs(); err != nil {
		fmt.Fprintln(os.Stderr, "necos-guest:", err)
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	tries := 0
	for {
		select {
		case err := <-failed:
			return err
		case <-wake:
		case <-retry.C:
		}
		mu.Lock()
		want, all := pending, uevented && !sciSeen
		uevented = false
		mu.Unlock()
		if all {
			if _, err := onlineCPUs(); err != nil {
				fmt.Fprintln(os.Stderr, "necos-guest:", err)
			}
		}
		if want == 0 {
			continue
		}
		n, err := onlineSome(want)
		if err != nil {
			fmt.Fprintln(os.Stderr, "necos-guest:", err)
		}
		mu.Lock()
		pending -= n
		if n > 0 {
			tries = 0
		}
		if pending > 0 {
			if tries++; tries > sciRetries || err != nil {
				// Not a CPU's interrupt, or a CPU that cannot be woken: waking it
				// again would only block.
				pending, tries = 0, 0
			} else {
				retry.Reset(time.Second)
			}
		}
		mu.Unlock()
	}
}

// sciCount returns how many ACPI interrupts (SCI) the guest has taken, summed over its
// CPUs; 0 when /proc/interrupts cannot be read.
func sciCount() uint64 {
	f, err := os.Open("/proc/interrupts")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[len(fields)-1] != "acpi" {
			continue
		}
		for _, c := range fields[1:] {
			v, err := strconv.ParseUint(c, 10, 64)
			if err != nil {
				break
			}
			total += v
		}
	}
	return total
}
