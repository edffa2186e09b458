package xenvim

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// knownMetrics are the metrics the plugin measures.
var knownMetrics = []string{sdk.MetricCPUPercent, sdk.MetricMemoryUsedMB, sdk.MetricMemoryPct}

// cpuWindow is how far apart two CPU-time readings of a node may be to give its CPU
// use; an older reading is replaced by a fresh pair.
const cpuWindow = 10 * time.Minute

// cpuPause separates the two readings taken when a node has no recent one.
const cpuPause = 200 * time.Millisecond

// Metrics measures the part's nodes now:
//   - PERCENT_CPU_UTILIZATION: CPU time used since the previous call (or over a short
//     pause when there was none), over wall time × vCPUs, 0-100;
//   - MEMORY_USED_MB: what the guest uses when its balloon driver reports it, else the
//     memory the domain holds;
//   - PERCENT_MEMORY_UTILIZATION: only when the guest reports its memory use.
//
// A node that is not running reports 0.
func (p *Plugin) Metrics(ctx context.Context, req sdk.MetricsRequest) ([]sdk.Sample, error) {
	ref := req.Ref
	names := req.Names
	want, err := wanted(names)
	if err != nil {
		return nil, err
	}
	s, conn, err := p.session()
	if err != nil {
		return nil, err
	}
	nodes, err := p.partNodes(conn, s, ref)
	if err != nil {
		return nil, fmt.Errorf("metrics of part %s: %w", ref, err)
	}
	if len(nodes) == 0 {
		return nil, sdk.Errorf(sdk.CodeNotFound, "part %s not found at provider %s", ref, s.provider.Name)
	}
	sortNodes(nodes, latestRecord(nodes))
	readings := make([]reading, len(nodes))
	var again []int
	for i, n := range nodes {
		r, err := read(conn, n)
		if err != nil {
			if sdk.IsNotFound(err) {
				continue // removed since listed (a concurrent Scale or Delete)
			}
			return nil, fmt.Errorf("metrics of part %s: %w", ref, err)
		}
		if r.active && want[sdk.MetricCPUPercent] {
			if r.cpuPct, r.cpuOK = p.cpu.observe(n.uuid, r.cpuTime, r.at, r.vcpus); !r.cpuOK {
				again = append(again, i)
			}
		}
		// Stored once complete: a copy taken before the CPU use was computed kept 0.
		readings[i] = r
	}
	if len(again) > 0 {
		select {
		case <-ctx.Done():
			return nil, sdk.Errorf(sdk.CodeCanceled, "metrics of part %s: %v", ref, ctx.Err())
		case <-time.After(cpuPause):
		}
		for _, i := range again {
			r, err := read(conn, nodes[i])
			if err != nil {
				if sdk.IsNotFound(err) {
					readings[i].gone = true
					continue
				}
				return nil, fmt.Errorf("metrics of part %s: %w", ref, err)
			}
			readings[i].cpuPct, _ = p.cpu.observe(nodes[i].uuid, r.cpuTime, r.at, r.vcpus)
		}
	}
	return samples(nodes, readings, want), nil
}

// wanted checks a part's metric names and returns the set of metrics to report (every
// known one for no names). An unknown name is InvalidArgument, as in every VIM.
func wanted(names []string) (map[string]bool, error) {
	want := map[string]bool{}
	for i, n := range names {
		if !contains(knownMetrics, n) {
			return nil, sdk.Errorf(sdk.CodeInvalidArgument, "names[%d]: unknown metric %q (known: %s)",
				i, n, strings.Join(knownMetrics, ", "))
		}
		want[n] = true
	}
	if len(want) == 0 {
		for _, n := range knownMetrics {
			want[n] = true
		}
	}
	return want, nil
}

// samples turns the readings of a part's nodes (readings[i] of nodes[i]) into the
// wanted samples; nodes without a reading, or gone, have none.
func samples(nodes []node, readings []reading, want map[string]bool) []sdk.Sample {
	var out []sdk.Sample
	for i, n := range nodes {
		r := readings[i]
		if r.at.IsZero() || r.gone {
			continue
		}
		add := func(metric string, v float64) {
			if want[metric] {
				out = append(out, sdk.Sample{Node: n.meta.Name, NodeType: n.meta.Type, Metric: metric, Value: v, Time: r.at})
			}
		}
		add(sdk.MetricCPUPercent, r.cpuPct)
		add(sdk.MetricMemoryUsedMB, r.memUsedMB)
		if r.memPctOK || !r.active {
			add(sdk.MetricMemoryPct, r.memPct)
		}
	}
	return out
}

type reading struct {
	at        time.Time
	gone      bool
	active    bool
	vcpus     int
	cpuTime   uint64
	cpuPct    float64
	cpuOK     bool
	memUsedMB float64
	memPct    float64
	memPctOK  bool
}

func read(conn *libvirt.Connect, n node) (reading, error) {
	var r reading
	err := withDomain(conn, n.uuid, func(d *libvirt.Domain) error {
		var err error
		r, err = readDomain(d)
		return err
	})
	if err != nil {
		return reading{}, lvError(err, "read node %s", n.meta.Name)
	}
	return r, nil
}

// readDomain reads one domain with one call per figure (its info, then its balloon's
// statistics).
func readDomain(d *libvirt.Domain) (reading, error) {
	var r reading
	info, err := d.GetInfo()
	if err != nil {
		return reading{}, err
	}
	r.at = time.Now()
	r.active = nodeState(info.State) == sdk.StateRunning
	if !r.active {
		return r, nil
	}
	r.vcpus, r.cpuTime = int(info.NrVirtCpu), info.CpuTime
	r.memUsedMB = float64(info.Memory) / 1024
	// The guest's own view, when its balloon driver reports one.
	if stats, err := d.MemoryStats(uint32(libvirt.DOMAIN_MEMORY_STAT_NR), 0); err == nil {
		var avail, unused uint64
		var haveAvail, haveUnused bool
		for _, st := range stats {
			switch libvirt.DomainMemoryStatTags(st.Tag) {
			case libvirt.DOMAIN_MEMORY_STAT_AVAILABLE:
				avail, haveAvail = st.Val, true
			case libvirt.DOMAIN_MEMORY_STAT_UNUSED:
				unused, haveUnused = st.Val, true
			}
		}
		r.guestMemory(avail, unused, haveAvail && haveUnused)
	}
	return r, nil
}

// guestMemory takes the guest's own view of its memory (KiB), when its balloon driver
// reports one.
func (r *reading) guestMemory(avail, unused uint64, ok bool) {
	if ok && avail > 0 && unused <= avail {
		r.memUsedMB = float64(avail-unused) / 1024
		r.memPct, r.memPctOK = float64(avail-unused)/float64(avail)*100, true
	}
}

// cpuTracker keeps each domain's last CPU-time reading, so CPU use is measured between
// calls.
type cpuTracker struct {
	mu   sync.Mutex
	last map[string]cpuPoint
}

type cpuPoint struct {
	cpu uint64
	at  time.Time
}

// observe records a reading and returns the CPU use since the previous one; ok is false
// when there is no usable previous reading.
func (c *cpuTracker) observe(id string, cpu uint64, at time.Time, vcpus int) (pct float64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]cpuPoint{}
	}
	prev, had := c.last[id]
	c.last[id] = cpuPoint{cpu: cpu, at: at}
	dt := at.Sub(prev.at)
	if !had || cpu < prev.cpu || dt < cpuPause/2 || dt > cpuWindow || vcpus <= 0 {
		return 0, false
	}
	pct = float64(cpu-prev.cpu) / (float64(dt.Nanoseconds()) * float64(vcpus)) * 100
	return min(max(pct, 0), 100), true
}

func (c *cpuTracker) forget(id string) {
	c.mu.Lock()
	delete(c.last, id)
	c.mu.Unlock()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
