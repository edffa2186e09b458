// Package vxlan is the necos WAN plugin: a net slice part is a VXLAN tunnel joining the
// per-slice bridges of two DC slice parts, rate-limited with tc, built with netlink.
//
// Each end of a link is a site: an underlay address, and the network namespace its
// devices live in (the host's, or a named one, as in the one-machine federation). At
// each end the plugin makes a VXLAN device named vx<VNI> pointing at the other end's
// underlay address, enslaves it to the end's bridge (creating the bridge when missing)
// and puts a tbf qdisc on it that limits what enters the tunnel to the link's bandwidth.
//
// Every link is recorded on its devices (see tag), so a restarted plugin describes and
// removes the links an earlier process made. The plugin keeps an index of them in memory,
// built from one scan of the devices at start-up (see index.go), so that no call's cost
// grows with the links alive.
package vxlan

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/sdk"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Plugin is the WAN plugin. It implements [sdk.Plugin] and [sdk.WAN].
type Plugin struct {
	log   hclog.Logger
	nsDir string
	// host is the namespace the plugin started in: devices of ends with no Netns.
	host    netns.NsHandle
	hostErr error

	// mu guards the configuration, the index and pending; it is held for decisions in
	// memory (admission, VNI allocation), never while devices are changed.
	mu       sync.Mutex
	cfg      Config
	provider string
	idx      *snapshot
	// pending are the plugin's bridges kept because a device of someone else (a VM's
	// tap) was a port of them: each Disconnect collects those whose ports are gone.
	pending map[bridgeNode]bool

	// linkLocks serialise the calls on one link; bridgeLocks the changes to one bridge
	// (two links of a slice may share one). Calls on other links run in parallel.
	linkLocks   keyedLocks[linkKey]
	bridgeLocks keyedLocks[bridgeNode]
	// provMu serialises the provisioning of sites (rare: once per site).
	provMu sync.Mutex

	connMu sync.Mutex
	conns  map[string]*nsConn
}

var (
	_ sdk.Plugin = (*Plugin)(nil)
	_ sdk.WAN    = (*Plugin)(nil)
)

// New returns the plugin with the default configuration. It must be called from a
// thread in the host's network namespace (any thread of a plugin process is).
func New() *Plugin {
	p := &Plugin{log: sdk.Logger("wan"), nsDir: netnsDir, cfg: DefaultConfig(), provider: "default"}
	p.host, p.hostErr = netns.Get()
	return p
}

// Close releases the plugin's handle on the host namespace.
func (p *Plugin) Close() error {
	p.closeConns()
	if p.hostErr == nil {
		return p.host.Close()
	}
	return nil
}

// Info implements [sdk.Plugin].
func (p *Plugin) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:        "wan",
		Version:     Version,
		Description: "VXLAN links with tc rate limits between per-slice bridges, through netlink",
		Kinds:       []sdk.Kind{sdk.KindWAN},
	}, nil
}

// ConfigSchema implements [sdk.Plugin].
func (p *Plugin) ConfigSchema(context.Context) (sdk.ConfigSchema, error) { return schema(), nil }

// Configure implements [sdk.Plugin]. Absent keys take the defaults of [DefaultConfig].
func (p *Plugin) Configure(_ context.Context, c sdk.Config) error {
	cfg := DefaultConfig()
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg = cfg
	if c.Provider.Name != "" {
		p.provider = c.Provider.Name
	}
	p.log.Info("configured", "provider", p.provider, "max_bandwidth_bps", cfg.MaxBandwidthBps,
		"vni_min", cfg.VNIMin, "vni_max", cfg.VNIMax, "udp_port", cfg.UDPPort, "mtu", cfg.MTU)
	// A plugin process starts by collecting what an earlier one, killed mid-call, left,
	// then indexes the links the devices hold.
	p.collectLogged("start-up")
	if p.hostErr == nil {
		start := time.Now()
		if err := p.rebuildLocked(); err != nil {
			return fmt.Errorf("index the links: %w", err)
		}
		p.log.Debug("indexed links", "links", len(p.idx.links), "took", time.Since(start).String())
	}
	return nil
}

// collectLogged runs collect (under p.mu, at start-up) and logs its outcome. A failed collection
// fails no call: what it could not remove is tried again at the next one.
func (p *Plugin) collectLogged(when string) {
	if p.hostErr != nil {
		return
	}
	start := time.Now()
	n, err := p.collect()
	if err != nil {
		p.log.Warn("collecting unused devices failed; retried at the next disconnect", "when", when, "removed", n, "error", err)
		return
	}
	if n > 0 {
		p.log.Info("collected unused devices", "when", when, "removed", n, "took", time.Since(start).String())
	}
}

// begin checks what every call needs.
func (p *Plugin) begin(ctx context.Context) error {
	if p.hostErr != nil {
		return sdk.Errorf(sdk.CodeUnavailable, "host network namespace: %v", p.hostErr)
	}
	return ctx.Err()
}

// check validates spec and provisions its sites (when configured to).
func (p *Plugin) check(ctx context.Context, spec sdk.LinkSpec) error {
	if err := p.begin(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	err := p.validateSpec(spec)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.provisionSites(spec)
}

// OfferLink implements [sdk.WAN]. The bandwidth left between the two sites is the
// configured capacity less the rates of the links already joining them, read from the
// devices; an existing link with the same ref is not counted, so re-offering a link
// (to change its rate) sees its own share as free.
func (p *Plugin) OfferLink(ctx context.Context, req sdk.OfferLinkRequest) (sdk.LinkOffer, error) {
	spec := req.Link
	if err := p.check(ctx, spec); err != nil {
		return sdk.LinkOffer{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	snap, err := p.indexLocked()
	if err != nil {
		return sdk.LinkOffer{}, fmt.Errorf("offer link %s: %w", spec.Ref, err)
	}
	key := linkKey{p.provider, spec.Ref}
	offer := sdk.LinkOffer{
		Accepted:     true,
		PricePerDay:  p.cfg.PricePerLinkDay,
		AvailableBps: p.linkAvailable(snap, spec, key),
		CapacityBps:  p.capacity(spec.End1.Site, spec.End2.Site),
	}
	if isLocal(spec) {
		offer.CapacityBps = p.cfg.MaxBandwidthBps
	}
	if err := p.admit(snap, spec, key, offer.AvailableBps); err != nil {
		offer.Accepted = false
		offer.Reason = err.Error()
	}
	return offer, nil
}

// admit returns why the link cannot be built now, or nil.
func (p *Plugin) admit(snap *snapshot, spec sdk.LinkSpec, key linkKey, available uint64) error {
	if spec.BandwidthBps > available {
		return sdk.Errorf(sdk.CodeResourceExhausted,
			"link %s needs %d bit/s between sites %s and %s, only %d bit/s are left",
			spec.Ref, spec.BandwidthBps, spec.End1.Site, spec.End2.Site, available)
	}
	if cur := snap.links[key]; cur != nil {
		if spec.VNI != 0 && spec.VNI != cur.vni() {
			return sdk.Errorf(sdk.CodeFailedPrecondition, "link %s exists with VNI %d, not %d", spec.Ref, cur.vni(), spec.VNI)
		}
		if err := sameEnds(cur, spec); err != nil {
			return err
		}
	} else if _, err := p.pickVNI(snap, spec.VNI); err != nil {
		return err
	}
	if via := snap.joined(spec, key); via != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition,
			"bridges %s and %s are already joined (through links such as %s): a second path would loop broadcasts",
			spec.End1.Bridge, spec.End2.Bridge, via.ref)
	}
	return nil
}

// linkAvailable is the bandwidth spec may have: what is left between its sites, or,
// for a local link, which crosses no WAN, max_bandwidth_bps.
func (p *Plugin) linkAvailable(snap *snapshot, spec sdk.LinkSpec, skip linkKey) uint64 {
	if isLocal(spec) {
		return p.cfg.MaxBandwidthBps
	}
	return p.available(snap, spec.End1.Site, spec.End2.Site, skip)
}

// available returns the bandwidth left between sites a and b, not counting link skip.
// Local links use no WAN capacity and are not counted.
func (p *Plugin) available(snap *snapshot, a, b string, skip linkKey) uint64 {
	if snap.byNode == nil {
		snap.reindex()
	}
	want := pairKey(a, b)
	pairUsed := snap.pairUsed[pairUse{p.provider, want}]
	siteUsed := map[string]uint64{a: snap.siteUsed[[2]string{p.provider, a}], b: snap.siteUsed[[2]string{p.provider, b}]}
	if l := snap.links[skip]; l != nil && skip.provider == p.provider && !l.local() {
		bw := l.bandwidth()
		s1, s2 := l.sites()
		if pairKey(s1, s2) == want {
			pairUsed -= bw
		}
		for s := range siteUsed {
			if s == s1 || s == s2 {
				siteUsed[s] -= bw
			}
		}
	}
	left := subFloor(p.cfg.pairCapacity(a, b), pairUsed)
	for _, s := range []string{a, b} {
		if sc, ok := p.cfg.Sites[s]; ok {
			left = min(left, subFloor(sc.MaxBandwidthBps, siteUsed[s]))
		}
	}
	return left
}

// capacity is the bandwidth a and b could have with no link at all: the pair's limit,
// or a site's uplink when that is smaller.
func (p *Plugin) capacity(a, b string) uint64 {
	c := p.cfg.pairCapacity(a, b)
	for _, s := range []string{a, b} {
		if sc, ok := p.cfg.Sites[s]; ok {
			c = min(c, sc.MaxBandwidthBps)
		}
	}
	return c
}

func subFloor(a, b uint64) uint64 {
	if b >= a {
		return 0
	}
	return a - b
}

// pickVNI returns want when it is free, else the lowest free VNI of the configured
// range. Every VXLAN device of every namespace counts, not only the plugin's: two
// devices with one VNI and port cannot share a namespace.
func (p *Plugin) pickVNI(snap *snapshot, want uint32) (uint32, error) {
	if want != 0 {
		if where, used := snap.vnis[want]; used {
			return 0, sdk.Errorf(sdk.CodeAlreadyExists, "vni: %d is in use (%s)", want, where)
		}
		return want, nil
	}
	for v := p.cfg.VNIMin; v <= p.cfg.VNIMax && v != 0; v++ {
		if _, used := snap.vnis[v]; !used {
			return v, nil
		}
	}
	return 0, sdk.Errorf(sdk.CodeResourceExhausted, "no free VNI in %d..%d", p.cfg.VNIMin, p.cfg.VNIMax)
}

// joined returns a link through which the spec's two bridges are already connected
// (directly or over other bridges), ignoring link skip, or nil. Two paths between two
// bridges make a loop that floods broadcasts forever: bridges here run no STP. It walks
// the links from end1's bridge, so it costs the links of that bridge's component.
func (s *snapshot) joined(spec sdk.LinkSpec, skip linkKey) *linkKey {
	if s.byNode == nil {
		s.reindex()
	}
	start := bridgeNode{spec.End1.Netns, spec.End1.Bridge}
	goal := bridgeNode{spec.End2.Netns, spec.End2.Bridge}
	if start == goal {
		return &linkKey{}
	}
	// first is, for each bridge reached, the link from start through which it was.
	first := map[bridgeNode]linkKey{}
	seen := map[bridgeNode]bool{start: true}
	queue := []bridgeNode{start}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for k, l := range s.byNode[n] {
			if k == skip {
				continue
			}
			nodes := l.nodes()
			if len(nodes) != 2 {
				continue
			}
			other := nodes[0]
			if other == n {
				other = nodes[1]
			}
			if seen[other] {
				continue
			}
			seen[other] = true
			via, ok := first[n]
			if !ok {
				via = k
			}
			first[other] = via
			if other == goal {
				return &via
			}
			queue = append(queue, other)
		}
	}
	return nil
}

// sameEnds reports whether an existing link's devices are where spec puts them.
func sameEnds(cur *linkDevs, spec sdk.LinkSpec) error {
	for i, want := range []sdk.LinkEnd{spec.End1, spec.End2} {
		a := cur.at[i]
		if a == nil {
			continue
		}
		if a.ns != want.Netns || a.bridge != want.Bridge || a.underlay != canonicalIP(want.Underlay) {
			return sdk.Errorf(sdk.CodeFailedPrecondition,
				"link %s exists with end%d in %s (underlay %s, bridge %s); disconnect it first to move it",
				spec.Ref, i+1, nsLabel(a.ns), a.underlay, a.bridge)
		}
	}
	return nil
}

// locations is where spec puts the ends of a link with VNI vni.
func locations(spec sdk.LinkSpec, vni uint32) [2]*endLoc {
	var at [2]*endLoc
	for i, e := range []sdk.LinkEnd{spec.End1, spec.End2} {
		dev := deviceName(vni)
		if isLocal(spec) {
			dev = localName(vni, i+1)
		}
		at[i] = &endLoc{ns: e.Netns, dev: dev, bridge: e.Bridge, underlay: canonicalIP(e.Underlay)}
	}
	return at
}

// Connect implements [sdk.WAN]. It is idempotent: a link that exists is checked and
// completed (a missing end made again, a changed bandwidth applied) and returned. On
// any failure it removes what this call created, and only that.
//
// The link is admitted and, when new, reserved in the index (its VNI, bandwidth and
// bridges count for every other call from then on) under p.mu; its devices are then made
// under its own lock and its bridges' locks, beside other links' calls.
func (p *Plugin) Connect(ctx context.Context, req sdk.ConnectRequest) (sdk.Link, error) {
	spec := req.Link
	if err := p.check(ctx, spec); err != nil {
		return sdk.Link{}, err
	}
	start := time.Now()
	key := linkKey{p.provider, spec.Ref}
	defer p.linkLocks.lock(key)()
	var (
		vni   uint32
		isNew bool
		err   error
	)
	// A new link's VNI or device name may turn out taken by a device the index does not
	// know (made meanwhile by someone else): the index merges a scan and tries once more.
	for attempt := 0; ; attempt++ {
		if vni, isNew, err = p.reserve(key, spec); err != nil {
			return sdk.Link{}, err
		}
		if err = p.ensure(key, spec, vni); err == nil {
			break
		}
		p.mu.Lock()
		if isNew {
			p.idx.drop(key)
			delete(p.idx.vnis, vni)
		}
		retry := isNew && spec.VNI == 0 && attempt == 0 &&
			(sdk.CodeOf(err) == sdk.CodeAlreadyExists || errors.Is(err, unix.EEXIST))
		if retry {
			if merr := p.mergeScanLocked(); merr != nil {
				retry = false
			}
		}
		p.mu.Unlock()
		if !retry {
			return sdk.Link{}, fmt.Errorf("connect %s: %w", spec.Ref, err)
		}
		p.log.Info("VNI or device name taken by a device the index did not know; trying again",
			"link", spec.Ref.String(), "vni", vni, "error", err)
	}
	p.mu.Lock()
	if l := p.idx.links[key]; l != nil {
		p.idx.drop(key)
		s := spec
		l.spec, l.v, l.at, l.ends = &s, vni, locations(spec, vni), [2]*vxdev{}
		p.idx.put(l)
	}
	p.mu.Unlock()
	p.log.Info("link connected", "link", spec.Ref.String(), "vni", vni, "bandwidth_bps", spec.BandwidthBps,
		"end1", spec.End1.Site, "end2", spec.End2.Site, "local", isLocal(spec), "new", isNew, "took", time.Since(start).String())
	link := sdk.Link{Ref: spec.Ref, Name: spec.Name, State: sdk.StateReady, VNI: vni,
		End1: spec.End1, End2: spec.End2, BandwidthBps: spec.BandwidthBps}
	link.End1.Underlay = canonicalIP(link.End1.Underlay)
	link.End2.Underlay = canonicalIP(link.End2.Underlay)
	return link, nil
}

// reserve admits spec and returns its VNI; a new link is entered in the index with it.
func (p *Plugin) reserve(key linkKey, spec sdk.LinkSpec) (vni uint32, isNew bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	idx, err := p.indexLocked()
	if err != nil {
		return 0, false, fmt.Errorf("connect %s: %w", spec.Ref, err)
	}
	if err := p.admit(idx, spec, key, p.linkAvailable(idx, spec, key)); err != nil {
		return 0, false, err
	}
	if cur := idx.links[key]; cur != nil {
		return cur.vni(), false, nil
	}
	if vni, err = p.pickVNI(idx, spec.VNI); err != nil {
		return 0, false, err
	}
	s := spec
	idx.put(&linkDevs{key: key, spec: &s, v: vni, at: locations(spec, vni)})
	idx.vnis[vni] = "link " + spec.Ref.String()
	return vni, true, nil
}

// ensure makes the link's devices as spec says; on failure it removes what it made.
func (p *Plugin) ensure(key linkKey, spec sdk.LinkSpec, vni uint32) error {
	var made undoStack
	err := func() error {
		if isLocal(spec) {
			return p.ensureLocal(spec, vni, &made)
		}
		for i := range 2 {
			if err := p.ensureEnd(spec, i+1, vni, &made); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		if uerr := made.run(); uerr != nil {
			p.log.Error("connect failed and its partial devices could not all be removed",
				"link", spec.Ref.String(), "error", err, "cleanup_error", uerr)
		}
	}
	return err
}

// DescribeLink implements [sdk.WAN]: the link as its devices show it now. A link whose
// devices are incomplete is reported in state failed with a message saying what is
// wrong; Connect repairs it, Disconnect removes it. The index says where the devices
// are; they are read from the kernel.
func (p *Plugin) DescribeLink(ctx context.Context, req sdk.DescribeLinkRequest) (sdk.Link, error) {
	ref := req.Ref
	if err := p.begin(ctx); err != nil {
		return sdk.Link{}, err
	}
	key := linkKey{p.provider, ref}
	defer p.linkLocks.lock(key)()
	p.mu.Lock()
	cur, err := p.lookupLocked(key)
	var at [2]*endLoc
	if cur != nil {
		at = cur.at
	}
	p.mu.Unlock()
	if err != nil {
		return sdk.Link{}, fmt.Errorf("describe %s: %w", ref, err)
	}
	if cur == nil {
		return sdk.Link{}, sdk.Errorf(sdk.CodeNotFound, "link %s not found", ref)
	}
	now := &linkDevs{key: key}
	for i, a := range at {
		if a == nil {
			continue
		}
		if now.ends[i], err = p.readEnd(key, i+1, a); err != nil {
			return sdk.Link{}, fmt.Errorf("describe %s: %w", ref, err)
		}
	}
	if now.ends[0] == nil && now.ends[1] == nil {
		// Every device is gone (removed behind the plugin's back): so is the link.
		p.mu.Lock()
		if p.idx.links[key] == cur {
			p.idx.drop(key)
			delete(p.idx.vnis, cur.vni())
		}
		p.mu.Unlock()
		return sdk.Link{}, sdk.Errorf(sdk.CodeNotFound, "link %s not found", ref)
	}
	return now.describe(), nil
}

// Disconnect implements [sdk.WAN]: it deletes the link's VXLAN devices (their qdiscs go
// with them) and each end's bridge when the plugin created it and nothing uses it any
// more, the two ends at once, then collects the plugin's bridges kept earlier for a port
// that is gone since (see collectPending). An unknown link is not an error: a retried
// Disconnect after a crash still collects.
func (p *Plugin) Disconnect(ctx context.Context, req sdk.DisconnectRequest) error {
	ref := req.Ref
	if err := p.begin(ctx); err != nil {
		return err
	}
	start := time.Now()
	key := linkKey{p.provider, ref}
	defer p.linkLocks.lock(key)()
	p.mu.Lock()
	cur, err := p.lookupLocked(key)
	var at [2]*endLoc
	var local bool
	var vni uint32
	if cur != nil {
		at, local, vni = cur.at, cur.local(), cur.vni()
		cur.leaving = true
	}
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("disconnect %s: %w", ref, err)
	}
	defer p.collectPending()
	if cur == nil {
		p.log.Debug("disconnect: link not found", "link", ref.String())
		return nil
	}
	var errs [2]error
	if local {
		// Both ends are one veth pair in one namespace: deleting either deletes both.
		for i, a := range at {
			if a != nil {
				errs[i] = p.removeEnd(key, i+1, a)
			}
		}
	} else {
		var wg sync.WaitGroup
		for i, a := range at {
			if a != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = p.removeEnd(key, i+1, a)
				}()
			}
		}
		wg.Wait()
	}
	if err := errors.Join(errs[:]...); err != nil {
		p.mu.Lock()
		cur.leaving = false
		p.mu.Unlock()
		return fmt.Errorf("disconnect %s: %w", ref, err)
	}
	p.mu.Lock()
	if p.idx.links[key] == cur {
		p.idx.drop(key)
		delete(p.idx.vnis, vni)
	}
	p.mu.Unlock()
	p.log.Info("link disconnected", "link", ref.String(), "vni", vni, "took", time.Since(start).String())
	return nil
}

// undoStack holds the removals of what a Connect created, run newest first.
type undoStack []func() error

func (u *undoStack) push(f func() error) { *u = append(*u, f) }

func (u undoStack) run() error {
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
