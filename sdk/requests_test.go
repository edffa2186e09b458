package sdk

import (
	"context"
	"strings"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"
)

// TestRequestValidate checks that each request type refuses what is malformed with
// CodeInvalidArgument, naming the field, and accepts a well-formed request.
func TestRequestValidate(t *testing.T) {
	ref := PartRef{SliceID: "s", PartID: "p"}
	spec := PartSpec{Ref: ref, VDUs: []VDUSpec{{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 256}}}
	link := LinkSpec{Ref: LinkRef{SliceID: "s", LinkID: "l"},
		End1: LinkEnd{Site: "a", Underlay: "127.0.0.1", Bridge: "br-a", Netns: "a"},
		End2: LinkEnd{Site: "b", Underlay: "127.0.0.2", Bridge: "br-b", Netns: "b"}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		req  interface{ Validate() error }
		// field is what the error names; empty means the request is valid.
		field string
	}{
		{"offer", OfferRequest{Part: spec}, ""},
		{"offer without a part id", OfferRequest{Part: PartSpec{Ref: PartRef{SliceID: "s"}, VDUs: spec.VDUs}}, "ref"},
		{"create without VDUs", CreateRequest{Part: PartSpec{Ref: ref}}, "vdus"},
		{"create", CreateRequest{Part: spec}, ""},
		{"describe", DescribeRequest{Ref: ref}, ""},
		{"describe without a part id", DescribeRequest{Ref: PartRef{SliceID: "s"}}, "ref.part_id"},
		{"delete without a slice id", DeleteRequest{Ref: PartRef{PartID: "p"}}, "ref.slice_id"},
		{"resize", ResizeRequest{Ref: ref, VDU: "vm", CPUs: 2}, ""},
		{"resize without a VDU", ResizeRequest{Ref: ref, CPUs: 2}, "vdu"},
		{"resize to -1 CPUs", ResizeRequest{Ref: ref, VDU: "vm", CPUs: -1}, "cpus"},
		{"resize to -1 MB", ResizeRequest{Ref: ref, VDU: "vm", MemoryMB: -1}, "memory_mb"},
		{"resize of nothing", ResizeRequest{Ref: ref, VDU: "vm"}, "at least one"},
		{"scale to 0", ScaleRequest{Ref: ref, VDU: "vm"}, ""},
		{"scale to -1", ScaleRequest{Ref: ref, VDU: "vm", Instances: -1}, "instances"},
		{"scale without a VDU", ScaleRequest{Ref: ref, Instances: 1}, "vdu"},
		{"metrics", MetricsRequest{Ref: ref, Names: []string{MetricCPUPercent}}, ""},
		{"metrics with an empty name", MetricsRequest{Ref: ref, Names: []string{MetricCPUPercent, ""}}, "names[1]"},
		{"metrics without ids", MetricsRequest{}, "ref.slice_id"},
		{"batch of bad parts", MetricsBatchRequest{Parts: []MetricsRequest{{}}}, ""},
		{"batch too big", MetricsBatchRequest{Parts: make([]MetricsRequest, MaxMetricsBatch+1)}, "parts"},
		{"deploy", DeployRequest{ServiceID: "svc", Part: Part{Ref: ref}, Work: []NodeWork{{Node: "vm", Commands: []string{"true"}}}}, ""},
		{"deploy without a service", DeployRequest{Part: Part{Ref: ref}}, "service_id"},
		{"deploy of an empty command", DeployRequest{ServiceID: "svc", Part: Part{Ref: ref}, Work: []NodeWork{{Node: "vm", Commands: []string{" "}}}}, "work[0].commands[0]"},
		{"undeploy", UndeployRequest{ServiceID: "svc", Part: Part{Ref: ref}}, ""},
		{"undeploy without a part", UndeployRequest{ServiceID: "svc"}, "part.ref.slice_id"},
		{"deploy status without a service", DeployStatusRequest{Ref: ref}, "service_id"},
		{"offer link", OfferLinkRequest{Link: link}, ""},
		{"connect", ConnectRequest{Link: link}, ""},
		{"connect without a link id", ConnectRequest{Link: func() LinkSpec { l := link; l.Ref.LinkID = ""; return l }()}, "ref.link_id"},
		{"connect with a long bridge", ConnectRequest{Link: func() LinkSpec { l := link; l.End2.Bridge = "a-bridge-too-long"; return l }()}, "end2.bridge"},
		{"connect with a bad underlay", OfferLinkRequest{Link: func() LinkSpec { l := link; l.End1.Underlay = "nope"; return l }()}, "end1.underlay"},
		{"connect with a bad netns", ConnectRequest{Link: func() LinkSpec { l := link; l.End1.Netns = "a/b"; return l }()}, "end1.netns"},
		{"connect of one end twice", ConnectRequest{Link: func() LinkSpec { l := link; l.End2 = l.End1; return l }()}, "end2"},
		{"connect with a VNI too big", ConnectRequest{Link: func() LinkSpec { l := link; l.VNI = 1 << 24; return l }()}, "vni"},
		{"describe link", DescribeLinkRequest{Ref: link.Ref}, ""},
		{"describe link without ids", DescribeLinkRequest{}, "ref.slice_id"},
		{"disconnect without a slice id", DisconnectRequest{Ref: LinkRef{LinkID: "l"}}, "ref.slice_id"},
		{"release sites", ReleaseSitesRequest{Sites: []LinkEnd{{Site: "a", Netns: "a"}}}, ""},
		{"release an unnamed site", ReleaseSitesRequest{Sites: []LinkEnd{{Netns: "a"}}}, "sites[0].site"},
		{"write", WriteRequest{Points: []Point{{Metric: "m", Tags: map[string]string{"k": "v"}, Value: 1}}}, ""},
		{"write of a point without a metric", WriteRequest{Points: []Point{{Metric: "m"}, {}}}, "points[1].metric"},
		{"write of an empty tag key", WriteRequest{Points: []Point{{Metric: "m", Tags: map[string]string{"": "v"}}}}, "points[0].tags"},
		{"query", Query{Metric: "m", Start: t0, End: t0.Add(time.Second), Last: 1}, ""},
		{"query without a metric", Query{}, "metric"},
		{"query of -1 points", Query{Metric: "m", Last: -1}, "last"},
		{"query ending before it starts", Query{Metric: "m", Start: t0, End: t0.Add(-time.Second)}, "end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tc.field == "":
			case CodeOf(err) != CodeInvalidArgument:
				t.Fatalf("Validate: %v (code %s), want InvalidArgument", err, CodeOf(err))
			case !strings.Contains(err.Error(), tc.field):
				t.Fatalf("Validate: %q does not name %q", err, tc.field)
			}
		})
	}
}

// recordingVIM records the calls that reach it; every call succeeds.
type recordingVIM struct {
	fakeVIM
	calls []string
}

func (v *recordingVIM) Offer(context.Context, OfferRequest) (Offer, error) {
	v.calls = append(v.calls, "Offer")
	return Offer{Accepted: true}, nil
}

func (v *recordingVIM) Describe(context.Context, DescribeRequest) (Part, error) {
	v.calls = append(v.calls, "Describe")
	return Part{}, nil
}

func (v *recordingVIM) Scale(context.Context, ScaleRequest) (Part, error) {
	v.calls = append(v.calls, "Scale")
	return Part{}, nil
}

// TestServerValidates checks that a bad request is refused by the SDK's server before
// the plugin sees it, whatever the client: the wire client below is bare, without the
// SDK client's own check.
func TestServerValidates(t *testing.T) {
	impl := &recordingVIM{}
	gc, _ := plugin.TestPluginGRPCConn(t, false, PluginSet(impl))
	t.Cleanup(func() { _ = gc.Close() })
	raw, err := gc.Dispense(string(KindVIM))
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*vimClient)
	ctx := context.Background()
	wire := c.c
	_, err = wire.Describe(ctx, nil)
	if got := CodeOf(fromStatus(err)); got != CodeInvalidArgument || !strings.Contains(err.Error(), "ref.slice_id") {
		t.Errorf("Describe without a ref: %v (code %s), want InvalidArgument naming ref.slice_id", err, got)
	}
	if _, err := c.Scale(ctx, ScaleRequest{Ref: PartRef{SliceID: "s", PartID: "p"}, VDU: "vm", Instances: -1}); CodeOf(err) != CodeInvalidArgument {
		t.Errorf("Scale to -1: %v, want InvalidArgument", err)
	}
	if _, err := c.Offer(ctx, OfferRequest{Part: PartSpec{Ref: PartRef{SliceID: "s", PartID: "p"},
		VDUs: []VDUSpec{{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 64}}}}); err != nil {
		t.Errorf("a valid Offer: %v", err)
	}
	if strings.Join(impl.calls, ",") != "Offer" {
		t.Errorf("the plugin saw %v, want only the valid Offer", impl.calls)
	}
}
