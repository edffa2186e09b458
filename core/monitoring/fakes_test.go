package monitoring

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
)

// The collector's own tests and benchmarks run against in-process fakes of the VIM and
// Monitor plugins (the real ones run in TestMonitoring) over a real embedded store. This
// file uses the collector's exported API only.

// fakeVIM measures every part as three nodes (master-1, worker-1, worker-2), each
// metric asked (CPU and memory for none) one sample, and records the calls. It
// serves sdk.Plugin too, to be served over gRPC.
type fakeVIM struct {
	sdk.VIM // the calls other than Metrics are never made

	mu      sync.Mutex
	batches [][]sdk.MetricsRequest // MetricsBatch calls
	singles int                    // Metrics calls
	fail    map[sdk.PartRef]error  // a part's own failure
	down    error                  // every call's failure
}

var nodes3 = []struct{ name, typ string }{{"master-1", sdk.NodeMaster}, {"worker-1", sdk.NodeWorker}, {"worker-2", sdk.NodeWorker}}

var defaultMetrics = []string{sdk.MetricCPUPercent, sdk.MetricMemoryUsedMB}

func (f *fakeVIM) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "fake-vim", Kinds: []sdk.Kind{sdk.KindVIM}}, nil
}
func (f *fakeVIM) ConfigSchema(context.Context) (sdk.ConfigSchema, error) {
	return sdk.ConfigSchema{}, nil
}
func (f *fakeVIM) Configure(context.Context, sdk.Config) error { return nil }

func (f *fakeVIM) Metrics(_ context.Context, req sdk.MetricsRequest) ([]sdk.Sample, error) {
	ref := req.Ref
	names := req.Names
	f.mu.Lock()
	f.singles++
	err := f.down
	if err == nil {
		err = f.fail[ref]
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return samplesOf(names), nil
}

func samplesOf(names []string) []sdk.Sample {
	if len(names) == 0 {
		names = defaultMetrics
	}
	out := make([]sdk.Sample, 0, len(nodes3)*len(names))
	for i, n := range nodes3 {
		for _, m := range names {
			out = append(out, sdk.Sample{Node: n.name, NodeType: n.typ, Metric: m, Value: float64(10 * (i + 1))})
		}
	}
	return out
}

func (f *fakeVIM) MetricsBatch(ctx context.Context, req sdk.MetricsBatchRequest) ([]sdk.PartMetrics, error) {
	reqs := req.Parts
	f.mu.Lock()
	f.batches = append(f.batches, append([]sdk.MetricsRequest(nil), reqs...))
	down := f.down
	f.mu.Unlock()
	if down != nil {
		return nil, down
	}
	out := make([]sdk.PartMetrics, len(reqs))
	for i, r := range reqs {
		f.mu.Lock()
		err := f.fail[r.Ref]
		f.mu.Unlock()
		out[i] = sdk.PartMetrics{Ref: r.Ref, Err: err}
		if err == nil {
			out[i].Samples = samplesOf(r.Names)
		}
	}
	return out, nil
}

// calls returns the batches since the last call, and forgets them.
func (f *fakeVIM) calls() [][]sdk.MetricsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.batches
	f.batches = nil
	return out
}

// fakeMonitor keeps what is written.
type fakeMonitor struct {
	sdk.Monitor // Query and Health are never called here

	mu     sync.Mutex
	writes int
	points []sdk.Point
	count  int
	keep   bool // keep the points (tests), or only count them (benchmarks)
	// unflushed counts the points written since the last Flush: as monitor-influx
	// does, a Write only queues them.
	unflushed int
}

func (m *fakeMonitor) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	m.unflushed = 0
	m.mu.Unlock()
	return nil
}

// pending returns how many written points are not flushed yet.
func (m *fakeMonitor) pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unflushed
}

func (m *fakeMonitor) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "fake-monitor", Kinds: []sdk.Kind{sdk.KindMonitor}}, nil
}
func (m *fakeMonitor) ConfigSchema(context.Context) (sdk.ConfigSchema, error) {
	return sdk.ConfigSchema{}, nil
}
func (m *fakeMonitor) Configure(context.Context, sdk.Config) error { return nil }

func (m *fakeMonitor) Write(ctx context.Context, req sdk.WriteRequest) error {
	points := req.Points
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	m.count += len(points)
	m.unflushed += len(points)
	if m.keep {
		m.points = append(m.points, points...)
	}
	return nil
}

// take returns the writes and points since the last call, and forgets them.
func (m *fakeMonitor) take() (int, []sdk.Point) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, p := m.writes, m.points
	m.writes, m.points = 0, nil
	return w, p
}

// fakePlugins hands out one VIM for every provider, and the monitor.
type fakePlugins struct {
	vim sdk.VIM
	mon sdk.Monitor
}

func (p fakePlugins) VIM(context.Context, string) (sdk.VIM, error) { return p.vim, nil }
func (p fakePlugins) Monitor(context.Context) (sdk.Monitor, error) { return p.mon, nil }

// partSpec is one DC part of a test slice.
type partSpec struct {
	name, provider string
	// monitoring is the part's monitoring-parameters in YAML flow style; empty for none.
	monitoring string
}

// storeSlice stores a Ready slice of Ready parts (three nodes each) and returns what the
// engine would announce of it.
func storeSlice(tb testing.TB, st *store.Store, name string, parts ...partSpec) *sro.View {
	tb.Helper()
	ctx := context.Background()
	var doc strings.Builder
	fmt.Fprintf(&doc, "slices:\n  sliced:\n    id: %s\n    slice-requirements: {elasticity: true, links-optional: true}\n    slice-parts:\n", name)
	for _, p := range parts {
		fmt.Fprintf(&doc, "      - dc-slice-part:\n          name: %s\n          type: DC\n          location: EUROPE.SPAIN\n", p.name)
		if p.monitoring != "" {
			fmt.Fprintf(&doc, "          monitoring-parameters: %s\n", p.monitoring)
		}
		doc.WriteString("          VIM:\n            name: xen-vim\n            vdus:\n" +
			"              - vdu: {name: vm, instance-count: 3, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}\n")
	}
	sl := &store.Slice{ID: store.NewID(name + "-"), Name: name, Tenant: "alice", State: store.SlicePending, Spec: doc.String()}
	if err := st.CreateSlice(ctx, sl, store.Event{Type: "slice.accepted"}); err != nil {
		tb.Fatal(err)
	}
	var recs []*store.Part
	for _, p := range parts {
		recs = append(recs, partRecord(sl.ID, p.name, p.provider, store.PartReady))
	}
	if err := st.SavePlan(ctx, sl, recs, nil, store.SliceReady); err != nil {
		tb.Fatal(err)
	}
	stored, err := st.ListParts(ctx, sl.ID)
	if err != nil {
		tb.Fatal(err)
	}
	got, err := st.GetSlice(ctx, sl.ID)
	if err != nil {
		tb.Fatal(err)
	}
	return viewOf(got, stored)
}

// viewOf is what the engine announces of a slice.
func viewOf(sl *store.Slice, parts []*store.Part) *sro.View {
	return &sro.View{Slice: sl, Parts: parts}
}

// partRecord is the record of a part of three nodes.
func partRecord(slice, name, provider string, state store.PartState) *store.Part {
	obs := &sdk.Part{Ref: sdk.PartRef{SliceID: slice, PartID: name}, State: sdk.StateReady}
	for _, n := range nodes3 {
		obs.Nodes = append(obs.Nodes, sdk.Node{Name: n.name, Type: n.typ, State: sdk.StateRunning})
	}
	return &store.Part{SliceID: slice, Name: name, Provider: provider, State: state, Observed: obs}
}

// processCPU is the CPU time this process used so far, user and system, every
// goroutine's.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openStore opens an embedded store of its own for the test.
func openStore(tb testing.TB) *store.Store {
	tb.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// eventually polls ok until it holds, failing after a minute.
func eventually(tb testing.TB, what string, ok func() error) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := ok()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pluginsVia hands out vim and mon directly ("inproc"), or served through go-plugin's
// in-memory gRPC connection ("grpc"), as the plugin host hands out real plugins.
func pluginsVia(tb testing.TB, via string, vim *fakeVIM, mon *fakeMonitor) Plugins {
	tb.Helper()
	if via != "grpc" {
		return fakePlugins{vim: vim, mon: mon}
	}
	v, err := plugintest.InProcess(tb, vim, sdk.Provider{Name: "P"}, []byte("{}")).VIM()
	if err != nil {
		tb.Fatal(err)
	}
	m, err := plugintest.InProcess(tb, mon, sdk.Provider{Name: "monitor"}, []byte("{}")).Monitor()
	if err != nil {
		tb.Fatal(err)
	}
	return fakePlugins{vim: v, mon: m}
}
