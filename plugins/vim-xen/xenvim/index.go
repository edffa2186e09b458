package xenvim

import (
	"net/netip"
	"sync"
	"time"

	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// The usage index: what this provider's domains hold of its capacity and addresses, kept
// in memory so that Offer, Create, Scale and Resize cost the same however many domains
// the host has (listing every domain at each call made a create cost 8 ms with none and
// 37 ms with 1,000 through libvirtd's test driver). It is built from one listing, then
// follows every domain this process defines, resizes, rewrites or removes. libvirt stays
// the truth: the index is read again from it
//   - at start-up (Configure) and whenever it is older than indexTTL, which catches
//     changes made behind the plugin's back (another process, an operator's virsh);
//   - after a miss: a part read by name disagrees with what the index holds of it, a
//     part the index does not hold has domains (looked for whenever the host's domain
//     count is not the one the index expects: two cheap calls instead of a listing), or
//     a define finds its name taken.
// A rebuild reads libvirt without holding the index; a domain this process changes
// meanwhile keeps the index's view of it, which is newer than what the rebuild read.

// indexTTL bounds how long the index is trusted without reading libvirt again.
const indexTTL = time.Minute

type domainIndex struct {
	rebuildMu sync.Mutex // one rebuild at a time

	mu      sync.Mutex
	built   time.Time // zero: read libvirt before the next use
	byName  map[string]node
	byPart  map[sdk.PartRef]map[string]bool
	used    sdk.Resources
	addrs   map[netip.Addr]int // node and endpoint addresses, with how many hold each
	touched map[string]bool    // domains changed while a rebuild runs; nil: none runs
	// hostDomains is how many domains the host had at the last read, the provider's or
	// not, followed by this process's defines and removals: a count that differs says
	// another process (or an operator) defined or removed domains since.
	hostDomains int
}

// hostChanged says whether the host's domain count differs from the one the index
// expects. A change made by this process between its libvirt call and the index's
// update reads as one too; it costs a listing, never a wrong answer.
func (x *domainIndex) hostChanged(conn *libvirt.Connect, s *settings) (bool, error) {
	active, err := conn.NumOfDomains()
	if err != nil {
		return false, lvError(err, "count domains at %s", s.uri)
	}
	inactive, err := conn.NumOfDefinedDomains()
	if err != nil {
		return false, lvError(err, "count domains at %s", s.uri)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return active+inactive != x.hostDomains, nil
}

// fresh says whether the index may be used without reading libvirt.
func (x *domainIndex) fresh() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return !x.built.IsZero() && time.Since(x.built) <= indexTTL
}

// invalidate makes the next use read libvirt again (a miss).
func (x *domainIndex) invalidate() {
	x.mu.Lock()
	x.built = time.Time{}
	x.mu.Unlock()
}

func nodeAddrs(n node) []netip.Addr {
	var out []netip.Addr
	for _, s := range []string{n.meta.IP, n.meta.Record.EndpointIP} {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

// add and remove keep the totals; x.mu is held.
func (x *domainIndex) add(n node) {
	if x.byName == nil {
		x.byName, x.byPart, x.addrs = map[string]node{}, map[sdk.PartRef]map[string]bool{}, map[netip.Addr]int{}
	}
	x.byName[n.domain] = n
	ref := n.ref()
	if x.byPart[ref] == nil {
		x.byPart[ref] = map[string]bool{}
	}
	x.byPart[ref][n.domain] = true
	x.used = x.used.Add(n.usage())
	for _, ip := range nodeAddrs(n) {
		x.addrs[ip]++
	}
}

func (x *domainIndex) remove(name string) {
	n, ok := x.byName[name]
	if !ok {
		return
	}
	delete(x.byName, name)
	ref := n.ref()
	if delete(x.byPart[ref], name); len(x.byPart[ref]) == 0 {
		delete(x.byPart, ref)
	}
	x.used = x.used.Sub(n.usage())
	for _, ip := range nodeAddrs(n) {
		if x.addrs[ip]--; x.addrs[ip] <= 0 {
			delete(x.addrs, ip)
		}
	}
}

// put records a domain this process defined or changed, as it is now.
func (x *domainIndex) put(n node) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.byName[n.domain]; !ok {
		x.hostDomains++
	}
	x.remove(n.domain)
	x.add(n)
	if x.touched != nil {
		x.touched[n.domain] = true
	}
}

// drop forgets a domain this process removed.
func (x *domainIndex) drop(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.byName[name]; ok {
		x.hostDomains--
	}
	x.remove(name)
	if x.touched != nil {
		x.touched[name] = true
	}
}

// get returns what the index holds of one domain.
func (x *domainIndex) get(name string) (node, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n, ok := x.byName[name]
	return n, ok
}

// partNames lists the domains the index holds of one part.
func (x *domainIndex) partNames(ref sdk.PartRef) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]string, 0, len(x.byPart[ref]))
	for name := range x.byPart[ref] {
		out = append(out, name)
	}
	return out
}

// nodesOf returns what the index holds of one part's nodes.
func (x *domainIndex) nodesOf(ref sdk.PartRef) []node {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]node, 0, len(x.byPart[ref]))
	for name := range x.byPart[ref] {
		out = append(out, x.byName[name])
	}
	return out
}

// totals returns what the provider's domains hold.
func (x *domainIndex) totals() sdk.Resources {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.used
}

// inUse says whether an address is held by a node or a part's endpoint.
func (x *domainIndex) inUse(ip netip.Addr) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.addrs[ip] > 0
}

// all returns every indexed node (tests, and the test-lease sweep).
func (x *domainIndex) all() []node {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]node, 0, len(x.byName))
	for _, n := range x.byName {
		out = append(out, n)
	}
	return out
}

// ensureIndex reads libvirt into the index unless it is fresh.
func (p *Plugin) ensureIndex(conn *libvirt.Connect, s *settings) error {
	if p.index.fresh() {
		return nil
	}
	x := &p.index
	x.rebuildMu.Lock()
	defer x.rebuildMu.Unlock()
	if x.fresh() {
		return nil // another call rebuilt it meanwhile
	}
	x.mu.Lock()
	x.touched = map[string]bool{}
	x.mu.Unlock()
	start := time.Now()
	nodes, hostDomains, err := p.listDomains(conn, s, namePrefix)
	x.mu.Lock()
	defer x.mu.Unlock()
	touched := x.touched
	x.touched = nil
	if err != nil {
		return err
	}
	old := x.byName
	x.byName, x.byPart, x.addrs = map[string]node{}, map[sdk.PartRef]map[string]bool{}, map[netip.Addr]int{}
	x.used = sdk.Resources{}
	x.hostDomains = hostDomains
	for _, n := range nodes {
		if !touched[n.domain] {
			x.add(n)
		}
	}
	for name := range touched {
		if n, ok := old[name]; ok {
			x.add(n)
		}
	}
	x.built = time.Now()
	p.log.Debug("domain index read", "domains", len(x.byName), "took", time.Since(start))
	return nil
}

// usageNow returns what the provider's domains hold, from an index read in the last
// indexTTL.
func (p *Plugin) usageNow(conn *libvirt.Connect, s *settings) (sdk.Resources, error) {
	if err := p.ensureIndex(conn, s); err != nil {
		return sdk.Resources{}, err
	}
	return p.index.totals(), nil
}

// inventory lists this provider's domains as the index holds them.
func (p *Plugin) inventory(conn *libvirt.Connect, s *settings) ([]node, error) {
	if err := p.ensureIndex(conn, s); err != nil {
		return nil, err
	}
	return p.index.all(), nil
}
