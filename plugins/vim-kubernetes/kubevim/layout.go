package kubevim

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/necos/necos/sdk"
)

// A part's nodes are slices of its namespace's quota, not cluster nodes: the quota is the
// sum of the nodes' sizes. The layout of VDUs and nodes is kept as JSON in the
// namespace's annLayout annotation; it is the part's source of truth, and what the
// capacity accounting sums over.

// layout is a part's VDUs as the namespace's annotation holds them.
type layout struct {
	VDUs []vduLayout `json:"vdus"`
}

type vduLayout struct {
	Name            string            `json:"name"`
	Description     string            `json:"description,omitempty"`
	Image           string            `json:"image,omitempty"`
	Type            string            `json:"type,omitempty"`
	Instances       int               `json:"instances"`
	CPUs            int               `json:"cpus"`
	MemoryMB        int64             `json:"memory_mb"`
	StorageGB       int64             `json:"storage_gb,omitempty"`
	CPUArchitecture string            `json:"cpu_architecture,omitempty"`
	OS              map[string]string `json:"os,omitempty"`
	// Sizes holds the nodes resized one by one (ResizeRequest.Node), by node name.
	Sizes map[string]nodeSize `json:"sizes,omitempty"`
	// Base is the VDU as the part was created: its workloads' replicas and sizes are
	// relative to it (workloads.go). Absent in parts made before it was kept.
	Base *vduBase `json:"base,omitempty"`
}

type vduBase struct {
	Instances int   `json:"instances"`
	CPUs      int   `json:"cpus"`
	MemoryMB  int64 `json:"memory_mb"`
}

type nodeSize struct {
	CPUs     int   `json:"cpus"`
	MemoryMB int64 `json:"memory_mb"`
}

// mib and gib convert the SDK's MB and GB: memory_mb counts MiB and storage_gb GiB,
// the units Kubernetes quantities use.
const (
	mib = 1 << 20
	gib = 1 << 30
)

// podsPerNode bounds the pods of a part: a kubelet's default limit per node.
const podsPerNode = 110

func layoutOf(spec sdk.PartSpec) layout {
	l := layout{}
	for _, v := range spec.VDUs {
		l.VDUs = append(l.VDUs, vduLayout{
			Name: v.Name, Description: v.Description, Image: v.Image, Type: v.Type,
			Instances: v.Instances, CPUs: v.CPUs, MemoryMB: v.MemoryMB, StorageGB: v.StorageGB,
			CPUArchitecture: v.CPUArchitecture, OS: v.OS,
			Base: &vduBase{Instances: v.Instances, CPUs: v.CPUs, MemoryMB: v.MemoryMB},
		})
	}
	return l
}

func parseLayout(s string) (layout, error) {
	var l layout
	if s == "" {
		return l, fmt.Errorf("annotation %s is missing", annLayout)
	}
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return l, fmt.Errorf("annotation %s: %w", annLayout, err)
	}
	return l, nil
}

func (l layout) encode() string {
	b, err := json.Marshal(l)
	if err != nil {
		panic(fmt.Sprintf("encode layout: %v", err)) // plain structs: cannot fail
	}
	return string(b)
}

func (l layout) clone() layout {
	var c layout
	if err := json.Unmarshal([]byte(l.encode()), &c); err != nil {
		panic(fmt.Sprintf("clone layout: %v", err))
	}
	return c
}

// size returns the size of the i-th node of v.
func (v vduLayout) size(i int) nodeSize {
	if s, ok := v.Sizes[sdk.NodeName(v.Name, i)]; ok {
		return s
	}
	return nodeSize{CPUs: v.CPUs, MemoryMB: v.MemoryMB}
}

// nodes lists the part's nodes, VDU by VDU, by index. ID and State are the caller's.
func (l layout) nodes() []sdk.Node {
	var out []sdk.Node
	for _, v := range l.VDUs {
		for i := 1; i <= v.Instances; i++ {
			s := v.size(i)
			out = append(out, sdk.Node{Name: sdk.NodeName(v.Name, i), VDU: v.Name, Type: v.Type,
				CPUs: s.CPUs, MemoryMB: s.MemoryMB, StorageGB: v.StorageGB})
		}
	}
	return out
}

// total is what the part holds: the sum of its nodes.
func (l layout) total() sdk.Resources {
	var r sdk.Resources
	for _, n := range l.nodes() {
		r.Nodes++
		r.CPUs += n.CPUs
		r.MemoryMB += n.MemoryMB
		r.StorageGB += n.StorageGB
	}
	return r
}

func (l layout) vdu(name string) (int, bool) {
	for i, v := range l.VDUs {
		if v.Name == name {
			return i, true
		}
	}
	return -1, false
}

func (l layout) vduNames() string {
	names := make([]string, len(l.VDUs))
	for i, v := range l.VDUs {
		names[i] = v.Name
	}
	return strings.Join(names, ", ")
}

// nodeVDU returns the VDU a node belongs to.
func (l layout) nodeVDU(node string) (int, bool) {
	for i, v := range l.VDUs {
		for j := 1; j <= v.Instances; j++ {
			if sdk.NodeName(v.Name, j) == node {
				return i, true
			}
		}
	}
	return -1, false
}

// resized returns the layout after req, or a NotFound error naming the unknown VDU or
// node.
func (l layout) resized(req sdk.ResizeRequest) (layout, error) {
	// The SDK has checked the sizes ([sdk.ResizeRequest.Validate]).
	out := l.clone()
	vi, ok := out.vdu(req.VDU)
	if req.VDU == "" && req.Node != "" {
		vi, ok = out.nodeVDU(req.Node)
	}
	if !ok {
		return l, sdk.Errorf(sdk.CodeNotFound, "resize %s: vdu: the part has no VDU %q (VDUs: %s)",
			req.Ref, req.VDU, out.vduNames())
	}
	v := &out.VDUs[vi]
	if req.Node == "" {
		if req.CPUs > 0 {
			v.CPUs = req.CPUs
		}
		if req.MemoryMB > 0 {
			v.MemoryMB = req.MemoryMB
		}
		for name, s := range v.Sizes {
			if req.CPUs > 0 {
				s.CPUs = req.CPUs
			}
			if req.MemoryMB > 0 {
				s.MemoryMB = req.MemoryMB
			}
			v.Sizes[name] = s
		}
	} else {
		idx := 0
		for i := 1; i <= v.Instances; i++ {
			if sdk.NodeName(v.Name, i) == req.Node {
				idx = i
			}
		}
		if idx == 0 {
			return l, sdk.Errorf(sdk.CodeNotFound, "resize %s: node: VDU %s has no node %q (it has %d)",
				req.Ref, v.Name, req.Node, v.Instances)
		}
		s := v.size(idx)
		if req.CPUs > 0 {
			s.CPUs = req.CPUs
		}
		if req.MemoryMB > 0 {
			s.MemoryMB = req.MemoryMB
		}
		if v.Sizes == nil {
			v.Sizes = map[string]nodeSize{}
		}
		v.Sizes[req.Node] = s
	}
	v.normalize()
	return out, nil
}

// scaled returns the layout with n instances of a VDU. Nodes go highest index first, so
// the remaining ones keep their names and sizes; new nodes take the VDU's size. A part
// keeps at least one node, as in every VIM (the plugin contract): scaling its last
// nodes away is FailedPrecondition (delete the part instead).
func (l layout) scaled(req sdk.ScaleRequest) (layout, error) {
	// The SDK has checked Instances ([sdk.ScaleRequest.Validate]).
	out := l.clone()
	vi, ok := out.vdu(req.VDU)
	if !ok {
		return l, sdk.Errorf(sdk.CodeNotFound, "scale %s: vdu: the part has no VDU %q (VDUs: %s)",
			req.Ref, req.VDU, out.vduNames())
	}
	others := 0
	for i, o := range out.VDUs {
		if i != vi {
			others += o.Instances
		}
	}
	if req.Instances == 0 && others == 0 {
		return l, sdk.Errorf(sdk.CodeFailedPrecondition,
			"scale %s: vdu %s holds the part's last nodes; delete the part instead", req.Ref, req.VDU)
	}
	v := &out.VDUs[vi]
	for i := req.Instances + 1; i <= v.Instances; i++ {
		delete(v.Sizes, sdk.NodeName(v.Name, i))
	}
	v.Instances = req.Instances
	v.normalize()
	return out, nil
}

// normalize drops per-node sizes equal to the VDU's.
func (v *vduLayout) normalize() {
	for name, s := range v.Sizes {
		if s.CPUs == v.CPUs && s.MemoryMB == v.MemoryMB {
			delete(v.Sizes, name)
		}
	}
	if len(v.Sizes) == 0 {
		v.Sizes = nil
	}
}

// smallestNode returns the least CPUs and memory of any node (zero when there is none).
func (l layout) smallestNode() nodeSize {
	var m nodeSize
	for _, n := range l.nodes() {
		if m.CPUs == 0 || n.CPUs < m.CPUs {
			m.CPUs = n.CPUs
		}
		if m.MemoryMB == 0 || n.MemoryMB < m.MemoryMB {
			m.MemoryMB = n.MemoryMB
		}
	}
	return m
}

// quotaHard is the ResourceQuota of a part holding r: CPU and memory as both requests
// and limits (no overcommit inside a part), storage as PVC requests, and pods.
func quotaHard(r sdk.Resources) corev1.ResourceList {
	cpu := *resource.NewQuantity(int64(r.CPUs), resource.DecimalSI)
	mem := *resource.NewQuantity(r.MemoryMB*mib, resource.BinarySI)
	return corev1.ResourceList{
		corev1.ResourceRequestsCPU:     cpu,
		corev1.ResourceLimitsCPU:       cpu.DeepCopy(),
		corev1.ResourceRequestsMemory:  mem,
		corev1.ResourceLimitsMemory:    mem.DeepCopy(),
		corev1.ResourceRequestsStorage: *resource.NewQuantity(r.StorageGB*gib, resource.BinarySI),
		corev1.ResourcePods:            *resource.NewQuantity(int64(r.Nodes*podsPerNode), resource.DecimalSI),
	}
}

// sameHard reports whether two quota lists hold the same amounts.
func sameHard(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, q := range a {
		o, ok := b[k]
		if !ok || q.Cmp(o) != 0 {
			return false
		}
	}
	return true
}

// overUsed lists the resources whose use exceeds what hard would allow, e.g.
// "requests.cpu: 3 in use, new quota 2".
func overUsed(hard, used corev1.ResourceList) []string {
	var out []string
	keys := make([]string, 0, len(hard))
	for k := range hard {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	for _, k := range keys {
		h := hard[corev1.ResourceName(k)]
		if u, ok := used[corev1.ResourceName(k)]; ok && u.Cmp(h) > 0 {
			out = append(out, fmt.Sprintf("%s: %s in use, new quota %s", k, u.String(), h.String()))
		}
	}
	return out
}

// usedResources converts a quota's used amounts (requests) into SDK units, rounding up:
// 250m CPU in use is one CPU not free.
func usedResources(used corev1.ResourceList) sdk.Resources {
	r := sdk.Resources{}
	if q, ok := used[corev1.ResourceRequestsCPU]; ok {
		r.CPUs = int((q.MilliValue() + 999) / 1000)
	}
	if q, ok := used[corev1.ResourceRequestsMemory]; ok {
		r.MemoryMB = (q.Value() + mib - 1) / mib
	}
	if q, ok := used[corev1.ResourceRequestsStorage]; ok {
		r.StorageGB = (q.Value() + gib - 1) / gib
	}
	return r
}
