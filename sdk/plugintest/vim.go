package plugintest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/necos/necos/sdk"
)

// VIMOptions tells [RunVIM] how the plugin under test was configured and what it
// supports.
type VIMOptions struct {
	// Capacity is the capacity the plugin was configured with: Offers must report it,
	// and the suite builds requests that exceed it. It must have room for five of the
	// suite's nodes (see Node), and nothing but the suite may use it during the run:
	// the suite checks what Offer reports as free to the unit.
	Capacity sdk.Resources
	// Node is the size of the suite's smallest node. Zero fields mean 1 CPU, 128 MB and
	// 1 GB of storage (0 GB when Capacity has no storage).
	Node sdk.Resources
	// Spec completes a part spec built by the suite (ref, name, type, VDUs with names,
	// types, instances and sizes) with what the plugin needs besides, such as a bridge,
	// an image or labels. Nil leaves specs as the suite built them.
	Spec func(sdk.PartSpec) sdk.PartSpec
	// NoResize says the plugin does not implement Resize: the suite then expects
	// [sdk.CodeUnimplemented] from it.
	NoResize bool
	// NoScale says the plugin does not implement Scale: the suite then expects
	// [sdk.CodeUnimplemented] from it.
	NoScale bool
	// SlicePrefix starts every slice id the suite uses. Empty means "conformance-"
	// followed by a random suffix, so runs against one shared backend do not collide.
	SlicePrefix string
	// Metrics are the metrics every running node must report. Empty means
	// [sdk.MetricCPUPercent] and [sdk.MetricMemoryUsedMB]. Samples may only carry these
	// and the metric names the sdk defines.
	Metrics []string
	// Guest, for a plugin whose nodes are real machines, adds the checks only a guest
	// can show (see [GuestChecks]); nil runs none of them.
	Guest *GuestChecks
}

// vimRacers and vimRoom size the concurrent-create check: vimRacers parts are created at
// once against free capacity for exactly vimRoom of them.
const (
	vimRacers = 12
	vimRoom   = 5
)

// RunVIM checks that the VIM served by client keeps the contract of [sdk.VIM], each
// point as a subtest, through whatever connection client has (InProcess or Binary):
//
//   - Offer accepts a part that fits, reporting Requested, Free and Capacity, and
//     refuses one that exceeds the capacity with Accepted false and a reason (not an
//     error); Create of such a part fails with [sdk.CodeResourceExhausted];
//   - Create returns the part once its nodes run (part [sdk.StateReady], nodes
//     [sdk.StateRunning], each with a distinct ID), and Describe agrees: per VDU,
//     Instances nodes named [sdk.NodeName](vdu, i) with the VDU's type, CPUs, memory
//     and storage; Offer's Free shrinks by exactly what the part holds;
//   - Create is idempotent, also when called concurrently: the same nodes, no
//     duplicates, capacity taken once;
//   - Resize changes the vCPUs and memory Describe reports (a VDU or one node), and
//     growth beyond the capacity fails with ResourceExhausted, changing nothing;
//   - Scale adds nodes (named by the next indexes) and removes them highest index
//     first; beyond the capacity it fails with ResourceExhausted, changing nothing;
//   - Scale may take a VDU to zero nodes, but not the part's last nodes: that is
//     [sdk.CodeFailedPrecondition];
//   - Delete is idempotent, frees the capacity, and an unknown part is not an error;
//     Describe and Metrics of a deleted or unknown part, Resize and Scale of an
//     unknown part or VDU, and Resize of an unknown node, are [sdk.CodeNotFound];
//   - twelve concurrent Creates against room for five: exactly five succeed, the
//     others fail with ResourceExhausted and leave nothing behind;
//   - malformed requests (no VDUs, zero CPUs or memory, negative instances, missing
//     ids) fail with [sdk.CodeInvalidArgument] and create nothing;
//   - Metrics returns samples for every node, with known metric names, sane values,
//     and honours the names filter; a metric name the plugin does not know is
//     [sdk.CodeInvalidArgument];
//   - MetricsBatch ([sdk.MetricsBatcher], which the SDK's client always serves) agrees
//     with Metrics part by part: one answer per request in order, the same nodes,
//     types and metrics for a part asked twice with different filters, and the codes
//     Metrics gives (NotFound, InvalidArgument) as that part's own error, not the
//     batch's;
//   - each failure has exactly one code, the one the [sdk.VIM] contract names: the
//     suite accepts no other;
//   - with [VIMOptions].Guest, what only a real guest shows: a live Resize seen inside
//     it, a node added by Scale answering, no volume left after Delete (GuestChecks).
//
// Every part the suite creates is deleted when its subtest ends (t.Cleanup), also when
// the subtest fails; what could not be deleted then is retried when RunVIM's test ends.
// The checks are about the contract, not a backend: a node may be a VM, a quota slice
// or anything else the plugin calls a node.
func RunVIM(t *testing.T, client *sdk.Client, opts VIMOptions) {
	t.Helper()
	vim, err := client.VIM()
	if err != nil {
		t.Fatalf("vim client: %v", err)
	}
	if opts.Capacity.CPUs <= 0 || opts.Capacity.MemoryMB <= 0 {
		t.Fatalf("VIMOptions.Capacity: set the capacity the plugin was configured with (got %+v)", opts.Capacity)
	}
	if opts.Node.CPUs <= 0 {
		opts.Node.CPUs = 1
	}
	if opts.Node.MemoryMB <= 0 {
		opts.Node.MemoryMB = 128
	}
	if opts.Node.StorageGB <= 0 && opts.Capacity.StorageGB > 0 {
		opts.Node.StorageGB = 1
	}
	if opts.Capacity.CPUs < vimRoom*opts.Node.CPUs || opts.Capacity.MemoryMB < vimRoom*opts.Node.MemoryMB ||
		opts.Capacity.StorageGB < vimRoom*opts.Node.StorageGB {
		t.Fatalf("VIMOptions: capacity %+v has no room for %d nodes of %+v", opts.Capacity, vimRoom, opts.Node)
	}
	if opts.SlicePrefix == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		opts.SlicePrefix = "conformance-" + hex.EncodeToString(b)
	}
	if len(opts.Metrics) == 0 {
		opts.Metrics = []string{sdk.MetricCPUPercent, sdk.MetricMemoryUsedMB}
	}
	s := &vimSuite{vim: vim, opts: opts, left: map[sdk.PartRef]bool{}}
	t.Cleanup(s.sweep(t))

	t.Run("Offer", s.testOffer)
	t.Run("CreateDescribe", s.testCreateDescribe)
	t.Run("CreateIdempotent", s.testCreateIdempotent)
	t.Run("Resize", s.testResize)
	t.Run("Scale", s.testScale)
	t.Run("Delete", s.testDelete)
	t.Run("UnknownPart", s.testUnknownPart)
	t.Run("InvalidArgument", s.testInvalidArgument)
	t.Run("ConcurrentCreates", s.testConcurrentCreates)
	t.Run("Metrics", s.testMetrics)
	t.Run("MetricsBatch", s.testMetricsBatch)
	if opts.Guest != nil {
		t.Run("Guest", s.runGuest)
	}
}

type vimSuite struct {
	vim  sdk.VIM
	opts VIMOptions

	mu   sync.Mutex
	left map[sdk.PartRef]bool // parts whose deletion has not succeeded yet
}

// ---- building requests ----

// ref names a part of its own slice.
func (s *vimSuite) ref(name string) sdk.PartRef {
	return sdk.PartRef{SliceID: s.opts.SlicePrefix + "-" + name, PartID: "dc-part-1"}
}

// vdu is a VDU of n nodes, each scale times the suite's node size.
func (s *vimSuite) vdu(name, typ string, n, scale int) sdk.VDUSpec {
	return sdk.VDUSpec{Name: name, Description: "conformance " + name, Image: "conformance-image", Instances: n,
		CPUs: s.opts.Node.CPUs * scale, MemoryMB: s.opts.Node.MemoryMB * int64(scale),
		StorageGB: s.opts.Node.StorageGB * int64(scale), Type: typ}
}

func (s *vimSuite) spec(ref sdk.PartRef, vdus ...sdk.VDUSpec) sdk.PartSpec {
	p := sdk.PartSpec{Ref: ref, Name: "conformance-" + ref.PartID, Type: "DC", Location: "EUROPE.TEST",
		Tenant: "conformance", VDUs: vdus, Labels: map[string]string{"suite": "conformance"}}
	if s.opts.Spec != nil {
		p = s.opts.Spec(p)
	}
	return p
}

// standard is a part with one master and two workers.
func (s *vimSuite) standard(ref sdk.PartRef) sdk.PartSpec {
	return s.spec(ref, s.vdu("master", sdk.NodeMaster, 1, 1), s.vdu("worker", sdk.NodeWorker, 2, 1))
}

// ---- calling the plugin ----

// track deletes ref when the test ends; registered before Create, so a create that
// failed half-way or timed out is cleaned too.
func (s *vimSuite) track(t *testing.T, ref sdk.PartRef) {
	s.mu.Lock()
	s.left[ref] = true
	s.mu.Unlock()
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if err := s.vim.Delete(c, sdk.DeleteRequest{Ref: ref}); err != nil {
			t.Errorf("cleanup: delete %s: %v", ref, err)
			return
		}
		s.mu.Lock()
		delete(s.left, ref)
		s.mu.Unlock()
	})
}

// sweep retries the deletion of parts whose subtest could not delete them.
func (s *vimSuite) sweep(t *testing.T) func() {
	return func() {
		s.mu.Lock()
		refs := make([]sdk.PartRef, 0, len(s.left))
		for r := range s.left {
			refs = append(refs, r)
		}
		s.mu.Unlock()
		for _, r := range refs {
			c, cancel := context.WithTimeout(context.Background(), callTimeout)
			if err := s.vim.Delete(c, sdk.DeleteRequest{Ref: r}); err != nil {
				t.Errorf("cleanup: part %s is left behind: %v", r, err)
			}
			cancel()
		}
	}
}

func (s *vimSuite) create(t *testing.T, spec sdk.PartSpec) sdk.Part {
	t.Helper()
	s.track(t, spec.Ref)
	p, err := s.vim.Create(ctx(t), sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatalf("Create %s: %v", spec.Ref, err)
	}
	return p
}

func (s *vimSuite) describe(t *testing.T, ref sdk.PartRef) sdk.Part {
	t.Helper()
	p, err := s.vim.Describe(ctx(t), sdk.DescribeRequest{Ref: ref})
	if err != nil {
		t.Fatalf("Describe %s: %v", ref, err)
	}
	return p
}

func (s *vimSuite) offer(t *testing.T, spec sdk.PartSpec) sdk.Offer {
	t.Helper()
	o, err := s.vim.Offer(ctx(t), sdk.OfferRequest{Part: spec})
	if err != nil {
		t.Fatalf("Offer %s: %v", spec.Ref, err)
	}
	return o
}

// free asks for an offer of one small node and returns what the plugin says is free.
func (s *vimSuite) free(t *testing.T) sdk.Resources {
	t.Helper()
	o := s.offer(t, s.spec(s.ref("probe"), s.vdu("probe", sdk.NodeWorker, 1, 1)))
	return o.Free
}

// ---- checking answers ----

// wantCode checks that err has exactly code want: every failure has one code in every
// plugin (the [sdk.VIM] contract), so no alternative is accepted.
func (s *vimSuite) wantCode(t *testing.T, what string, err error, want sdk.Code) {
	t.Helper()
	wantCode(t, what, err, want)
}

// wantCode checks that err has exactly code want: each failure has one code, the one
// its kind's contract names, in every plugin.
func wantCode(t *testing.T, what string, err error, want sdk.Code) {
	t.Helper()
	if got := sdk.CodeOf(err); got != want {
		t.Errorf("%s: got %v (code %v), want code %v", what, err, got, want)
	}
}

func (s *vimSuite) wantNotFound(t *testing.T, ref sdk.PartRef, why string) {
	t.Helper()
	_, err := s.vim.Describe(ctx(t), sdk.DescribeRequest{Ref: ref})
	s.wantCode(t, fmt.Sprintf("Describe %s (%s)", ref, why), err, sdk.CodeNotFound)
}

// checkPart checks that a part holds exactly the nodes spec asks for, sized as asked.
func (s *vimSuite) checkPart(t *testing.T, what string, got sdk.Part, spec sdk.PartSpec) {
	t.Helper()
	if got.Ref != spec.Ref {
		t.Errorf("%s: ref %s, want %s", what, got.Ref, spec.Ref)
	}
	want := map[string]sdk.VDUSpec{}
	total := 0
	for _, v := range spec.VDUs {
		for i := 1; i <= v.Instances; i++ {
			want[sdk.NodeName(v.Name, i)] = v
		}
		total += v.Instances
	}
	seenName, seenID := map[string]bool{}, map[string]bool{}
	for _, n := range got.Nodes {
		v, ok := want[n.Name]
		switch {
		case seenName[n.Name]:
			t.Errorf("%s: node %s appears twice", what, n.Name)
			continue
		case !ok:
			t.Errorf("%s: unexpected node %s (vdu %s)", what, n.Name, n.VDU)
			continue
		}
		seenName[n.Name] = true
		if n.ID == "" {
			t.Errorf("%s: node %s has no ID", what, n.Name)
		} else if seenID[n.ID] {
			t.Errorf("%s: node %s shares its ID %s with another node", what, n.Name, n.ID)
		}
		seenID[n.ID] = true
		if n.VDU != v.Name {
			t.Errorf("%s: node %s: vdu %q, want %q", what, n.Name, n.VDU, v.Name)
		}
		if n.Type != v.Type {
			t.Errorf("%s: node %s: type %q, want %q", what, n.Name, n.Type, v.Type)
		}
		if n.CPUs != v.CPUs || n.MemoryMB != v.MemoryMB || n.StorageGB != v.StorageGB {
			t.Errorf("%s: node %s: %d CPUs, %d MB, %d GB; want %d, %d, %d", what, n.Name,
				n.CPUs, n.MemoryMB, n.StorageGB, v.CPUs, v.MemoryMB, v.StorageGB)
		}
	}
	for name := range want {
		if !seenName[name] {
			t.Errorf("%s: node %s missing (have %s)", what, name, s.nodeNames(got))
		}
	}
	if len(got.Nodes) != total {
		t.Errorf("%s: %d nodes, want %d", what, len(got.Nodes), total)
	}
}

// checkRunning checks that a part and its nodes report they run.
func (s *vimSuite) checkRunning(t *testing.T, what string, p sdk.Part) {
	t.Helper()
	if p.State != sdk.StateReady {
		t.Errorf("%s: part state %q (%s), want %q", what, p.State, p.Message, sdk.StateReady)
	}
	for _, n := range p.Nodes {
		if n.State != sdk.StateRunning {
			t.Errorf("%s: node %s state %q, want %q", what, n.Name, n.State, sdk.StateRunning)
		}
	}
}

func (s *vimSuite) nodeNames(p sdk.Part) string {
	names := make([]string, 0, len(p.Nodes))
	for _, n := range p.Nodes {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (s *vimSuite) nodeIDs(p sdk.Part) map[string]string {
	out := map[string]string{}
	for _, n := range p.Nodes {
		out[n.Name] = n.ID
	}
	return out
}

func (s *vimSuite) sameIDs(t *testing.T, what string, got, want sdk.Part) {
	t.Helper()
	g, w := s.nodeIDs(got), s.nodeIDs(want)
	if len(g) != len(w) || len(got.Nodes) != len(want.Nodes) {
		t.Errorf("%s: nodes %s, want %s", what, s.nodeNames(got), s.nodeNames(want))
		return
	}
	for name, id := range w {
		if g[name] != id {
			t.Errorf("%s: node %s has ID %q, want %q (the same node)", what, name, g[name], id)
		}
	}
}

// sameCompute compares what the capacity accounting covers.
func (s *vimSuite) sameCompute(a, b sdk.Resources) bool {
	return a.CPUs == b.CPUs && a.MemoryMB == b.MemoryMB && a.StorageGB == b.StorageGB
}

func (s *vimSuite) checkFreed(t *testing.T, what string, before, after, part sdk.Resources) {
	t.Helper()
	if got := before.Sub(after); !s.sameCompute(got, part) {
		t.Errorf("%s: free went from %+v to %+v, a change of %+v; want %+v", what, before, after, got, part)
	}
}

// ---- the checks ----

func (s *vimSuite) testOffer(t *testing.T) {
	c := s.opts.Capacity
	ref := s.ref("offer")
	fits := s.standard(ref)
	o := s.offer(t, fits)
	if !o.Accepted {
		t.Errorf("Offer of a part that fits: refused (%s)", o.Reason)
	}
	if need := fits.Resources(); !s.sameCompute(o.Requested, need) || o.Requested.Nodes != need.Nodes {
		t.Errorf("Offer: requested %+v, want %+v", o.Requested, need)
	}
	if !s.sameCompute(o.Capacity, c) {
		t.Errorf("Offer: capacity %+v, want the configured %+v", o.Capacity, c)
	}
	if o.Free.CPUs > c.CPUs || o.Free.MemoryMB > c.MemoryMB || o.Free.StorageGB > c.StorageGB ||
		o.Free.CPUs < 0 || o.Free.MemoryMB < 0 || o.Free.StorageGB < 0 {
		t.Errorf("Offer: free %+v is not within 0 and the capacity %+v", o.Free, c)
	}
	if o.PricePerDay < 0 {
		t.Errorf("Offer: negative price %v", o.PricePerDay)
	}
	s.wantNotFound(t, ref, "after an Offer only")

	tooBig := map[string]sdk.PartSpec{}
	v := s.vdu("big", sdk.NodeWorker, 1, 1)
	v.CPUs = c.CPUs + 1
	tooBig["one node with more CPUs than the capacity"] = s.spec(s.ref("offer-cpus"), v)
	v = s.vdu("big", sdk.NodeWorker, 1, 1)
	v.MemoryMB = c.MemoryMB + 1
	tooBig["one node with more memory than the capacity"] = s.spec(s.ref("offer-memory"), v)
	many := c.CPUs/s.opts.Node.CPUs + 1
	tooBig[fmt.Sprintf("%d small nodes", many)] = s.spec(s.ref("offer-count"), s.vdu("many", sdk.NodeWorker, many, 1))
	for what, spec := range tooBig {
		o, err := s.vim.Offer(ctx(t), sdk.OfferRequest{Part: spec})
		if err != nil {
			t.Errorf("Offer of %s: error %v, want a refusal (Accepted false, not an error)", what, err)
			continue
		}
		if o.Accepted {
			t.Errorf("Offer of %s: accepted, capacity is %+v", what, c)
		}
		if o.Reason == "" {
			t.Errorf("Offer of %s: refused without a reason", what)
		}
		s.track(t, spec.Ref)
		_, err = s.vim.Create(ctx(t), sdk.CreateRequest{Part: spec})
		s.wantCode(t, "Create of "+what, err, sdk.CodeResourceExhausted)
		s.wantNotFound(t, spec.Ref, "after a refused Create")
	}
}

func (s *vimSuite) testCreateDescribe(t *testing.T) {
	before := s.free(t)
	spec := s.spec(s.ref("create"), s.vdu("master", sdk.NodeMaster, 1, 2), s.vdu("worker", sdk.NodeWorker, 2, 1))
	created := s.create(t, spec)
	s.checkPart(t, "Create", created, spec)
	s.checkRunning(t, "Create", created)
	described := s.describe(t, spec.Ref)
	s.checkPart(t, "Describe after Create", described, spec)
	s.checkRunning(t, "Describe after Create", described)
	s.sameIDs(t, "Describe after Create", described, created)
	if a := described.Allocated; a.Nodes != 0 && a.Nodes != len(described.Nodes) {
		t.Errorf("Describe: allocated %d nodes, has %d", a.Nodes, len(described.Nodes))
	}
	s.checkFreed(t, "Offer after Create", before, s.free(t), spec.Resources())
}

func (s *vimSuite) testCreateIdempotent(t *testing.T) {
	before := s.free(t)
	spec := s.standard(s.ref("idempotent"))
	first := s.create(t, spec)
	again, err := s.vim.Create(ctx(t), sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	s.checkPart(t, "second Create", again, spec)
	s.sameIDs(t, "second Create", again, first)

	// Retries may arrive together (a core replica and its successor).
	var wg sync.WaitGroup
	parts := make([]sdk.Part, 4)
	errs := make([]error, len(parts))
	for i := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i], errs[i] = s.vim.Create(ctx(t), sdk.CreateRequest{Part: spec})
		}()
	}
	wg.Wait()
	for i := range parts {
		if errs[i] != nil {
			t.Errorf("concurrent Create #%d: %v", i, errs[i])
			continue
		}
		s.sameIDs(t, fmt.Sprintf("concurrent Create #%d", i), parts[i], first)
	}
	described := s.describe(t, spec.Ref)
	s.checkPart(t, "Describe after repeated Creates", described, spec)
	s.sameIDs(t, "Describe after repeated Creates", described, first)
	s.checkFreed(t, "Offer after repeated Creates", before, s.free(t), spec.Resources())
}

func (s *vimSuite) testResize(t *testing.T) {
	spec := s.standard(s.ref("resize"))
	if s.opts.NoResize {
		s.create(t, spec)
		_, err := s.vim.Resize(ctx(t), sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", CPUs: 2})
		s.wantCode(t, "Resize (not supported)", err, sdk.CodeUnimplemented)
		return
	}
	s.create(t, spec)
	before := s.free(t)

	// The whole VDU.
	cpus, mem := 2*s.opts.Node.CPUs, 2*s.opts.Node.MemoryMB
	got, err := s.vim.Resize(ctx(t), sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", CPUs: cpus, MemoryMB: mem})
	if err != nil {
		t.Fatalf("Resize worker to %d CPUs, %d MB: %v", cpus, mem, err)
	}
	want := spec
	want.VDUs = append([]sdk.VDUSpec(nil), spec.VDUs...)
	want.VDUs[1].CPUs, want.VDUs[1].MemoryMB = cpus, mem
	s.checkPart(t, "Resize", got, want)
	s.checkPart(t, "Describe after Resize", s.describe(t, spec.Ref), want)
	grown := sdk.Resources{CPUs: 2 * (cpus - s.opts.Node.CPUs), MemoryMB: 2 * (mem - s.opts.Node.MemoryMB)}
	s.checkFreed(t, "Offer after Resize", before, s.free(t), grown)

	// One node: only its memory changes.
	got, err = s.vim.Resize(ctx(t), sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", Node: sdk.NodeName("worker", 1),
		MemoryMB: 3 * s.opts.Node.MemoryMB})
	if err != nil {
		t.Fatalf("Resize node worker-1: %v", err)
	}
	for _, n := range got.Nodes {
		wantMem := mem
		switch n.Name {
		case sdk.NodeName("worker", 1):
			wantMem = 3 * s.opts.Node.MemoryMB
		case sdk.NodeName("master", 1):
			wantMem = s.opts.Node.MemoryMB
		}
		if n.MemoryMB != wantMem {
			t.Errorf("Resize of worker-1 only: node %s has %d MB, want %d", n.Name, n.MemoryMB, wantMem)
		}
	}
	after := s.describe(t, spec.Ref)

	// Beyond the capacity: refused, nothing changes.
	_, err = s.vim.Resize(ctx(t), sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", CPUs: s.opts.Capacity.CPUs + 1})
	s.wantCode(t, "Resize beyond the capacity", err, sdk.CodeResourceExhausted)
	unchanged := s.describe(t, spec.Ref)
	for _, n := range unchanged.Nodes {
		for _, m := range after.Nodes {
			if m.Name == n.Name && (m.CPUs != n.CPUs || m.MemoryMB != n.MemoryMB) {
				t.Errorf("refused Resize changed node %s: %d CPUs, %d MB; was %d, %d", n.Name,
					n.CPUs, n.MemoryMB, m.CPUs, m.MemoryMB)
			}
		}
	}

	_, err = s.vim.Resize(ctx(t), sdk.ResizeRequest{Ref: s.ref("resize-unknown"), VDU: "worker", CPUs: 1})
	s.wantCode(t, "Resize of an unknown part", err, sdk.CodeNotFound)
	_, err = s.vim.Resize(ctx(t), sdk.ResizeRequest{Ref: spec.Ref, VDU: "no-such-vdu", CPUs: 1})
	s.wantCode(t, "Resize of an unknown VDU", err, sdk.CodeNotFound)
	_, err = s.vim.Resize(ctx(t), sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", Node: sdk.NodeName("worker", 99), CPUs: 1})
	s.wantCode(t, "Resize of an unknown node", err, sdk.CodeNotFound)
	_, err = s.vim.Resize(ctx(t), sdk.ResizeRequest{Ref: spec.Ref, VDU: "worker", CPUs: -1})
	s.wantCode(t, "Resize to -1 CPUs", err, sdk.CodeInvalidArgument)
}

func (s *vimSuite) testScale(t *testing.T) {
	spec := s.spec(s.ref("scale"), s.vdu("master", sdk.NodeMaster, 1, 1), s.vdu("worker", sdk.NodeWorker, 1, 1))
	created := s.create(t, spec)
	if s.opts.NoScale {
		_, err := s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: 2})
		s.wantCode(t, "Scale (not supported)", err, sdk.CodeUnimplemented)
		return
	}
	ids := s.nodeIDs(created)
	withWorkers := func(n int) sdk.PartSpec {
		w := spec
		w.VDUs = append([]sdk.VDUSpec(nil), spec.VDUs...)
		w.VDUs[1].Instances = n
		return w
	}

	got, err := s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: 3})
	if err != nil {
		t.Fatalf("Scale worker to 3: %v", err)
	}
	s.checkPart(t, "Scale up", got, withWorkers(3))
	s.checkRunning(t, "Scale up", got)
	s.checkPart(t, "Describe after Scale up", s.describe(t, spec.Ref), withWorkers(3))
	for name, id := range ids {
		if s.nodeIDs(got)[name] != id {
			t.Errorf("Scale up replaced node %s (ID %s, was %s)", name, s.nodeIDs(got)[name], id)
		}
	}

	got, err = s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: 1})
	if err != nil {
		t.Fatalf("Scale worker to 1: %v", err)
	}
	// Highest indexes go first: worker-1 and master-1 are the nodes made by Create.
	s.checkPart(t, "Scale down", got, withWorkers(1))
	s.sameIDs(t, "Scale down", got, created)
	s.checkPart(t, "Describe after Scale down", s.describe(t, spec.Ref), withWorkers(1))

	over := s.opts.Capacity.CPUs/s.opts.Node.CPUs + 1
	_, err = s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: over})
	s.wantCode(t, fmt.Sprintf("Scale to %d workers (beyond the capacity)", over), err, sdk.CodeResourceExhausted)
	after := s.describe(t, spec.Ref)
	s.checkPart(t, "Describe after a refused Scale", after, withWorkers(1))
	s.sameIDs(t, "Describe after a refused Scale", after, created)

	_, err = s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: s.ref("scale-unknown"), VDU: "worker", Instances: 2})
	s.wantCode(t, "Scale of an unknown part", err, sdk.CodeNotFound)
	_, err = s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: spec.Ref, VDU: "no-such-vdu", Instances: 2})
	s.wantCode(t, "Scale of an unknown VDU", err, sdk.CodeNotFound)
	_, err = s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: -1})
	s.wantCode(t, "Scale to -1 instances", err, sdk.CodeInvalidArgument)

	// A VDU may go to zero nodes; the part's last nodes may not.
	got, err = s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: spec.Ref, VDU: "worker", Instances: 0})
	if err != nil {
		t.Fatalf("Scale worker to 0: %v", err)
	}
	s.checkPart(t, "Scale to 0", got, withWorkers(0))
	_, err = s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: spec.Ref, VDU: "master", Instances: 0})
	s.wantCode(t, "Scale of the part's last nodes to 0", err, sdk.CodeFailedPrecondition)
	s.checkPart(t, "Describe after a refused Scale to no node", s.describe(t, spec.Ref), withWorkers(0))
}

func (s *vimSuite) testDelete(t *testing.T) {
	before := s.free(t)
	spec := s.standard(s.ref("delete"))
	s.create(t, spec)
	if err := s.vim.Delete(ctx(t), sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	s.wantNotFound(t, spec.Ref, "after Delete")
	_, err := s.vim.Metrics(ctx(t), sdk.MetricsRequest{Ref: spec.Ref})
	s.wantCode(t, "Metrics after Delete", err, sdk.CodeNotFound)
	if err := s.vim.Delete(ctx(t), sdk.DeleteRequest{Ref: spec.Ref}); err != nil {
		t.Errorf("second Delete: %v, want nil (idempotent)", err)
	}
	if err := s.vim.Delete(ctx(t), sdk.DeleteRequest{Ref: s.ref("delete-never-created")}); err != nil {
		t.Errorf("Delete of an unknown part: %v, want nil", err)
	}
	s.checkFreed(t, "Offer after Delete", before, s.free(t), sdk.Resources{})
}

func (s *vimSuite) testUnknownPart(t *testing.T) {
	ref := s.ref("unknown")
	s.wantNotFound(t, ref, "never created")
	_, err := s.vim.Metrics(ctx(t), sdk.MetricsRequest{Ref: ref})
	s.wantCode(t, "Metrics of an unknown part", err, sdk.CodeNotFound)
}

func (s *vimSuite) testInvalidArgument(t *testing.T) {
	before := s.free(t)
	bad := map[string]func(*sdk.PartSpec){
		"no VDUs":            func(p *sdk.PartSpec) { p.VDUs = nil },
		"zero CPUs":          func(p *sdk.PartSpec) { p.VDUs[0].CPUs = 0 },
		"zero memory":        func(p *sdk.PartSpec) { p.VDUs[0].MemoryMB = 0 },
		"negative instances": func(p *sdk.PartSpec) { p.VDUs[1].Instances = -1 },
		"no slice id":        func(p *sdk.PartSpec) { p.Ref.SliceID = "" },
		"no part id":         func(p *sdk.PartSpec) { p.Ref.PartID = "" },
		"duplicate VDU":      func(p *sdk.PartSpec) { p.VDUs[1].Name = p.VDUs[0].Name },
	}
	i := 0
	for what, breakIt := range bad {
		i++
		spec := s.standard(s.ref(fmt.Sprintf("invalid-%d", i)))
		spec.VDUs = append([]sdk.VDUSpec(nil), spec.VDUs...)
		breakIt(&spec)
		if spec.Ref.Validate() == nil {
			s.track(t, spec.Ref)
		}
		_, err := s.vim.Create(ctx(t), sdk.CreateRequest{Part: spec})
		s.wantCode(t, "Create with "+what, err, sdk.CodeInvalidArgument)
		_, err = s.vim.Offer(ctx(t), sdk.OfferRequest{Part: spec})
		s.wantCode(t, "Offer with "+what, err, sdk.CodeInvalidArgument)
		if spec.Ref.Validate() == nil {
			s.wantNotFound(t, spec.Ref, "after a Create with "+what)
		}
	}
	_, err := s.vim.Describe(ctx(t), sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: s.opts.SlicePrefix}})
	s.wantCode(t, "Describe without a part id", err, sdk.CodeInvalidArgument)
	err = s.vim.Delete(ctx(t), sdk.DeleteRequest{Ref: sdk.PartRef{PartID: "dc-part-1"}})
	s.wantCode(t, "Delete without a slice id", err, sdk.CodeInvalidArgument)
	_, err = s.vim.Metrics(ctx(t), sdk.MetricsRequest{Ref: sdk.PartRef{}})
	s.wantCode(t, "Metrics without ids", err, sdk.CodeInvalidArgument)
	s.checkFreed(t, "Offer after malformed requests", before, s.free(t), sdk.Resources{})
}

func (s *vimSuite) testConcurrentCreates(t *testing.T) {
	f := s.free(t)
	// Each part takes a fifth of what is free, so five fit and a sixth does not.
	one := sdk.VDUSpec{Name: "node", Type: sdk.NodeWorker, Image: "conformance-image", Instances: 1,
		CPUs: f.CPUs / vimRoom, MemoryMB: f.MemoryMB / vimRoom}
	if s.opts.Node.StorageGB > 0 {
		one.StorageGB = f.StorageGB / vimRoom
	}
	size := sdk.Resources{CPUs: one.CPUs, MemoryMB: one.MemoryMB, StorageGB: one.StorageGB, Nodes: 1}
	six := sdk.Resources{CPUs: 6 * size.CPUs, MemoryMB: 6 * size.MemoryMB, StorageGB: 6 * size.StorageGB}
	if one.CPUs < 1 || one.MemoryMB < 1 {
		t.Fatalf("free capacity %+v has no room for %d parts of one node", f, vimRoom)
	}
	if ok, _ := six.Fits(f); ok {
		t.Fatalf("free capacity %+v cannot be split so that %d parts fit and %d do not", f, vimRoom, vimRoom+1)
	}
	var wg sync.WaitGroup
	parts := make([]sdk.Part, vimRacers)
	errs := make([]error, vimRacers)
	specs := make([]sdk.PartSpec, vimRacers)
	for i := range specs {
		specs[i] = s.spec(s.ref(fmt.Sprintf("race-%02d", i)), one)
		s.track(t, specs[i].Ref)
	}
	for i := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i], errs[i] = s.vim.Create(ctx(t), sdk.CreateRequest{Part: specs[i]})
		}()
	}
	wg.Wait()
	var won sdk.Resources
	winners := 0
	for i, err := range errs {
		if err == nil {
			winners++
			s.checkPart(t, fmt.Sprintf("racing Create %s", specs[i].Ref), parts[i], specs[i])
			won = won.Add(size)
			continue
		}
		s.wantCode(t, fmt.Sprintf("racing Create %s", specs[i].Ref), err, sdk.CodeResourceExhausted)
		s.wantNotFound(t, specs[i].Ref, "its Create lost the race")
	}
	t.Logf("%d of %d concurrent creates won, each %+v, against free %+v", winners, vimRacers, size, f)
	if ok, why := won.Fits(f); !ok {
		t.Errorf("concurrent creates exceeded the capacity: %d parts made (%s)", winners, why)
	}
	if winners != vimRoom {
		t.Errorf("concurrent creates: %d succeeded, want %d (room for exactly %d)", winners, vimRoom, vimRoom)
	}
	s.checkFreed(t, "Offer after concurrent creates", f, s.free(t), won)
}

func (s *vimSuite) testMetrics(t *testing.T) {
	spec := s.standard(s.ref("metrics"))
	part := s.create(t, spec)
	known := map[string]bool{sdk.MetricCPUPercent: true, sdk.MetricMemoryUsedMB: true, sdk.MetricMemoryPct: true}
	for _, m := range s.opts.Metrics {
		known[m] = true
	}
	types := map[string]string{}
	for _, n := range part.Nodes {
		types[n.Name] = n.Type
	}
	samples, err := s.vim.Metrics(ctx(t), sdk.MetricsRequest{Ref: spec.Ref})
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	have := map[string]map[string]bool{}
	for _, x := range samples {
		typ, ok := types[x.Node]
		switch {
		case !ok:
			t.Errorf("Metrics: sample of unknown node %q", x.Node)
			continue
		case !known[x.Metric]:
			t.Errorf("Metrics: node %s: unknown metric %q", x.Node, x.Metric)
		case x.NodeType != typ:
			t.Errorf("Metrics: node %s: node type %q, want %q", x.Node, x.NodeType, typ)
		case x.Time.IsZero():
			t.Errorf("Metrics: node %s: %s has no time", x.Node, x.Metric)
		case x.Value < 0:
			t.Errorf("Metrics: node %s: %s = %v, negative", x.Node, x.Metric, x.Value)
		case (x.Metric == sdk.MetricCPUPercent || x.Metric == sdk.MetricMemoryPct) && x.Value > 100:
			t.Errorf("Metrics: node %s: %s = %v, above 100", x.Node, x.Metric, x.Value)
		}
		if have[x.Node] == nil {
			have[x.Node] = map[string]bool{}
		}
		have[x.Node][x.Metric] = true
	}
	for _, n := range part.Nodes {
		for _, m := range s.opts.Metrics {
			if !have[n.Name][m] {
				t.Errorf("Metrics: node %s has no %s sample", n.Name, m)
			}
		}
	}

	only := s.opts.Metrics[0]
	samples, err = s.vim.Metrics(ctx(t), sdk.MetricsRequest{Ref: spec.Ref, Names: []string{only}})
	if err != nil {
		t.Fatalf("Metrics(%s): %v", only, err)
	}
	got := map[string]bool{}
	for _, x := range samples {
		if x.Metric != only {
			t.Errorf("Metrics(%s): got a %s sample of %s", only, x.Metric, x.Node)
		}
		got[x.Node] = true
	}
	if len(got) != len(part.Nodes) {
		t.Errorf("Metrics(%s): samples of %d nodes, want %d", only, len(got), len(part.Nodes))
	}
	_, err = s.vim.Metrics(ctx(t), sdk.MetricsRequest{Ref: spec.Ref, Names: []string{only, "NO_SUCH_METRIC"}})
	s.wantCode(t, "Metrics of an unknown metric", err, sdk.CodeInvalidArgument)
}

// sampleKey is what a batch and Metrics must agree on for a sample; values may move
// between two readings.
type sampleKey struct{ node, nodeType, metric string }

func sampleKeys(samples []sdk.Sample) map[sampleKey]int {
	out := map[sampleKey]int{}
	for _, x := range samples {
		out[sampleKey{x.Node, x.NodeType, x.Metric}]++
	}
	return out
}

func (s *vimSuite) testMetricsBatch(t *testing.T) {
	b, ok := s.vim.(sdk.MetricsBatcher)
	if !ok {
		t.Fatalf("the SDK's VIM client %T does not serve MetricsBatch", s.vim)
	}
	spec := s.spec(s.ref("batch"), s.vdu("worker", sdk.NodeWorker, 2, 1))
	s.create(t, spec)
	only := s.opts.Metrics[0]
	reqs := []sdk.MetricsRequest{
		{Ref: spec.Ref},
		{Ref: s.ref("batch-unknown")},
		{Ref: spec.Ref, Names: []string{only}},
		{Ref: sdk.PartRef{SliceID: s.opts.SlicePrefix}},
		{Ref: spec.Ref, Names: []string{"NO_SUCH_METRIC"}},
	}
	// A real node's readings can change between the batch and the part's own call (a
	// guest's balloon driver starts reporting its memory a few seconds after boot, which
	// adds a metric), so a mismatch is taken again, up to three times: a batch that
	// never agrees still fails.
	var got []sdk.PartMetrics
	var problems []string
	for attempt := 0; attempt < 3; attempt++ {
		var err error
		got, err = b.MetricsBatch(ctx(t), sdk.MetricsBatchRequest{Parts: reqs})
		if err != nil {
			t.Fatalf("MetricsBatch: %v (one part's failure must not fail the batch)", err)
		}
		if len(got) != len(reqs) {
			t.Fatalf("MetricsBatch: %d answers for %d parts", len(got), len(reqs))
		}
		if problems = s.batchAgrees(t, reqs, got); len(problems) == 0 {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
	if c := sdk.CodeOf(got[1].Err); c != sdk.CodeNotFound {
		t.Errorf("MetricsBatch of an unknown part: %v (%s), want NotFound", got[1].Err, c)
	}
	if c := sdk.CodeOf(got[3].Err); c != sdk.CodeInvalidArgument {
		t.Errorf("MetricsBatch of a ref without part id: %v (%s), want InvalidArgument", got[3].Err, c)
	}
	if c := sdk.CodeOf(got[4].Err); c != sdk.CodeInvalidArgument {
		t.Errorf("MetricsBatch of an unknown metric: %v (%s), want InvalidArgument", got[4].Err, c)
	}
	if len(got[0].Samples) == 0 {
		t.Errorf("MetricsBatch of a running part: no samples")
	}
}

// batchAgrees compares each answer of a MetricsBatch with what Metrics of that part
// alone gives now, and returns what differs.
func (s *vimSuite) batchAgrees(t *testing.T, reqs []sdk.MetricsRequest, got []sdk.PartMetrics) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for i, r := range reqs {
		g := got[i]
		if g.Ref != r.Ref {
			fail("MetricsBatch answer %d is of part %q, want %q", i, g.Ref, r.Ref)
		}
		want, werr := s.vim.Metrics(ctx(t), sdk.MetricsRequest{Ref: r.Ref, Names: r.Names})
		if sdk.CodeOf(g.Err) != sdk.CodeOf(werr) {
			fail("MetricsBatch %q (names %v): error %v (%s), Metrics says %v (%s)", r.Ref, r.Names,
				g.Err, sdk.CodeOf(g.Err), werr, sdk.CodeOf(werr))
			continue
		}
		if g.Err != nil {
			if len(g.Samples) > 0 {
				fail("MetricsBatch %q: %d samples beside its error", r.Ref, len(g.Samples))
			}
			continue
		}
		gk, wk := sampleKeys(g.Samples), sampleKeys(want)
		for k, n := range wk {
			if gk[k] != n {
				fail("MetricsBatch %q (names %v): %d samples of %s %s, Metrics gives %d", r.Ref, r.Names, gk[k], k.node, k.metric, n)
			}
		}
		for k, n := range gk {
			if wk[k] == 0 {
				fail("MetricsBatch %q (names %v): %d samples of %s %s (type %q), Metrics gives none", r.Ref, r.Names, n, k.node, k.metric, k.nodeType)
			}
		}
		for _, x := range g.Samples {
			if x.Time.IsZero() || x.Value < 0 {
				fail("MetricsBatch %q: node %s: %s = %v at %s", r.Ref, x.Node, x.Metric, x.Value, x.Time)
			}
		}
	}
	return problems
}
