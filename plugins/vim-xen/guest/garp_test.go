package main

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// The announcement is an ARP request for the guest's own address from that address.
func TestGarp(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	got := garp(mac, netip.MustParseAddr("10.77.0.2"))
	want := []byte{
		0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, request
		0x52, 0x54, 0, 0x12, 0x34, 0x56, 10, 77, 0, 2, // sender
		0, 0, 0, 0, 0, 0, 10, 77, 0, 2, // target
	}
	if !bytes.Equal(got, want) {
		t.Errorf("garp = % x, want % x", got, want)
	}
}
