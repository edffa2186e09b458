// Package memvim is a tiny in-memory VIM and Monitor used to test the plugin host's
// plumbing (launch, verify, relaunch, logs). It is not a backend: parts are records in a
// map, persisted to a file so that a relaunched process finds them again.
//
// Describe has two hooks to make the process die in the middle of a call: the part id
// "crash-once" exits the process the first time (a marker file in state_dir remembers
// it), "crash-always" exits it every time.
package memvim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/sdk"
)

// Config is the plugin's configuration.
type Config struct {
	// StateDir keeps parts across relaunches and records each launch; empty keeps
	// everything in memory.
	StateDir string `json:"state_dir"`
	// CapacityCPUs is the provider's CPU capacity.
	CapacityCPUs int `json:"capacity_cpus"`
	// Healthy false makes Monitor.Health answer CodeUnavailable (an application error).
	Healthy *bool `json:"healthy"`
}

// Plugin is the in-memory VIM and Monitor.
type Plugin struct {
	log hclog.Logger

	mu       sync.Mutex
	cfg      Config
	provider sdk.Provider
	parts    map[string]sdk.Part
	points   []sdk.Point
}

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{log: sdk.Logger("memvim"), parts: map[string]sdk.Part{}}
}

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "memvim", Version: "0.1.0", Description: "in-memory VIM for host tests"}, nil
}

// ConfigSchema implements sdk.Plugin.
func (p *Plugin) ConfigSchema(context.Context) (sdk.ConfigSchema, error) {
	return sdk.ConfigSchema{Fields: []sdk.ConfigField{
		{Name: "state_dir", Type: sdk.FieldString, Description: "directory keeping parts across relaunches"},
		{Name: "capacity_cpus", Type: sdk.FieldInt, Required: true, Description: "CPU capacity"},
		{Name: "healthy", Type: sdk.FieldBool, Default: true, Description: "false makes Health fail"},
	}}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, cfg sdk.Config) error {
	var c Config
	if err := cfg.Decode(&c); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.provider = c, cfg.Provider
	if c.StateDir != "" {
		if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
			return sdk.Errorf(sdk.CodeFailedPrecondition, "state_dir: %v", err)
		}
		raw, err := os.ReadFile(p.stateFile())
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return sdk.Errorf(sdk.CodeInternal, "read state: %v", err)
		default:
			if err := json.Unmarshal(raw, &p.parts); err != nil {
				return sdk.Errorf(sdk.CodeInternal, "read state: %v", err)
			}
		}
		f, err := os.OpenFile(filepath.Join(c.StateDir, "launches"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return sdk.Errorf(sdk.CodeInternal, "record launch: %v", err)
		}
		_, _ = fmt.Fprintln(f, os.Getpid())
		_ = f.Close()
	}
	p.log.Info("configured", "provider", cfg.Provider.Name, "api_version", cfg.APIVersion, "parts", len(p.parts))
	return nil
}

func (p *Plugin) stateFile() string { return filepath.Join(p.cfg.StateDir, "parts.json") }

// save persists the parts; the caller holds p.mu.
func (p *Plugin) save() error {
	if p.cfg.StateDir == "" {
		return nil
	}
	raw, err := json.Marshal(p.parts)
	if err != nil {
		return sdk.Errorf(sdk.CodeInternal, "save state: %v", err)
	}
	tmp := p.stateFile() + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return sdk.Errorf(sdk.CodeInternal, "save state: %v", err)
	}
	if err := os.Rename(tmp, p.stateFile()); err != nil {
		return sdk.Errorf(sdk.CodeInternal, "save state: %v", err)
	}
	return nil
}

// used sums the resources of every part; the caller holds p.mu.
func (p *Plugin) used() sdk.Resources {
	var r sdk.Resources
	for _, part := range p.parts {
		r = r.Add(part.Allocated)
	}
	return r
}

// Offer implements sdk.VIM.
func (p *Plugin) Offer(_ context.Context, req sdk.OfferRequest) (sdk.Offer, error) {
	spec := req.Part
	if err := spec.Validate(); err != nil {
		return sdk.Offer{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	capacity := sdk.Resources{CPUs: p.cfg.CapacityCPUs, MemoryMB: 1 << 20, StorageGB: 1 << 20, Nodes: 1 << 10}
	free := capacity.Sub(p.used())
	need := spec.Resources()
	o := sdk.Offer{Accepted: true, Requested: need, Free: free, Capacity: capacity, PricePerDay: float64(need.CPUs)}
	if ok, why := need.Fits(free); !ok {
		o.Accepted, o.Reason = false, why
	}
	return o, nil
}

// Create implements sdk.VIM.
func (p *Plugin) Create(ctx context.Context, req sdk.CreateRequest) (sdk.Part, error) {
	spec := req.Part
	if err := spec.Validate(); err != nil {
		return sdk.Part{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if part, ok := p.parts[spec.Ref.String()]; ok {
		return p.withPid(part), nil
	}
	part := sdk.Part{Ref: spec.Ref, Name: spec.Name, State: sdk.StateReady, Bridge: spec.Bridge,
		Allocated:  spec.Resources(),
		Attributes: map[string]string{"provider": p.provider.Name, "location": p.provider.Location}}
	for _, v := range spec.VDUs {
		for i := 1; i <= v.Instances; i++ {
			part.Nodes = append(part.Nodes, sdk.Node{Name: sdk.NodeName(v.Name, i), VDU: v.Name, Type: v.Type,
				State: sdk.StateRunning, CPUs: v.CPUs, MemoryMB: v.MemoryMB, StorageGB: v.StorageGB})
		}
	}
	p.parts[spec.Ref.String()] = part
	if err := p.save(); err != nil {
		return sdk.Part{}, err
	}
	p.log.Info("part created", "part", spec.Ref.String(), "nodes", len(part.Nodes))
	return p.withPid(part), nil
}

// pid is this process's id, read once: os.Getpid is a system call, which the call
// benchmarks would otherwise count as the transport's cost.
var pid = strconv.Itoa(os.Getpid())

// withPid tags a part with the answering process, so tests see which process answered.
func (p *Plugin) withPid(part sdk.Part) sdk.Part {
	attrs := make(map[string]string, len(part.Attributes)+1)
	for k, v := range part.Attributes {
		attrs[k] = v
	}
	attrs["pid"] = pid
	part.Attributes = attrs
	return part
}

// Describe implements sdk.VIM.
func (p *Plugin) Describe(_ context.Context, req sdk.DescribeRequest) (sdk.Part, error) {
	ref := req.Ref
	switch ref.PartID {
	case "crash-once":
		marker := filepath.Join(p.cfg.StateDir, "crashed-once")
		if _, err := os.Stat(marker); err != nil {
			_ = os.WriteFile(marker, nil, 0o644)
			p.log.Warn("crashing in the middle of a call, as asked")
			os.Exit(3)
		}
		return p.withPid(sdk.Part{Ref: ref, Name: "survivor", State: sdk.StateReady}), nil
	case "crash-always":
		os.Exit(3)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	part, ok := p.parts[ref.String()]
	if !ok {
		return sdk.Part{}, sdk.Errorf(sdk.CodeNotFound, "part %s not found", ref)
	}
	return p.withPid(part), nil
}

// Resize implements sdk.VIM.
func (p *Plugin) Resize(_ context.Context, req sdk.ResizeRequest) (sdk.Part, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	part, ok := p.parts[req.Ref.String()]
	if !ok {
		return sdk.Part{}, sdk.Errorf(sdk.CodeNotFound, "part %s not found", req.Ref)
	}
	for i, n := range part.Nodes {
		if n.VDU != req.VDU || (req.Node != "" && n.Name != req.Node) {
			continue
		}
		if req.CPUs > 0 {
			part.Allocated.CPUs += req.CPUs - n.CPUs
			part.Nodes[i].CPUs = req.CPUs
		}
		if req.MemoryMB > 0 {
			part.Allocated.MemoryMB += req.MemoryMB - n.MemoryMB
			part.Nodes[i].MemoryMB = req.MemoryMB
		}
	}
	p.parts[req.Ref.String()] = part
	return p.withPid(part), p.save()
}

// Scale implements sdk.VIM.
func (p *Plugin) Scale(_ context.Context, req sdk.ScaleRequest) (sdk.Part, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	part, ok := p.parts[req.Ref.String()]
	if !ok {
		return sdk.Part{}, sdk.Errorf(sdk.CodeNotFound, "part %s not found", req.Ref)
	}
	var kept []sdk.Node
	var tmpl *sdk.Node
	have := 0
	for _, n := range part.Nodes {
		if n.VDU == req.VDU {
			if tmpl == nil {
				t := n
				tmpl = &t
			}
			if have >= req.Instances {
				continue
			}
			have++
		}
		kept = append(kept, n)
	}
	if tmpl == nil {
		return sdk.Part{}, sdk.Errorf(sdk.CodeInvalidArgument, "vdu: %q has no nodes in part %s", req.VDU, req.Ref)
	}
	for i := have + 1; i <= req.Instances; i++ {
		n := *tmpl
		n.Name = sdk.NodeName(req.VDU, i)
		kept = append(kept, n)
	}
	part.Nodes = kept
	p.parts[req.Ref.String()] = part
	return p.withPid(part), p.save()
}

// Delete implements sdk.VIM.
func (p *Plugin) Delete(_ context.Context, req sdk.DeleteRequest) error {
	ref := req.Ref
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.parts, ref.String())
	return p.save()
}

// Metrics implements sdk.VIM.
func (p *Plugin) Metrics(_ context.Context, req sdk.MetricsRequest) ([]sdk.Sample, error) {
	ref := req.Ref
	p.mu.Lock()
	defer p.mu.Unlock()
	part, ok := p.parts[ref.String()]
	if !ok {
		return nil, sdk.Errorf(sdk.CodeNotFound, "part %s not found", ref)
	}
	var out []sdk.Sample
	for _, n := range part.Nodes {
		out = append(out, sdk.Sample{Node: n.Name, NodeType: n.Type, Metric: sdk.MetricCPUPercent, Value: 10, Time: time.Now()})
	}
	return out, nil
}

// Write implements sdk.Monitor: points stay in memory, like a queue lost with the process.
func (p *Plugin) Write(_ context.Context, req sdk.WriteRequest) error {
	points := req.Points
	p.mu.Lock()
	defer p.mu.Unlock()
	p.points = append(p.points, points...)
	return nil
}

// Flush implements sdk.Monitor.
func (p *Plugin) Flush(context.Context) error { return nil }

// Query implements sdk.Monitor.
func (p *Plugin) Query(_ context.Context, q sdk.Query) ([]sdk.Point, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []sdk.Point
	for _, pt := range p.points {
		if pt.Metric == q.Metric {
			out = append(out, pt)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// Health implements sdk.Monitor.
func (p *Plugin) Health(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Healthy != nil && !*p.cfg.Healthy {
		return sdk.Errorf(sdk.CodeUnavailable, "backend down (configured healthy=false)")
	}
	return nil
}
