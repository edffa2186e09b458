package sdk

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// VIM provisions and runs DC slice parts (compute) at one resource provider.
//
// Every call is idempotent and keyed by [PartRef]: the core may retry any call, and a
// Create for a part that already exists returns that part. Every call takes one request
// struct, which the SDK validates (its Validate method) before the plugin sees it.
//
// Errors carry a [Code], one per kind of failure, the same in every VIM:
//   - CodeInvalidArgument: a malformed request (a missing id, a negative size, an empty
//     metric name), or one this provider cannot read at all (an unknown vdu-image or
//     metric name);
//   - CodeNotFound: an unknown part, VDU or node (except Delete, where an unknown part is
//     done);
//   - CodeResourceExhausted: the provider lacks room (Create, Resize, Scale);
//   - CodeFailedPrecondition: the request is well formed but the part's state refuses it
//     (scaling its last nodes away, growing a node past its maximum);
//   - CodeUnimplemented: a call the provider does not support (Resize, Scale);
//   - CodeUnavailable: the backend does not answer.
type VIM interface {
	// Offer says whether the provider can host the part now and at what price. A refusal
	// is an Offer with Accepted false and a Reason, not an error.
	Offer(ctx context.Context, req OfferRequest) (Offer, error)
	// Create builds the part and returns it once its nodes run.
	Create(ctx context.Context, req CreateRequest) (Part, error)
	// Describe returns the part as the backend holds it now.
	Describe(ctx context.Context, req DescribeRequest) (Part, error)
	// Resize changes the vCPUs and/or memory of a VDU's nodes (vertical elasticity).
	Resize(ctx context.Context, req ResizeRequest) (Part, error)
	// Scale sets the number of instances of a VDU (nodes in the part). A part keeps at
	// least one node: scaling its last nodes away is CodeFailedPrecondition (delete the
	// part instead).
	Scale(ctx context.Context, req ScaleRequest) (Part, error)
	// Delete removes the part and everything it holds; an unknown part is not an error.
	Delete(ctx context.Context, req DeleteRequest) error
	// Metrics measures the part's nodes now. req.Names filters the metrics; empty means
	// all.
	Metrics(ctx context.Context, req MetricsRequest) ([]Sample, error)
}

// PartRef names a DC slice part: the slice's id and the part's id within it.
type PartRef struct {
	SliceID string
	PartID  string
}

// String returns "slice/part".
func (r PartRef) String() string { return r.SliceID + "/" + r.PartID }

// Validate checks that both ids are set.
func (r PartRef) Validate() error {
	if r.SliceID == "" || r.PartID == "" {
		return Errorf(CodeInvalidArgument, "ref: slice_id and part_id are required (got %q)", r.String())
	}
	return nil
}

// Node types of a VDU.
const (
	NodeMaster = "master"
	NodeWorker = "worker"
)

// VDUSpec is one virtual deployment unit of a part: a node template and how many.
type VDUSpec struct {
	// Name is the VDU's name; its nodes are named NodeName(Name, i).
	Name        string
	Description string
	// Image is the VDU's image (vdu-image).
	Image string
	// Instances is how many nodes of this VDU the part has.
	Instances int
	// CPUs, MemoryMB and StorageGB size each node.
	CPUs      int
	MemoryMB  int64
	StorageGB int64
	// Type is NodeMaster, NodeWorker or empty.
	Type            string
	CPUArchitecture string
	// OS holds os-properties (architecture, type, distribution, version).
	OS map[string]string
}

// NodeName returns the name of the i-th (from 1) instance of a VDU.
func NodeName(vdu string, i int) string { return fmt.Sprintf("%s-%d", vdu, i) }

// PartSpec is a DC slice part to build.
type PartSpec struct {
	Ref PartRef
	// Name is the part's name in the tenant's spec, e.g. "core-dc".
	Name string
	// Type is "DC" or "EDGE".
	Type     string
	Location string
	// Bridge is the per-slice bridge at the provider's site that nodes attach to.
	Bridge string
	// Netns is the named network namespace at the provider's site that holds Bridge (the
	// catalogue's site.netns, as the WAN plugin's LinkEnd.Netns); empty is the host's own.
	// A VIM that runs real nodes attaches them to Bridge there, so that links, which join
	// bridges in that namespace, reach them.
	Netns  string
	Tenant string
	VDUs   []VDUSpec
	// Labels are extra key/values to tag the part's resources with.
	Labels map[string]string
}

// Resources returns what the part needs in total.
func (p PartSpec) Resources() Resources {
	var r Resources
	for _, v := range p.VDUs {
		r.Nodes += v.Instances
		r.CPUs += v.CPUs * v.Instances
		r.MemoryMB += v.MemoryMB * int64(v.Instances)
		r.StorageGB += v.StorageGB * int64(v.Instances)
	}
	return r
}

// VDU returns the named VDU.
func (p PartSpec) VDU(name string) (VDUSpec, bool) {
	for _, v := range p.VDUs {
		if v.Name == name {
			return v, true
		}
	}
	return VDUSpec{}, false
}

// Validate checks what every VIM needs of a part spec and reports every problem at once,
// each naming its field. A part has at least one node.
func (p PartSpec) Validate() error {
	var problems []string
	if err := p.Ref.Validate(); err != nil {
		problems = append(problems, err.Error())
	}
	if len(p.VDUs) == 0 {
		problems = append(problems, "vdus: at least one VDU is required")
	} else if p.Resources().Nodes == 0 {
		problems = append(problems, "vdus: a part has at least one node (every VDU has 0 instances)")
	}
	seen := map[string]bool{}
	for i, v := range p.VDUs {
		at := fmt.Sprintf("vdus[%d]", i)
		switch {
		case v.Name == "":
			problems = append(problems, at+".name: required")
		case seen[v.Name]:
			problems = append(problems, fmt.Sprintf("%s.name: duplicate VDU %q", at, v.Name))
		}
		seen[v.Name] = true
		if v.Instances < 0 {
			problems = append(problems, fmt.Sprintf("%s.instances: must be >= 0, got %d", at, v.Instances))
		}
		if v.CPUs <= 0 {
			problems = append(problems, fmt.Sprintf("%s.cpus: must be > 0, got %d", at, v.CPUs))
		}
		if v.MemoryMB <= 0 {
			problems = append(problems, fmt.Sprintf("%s.memory_mb: must be > 0, got %d", at, v.MemoryMB))
		}
		if v.StorageGB < 0 {
			problems = append(problems, fmt.Sprintf("%s.storage_gb: must be >= 0, got %d", at, v.StorageGB))
		}
	}
	if len(problems) > 0 {
		return Errorf(CodeInvalidArgument, "%s", strings.Join(problems, "; "))
	}
	return nil
}

// Resources is an amount of compute.
type Resources struct {
	CPUs      int
	MemoryMB  int64
	StorageGB int64
	Nodes     int
}

// Fits reports whether r fits in free, and if not, which resource is short.
func (r Resources) Fits(free Resources) (bool, string) {
	switch {
	case r.CPUs > free.CPUs:
		return false, fmt.Sprintf("not enough CPUs: need %d, %d free", r.CPUs, free.CPUs)
	case r.MemoryMB > free.MemoryMB:
		return false, fmt.Sprintf("not enough memory: need %d MB, %d MB free", r.MemoryMB, free.MemoryMB)
	case r.StorageGB > free.StorageGB:
		return false, fmt.Sprintf("not enough storage: need %d GB, %d GB free", r.StorageGB, free.StorageGB)
	}
	return true, ""
}

// Sub returns r minus o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{CPUs: r.CPUs - o.CPUs, MemoryMB: r.MemoryMB - o.MemoryMB,
		StorageGB: r.StorageGB - o.StorageGB, Nodes: r.Nodes - o.Nodes}
}

// Add returns r plus o.
func (r Resources) Add(o Resources) Resources {
	return Resources{CPUs: r.CPUs + o.CPUs, MemoryMB: r.MemoryMB + o.MemoryMB,
		StorageGB: r.StorageGB + o.StorageGB, Nodes: r.Nodes + o.Nodes}
}

// Offer is a provider's answer to "can you host this part?".
type Offer struct {
	// Accepted is false when the provider cannot host the part; Reason says why.
	Accepted bool
	Reason   string
	// PricePerDay is the price of the whole part per day, in euros.
	PricePerDay float64
	// Requested is what the part needs; Free what the provider has left without it;
	// Capacity the provider's total.
	Requested Resources
	Free      Resources
	Capacity  Resources
}

// States of a part and of its nodes.
const (
	StateCreating = "creating"
	StateReady    = "ready"
	StateRunning  = "running"
	StateStopped  = "stopped"
	StateFailed   = "failed"
	StateDeleting = "deleting"
)

// Node is one VDU instance of a part.
type Node struct {
	// Name is NodeName(VDU, i).
	Name string
	VDU  string
	// ID is the backend's identifier (domain UUID, ...).
	ID        string
	Type      string
	State     string
	CPUs      int
	MemoryMB  int64
	StorageGB int64
	IPs       []string
}

// Endpoint is how a tenant reaches a part's VIM (the NECOS vim-ref).
type Endpoint struct {
	IPAPI   string
	PortAPI int
	IPSSH   string
	PortSSH int
}

// Credential kinds.
const (
	CredentialKubeconfig = "kubeconfig"
	CredentialSSHKey     = "ssh-key"
	CredentialPassword   = "password"
)

// Credential is what a tenant uses to reach its part.
type Credential struct {
	// Kind is CredentialKubeconfig, CredentialSSHKey, CredentialPassword or empty.
	Kind string
	User string
	// Secret is the kubeconfig, private key or password.
	Secret string
	// HostKey is the SSH host public key (authorized_keys format) pinned at creation.
	HostKey string
	// Expires is when Secret stops working; zero means never.
	Expires time.Time
}

// Part is a DC slice part as the backend holds it.
type Part struct {
	Ref        PartRef
	Name       string
	State      string
	Message    string
	Nodes      []Node
	VIMRef     Endpoint
	Credential Credential
	Bridge     string
	// Allocated is what the part holds; Used what its workloads use, when known.
	Allocated Resources
	Used      Resources
	// Attributes are backend-specific facts (namespace, URI...).
	Attributes map[string]string
}

// NodesOf returns the part's nodes of one VDU.
func (p Part) NodesOf(vdu string) []Node {
	var out []Node
	for _, n := range p.Nodes {
		if n.VDU == vdu {
			out = append(out, n)
		}
	}
	return out
}

// ResizeRequest changes the size of a VDU's nodes.
type ResizeRequest struct {
	// Ref names the part.
	Ref PartRef
	// VDU names the VDU whose nodes change.
	VDU string
	// Node limits the change to one node; empty means every instance of VDU.
	Node string
	// CPUs and MemoryMB are the new values; zero leaves a value unchanged.
	CPUs     int
	MemoryMB int64
}

// ScaleRequest sets the number of instances of a VDU.
type ScaleRequest struct {
	// Ref names the part.
	Ref PartRef
	// VDU names the VDU to scale.
	VDU string
	// Instances is the VDU's new number of nodes.
	Instances int
}

// Metric names measured by VIMs, as NECOS named them where it did.
const (
	MetricCPUPercent   = "PERCENT_CPU_UTILIZATION"
	MetricMemoryUsedMB = "MEMORY_USED_MB"
	MetricMemoryPct    = "PERCENT_MEMORY_UTILIZATION"
)

// Sample is one measurement of one node.
type Sample struct {
	Node     string
	NodeType string
	Metric   string
	Value    float64
	Time     time.Time
}

// MaxMetricsBatch is the most parts one MetricsBatch call may name; a larger batch is
// CodeInvalidArgument. [MetricsBatch] splits larger batches itself.
const MaxMetricsBatch = 500

// MetricsRequest asks for the metrics of one part: alone ([VIM].Metrics) or within a
// batch ([MetricsBatcher]).
type MetricsRequest struct {
	// Ref names the part.
	Ref PartRef
	// Names filters the metrics; empty means all.
	Names []string
}

// PartMetrics is one part's answer within a batch: its samples, or why it has none.
type PartMetrics struct {
	// Ref is the part asked for.
	Ref PartRef
	// Samples are what [VIM].Metrics of the part would have returned.
	Samples []Sample
	// Err is the part's own failure, with the Code [VIM].Metrics of the part would
	// have returned (CodeNotFound for a part the provider does not have,
	// CodeInvalidArgument for a bad ref or metric name); nil when Samples hold.
	Err error
}

// MetricsBatcher is implemented by a VIM that measures many parts in one call, which
// the core uses to monitor every part of a provider each period. A plugin may
// implement it when its backend can read many parts at once cheaper than one by one
// (one listing of every domain's statistics, one metrics list per namespace); the
// SDK serves the call for plugins that do not, part by part through Metrics.
type MetricsBatcher interface {
	// MetricsBatch measures the parts of req.Parts now and returns one answer per part,
	// in the same order; a part that cannot be measured has its own Err, and never
	// fails the others. An error is returned only when nothing could be measured (the
	// backend is unreachable, ctx ended). Every answer must agree with what Metrics of
	// that part alone would return. The SDK answers the parts whose request fails
	// [MetricsRequest.Validate] itself and passes the others on, so req.Parts holds
	// valid requests only, at most MaxMetricsBatch.
	MetricsBatch(ctx context.Context, req MetricsBatchRequest) ([]PartMetrics, error)
}

// metricsEachParallel bounds the concurrent Metrics calls of MetricsEach.
const metricsEachParallel = 8

// MetricsEach measures every part of reqs with its own v.Metrics call, a few at a time,
// and returns one answer per request in the same order. It is the way to answer a
// batch without a [MetricsBatcher]: the SDK's server uses it for plugins that do not
// implement one, the core's client for plugins built before MetricsBatch existed, and a
// plugin's own MetricsBatch may use it for parts it cannot read in bulk.
func MetricsEach(ctx context.Context, v VIM, reqs []MetricsRequest) []PartMetrics {
	out := make([]PartMetrics, len(reqs))
	sem := make(chan struct{}, metricsEachParallel)
	var wg sync.WaitGroup
	for i, r := range reqs {
		out[i].Ref = r.Ref
		if err := r.Validate(); err != nil {
			out[i].Err = err
			continue
		}
		if err := ctx.Err(); err != nil {
			out[i].Err = Errorf(CodeOf(err), "metrics of part %s: %v", r.Ref, err)
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i].Samples, out[i].Err = v.Metrics(ctx, r)
		}()
	}
	wg.Wait()
	return out
}

// MetricsBatch measures the parts of reqs through v: with one MetricsBatch call per
// MaxMetricsBatch parts when v is a [MetricsBatcher], else with [MetricsEach]. It
// returns one answer per request, in the same order, and an error only when a whole
// batch failed (the answers measured before it are then not returned either).
func MetricsBatch(ctx context.Context, v VIM, reqs []MetricsRequest) ([]PartMetrics, error) {
	b, ok := v.(MetricsBatcher)
	if !ok {
		return MetricsEach(ctx, v, reqs), nil
	}
	out := make([]PartMetrics, 0, len(reqs))
	for rest := reqs; len(rest) > 0; {
		n := min(len(rest), MaxMetricsBatch)
		got, err := b.MetricsBatch(ctx, MetricsBatchRequest{Parts: rest[:n]})
		if err == nil {
			err = CheckMetricsBatch(rest[:n], got)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		rest = rest[n:]
	}
	return out, nil
}

// CheckMetricsBatch checks the answers a MetricsBatch returned for reqs: one per
// request, naming its part, in order. A batcher that breaks this is a bug in the
// plugin, reported as CodeInternal.
func CheckMetricsBatch(reqs []MetricsRequest, got []PartMetrics) error {
	if len(got) != len(reqs) {
		return Errorf(CodeInternal, "metrics batch: %d answers for %d parts", len(got), len(reqs))
	}
	for i := range reqs {
		if got[i].Ref != reqs[i].Ref {
			return Errorf(CodeInternal, "metrics batch: answer %d is of part %s, asked for %s", i, got[i].Ref, reqs[i].Ref)
		}
	}
	return nil
}
