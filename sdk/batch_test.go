package sdk

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	pb "github.com/necos/necos/sdk/proto/pluginv1"
	"google.golang.org/grpc"
)

// fakeVIM measures parts named "p<n>" of any slice: n nodes, one sample each. Other
// parts are unknown. Only Metrics is implemented.
type fakeVIM struct {
	VIM // the other calls are never made here
	at  time.Time

	metricsCalls atomic.Int32
}

func (f *fakeVIM) Info(context.Context) (Info, error) { return Info{Name: "fake"}, nil }
func (f *fakeVIM) ConfigSchema(context.Context) (ConfigSchema, error) {
	return ConfigSchema{}, nil
}
func (f *fakeVIM) Configure(context.Context, Config) error { return nil }

func (f *fakeVIM) Metrics(_ context.Context, req MetricsRequest) ([]Sample, error) {
	f.metricsCalls.Add(1)
	ref, names := req.Ref, req.Names
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var n int
	if _, err := fmt.Sscanf(ref.PartID, "p%d", &n); err != nil {
		return nil, Errorf(CodeNotFound, "part %s not found", ref)
	}
	metric := MetricCPUPercent
	if len(names) > 0 {
		metric = names[0]
	}
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{Node: NodeName("vm", i+1), NodeType: NodeWorker, Metric: metric, Value: float64(i), Time: f.at}
	}
	return out, nil
}

// batchVIM is fakeVIM with a MetricsBatcher that answers through its Metrics.
type batchVIM struct {
	*fakeVIM
	batchCalls atomic.Int32
	// wrong makes MetricsBatch drop its last answer.
	wrong bool
}

func (b *batchVIM) MetricsBatch(ctx context.Context, req MetricsBatchRequest) ([]PartMetrics, error) {
	b.batchCalls.Add(1)
	out := MetricsEach(ctx, b.fakeVIM, req.Parts)
	if b.wrong {
		out = out[:len(out)-1]
	}
	return out, nil
}

// countBatch counts the MetricsBatch calls a client sends.
type countBatch struct {
	pb.VIMClient
	n *atomic.Int32
}

func (c countBatch) MetricsBatch(ctx context.Context, in *pb.MetricsBatchRequest, opts ...grpc.CallOption) (*pb.MetricsBatchResponse, error) {
	c.n.Add(1)
	return c.VIMClient.MetricsBatch(ctx, in, opts...)
}

// vimOver connects to a VIM served by register through go-plugin's in-memory gRPC
// connection, and returns the SDK's client of it, counting its MetricsBatch calls in
// sent.
func vimOver(t *testing.T, register func(*grpc.Server), sent *atomic.Int32) VIM {
	t.Helper()
	set := plugin.PluginSet{string(KindVIM): &grpcPlugin{register: register,
		client: func(c *grpc.ClientConn) any { return &vimClient{c: countBatch{pb.NewVIMClient(c), sent}} }}}
	gc, _ := plugin.TestPluginGRPCConn(t, false, set)
	t.Cleanup(func() { _ = gc.Close() })
	raw, err := gc.Dispense(string(KindVIM))
	if err != nil {
		t.Fatal(err)
	}
	return raw.(VIM)
}

// vimServed is vimOver with the SDK's own server of impl.
func vimServed(t *testing.T, impl VIM) VIM {
	return vimOver(t, func(s *grpc.Server) { pb.RegisterVIMServer(s, &vimServer{impl: impl}) }, new(atomic.Int32))
}

// vimBeforeBatch serves impl as a plugin built before MetricsBatch existed: its
// service has no such method, and gRPC answers Unimplemented for it. sent counts the
// client's attempts at it.
func vimBeforeBatch(t *testing.T, impl VIM, sent *atomic.Int32) VIM {
	return vimOver(t, func(s *grpc.Server) {
		desc := pb.VIM_ServiceDesc
		desc.Methods = nil
		for _, m := range pb.VIM_ServiceDesc.Methods {
			if m.MethodName != "MetricsBatch" {
				desc.Methods = append(desc.Methods, m)
			}
		}
		s.RegisterService(&desc, &vimServer{impl: impl})
	}, sent)
}

func batchRequests() []MetricsRequest {
	return []MetricsRequest{
		{Ref: PartRef{SliceID: "s1", PartID: "p2"}},
		{Ref: PartRef{SliceID: "s2", PartID: "gone"}},
		{Ref: PartRef{SliceID: "s3", PartID: "p1"}, Names: []string{MetricMemoryUsedMB}},
		{Ref: PartRef{SliceID: "", PartID: "p1"}},
	}
}

// checkBatch checks the answers to batchRequests against what Metrics of each part
// says.
func checkBatch(t *testing.T, v VIM, got []PartMetrics, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("MetricsBatch: %v", err)
	}
	reqs := batchRequests()
	if len(got) != len(reqs) {
		t.Fatalf("%d answers for %d parts", len(got), len(reqs))
	}
	for i, r := range reqs {
		want, werr := v.Metrics(context.Background(), r)
		g := got[i]
		if g.Ref != r.Ref {
			t.Errorf("answer %d is of %s, want %s", i, g.Ref, r.Ref)
		}
		if CodeOf(g.Err) != CodeOf(werr) {
			t.Errorf("%s: error %v (%s), Metrics says %v (%s)", r.Ref, g.Err, CodeOf(g.Err), werr, CodeOf(werr))
		}
		if len(g.Samples) != len(want) {
			t.Errorf("%s: %d samples, Metrics says %d", r.Ref, len(g.Samples), len(want))
			continue
		}
		for j := range want {
			if w, s := want[j], g.Samples[j]; s.Node != w.Node || s.NodeType != w.NodeType || s.Metric != w.Metric ||
				s.Value != w.Value || !s.Time.Equal(w.Time) {
				t.Errorf("%s: sample %d is %+v, Metrics says %+v", r.Ref, j, s, w)
			}
		}
	}
	if CodeOf(got[1].Err) != CodeNotFound || CodeOf(got[3].Err) != CodeInvalidArgument {
		t.Errorf("per-part errors: %v, %v; want NotFound and InvalidArgument", got[1].Err, got[3].Err)
	}
}

func TestMetricsBatch(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	ctx := context.Background()

	t.Run("plugin without a batcher is served part by part", func(t *testing.T) {
		impl := &fakeVIM{at: at}
		v := vimServed(t, impl)
		got, err := v.(MetricsBatcher).MetricsBatch(ctx, MetricsBatchRequest{Parts: batchRequests()})
		checkBatch(t, v, got, err)
	})

	t.Run("plugin's batcher answers", func(t *testing.T) {
		impl := &batchVIM{fakeVIM: &fakeVIM{at: at}}
		v := vimServed(t, impl)
		got, err := v.(MetricsBatcher).MetricsBatch(ctx, MetricsBatchRequest{Parts: batchRequests()})
		checkBatch(t, v, got, err)
		if n := impl.batchCalls.Load(); n != 1 {
			t.Errorf("the plugin's MetricsBatch was called %d times, want 1", n)
		}
		if n := impl.metricsCalls.Load(); n != 3+3 {
			// The 3 valid parts, through the batcher and again through checkBatch's own
			// Metrics calls: the part without a slice id never reaches the plugin.
			t.Errorf("the plugin's Metrics was called %d times, want 6", n)
		}
	})

	t.Run("a batcher's answers that do not match are an internal error", func(t *testing.T) {
		v := vimServed(t, &batchVIM{fakeVIM: &fakeVIM{at: at}, wrong: true})
		_, err := v.(MetricsBatcher).MetricsBatch(ctx, MetricsBatchRequest{Parts: batchRequests()})
		if CodeOf(err) != CodeInternal {
			t.Errorf("short answer: %v (%s), want Internal", err, CodeOf(err))
		}
	})

	t.Run("more than MaxMetricsBatch parts are refused; MetricsBatch splits them", func(t *testing.T) {
		impl := &batchVIM{fakeVIM: &fakeVIM{at: at}}
		v := vimServed(t, impl)
		reqs := make([]MetricsRequest, 2*MaxMetricsBatch+1)
		for i := range reqs {
			reqs[i].Ref = PartRef{SliceID: fmt.Sprint("s", i), PartID: "p1"}
		}
		if _, err := v.(MetricsBatcher).MetricsBatch(ctx, MetricsBatchRequest{Parts: reqs}); CodeOf(err) != CodeInvalidArgument {
			t.Errorf("%d parts in one call: %v, want InvalidArgument", len(reqs), err)
		}
		got, err := MetricsBatch(ctx, v, reqs)
		if err != nil || len(got) != len(reqs) {
			t.Fatalf("MetricsBatch of %d parts: %d answers, %v", len(reqs), len(got), err)
		}
		for i := range reqs {
			if got[i].Ref != reqs[i].Ref || got[i].Err != nil || len(got[i].Samples) != 1 {
				t.Fatalf("answer %d: %+v", i, got[i])
			}
		}
		if n := impl.batchCalls.Load(); n != 3 {
			t.Errorf("%d batch calls for %d parts, want 3", n, len(reqs))
		}
	})

	t.Run("plugin built before MetricsBatch: measured part by part, remembered", func(t *testing.T) {
		impl := &fakeVIM{at: at}
		var refused atomic.Int32
		v := vimBeforeBatch(t, impl, &refused)
		for range 3 {
			got, err := MetricsBatch(ctx, v, batchRequests())
			checkBatch(t, v, got, err)
		}
		if n := refused.Load(); n != 1 {
			t.Errorf("MetricsBatch was tried %d times on a plugin that lacks it, want once", n)
		}
	})

	t.Run("a VIM that is no batcher is measured part by part", func(t *testing.T) {
		impl := &fakeVIM{at: at}
		got, err := MetricsBatch(ctx, impl, batchRequests())
		checkBatch(t, impl, got, err)
	})
}

// TestMetricsEachBounded checks that MetricsEach runs a few calls at a time, not one
// per part at once.
func TestMetricsEachBounded(t *testing.T) {
	v := &slowVIM{release: make(chan struct{})}
	reqs := make([]MetricsRequest, 4*metricsEachParallel)
	for i := range reqs {
		reqs[i].Ref = PartRef{SliceID: "s", PartID: fmt.Sprint(i)}
	}
	done := make(chan []PartMetrics)
	go func() { done <- MetricsEach(context.Background(), v, reqs) }()
	for v.running() < metricsEachParallel {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // room for a call beyond the bound to start
	if n := v.running(); n != metricsEachParallel {
		t.Errorf("%d calls at once, want %d", n, metricsEachParallel)
	}
	close(v.release)
	got := <-done
	for i, g := range got {
		if g.Ref != reqs[i].Ref || g.Err != nil {
			t.Errorf("answer %d: %+v", i, g)
		}
	}
}

type slowVIM struct {
	VIM
	release chan struct{}
	mu      sync.Mutex
	now     int
}

func (s *slowVIM) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *slowVIM) Metrics(context.Context, MetricsRequest) ([]Sample, error) {
	s.mu.Lock()
	s.now++
	s.mu.Unlock()
	<-s.release
	s.mu.Lock()
	s.now--
	s.mu.Unlock()
	return nil, nil
}
