package xenvim

import (
	"context"
	"time"

	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

var _ sdk.MetricsBatcher = (*Plugin)(nil)

// bulkStats are the statistics one MetricsBatch reads of every domain at once. Not the
// vCPU group: its per-vCPU states are not to be trusted (under TCG, where libvirt gets
// no vCPU threads, QEMU guests list every vCPU up to the maximum as offline), and the
// count it has in vcpu.current the Go binding keeps to itself; a node's vCPUs are those
// of its definition, which Resize changes together with the live ones.
const bulkStats = libvirt.DOMAIN_STATS_STATE | libvirt.DOMAIN_STATS_CPU_TOTAL | libvirt.DOMAIN_STATS_BALLOON

// MetricsBatch measures many parts of the provider in one pass: the parts' domains come
// from the usage index (index.go), with their vCPUs, and their state, CPU time and
// balloon from one bulk statistics call for every domain of the host
// (virConnectGetAllDomainStats), where Metrics makes five calls per node (look-up,
// definition, state, info, balloon). CPU use is measured as
// Metrics measures it, between calls, with one more bulk call over the nodes without a
// recent reading after a short pause. A driver that leaves figures out of its bulk
// statistics (the test driver gives only states) has those domains read one by one
// through the handles the bulk call returned. A part the index holds none of, or not
// as its record wants (another process changed it), is measured alone by Metrics, which
// looks for its domains; so is every part when the driver has no bulk statistics.
func (p *Plugin) MetricsBatch(ctx context.Context, req sdk.MetricsBatchRequest) ([]sdk.PartMetrics, error) {
	reqs := req.Parts
	out := make([]sdk.PartMetrics, len(reqs))
	wants := make([]map[string]bool, len(reqs))
	for i, r := range reqs {
		out[i].Ref = r.Ref
		wants[i], out[i].Err = wanted(r.Names)
	}
	s, conn, err := p.session()
	if err != nil {
		return nil, err
	}
	if err := p.ensureIndex(conn, s); err != nil {
		return nil, err
	}
	parts := make([][]node, len(reqs))
	var alone []int
	domains := map[string]*domainRead{}
	for i, r := range reqs {
		if out[i].Err != nil {
			continue
		}
		nodes := p.index.nodesOf(r.Ref)
		rec := latestRecord(nodes)
		if len(nodes) == 0 || len(nodes) != recordNodes(rec) || len(missingNodes(rec, nodes)) > 0 {
			alone = append(alone, i)
			continue
		}
		sortNodes(nodes, rec)
		parts[i] = nodes
		for _, n := range nodes {
			d := domains[n.domain]
			if d == nil {
				d = &domainRead{node: n}
				domains[n.domain] = d
			}
			d.cpu = d.cpu || wants[i][sdk.MetricCPUPercent]
		}
	}
	if len(domains) > 0 {
		err := p.readBulk(ctx, conn, domains)
		if isLibvirtCode(err, libvirt.ERR_NO_SUPPORT) {
			p.log.Debug("no bulk domain statistics here: measuring part by part", "uri", s.uri, "error", err)
			return sdk.MetricsEach(ctx, p, reqs), nil
		}
		if err != nil {
			return nil, err
		}
	}
	for i, nodes := range parts {
		if nodes == nil {
			continue
		}
		readings := make([]reading, len(nodes))
		for j, n := range nodes {
			d := domains[n.domain]
			if !d.read {
				// Gone since the index was read, or not this provider's any more.
				readings = nil
				break
			}
			readings[j] = d.r
		}
		if readings == nil {
			p.index.invalidate()
			alone = append(alone, i)
			continue
		}
		out[i].Samples = samples(nodes, readings, wants[i])
	}
	for _, i := range alone {
		out[i].Samples, out[i].Err = p.Metrics(ctx, sdk.MetricsRequest{Ref: reqs[i].Ref, Names: reqs[i].Names})
	}
	return out, nil
}

// recordNodes is how many nodes a part's record wants.
func recordNodes(rec partRecord) int {
	n := 0
	for _, v := range rec.VDUs {
		n += v.Instances
	}
	return n
}

// domainRead is one domain's reading within a batch.
type domainRead struct {
	node node
	cpu  bool // a part wants its CPU use
	read bool // r holds its reading
	r    reading
	dom  *libvirt.Domain
}

// readBulk reads every domain of ds, by name, with one bulk statistics call, then once
// more after cpuPause those whose CPU use needs a second reading. A domain the bulk
// call does not return stays unread.
func (p *Plugin) readBulk(ctx context.Context, conn *libvirt.Connect, ds map[string]*domainRead) error {
	stats, err := conn.GetAllDomainStats(nil, bulkStats, 0)
	if err != nil {
		return lvError(err, "read domain statistics")
	}
	at := time.Now()
	defer func() {
		for _, d := range ds {
			if d.dom != nil {
				_ = d.dom.Free()
			}
		}
	}()
	for i := range stats {
		st := &stats[i]
		name, err := st.Domain.GetName()
		d := ds[name]
		if err != nil || d == nil || d.dom != nil {
			_ = st.Domain.Free()
			continue
		}
		d.dom = st.Domain
		r, ok := statsReading(st, at, d.node.cpus)
		if !ok {
			// What the driver's bulk statistics leave out, read the per-domain way.
			if r, err = readDomain(d.dom); err != nil {
				if isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
					continue // removed since listed
				}
				return lvError(err, "read node %s", d.node.meta.Name)
			}
		}
		d.r, d.read = r, true
	}
	var again []*domainRead
	for _, d := range ds {
		if !d.read || !d.r.active || !d.cpu {
			continue
		}
		if d.r.cpuPct, d.r.cpuOK = p.cpu.observe(d.node.uuid, d.r.cpuTime, d.r.at, d.r.vcpus); !d.r.cpuOK {
			again = append(again, d)
		}
	}
	if len(again) == 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return sdk.Errorf(sdk.CodeOf(ctx.Err()), "metrics: %v", ctx.Err())
	case <-time.After(cpuPause):
	}
	return p.readCPUAgain(conn, again)
}

// readCPUAgain takes the second CPU-time reading of ds, in one bulk call over their
// domains when the driver reports CPU time in bulk, else one by one.
func (p *Plugin) readCPUAgain(conn *libvirt.Connect, ds []*domainRead) error {
	doms := make([]*libvirt.Domain, len(ds))
	byName := make(map[string]*domainRead, len(ds))
	for i, d := range ds {
		doms[i] = d.dom
		byName[d.node.domain] = d
	}
	done := map[*domainRead]bool{}
	// Without ENFORCE_STATS a driver returns what it has; a domain gone meanwhile fails
	// the whole call, and the one-by-one reading below sorts that out.
	if stats, err := conn.GetAllDomainStats(doms, libvirt.DOMAIN_STATS_CPU_TOTAL, 0); err == nil {
		at := time.Now()
		for i := range stats {
			st := &stats[i]
			name, _ := st.Domain.GetName()
			_ = st.Domain.Free()
			d := byName[name]
			if d == nil || st.Cpu == nil || !st.Cpu.TimeSet || d.r.vcpus <= 0 {
				continue
			}
			d.r.cpuPct, _ = p.cpu.observe(d.node.uuid, st.Cpu.Time, at, d.r.vcpus)
			done[d] = true
		}
	}
	for _, d := range ds {
		if done[d] {
			continue
		}
		r, err := readDomain(d.dom)
		if err != nil {
			if isLibvirtCode(err, libvirt.ERR_NO_DOMAIN) {
				d.r.gone = true
				continue
			}
			return lvError(err, "read node %s", d.node.meta.Name)
		}
		d.r.cpuPct, _ = p.cpu.observe(d.node.uuid, r.cpuTime, r.at, r.vcpus)
	}
	return nil
}

// statsReading is a domain of vcpus vCPUs' reading from its bulk statistics; ok is
// false when they lack a figure the reading needs.
func statsReading(st *libvirt.DomainStats, at time.Time, vcpus int) (reading, bool) {
	if st.State == nil || !st.State.StateSet {
		return reading{}, false
	}
	r := reading{at: at, active: nodeState(st.State.State) == sdk.StateRunning}
	if !r.active {
		return r, true
	}
	b := st.Balloon
	if st.Cpu == nil || !st.Cpu.TimeSet || vcpus <= 0 || b == nil || !b.CurrentSet {
		return reading{}, false
	}
	r.vcpus, r.cpuTime = vcpus, st.Cpu.Time
	r.memUsedMB = float64(b.Current) / 1024
	r.guestMemory(b.Available, b.Unused, b.AvailableSet && b.UnusedSet)
	return r, true
}
