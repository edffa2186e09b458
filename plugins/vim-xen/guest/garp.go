package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// announce sends a gratuitous ARP for each IPv4 address a NIC was given. Whoever tried
// to reach the guest while it booted (the SSH deployer, a test's client) holds an
// incomplete neighbour entry for the address, and the kernel sends its queued packets
// only once the entry resolves: without an announcement that is the next ARP probe, up
// to a second later (three probes a second apart; when all three go unanswered the
// dial fails with "no route to host" and the dialler's next attempt starts again). An
// unsolicited ARP updates an entry that exists (it creates none where arp_accept is
// off), so the waiting connection attempt goes out at once.
func announce(ifindex int, mac net.HardwareAddr, addrs []netip.Addr) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("gratuitous ARP: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	for _, a := range addrs {
		if !a.Is4() || len(mac) != 6 {
			continue
		}
		if err := unix.Sendto(fd, garp(mac, a), 0, to); err != nil {
			return fmt.Errorf("gratuitous ARP for %s: %w", a, err)
		}
	}
	return nil
}

// garp is an ARP request for addr from addr (RFC 5227's announcement), without the
// Ethernet header (the packet socket adds it).
func garp(mac net.HardwareAddr, addr netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // hardware: Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // protocol: IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	ip := addr.As4()
	copy(b[8:], mac)
	copy(b[14:], ip[:])
	// Target hardware address: zero; target protocol address: the same address.
	copy(b[24:], ip[:])
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
