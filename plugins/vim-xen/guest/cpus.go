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
	"time"

	"golang.org/x/sys/unix"
)

// sciPoll is how often the listener reads the ACPI interrupt's count (a hot-add raises
// it; reading a small proc file once a second costs an idle guest nothing measurable).
const sciPoll = time.Second

// onlineCPUs onlines the present CPUs that are offline (hot-plugged ones arrive offline),
// lowest first, and returns how many it onlined. It stops at the first CPU the kernel
// cannot wake: QEMU's ACPI tables make the kernel register every possible CPU at the
// first hot-add, and waking one QEMU does not have yet blocks for 10 s and fails; those
// after it are not there either (vCPUs are added in order).
func onlineCPUs() (int, error) {
	files, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/online")
	num := func(f string) int {
		n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(f)), "cpu"))
		return n
	}
	sort.Slice(files, func(i, j int) bool { return num(files[i]) < num(files[j]) })
	n := 0
	for _, f := range files {
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

// watchCPUs onlines CPUs as they are hot-plugged. It never returns unless the uevent
// socket fails. Two signals start a round of onlineCPUs: the kernel's "add" uevent of a
// CPU device (the cloud kernel has no uevent helper to run a script for them), and a
// rise of the ACPI interrupt's count. The second is needed because the kernel registers
// every possible CPU at the first hot-add (their uevents come then, not when QEMU gets
// them), so a CPU whose first wake-up failed gets no new uevent once QEMU has it; QEMU
// raises the ACPI interrupt at each hot-add. Signals that come during a round are
// folded into one more round.
func watchCPUs() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return fmt.Errorf("uevent socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		return fmt.Errorf("uevent bind: %w", err)
	}
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
			if n := sciCount(); n != last {
				last = n
				signal()
			}
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
				signal()
			}
		}
	}()
	signal() // CPUs added before the socket listened
	for {
		select {
		case err := <-failed:
			return err
		case <-wake:
			if _, err := onlineCPUs(); err != nil {
				fmt.Fprintln(os.Stderr, "necos-guest:", err)
			}
		}
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
