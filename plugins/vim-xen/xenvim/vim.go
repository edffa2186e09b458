package xenvim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// tooBig says why a VDU's nodes cannot be made here at all, or "".
func tooBig(s *settings, vdus []vduRecord) string {
	for _, v := range vdus {
		if v.CPUs > s.maxCPUs {
			return fmt.Sprintf("vdu %s: a node can have at most %d vCPUs here, asked %d", v.Name, s.maxCPUs, v.CPUs)
		}
		if v.MemoryMB > s.maxMemMB {
			return fmt.Sprintf("vdu %s: a node can have at most %d MB of memory here, asked %d", v.Name, s.maxMemMB, v.MemoryMB)
		}
	}
	return ""
}

func hasNIC(s *settings, r partRecord) bool { return r.Bridge != "" || s.network != "" }

// Offer says whether the provider can host the part now: the configured capacity minus
// what this provider's domains hold, as libvirt reports them. The price is the number of
// nodes times price_per_node_day.
func (p *Plugin) Offer(_ context.Context, req sdk.OfferRequest) (sdk.Offer, error) {
	spec := req.Part
	s, conn, err := p.session()
	if err != nil {
		return sdk.Offer{}, err
	}
	used, err := p.usageNow(conn, s)
	if err != nil {
		return sdk.Offer{}, fmt.Errorf("offer %s: %w", spec.Ref, err)
	}
	need := spec.Resources()
	o := sdk.Offer{Requested: need, Free: free(s, used), Capacity: s.capacity,
		PricePerDay: float64(need.Nodes) * s.price}
	rec := recordOf(spec)
	if why := tooBig(s, rec.VDUs); why != "" {
		o.Reason = why
		return o, nil
	}
	if s.guests {
		for _, v := range rec.VDUs {
			if _, _, err := s.imageOf(v.Name, v.Image); err != nil {
				o.Reason = strings.TrimPrefix(err.Error(), "InvalidArgument: ")
				return o, nil
			}
		}
	}
	if ok, why := need.Fits(o.Free); !ok {
		o.Reason = why
		return o, nil
	}
	if s.subnet.IsValid() && hasNIC(s, rec) {
		a := p.addressAllocator(s)
		want := need.Nodes
		if s.guests {
			want++ // the part's endpoint
		}
		for i := 0; i < want; i++ {
			if _, ok := a.next(); !ok {
				o.Reason = fmt.Sprintf("not enough addresses: subnet %s has %d free, need %d", s.subnet, i, want)
				return o, nil
			}
		}
	}
	o.Accepted = true
	return o, nil
}

// Create builds the part and returns it once its nodes run. A part that exists is
// returned as it is (with any node a crashed earlier call left missing made, and any
// stopped node started); what this call made is removed again if it fails.
func (p *Plugin) Create(ctx context.Context, req sdk.CreateRequest) (sdk.Part, error) {
	spec := req.Part
	clk := p.clock(spec.Ref)
	done := clk.step("session")
	s, conn, err := p.session()
	done()
	if err != nil {
		return sdk.Part{}, err
	}
	unlock := p.parts.lock(spec.Ref)
	defer unlock()
	done = clk.step("lookup")
	existing, err := p.partNodes(conn, s, spec.Ref)
	done()
	if err != nil {
		return sdk.Part{}, fmt.Errorf("create part %s: %w", spec.Ref, err)
	}
	rec := recordOf(spec)
	if len(existing) > 0 {
		// The part's own record wins over the request: it may have been resized or
		// scaled since it was first created.
		rec = latestRecord(existing)
	}
	done = clk.step("key")
	rec, key, err := p.ensureKey(conn, s, spec.Ref, rec, existing)
	done()
	if err != nil {
		return sdk.Part{}, fmt.Errorf("create part %s: %w", spec.Ref, err)
	}
	if s.guests && len(existing) > 0 {
		// A node defined by a call killed before it made the node's volumes is made again.
		if existing, err = p.dropUnbacked(conn, s, spec.Ref, rec, existing); err != nil {
			return sdk.Part{}, fmt.Errorf("create part %s: %w", spec.Ref, err)
		}
	}
	if s.guests && len(existing) > 0 {
		// The part's network may be gone (a host restart): make it again first.
		if err := p.partNet(s, spec.Ref, rec).ensure(); err != nil {
			return sdk.Part{}, sdk.Errorf(sdk.CodeFailedPrecondition, "create part %s: network: %v", spec.Ref, err)
		}
	}
	start := time.Now()
	if missing := missingNodes(rec, existing); len(missing) > 0 {
		if err := p.addNodes(ctx, conn, s, spec.Ref, rec, key, missing); err != nil {
			if len(existing) == 0 {
				p.forgetPart(s, spec.Ref, rec)
			}
			return sdk.Part{}, fmt.Errorf("create part %s: %w", spec.Ref, err)
		}
		p.log.Info("part created", "part", spec.Ref.String(), "nodes", len(missing),
			"resumed", len(existing) > 0, "took", time.Since(start))
	}
	for _, n := range existing {
		if !n.active() {
			if err := p.startNode(conn, s, spec.Ref, rec, n.uuid, n.domain); err != nil {
				return sdk.Part{}, fmt.Errorf("create part %s: start %s: %w", spec.Ref, n.meta.Name, err)
			}
		}
	}
	defer clk.step("describe")()
	return p.describe(conn, s, spec.Ref)
}

// dropUnbacked removes the stopped nodes whose volumes are missing (a call killed
// between defining a node's domain and making its volumes) and returns the others.
func (p *Plugin) dropUnbacked(conn *libvirt.Connect, s *settings, ref sdk.PartRef, rec partRecord, nodes []node) ([]node, error) {
	pool, err := p.pool(conn, s)
	if err != nil {
		return nil, err
	}
	defer pool.Free()
	has := func(name string) (bool, error) {
		v, err := pool.LookupStorageVolByName(name)
		if err == nil {
			_ = v.Free()
			return true, nil
		}
		if isLibvirtCode(err, libvirt.ERR_NO_STORAGE_VOL) {
			return false, nil
		}
		return false, lvError(err, "look up volume %s", name)
	}
	var keep []node
	for _, n := range nodes {
		backed := true
		if !n.active() {
			names := []string{seedName(n.domain)}
			if im, ok := s.images[n.meta.Image]; !ok || im.Disk != "" {
				names = append(names, overlayName(n.domain))
			}
			for _, name := range names {
				ok, err := has(name)
				if err != nil {
					return nil, err
				}
				backed = backed && ok
			}
		}
		if backed {
			keep = append(keep, n)
			continue
		}
		p.log.Warn("a node's volumes are missing: making it again", "part", ref.String(), "node", n.meta.Name)
		if err := p.removeNode(conn, s, rec, n.uuid, n.domain); err != nil {
			return nil, err
		}
	}
	return keep, nil
}

// planned is a node to make: a VDU template and an instance index.
type planned struct {
	vdu   vduRecord
	index int
}

func (pl planned) name() string { return sdk.NodeName(pl.vdu.Name, pl.index) }

func plannedUsage(pls []planned) sdk.Resources {
	var r sdk.Resources
	for _, pl := range pls {
		r = r.Add(sdk.Resources{CPUs: pl.vdu.CPUs, MemoryMB: pl.vdu.MemoryMB, StorageGB: pl.vdu.StorageGB, Nodes: 1})
	}
	return r
}

// missingNodes lists the nodes the record wants (instances 1..n of each VDU) that have
// no domain.
func missingNodes(rec partRecord, have []node) []planned {
	exists := map[string]bool{}
	for _, n := range have {
		exists[n.meta.Name] = true
	}
	var out []planned
	for _, v := range rec.VDUs {
		for i := 1; i <= v.Instances; i++ {
			if !exists[sdk.NodeName(v.Name, i)] {
				out = append(out, planned{vdu: v, index: i})
			}
		}
	}
	return out
}

// addNodes defines and starts the planned nodes of a part. The capacity check and the
// defines happen under capMu, so concurrent calls cannot oversubscribe; the rest runs
// outside it, and concurrently where nothing orders it: the nodes' volumes with the
// part's network, then every node's start (each one a QEMU launch and some hundred
// monitor round-trips, ~1.5 s, most of a Create). On any failure every domain this call
// defined is destroyed and undefined, with its volumes and tap.
func (p *Plugin) addNodes(ctx context.Context, conn *libvirt.Connect, s *settings, ref sdk.PartRef,
	rec partRecord, key string, pls []planned) (err error) {
	var made []madeNode
	defer func() {
		if err != nil && len(made) > 0 {
			p.log.Warn("removing the nodes of a failed call", "part", ref.String(), "nodes", len(made), "error", err)
			for _, m := range made {
				if cerr := p.removeNode(conn, s, rec, m.uuid, m.domain); cerr != nil {
					p.log.Error("could not remove node", "part", ref.String(), "domain", m.domain, "error", cerr)
				}
			}
		}
	}()
	rec, vols, release, err := p.defineNodes(ctx, conn, s, ref, rec, key, pls, &made)
	defer release()
	if err != nil {
		return err
	}
	if s.guests {
		clk := p.clock(ref)
		jobs := make([]func() error, 0, len(vols)+1)
		for _, v := range vols {
			jobs = append(jobs, func() error {
				defer clk.step("volumes")()
				return v()
			})
		}
		jobs = append(jobs, func() error {
			defer clk.step("network")()
			if err := p.partNet(s, ref, rec).ensure(); err != nil {
				return sdk.Errorf(sdk.CodeFailedPrecondition, "network of part %s: %v", ref, err)
			}
			return nil
		})
		if err := concurrently(jobs); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return sdk.Errorf(sdk.CodeCanceled, "start nodes: %v", err)
	}
	starts := make([]func() error, len(made))
	for i, m := range made {
		starts[i] = func() error { return p.startNode(conn, s, ref, rec, m.uuid, m.domain) }
	}
	return concurrently(starts)
}

// concurrently runs jobs in goroutines of their own and returns their errors joined
// (nil when all succeed), once every job has returned.
func concurrently(jobs []func() error) error {
	if len(jobs) == 1 {
		return jobs[0]()
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = job()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// madeNode is a node a call made (or began to make: uuid is empty until it is defined).
type madeNode struct{ uuid, domain string }

// startNode starts a node's domain; a real guest's tap is made (or brought back) in the
// host namespace first, and put onto the part's bridge once the guest runs.
func (p *Plugin) startNode(conn *libvirt.Connect, s *settings, ref sdk.PartRef, rec partRecord, uuid, domain string) error {
	clk := p.clock(ref)
	if s.guests {
		tag := ownerTag(tapTagPrefix, s.provider.Name, ref.SliceID, ref.PartID, domain)
		done := clk.step("tap")
		err := ensureTap(tapName(domain), rec.Netns, tag)
		done()
		if err != nil {
			return sdk.Errorf(sdk.CodeFailedPrecondition, "node %s: %v", domain, err)
		}
	}
	done := clk.step("start")
	err := startDomain(conn, uuid)
	done()
	if err != nil {
		return err
	}
	if s.guests {
		done := clk.step("plug")
		err := plugTap(tapName(domain), rec.Netns, rec.Bridge)
		done()
		if err != nil {
			return sdk.Errorf(sdk.CodeFailedPrecondition, "node %s: %v", domain, err)
		}
	}
	return nil
}

// removeNode stops a node's domain (uuid may be empty: never defined), removes its
// volumes, then undefines the domain and removes its tap. The volumes go before the
// domain, so that a volume never outlives its domain (see guestPlan.prepare).
func (p *Plugin) removeNode(conn *libvirt.Connect, s *settings, rec partRecord, uuid, domain string) error {
	if s.guests {
		if uuid != "" {
			if err := stopDomain(conn, uuid); err != nil {
				return err
			}
		}
		pool, err := p.pool(conn, s)
		if err != nil {
			return err
		}
		err = deleteVolumes(pool, domain)
		_ = pool.Free()
		if err != nil {
			return err
		}
	}
	if uuid != "" {
		if err := destroyDomain(conn, uuid); err != nil {
			return err
		}
		p.index.drop(domain)
		p.cpu.forget(uuid)
	}
	if !s.guests {
		return nil
	}
	if err := deleteTap(tapName(domain), rec.Netns); err != nil {
		return sdk.Errorf(sdk.CodeInternal, "%v", err)
	}
	return nil
}

// forgetPart removes what a part has besides its nodes: its network and its key.
func (p *Plugin) forgetPart(s *settings, ref sdk.PartRef, rec partRecord) {
	if s.guests {
		if err := p.partNet(s, ref, rec).remove(); err != nil {
			p.log.Warn("could not remove a part's network", "part", ref.String(), "error", err)
		}
	}
	if err := deletePartKey(s, ref); err != nil {
		p.log.Warn("could not remove a part's key", "part", ref.String(), "error", err)
	}
}

func (p *Plugin) partNet(s *settings, ref sdk.PartRef, rec partRecord) partNet {
	n := partNet{provider: s.provider.Name, slice: ref.SliceID, part: ref.PartID, netns: rec.Netns, bridge: rec.Bridge}
	if ip, err := netip.ParseAddr(rec.EndpointIP); err == nil {
		n.endpoint = netip.PrefixFrom(ip, s.nicPrefix)
	}
	return n
}

// defineNodes checks the capacity for the planned nodes and defines their domains, under
// capMu; for real guests it returns what makes each node's volumes, which the caller
// runs once capMu is released, then release. A node's domain is defined before its
// volumes exist (see guestPlan.prepare); the volumes (an overlay qemu-img makes, the seed
// uploaded through a stream) took seconds under load, while every other Create waited.
func (p *Plugin) defineNodes(ctx context.Context, conn *libvirt.Connect, s *settings, ref sdk.PartRef,
	rec partRecord, key string, pls []planned, made *[]madeNode) (_ partRecord, vols []func() error, release func(), err error) {
	release = func() {}
	var g *guestPlan
	if s.guests {
		done := p.clock(ref).step("plan")
		g, err = p.planGuests(conn, s, rec, key, pls)
		done()
		if err != nil {
			return rec, nil, release, err
		}
		release = func() { _ = g.pool.Free() }
	}
	rec, vols, err = p.defineLocked(ctx, conn, s, ref, rec, g, pls, made)
	return rec, vols, release, err
}

// defineLocked is defineNodes' part under capMu.
func (p *Plugin) defineLocked(ctx context.Context, conn *libvirt.Connect, s *settings, ref sdk.PartRef,
	rec partRecord, g *guestPlan, pls []planned, made *[]madeNode) (_ partRecord, vols []func() error, err error) {
	clk := p.clock(ref)
	done := clk.step("capacity")
	p.capMu.Lock()
	defer p.capMu.Unlock()
	done()
	if why := tooBig(s, rec.VDUs); why != "" {
		return rec, nil, sdk.Errorf(sdk.CodeResourceExhausted, "provider %s: %s", s.provider.Name, why)
	}
	used, err := p.usageNow(conn, s)
	if err != nil {
		return rec, nil, err
	}
	if ok, why := plannedUsage(pls).Fits(free(s, used)); !ok {
		return rec, nil, sdk.Errorf(sdk.CodeResourceExhausted, "provider %s: %s", s.provider.Name, why)
	}
	var alloc *allocator
	if s.subnet.IsValid() && hasNIC(s, rec) {
		alloc = p.addressAllocator(s)
	}
	if s.guests && rec.EndpointIP == "" {
		// The part's endpoint (netdev.go) takes an address of the subnet like a node.
		ip, ok := alloc.next()
		if !ok {
			return rec, nil, sdk.Errorf(sdk.CodeResourceExhausted, "provider %s: no free address left in subnet %s",
				s.provider.Name, s.subnet)
		}
		rec.EndpointIP = ip.String()
	}
	now := time.Now().UTC().Format(time.RFC3339)
	for i, pl := range pls {
		if err := ctx.Err(); err != nil {
			return rec, nil, sdk.Errorf(sdk.CodeCanceled, "define nodes: %v", err)
		}
		d := domainSpec{
			Name: domainName(s.provider.Name, ref, pl.name()),
			Type: s.domainType,
			Meta: nodeMeta{Provider: s.provider.Name, Slice: ref.SliceID, Part: ref.PartID, VDU: pl.vdu.Name,
				Name: pl.name(), Index: pl.index, Type: pl.vdu.Type, StorageGB: pl.vdu.StorageGB,
				Created: now, Record: rec},
			CPUs: pl.vdu.CPUs, MaxCPUs: s.maxCPUs, MemoryMB: pl.vdu.MemoryMB, MaxMemMB: s.maxMemMB,
			Bridge: rec.Bridge, GuestIP: s.domainType == "xen",
		}
		if d.Bridge == "" {
			d.Network = s.network
		}
		if alloc != nil {
			ip, ok := alloc.next()
			if !ok {
				return rec, nil, sdk.Errorf(sdk.CodeResourceExhausted, "provider %s: no free address left in subnet %s",
					s.provider.Name, s.subnet)
			}
			d.IP, d.Prefix, d.Meta.IP = ip.String(), alloc.prefixLen(), ip.String()
		}
		*made = append(*made, madeNode{domain: d.Name})
		var iso []byte
		if g != nil {
			done := clk.step("seed")
			iso, err = g.prepare(&d, pl, g.images[i])
			done()
			if err != nil {
				return rec, nil, err
			}
		}
		x, err := d.xml()
		if err != nil {
			return rec, nil, sdk.Errorf(sdk.CodeInternal, "%v", err)
		}
		done := clk.step("define")
		dom, err := conn.DomainDefineXML(x)
		done()
		if err != nil {
			// A name taken (by a domain the index missed) or any other surprise: read
			// libvirt again before the next capacity check.
			p.index.invalidate()
			return rec, nil, lvError(err, "define node %s (domain %s)", pl.name(), d.Name)
		}
		id, err := dom.GetUUIDString()
		_ = dom.Free()
		if err != nil {
			p.index.invalidate()
			return rec, nil, lvError(err, "define node %s (domain %s)", pl.name(), d.Name)
		}
		(*made)[len(*made)-1].uuid = id
		p.index.put(node{uuid: id, domain: d.Name, meta: d.Meta, state: libvirt.DOMAIN_SHUTOFF,
			cpus: d.CPUs, maxCPUs: d.MaxCPUs, memMB: d.MemoryMB, maxMemMB: d.MaxMemMB})
		if testHookDefined != nil {
			testHookDefined(d.Name)
		}
		if g != nil {
			im := g.images[i]
			vols = append(vols, func() error { return g.makeVolumes(conn, d, pl, im, iso) })
		}
	}
	return rec, vols, nil
}

// addressAllocator hands out the subnet's addresses that no node or endpoint holds.
func (p *Plugin) addressAllocator(s *settings) *allocator {
	a := newAllocator(s.subnet, nil)
	a.taken = p.index.inUse
	return a
}

// withDomain looks a domain up by UUID and runs f on it.
func withDomain(conn *libvirt.Connect, id string, f func(*libvirt.Domain) error) error {
	dom, err := conn.LookupDomainByUUIDString(id)
	if err != nil {
		return err
	}
	defer func() { _ = dom.Free() }()
	return f(dom)
}

// startDomain starts a defined domain and marks it to start with the host, so a
// provider reboot brings the slice back.
func startDomain(conn *libvirt.Connect, id string) error {
	err := withDomain(conn, id, func(d *libvirt.Domain) error {
		if err := d.SetAutostart(true); err != nil {
			return err
		}
		if active, err := d.IsActive(); err == nil && active {
			return nil
		}
		return d.Create()
	})
	if err != nil {
		return lvError(err, "start domain %s", id)
	}
	return nil
}

// testHookDefined, when set (by tests), runs after each node's domain is defined and
// before its volumes are made: a test stops there to be killed.
var testHookDefined func(domain string)

// stopDomain stops a domain that runs; one that is gone or stopped is done.
func stopDomain(conn *libvirt.Connect, id string) error {
	err := withDomain(conn, id, func(d *libvirt.Domain) error {
		if active, err := d.IsActive(); err == nil && active {
			if err := d.Destroy(); err != nil && !isLibvirtCode(err, libvirt.ERR_OPERATION_INVALID) {
				return err
			}
		}
		return nil
	})
	if err != nil && !isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
		return lvError(err, "stop domain %s", id)
	}
	return nil
}

// destroyDomain stops and undefines a domain; one that is already gone is done.
func destroyDomain(conn *libvirt.Connect, id string) error {
	err := withDomain(conn, id, func(d *libvirt.Domain) error {
		if active, err := d.IsActive(); err == nil && active {
			if err := d.Destroy(); err != nil && !isLibvirtCode(err, libvirt.ERR_OPERATION_INVALID) {
				return err
			}
		}
		err := d.UndefineFlags(libvirt.DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
		if isLibvirtCode(err, libvirt.ERR_INVALID_ARG, libvirt.ERR_NO_SUPPORT) {
			// Drivers without managed save or snapshots refuse the flags.
			err = d.Undefine()
		}
		return err
	})
	if err != nil && !isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
		return lvError(err, "remove domain %s", id)
	}
	return nil
}

// Describe returns the part as libvirt holds it now.
func (p *Plugin) Describe(_ context.Context, req sdk.DescribeRequest) (sdk.Part, error) {
	ref := req.Ref
	s, conn, err := p.session()
	if err != nil {
		return sdk.Part{}, err
	}
	return p.describe(conn, s, ref)
}

func (p *Plugin) describe(conn *libvirt.Connect, s *settings, ref sdk.PartRef) (sdk.Part, error) {
	nodes, err := p.partNodes(conn, s, ref)
	if err != nil {
		return sdk.Part{}, fmt.Errorf("describe part %s: %w", ref, err)
	}
	if len(nodes) == 0 {
		return sdk.Part{}, sdk.Errorf(sdk.CodeNotFound, "part %s not found at provider %s", ref, s.provider.Name)
	}
	return partOf(s, ref, nodes), nil
}

// lookPart reads a part for a change: its nodes and record, or NotFound.
func (p *Plugin) lookPart(conn *libvirt.Connect, s *settings, ref sdk.PartRef) ([]node, partRecord, error) {
	nodes, err := p.partNodes(conn, s, ref)
	if err != nil {
		return nil, partRecord{}, err
	}
	if len(nodes) == 0 {
		return nil, partRecord{}, sdk.Errorf(sdk.CodeNotFound, "part %s not found at provider %s", ref, s.provider.Name)
	}
	return nodes, latestRecord(nodes), nil
}

func vduNames(r partRecord) string {
	names := make([]string, 0, len(r.VDUs))
	for _, v := range r.VDUs {
		names = append(names, v.Name)
	}
	return strings.Join(names, ", ")
}

// openVDU locks a part for a change of one of its VDUs and reads the part: its nodes and
// record, NotFound naming the VDUs it has when vdu is not one of them. The caller calls
// unlock when err is nil.
func (p *Plugin) openVDU(ref sdk.PartRef, vdu, op string) (*settings, *libvirt.Connect, []node, partRecord, func(), error) {
	s, conn, err := p.session()
	if err != nil {
		return nil, nil, nil, partRecord{}, nil, err
	}
	unlock := p.parts.lock(ref)
	nodes, rec, err := p.lookPart(conn, s, ref)
	if err != nil {
		unlock()
		return nil, nil, nil, partRecord{}, nil, fmt.Errorf("%s part %s: %w", op, ref, err)
	}
	if _, ok := rec.vdu(vdu); !ok {
		unlock()
		return nil, nil, nil, partRecord{}, nil, sdk.Errorf(sdk.CodeNotFound, "%s part %s: no vdu %q (has %s)", op, ref, vdu, vduNames(rec))
	}
	return s, conn, nodes, rec, unlock, nil
}

// Resize sets the vCPUs and/or memory of a VDU's nodes (or of one node), live and in
// the persistent definition. A node grows up to its maximum (max_node) without a
// restart; beyond it the call fails with FailedPrecondition. Growth must fit the free
// capacity. A VDU-wide resize also changes the VDU's template, so later Scale-ups match.
func (p *Plugin) Resize(_ context.Context, req sdk.ResizeRequest) (sdk.Part, error) {
	s, conn, nodes, rec, unlock, err := p.openVDU(req.Ref, req.VDU, "resize")
	if err != nil {
		return sdk.Part{}, err
	}
	defer unlock()
	var targets []node
	for _, n := range nodes {
		if n.meta.VDU == req.VDU && (req.Node == "" || n.meta.Name == req.Node) {
			targets = append(targets, n)
		}
	}
	if req.Node != "" && len(targets) == 0 {
		return sdk.Part{}, sdk.Errorf(sdk.CodeNotFound, "resize part %s: no node %q in vdu %s", req.Ref, req.Node, req.VDU)
	}
	if err := p.resizeNodes(conn, s, req, targets); err != nil {
		return sdk.Part{}, fmt.Errorf("resize part %s: %w", req.Ref, err)
	}
	if req.Node == "" {
		next := rec.with(req.VDU, func(v *vduRecord) {
			if req.CPUs > 0 {
				v.CPUs = req.CPUs
			}
			if req.MemoryMB > 0 {
				v.MemoryMB = req.MemoryMB
			}
		})
		if err := p.writeRecord(conn, nodes, next); err != nil {
			return sdk.Part{}, fmt.Errorf("resize part %s: %w", req.Ref, err)
		}
	}
	p.log.Info("part resized", "part", req.Ref.String(), "vdu", req.VDU, "node", req.Node,
		"cpus", req.CPUs, "memory_mb", req.MemoryMB, "nodes", len(targets))
	return p.describe(conn, s, req.Ref)
}

func (p *Plugin) resizeNodes(conn *libvirt.Connect, s *settings, req sdk.ResizeRequest, targets []node) error {
	p.capMu.Lock()
	defer p.capMu.Unlock()
	used, err := p.usageNow(conn, s)
	if err != nil {
		return err
	}
	// Take the targets from the index under capMu: the values the change is computed
	// from must be the ones the capacity check sees.
	var grow sdk.Resources
	for i, t := range targets {
		if cur, ok := p.index.get(t.domain); ok && cur.uuid == t.uuid {
			targets[i] = cur
			t = cur
		}
		if req.CPUs > 0 {
			grow.CPUs += max(req.CPUs-t.cpus, 0)
		}
		if req.MemoryMB > 0 {
			grow.MemoryMB += max(req.MemoryMB-t.memMB, 0)
		}
	}
	if ok, why := grow.Fits(free(s, used)); !ok {
		return sdk.Errorf(sdk.CodeResourceExhausted, "provider %s: %s", s.provider.Name, why)
	}
	for _, t := range targets {
		if req.CPUs > t.maxCPUs {
			return sdk.Errorf(sdk.CodeFailedPrecondition, "node %s can grow to at most %d vCPUs, asked %d",
				t.meta.Name, t.maxCPUs, req.CPUs)
		}
		if req.MemoryMB > t.maxMemMB {
			return sdk.Errorf(sdk.CodeFailedPrecondition, "node %s can grow to at most %d MB of memory, asked %d",
				t.meta.Name, t.maxMemMB, req.MemoryMB)
		}
	}
	for _, t := range targets {
		err := resizeNode(conn, t, req.CPUs, req.MemoryMB)
		if err != nil {
			// Half done, perhaps: read the sizes again at the next use.
			p.index.invalidate()
			return err
		}
		if req.CPUs > 0 {
			t.cpus = req.CPUs
		}
		if req.MemoryMB > 0 {
			t.memMB = req.MemoryMB
		}
		p.index.put(t)
	}
	return nil
}

// resizeNode changes one domain's persistent definition, then the running domain. The
// two are separate calls because some drivers (the test driver among them) refuse both
// flags at once.
func resizeNode(conn *libvirt.Connect, n node, cpus int, memMB int64) error {
	err := withDomain(conn, n.uuid, func(d *libvirt.Domain) error {
		// Asked of the domain, not of n: a node from the usage index may carry the state
		// it had when defined (shut off), and the running domain would keep its size.
		live, err := d.IsActive()
		if err != nil {
			return fmt.Errorf("state: %w", err)
		}
		if cpus > 0 && cpus != n.cpus {
			if err := d.SetVcpusFlags(uint(cpus), libvirt.DOMAIN_VCPU_CONFIG); err != nil {
				return fmt.Errorf("vcpus (config): %w", err)
			}
			if live {
				if err := setLiveVcpus(d, cpus); err != nil {
					return fmt.Errorf("vcpus (live): %w", err)
				}
			}
		}
		if memMB > 0 && memMB != n.memMB {
			// A guest with a virtio-mem device grows by plugging memory in (memhotplug.go).
			if done, err := resizeVirtioMem(d, n.memMB, memMB, live); done || err != nil {
				return err
			}
			kib := uint64(memMB) << 10
			if err := d.SetMemoryFlags(kib, libvirt.DOMAIN_MEM_CONFIG); err != nil {
				return fmt.Errorf("memory (config): %w", err)
			}
			if live {
				if err := d.SetMemoryFlags(kib, libvirt.DOMAIN_MEM_LIVE); err != nil {
					return fmt.Errorf("memory (live): %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return lvError(err, "resize node %s", n.meta.Name)
	}
	return nil
}

// setLiveVcpus changes a running domain's vCPUs. It adds them one at a time and
// accepts libvirt's "didn't report thread id" once the domain has the vCPU: under
// single-threaded TCG (the TCG wrapper) every vCPU runs in one thread, so libvirt 9.0
// gets the same thread id for each, keeps only the first vCPU's and refuses each one
// added after, although QEMU added it (the guest sees it). libvirt stops at the first
// refusal of a multi-vCPU add, hence one at a time. Thread ids only serve pinning and
// per-vCPU cgroups, which the plugin does not use.
func setLiveVcpus(d *libvirt.Domain, cpus int) error {
	cur, err := d.GetVcpusFlags(libvirt.DOMAIN_VCPU_LIVE)
	if err != nil {
		return err
	}
	if cpus <= int(cur) {
		return d.SetVcpusFlags(uint(cpus), libvirt.DOMAIN_VCPU_LIVE)
	}
	for n := int(cur) + 1; n <= cpus; n++ {
		err := d.SetVcpusFlags(uint(n), libvirt.DOMAIN_VCPU_LIVE)
		if err == nil {
			continue
		}
		if !noThreadID(err) {
			return err
		}
		if got, gerr := d.GetVcpusFlags(libvirt.DOMAIN_VCPU_LIVE); gerr != nil || int(got) != n {
			return fmt.Errorf("%w (domain has %d vCPUs, want %d)", err, got, n)
		}
	}
	return nil
}

// noThreadID tells libvirt's refusal of a vCPU whose thread id it could not tell apart.
func noThreadID(err error) bool {
	var lerr libvirt.Error
	return errors.As(err, &lerr) && lerr.Code == libvirt.ERR_INTERNAL_ERROR &&
		strings.Contains(lerr.Message, "didn't report thread id for vcpu")
}

// writeRecord stores rec in the metadata of every given node (persistent and live).
func (p *Plugin) writeRecord(conn *libvirt.Connect, nodes []node, rec partRecord) error {
	for _, n := range nodes {
		meta := n.meta
		meta.Record = rec
		content, err := metadataContent(meta)
		if err != nil {
			return err
		}
		err = withDomain(conn, n.uuid, func(d *libvirt.Domain) error {
			if err := d.SetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, content, "necos", Namespace,
				libvirt.DOMAIN_AFFECT_CONFIG); err != nil {
				return err
			}
			if n.active() {
				return d.SetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, content, "necos", Namespace,
					libvirt.DOMAIN_AFFECT_LIVE)
			}
			return nil
		})
		if err != nil && !isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
			p.index.invalidate()
			return lvError(err, "update metadata of node %s", n.meta.Name)
		}
		if err == nil {
			if cur, ok := p.index.get(n.domain); ok && cur.uuid == n.uuid {
				cur.meta = meta
				p.index.put(cur)
			}
		}
	}
	return nil
}

// Scale sets the number of instances of a VDU. New nodes take the VDU's template and the
// lowest free indexes; removal takes the highest indexes first. A part keeps at least one
// node (it lives in its domains): scaling its last VDU to zero is refused.
func (p *Plugin) Scale(ctx context.Context, req sdk.ScaleRequest) (sdk.Part, error) {
	s, conn, nodes, rec, unlock, err := p.openVDU(req.Ref, req.VDU, "scale")
	if err != nil {
		return sdk.Part{}, err
	}
	defer unlock()
	var mine, others []node
	for _, n := range nodes {
		if n.meta.VDU == req.VDU {
			mine = append(mine, n)
		} else {
			others = append(others, n)
		}
	}
	if req.Instances == 0 && len(others) == 0 {
		return sdk.Part{}, sdk.Errorf(sdk.CodeFailedPrecondition,
			"scale part %s: vdu %s holds the part's last nodes; delete the part instead", req.Ref, req.VDU)
	}
	next := rec.with(req.VDU, func(v *vduRecord) { v.Instances = req.Instances })
	v, _ := next.vdu(req.VDU)
	switch {
	case len(mine) < req.Instances:
		// New nodes first, carrying the new record: if they fail, they are removed and
		// the existing nodes were never touched.
		var pls []planned
		for _, pl := range missingNodes(partRecord{VDUs: []vduRecord{v}}, mine) {
			if len(mine)+len(pls) == req.Instances {
				break
			}
			pls = append(pls, pl)
		}
		_, key, err := p.ensureKey(conn, s, req.Ref, next, nil)
		if err != nil {
			return sdk.Part{}, fmt.Errorf("scale part %s: %w", req.Ref, err)
		}
		if err := p.addNodes(ctx, conn, s, req.Ref, next, key, pls); err != nil {
			return sdk.Part{}, fmt.Errorf("scale part %s: %w", req.Ref, err)
		}
		if err := p.writeRecord(conn, nodes, next); err != nil {
			return sdk.Part{}, fmt.Errorf("scale part %s: %w", req.Ref, err)
		}
	case len(mine) > req.Instances:
		sort.Slice(mine, func(i, j int) bool { return mine[i].meta.Index > mine[j].meta.Index })
		drop := mine[:len(mine)-req.Instances]
		keep := append(append([]node(nil), others...), mine[len(drop):]...)
		// Record first: should a removal fail, the survivors already want the new count.
		if err := p.writeRecord(conn, keep, next); err != nil {
			return sdk.Part{}, fmt.Errorf("scale part %s: %w", req.Ref, err)
		}
		for _, n := range drop {
			if err := p.removeNode(conn, s, rec, n.uuid, n.domain); err != nil {
				return sdk.Part{}, fmt.Errorf("scale part %s: remove %s: %w", req.Ref, n.meta.Name, err)
			}
		}
	default:
		if cur, _ := rec.vdu(req.VDU); cur.Instances != req.Instances {
			if err := p.writeRecord(conn, nodes, next); err != nil {
				return sdk.Part{}, fmt.Errorf("scale part %s: %w", req.Ref, err)
			}
		}
	}
	p.log.Info("part scaled", "part", req.Ref.String(), "vdu", req.VDU, "from", len(mine), "to", req.Instances)
	return p.describe(conn, s, req.Ref)
}

// Delete destroys and undefines every domain of the part. An unknown part is done.
func (p *Plugin) Delete(_ context.Context, req sdk.DeleteRequest) error {
	ref := req.Ref
	s, conn, err := p.session()
	if err != nil {
		return err
	}
	unlock := p.parts.lock(ref)
	defer unlock()
	nodes, err := p.partNodes(conn, s, ref)
	if err != nil {
		return fmt.Errorf("delete part %s: %w", ref, err)
	}
	start := time.Now()
	rec := partRecord{}
	if len(nodes) > 0 {
		rec = latestRecord(nodes)
	}
	for _, n := range nodes {
		if err := p.removeNode(conn, s, rec, n.uuid, n.domain); err != nil {
			return fmt.Errorf("delete part %s: node %s: %w", ref, n.meta.Name, err)
		}
	}
	p.forgetPart(s, ref, rec)
	p.names.set(ref, nil)
	if len(nodes) > 0 {
		p.log.Info("part deleted", "part", ref.String(), "nodes", len(nodes), "took", time.Since(start))
	}
	return nil
}
