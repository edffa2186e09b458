package vxlan

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/necos/necos/sdk"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The plugin keeps an index of the links (what each needs: VNI, bandwidth, sites,
// bridges, where its devices are), so that a call costs the same with 0 or 1,000 links
// alive: admission (bandwidth, VNI, loops) is decided in memory, and a call reads or
// changes only its own link's devices by name. The devices stay the record: the index is
// built from one scan when the plugin is configured (a restarted plugin sees what the
// kernel holds), and the scan is merged in again on a miss (a link this process does not
// know, or a device name or VNI found taken).

// endLoc is where one end of a link is: its namespace, device and bridge, and the end's
// underlay address.
type endLoc struct {
	ns, dev, bridge, underlay string
}

// keyedLocks is a mutex per key, made on first use and dropped when nobody holds or
// waits for it.
type keyedLocks[K comparable] struct {
	mu sync.Mutex
	m  map[K]*keyedLock
}

type keyedLock struct {
	mu    sync.Mutex
	users int
}

// lock locks key and returns its unlock.
func (k *keyedLocks[K]) lock(key K) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[K]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// lockBridges locks the bridges given (one or two), in a fixed order so that two calls
// locking the same pair cannot deadlock.
func (p *Plugin) lockBridges(nodes ...bridgeNode) func() {
	if len(nodes) == 2 {
		a, b := nodes[0], nodes[1]
		switch {
		case a == b:
			nodes = nodes[:1]
		case b.ns < a.ns || (b.ns == a.ns && b.bridge < a.bridge):
			nodes = []bridgeNode{b, a}
		}
	}
	unlocks := make([]func(), 0, len(nodes))
	for _, n := range nodes {
		unlocks = append(unlocks, p.bridgeLocks.lock(n))
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

// rebuildLocked replaces the index with a scan of the devices. Under p.mu.
func (p *Plugin) rebuildLocked() error {
	snap, err := p.scan()
	if err != nil {
		return err
	}
	p.idx = snap
	return nil
}

// mergeScanLocked adds to the index what a scan finds and the index lacks: links made
// by another process, VNIs taken by devices that are not the plugin's. Links the index
// holds (some being connected right now) are kept as they are. Under p.mu.
func (p *Plugin) mergeScanLocked() error {
	if p.idx == nil {
		return p.rebuildLocked()
	}
	snap, err := p.scan()
	if err != nil {
		return err
	}
	for k, l := range snap.links {
		if _, ok := p.idx.links[k]; !ok {
			p.idx.put(l)
		}
	}
	for v, where := range snap.vnis {
		if _, ok := p.idx.vnis[v]; !ok {
			p.idx.vnis[v] = where
		}
	}
	p.log.Debug("index merged with a scan of the devices", "links", len(p.idx.links))
	return nil
}

// indexLocked returns the index, building it when the plugin has none yet. Under p.mu.
func (p *Plugin) indexLocked() (*snapshot, error) {
	if p.idx == nil {
		if err := p.rebuildLocked(); err != nil {
			return nil, err
		}
	}
	return p.idx, nil
}

// lookupLocked returns the index's entry for key; on a miss it merges a scan first, so a
// link another process made is found. Under p.mu.
func (p *Plugin) lookupLocked(key linkKey) (*linkDevs, error) {
	idx, err := p.indexLocked()
	if err != nil {
		return nil, err
	}
	if l := idx.links[key]; l != nil {
		return l, nil
	}
	if err := p.mergeScanLocked(); err != nil {
		return nil, err
	}
	return p.idx.links[key], nil
}

// nsConn is the plugin's netlink connection to one namespace, kept for later calls: a
// handle for the library's requests and a socket of its own for the few requests the
// library does not make (a device's root qdisc, a bridge's ports).
type nsConn struct {
	ns  netns.NsHandle
	h   *netlink.Handle
	raw map[int]*nl.SocketHandle

	// under maps an underlay address to the index of the device found holding it: an
	// address dump costs as many devices as the namespace has, a lookup by index not.
	mu    sync.Mutex
	under map[string]int

	del deleter // deletes the namespace's devices in batches (deleter.go)
}

// underlay returns the device of namespace ns holding address ip, or nil. A device found
// once is looked up by its index afterwards, and searched for again when it is gone.
func (p *Plugin) underlay(ns string, ip net.IP) (netlink.Link, error) {
	c, err := p.conn(ns)
	if err != nil {
		return nil, err
	}
	key := ip.String()
	c.mu.Lock()
	idx, ok := c.under[key]
	c.mu.Unlock()
	if ok {
		if l, err := c.h.LinkByIndex(idx); err == nil {
			return l, nil
		}
	}
	l, err := underlayDevice(c.h, ip)
	if err != nil || l == nil {
		return l, err
	}
	c.mu.Lock()
	if c.under == nil {
		c.under = map[string]int{}
	}
	c.under[key] = l.Attrs().Index
	c.mu.Unlock()
	return l, nil
}

func (c *nsConn) close() {
	c.h.Close()
	for _, s := range c.raw {
		s.Close()
	}
	if c.ns.IsOpen() {
		_ = c.ns.Close()
	}
}

// conn returns the connection to the named namespace ("" is the host's), opening one
// when there is none or the name now names another namespace (deleted and made again).
func (p *Plugin) conn(name string) (*nsConn, error) {
	var ns netns.NsHandle
	if name == "" {
		ns = p.host
	} else {
		var err error
		if ns, err = netns.GetFromName(name); err != nil {
			return nil, sdk.Errorf(sdk.CodeFailedPrecondition, "network namespace %q: %v", name, err)
		}
	}
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if c := p.conns[name]; c != nil {
		if name == "" || c.ns.Equal(ns) {
			if name != "" {
				_ = ns.Close()
			}
			return c, nil
		}
		c.close()
		delete(p.conns, name)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		if name != "" {
			_ = ns.Close()
		}
		return nil, fmt.Errorf("netlink in %s: %w", nsLabel(name), err)
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		if name != "" {
			_ = ns.Close()
		}
		return nil, fmt.Errorf("netlink in %s: %w", nsLabel(name), err)
	}
	c := &nsConn{h: h, raw: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}, del: newDeleter()}
	if name != "" {
		c.ns = ns // the host's handle is the plugin's, closed by Close
	}
	if p.conns == nil {
		p.conns = map[string]*nsConn{}
	}
	p.conns[name] = c
	return c, nil
}

// dropConns closes the connections to namespaces that are gone (not in keep).
func (p *Plugin) dropConns(keep []string) {
	live := make(map[string]bool, len(keep))
	for _, n := range keep {
		live[n] = true
	}
	p.connMu.Lock()
	defer p.connMu.Unlock()
	for name, c := range p.conns {
		if name != "" && !live[name] {
			c.close()
			delete(p.conns, name)
		}
	}
}

// dropConn closes the connection to one namespace, before it is deleted: an open
// handle would keep the namespace (and its devices) alive.
func (p *Plugin) dropConn(name string) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if c := p.conns[name]; c != nil && name != "" {
		c.close()
		delete(p.conns, name)
	}
}

func (p *Plugin) closeConns() {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	for name, c := range p.conns {
		c.close()
		delete(p.conns, name)
	}
}

// rootTbfOf returns the rate (bytes/s) of the tbf qdisc at the root of device index, and
// whether there is one, asking for that device's root qdisc alone: a dump of the
// namespace's qdiscs costs as many messages as it has devices.
func (c *nsConn) rootTbfOf(index int) (uint64, bool, error) {
	// The kernel answers a qdisc get as a notification, sent back to the asker only
	// with NLM_F_ECHO.
	req := nl.NewNetlinkRequest(unix.RTM_GETQDISC, unix.NLM_F_ACK|unix.NLM_F_ECHO)
	req.Sockets = c.raw
	req.AddData(&nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: int32(index), Parent: netlink.HANDLE_ROOT})
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWQDISC)
	if err != nil {
		// A built-in root (noqueue) is not reported: some kernels answer EINVAL.
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return 0, false, nil
		}
		return 0, false, err
	}
	for _, m := range msgs {
		msg := nl.DeserializeTcMsg(m)
		if int(msg.Ifindex) != index || msg.Parent != netlink.HANDLE_ROOT {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[msg.Len():])
		if err != nil {
			return 0, false, err
		}
		kind := ""
		var opts []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case nl.TCA_KIND:
				kind = string(a.Value[:len(a.Value)-1])
			case nl.TCA_OPTIONS:
				opts = a.Value
			}
		}
		if kind != "tbf" {
			return 0, false, nil
		}
		oattrs, err := nl.ParseRouteAttr(opts)
		if err != nil {
			return 0, false, err
		}
		var rate uint64
		for _, a := range oattrs {
			switch a.Attr.Type {
			case nl.TCA_TBF_PARMS:
				if rate == 0 {
					rate = uint64(nl.DeserializeTcTbfQopt(a.Value).Rate.Rate)
				}
			case nl.TCA_TBF_RATE64:
				rate = nl.NativeEndian().Uint64(a.Value)
			}
		}
		return rate, true, nil
	}
	return 0, false, nil
}

// portOf returns the name of a device enslaved to the bridge of index br, other than
// the device of index except, or "". The kernel filters the dump by master, so the answer
// costs the bridge's ports, not the namespace's devices.
func (c *nsConn) portOf(br, except int) (string, error) {
	var err error
	for range 5 {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.Sockets = c.raw
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(br))))
		var msgs [][]byte
		msgs, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			continue
		}
		if err != nil {
			return "", err
		}
		for _, m := range msgs {
			l, err := netlink.LinkDeserialize(nil, m)
			if err != nil {
				return "", err
			}
			// A kernel that ignores the filter sends all.
			if l.Attrs().MasterIndex == br && l.Attrs().Index != except {
				return l.Attrs().Name, nil
			}
		}
		return "", nil
	}
	return "", err
}
