package xenvim

import "net/netip"

// hostCount returns how many host addresses p holds: IPv4 loses its network and
// broadcast addresses (except /31 and /32), IPv6 its subnet-router anycast address.
// Large IPv6 subnets saturate at a billion, plenty for one provider.
func hostCount(p netip.Prefix) int64 {
	bits := p.Addr().BitLen() - p.Bits()
	if bits > 30 {
		return 1 << 30
	}
	n := int64(1) << bits
	switch {
	case p.Addr().Is4() && bits >= 2:
		return n - 2
	case p.Addr().Is6() && bits >= 1:
		return n - 1
	}
	return n
}

// allocator hands out the lowest free host addresses of a subnet: neither in used nor
// taken (when set: the usage index's view of the addresses in use).
type allocator struct {
	subnet netip.Prefix
	used   map[netip.Addr]bool
	taken  func(netip.Addr) bool
}

func newAllocator(subnet netip.Prefix, used []string) *allocator {
	a := &allocator{subnet: subnet, used: map[netip.Addr]bool{}, taken: func(netip.Addr) bool { return false }}
	for _, s := range used {
		if ip, err := netip.ParseAddr(s); err == nil {
			a.used[ip] = true
		}
	}
	return a
}

// next returns the lowest free host address and marks it used; ok is false when the
// subnet is full.
func (a *allocator) next() (netip.Addr, bool) {
	first := a.subnet.Addr()
	bits := first.BitLen() - a.subnet.Bits()
	if (first.Is4() && bits >= 2) || (first.Is6() && bits >= 1) {
		first = first.Next() // skip the network (or subnet-router anycast) address
	}
	n := hostCount(a.subnet)
	ip := first
	for i := int64(0); i < n && ip.IsValid() && a.subnet.Contains(ip); i++ {
		if !a.used[ip] && !a.taken(ip) {
			a.used[ip] = true
			return ip, true
		}
		ip = ip.Next()
	}
	return netip.Addr{}, false
}

// prefixLen is the length of the subnet's prefix, for the NIC's <ip prefix=...>.
func (a *allocator) prefixLen() int { return a.subnet.Bits() }
