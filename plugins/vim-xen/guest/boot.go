package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/necos/necos/plugins/vim-xen/seed"
	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

const (
	seedDir     = "/run/seed"
	dataDir     = "/data"
	hostKeyPath = "/etc/dropbear/dropbear_ed25519_host_key"
	// seedWait bounds the wait for the seed volume's device to appear.
	seedWait = 20 * time.Second
)

// boot applies the seed. Without a seed the guest still comes up (its console works),
// but nobody can log in over SSH: that is reported, and boot fails.
func boot() error {
	start := time.Now()
	dev, fstype, err := findSeed(seedWait)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(seedDir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount(dev, seedDir, fstype, unix.MS_RDONLY, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount seed %s (%s): %w", dev, fstype, err)
	}
	read := func(name string) []byte { b, _ := os.ReadFile(filepath.Join(seedDir, name)); return b }
	s, err := seed.Parse(read(seed.MetaData), read(seed.UserData), read(seed.NetworkConfig))
	if err != nil {
		return fmt.Errorf("seed on %s: %w", dev, err)
	}
	var errs []error
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		errs = append(errs, fmt.Errorf("hostname: %w", err))
	}
	_ = os.WriteFile("/etc/hostname", []byte(s.Hostname+"\n"), 0o644)
	if err := writeAuthorizedKeys(s.AuthorizedKeys); err != nil {
		errs = append(errs, err)
	}
	if s.HostKey != "" {
		if err := writeHostKey(s.HostKey); err != nil {
			errs = append(errs, err)
		}
	}
	if err := configureNetwork(s.Interfaces); err != nil {
		errs = append(errs, err)
	}
	if err := mountData(dev); err != nil {
		errs = append(errs, err)
	}
	n, err := onlineCPUs()
	if err != nil {
		errs = append(errs, err)
	}
	fmt.Printf("necos-guest: %s (instance %s) configured from %s in %s, %d CPUs onlined\n",
		s.Hostname, s.InstanceID, dev, time.Since(start).Round(time.Millisecond), n)
	return errors.Join(errs...)
}

// findSeed waits for a block device labelled cidata (ISO 9660 or FAT) and returns it and
// its file system type.
func findSeed(wait time.Duration) (string, string, error) {
	deadline := time.Now().Add(wait)
	for {
		names, _ := filepath.Glob("/sys/block/*")
		var seen []string
		for _, p := range names {
			dev := "/dev/" + filepath.Base(p)
			fstype, ok, err := seedLabel(dev)
			if ok {
				return dev, fstype, nil
			}
			seen = append(seen, fmt.Sprintf("%s: %s %v", dev, fstype, err))
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("no %s volume after %s (block devices: %s)", seed.Label, wait, strings.Join(seen, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// seedLabel reports whether dev holds a file system labelled cidata, and which.
func seedLabel(dev string) (string, bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	// ISO 9660: the primary volume descriptor is sector 16 (2048-byte sectors).
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, 16*2048); err == nil && string(pvd[1:6]) == "CD001" {
		return "iso9660", strings.EqualFold(strings.Trim(string(pvd[40:72]), " \x00"), seed.Label), nil
	}
	boot := make([]byte, 512)
	if _, err := f.ReadAt(boot, 0); err != nil || boot[510] != 0x55 || boot[511] != 0xAA {
		return "", false, err
	}
	for _, off := range []int{0x47, 0x2B} { // FAT32, FAT12/16 volume labels
		if strings.EqualFold(strings.Trim(string(boot[off:off+11]), " \x00"), seed.Label) {
			return "vfat", true, nil
		}
	}
	return "", false, nil
}

func writeAuthorizedKeys(keys []string) error {
	if err := os.MkdirAll("/root/.ssh", 0o700); err != nil {
		return err
	}
	body := strings.Join(keys, "\n")
	if body != "" {
		body += "\n"
	}
	return os.WriteFile("/root/.ssh/authorized_keys", []byte(body), 0o600)
}

// writeHostKey writes an OpenSSH ed25519 private key in dropbear's own key format:
// string "ssh-ed25519", then a string holding the 32-byte seed and the 32-byte public key.
func writeHostKey(pemKey string) error {
	raw, err := ssh.ParseRawPrivateKey([]byte(pemKey))
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	var priv ed25519.PrivateKey
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		priv = *k
	case ed25519.PrivateKey:
		priv = k
	default:
		return fmt.Errorf("host key: %T is not an ed25519 key", raw)
	}
	var b bytes.Buffer
	put := func(p []byte) {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(p)))
		b.Write(p)
	}
	put([]byte(ssh.KeyAlgoED25519))
	put(priv) // seed || public key, 64 bytes
	if err := os.MkdirAll(filepath.Dir(hostKeyPath), 0o700); err != nil {
		return err
	}
	return os.WriteFile(hostKeyPath, b.Bytes(), 0o600)
}

// configureNetwork brings lo up and gives each NIC of the seed its name, addresses and
// routes. NICs appear when their driver has bound, so each is waited for a moment.
func configureNetwork(ifs []seed.Interface) error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	var errs []error
	for _, in := range ifs {
		if err := configureNIC(in); err != nil {
			errs = append(errs, fmt.Errorf("nic %s (%s): %w", in.Name, in.MAC, err))
		}
	}
	return errors.Join(errs...)
}

func configureNIC(in seed.Interface) error {
	var link netlink.Link
	for deadline := time.Now().Add(seedWait); link == nil; {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			mac := strings.ToLower(l.Attrs().HardwareAddr.String())
			if (in.MAC != "" && mac == in.MAC) || (in.MAC == "" && l.Attrs().Name == in.Name) {
				link = l
				break
			}
		}
		if link == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("no such NIC")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if in.Name != "" && link.Attrs().Name != in.Name {
		_ = netlink.LinkSetDown(link)
		if err := netlink.LinkSetName(link, in.Name); err != nil {
			return fmt.Errorf("rename %s: %w", link.Attrs().Name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	var mine []netip.Addr
	for _, a := range in.Addresses {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("address %s: %w", a, err)
		}
		mine = append(mine, p.Addr())
	}
	// Not fatal: peers still find the guest by ARP, only later.
	if err := announce(link.Attrs().Index, link.Attrs().HardwareAddr, mine); err != nil {
		fmt.Fprintf(os.Stderr, "necos-guest: nic %s: %v\n", in.Name, err)
	}
	routes := in.Routes
	if in.Gateway != "" {
		to := "0.0.0.0/0"
		if a, _ := netip.ParseAddr(in.Gateway); a.Is6() {
			to = "::/0"
		}
		routes = append(routes, seed.Route{To: to, Via: in.Gateway})
	}
	for _, r := range routes {
		p, err := netip.ParsePrefix(r.To)
		if err != nil {
			return err
		}
		rt := &netlink.Route{LinkIndex: link.Attrs().Index,
			Dst: &net.IPNet{IP: p.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if r.Via != "" {
			rt.Gw = net.ParseIP(r.Via)
		} else {
			rt.Scope = netlink.SCOPE_LINK
		}
		if err := netlink.RouteReplace(rt); err != nil {
			return fmt.Errorf("route %s via %q: %w", r.To, r.Via, err)
		}
	}
	return nil
}

// mountData mounts the first disk with an ext2/3/4 file system (other than the seed) at
// /data.
func mountData(seedDev string) error {
	names, _ := filepath.Glob("/sys/block/*")
	for _, p := range names {
		dev := "/dev/" + filepath.Base(p)
		if dev == seedDev {
			continue
		}
		f, err := os.Open(dev)
		if err != nil {
			continue
		}
		magic := make([]byte, 2)
		_, err = f.ReadAt(magic, 1024+0x38)
		f.Close()
		if err != nil || magic[0] != 0x53 || magic[1] != 0xEF {
			continue
		}
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(dev, dataDir, "ext4", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s at %s: %w", dev, dataDir, err)
		}
		return nil
	}
	return nil
}
