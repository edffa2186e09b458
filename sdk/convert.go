package sdk

import (
	"time"

	pb "github.com/necos/necos/sdk/proto/pluginv1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Conversions between the SDK's Go types and the wire types. Kept in one file so a new
// field is added in one place.

func tsToPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func tsFromPB(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func resourcesToPB(r Resources) *pb.Resources {
	return &pb.Resources{Cpus: int32(r.CPUs), MemoryMb: r.MemoryMB, StorageGb: r.StorageGB, Nodes: int32(r.Nodes)}
}

func resourcesFromPB(r *pb.Resources) Resources {
	if r == nil {
		return Resources{}
	}
	return Resources{CPUs: int(r.Cpus), MemoryMB: r.MemoryMb, StorageGB: r.StorageGb, Nodes: int(r.Nodes)}
}

func partRefToPB(r PartRef) *pb.PartRef { return &pb.PartRef{SliceId: r.SliceID, PartId: r.PartID} }

func partRefFromPB(r *pb.PartRef) PartRef {
	if r == nil {
		return PartRef{}
	}
	return PartRef{SliceID: r.SliceId, PartID: r.PartId}
}

func partSpecToPB(p PartSpec) *pb.PartSpec {
	out := &pb.PartSpec{Ref: partRefToPB(p.Ref), Name: p.Name, Type: p.Type, Location: p.Location,
		Bridge: p.Bridge, Netns: p.Netns, Tenant: p.Tenant, Labels: p.Labels}
	for _, v := range p.VDUs {
		out.Vdus = append(out.Vdus, &pb.VDUSpec{Name: v.Name, Description: v.Description, Image: v.Image,
			Instances: int32(v.Instances), Cpus: int32(v.CPUs), MemoryMb: v.MemoryMB, StorageGb: v.StorageGB,
			Type: v.Type, CpuArchitecture: v.CPUArchitecture, Os: v.OS})
	}
	return out
}

func partSpecFromPB(p *pb.PartSpec) PartSpec {
	if p == nil {
		return PartSpec{}
	}
	out := PartSpec{Ref: partRefFromPB(p.Ref), Name: p.Name, Type: p.Type, Location: p.Location,
		Bridge: p.Bridge, Netns: p.Netns, Tenant: p.Tenant, Labels: p.Labels}
	for _, v := range p.Vdus {
		out.VDUs = append(out.VDUs, VDUSpec{Name: v.Name, Description: v.Description, Image: v.Image,
			Instances: int(v.Instances), CPUs: int(v.Cpus), MemoryMB: v.MemoryMb, StorageGB: v.StorageGb,
			Type: v.Type, CPUArchitecture: v.CpuArchitecture, OS: v.Os})
	}
	return out
}

func offerToPB(o Offer) *pb.VIMOfferResponse {
	return &pb.VIMOfferResponse{Accepted: o.Accepted, Reason: o.Reason, PricePerDay: o.PricePerDay,
		Requested: resourcesToPB(o.Requested), Free: resourcesToPB(o.Free), Capacity: resourcesToPB(o.Capacity)}
}

func offerFromPB(o *pb.VIMOfferResponse) Offer {
	return Offer{Accepted: o.Accepted, Reason: o.Reason, PricePerDay: o.PricePerDay,
		Requested: resourcesFromPB(o.Requested), Free: resourcesFromPB(o.Free), Capacity: resourcesFromPB(o.Capacity)}
}

// partPB holds a wire Part with its fixed sub-messages, so that partToPB allocates them
// at once: Describe, the hottest call, answers with one on every call.
type partPB struct {
	part            pb.Part
	ref             pb.PartRef
	vimRef          pb.Endpoint
	credential      pb.Credential
	allocated, used pb.Resources
}

func partToPB(p Part) *pb.Part {
	m := &partPB{
		ref: pb.PartRef{SliceId: p.Ref.SliceID, PartId: p.Ref.PartID},
		vimRef: pb.Endpoint{IpApi: p.VIMRef.IPAPI, PortApi: int32(p.VIMRef.PortAPI),
			IpSsh: p.VIMRef.IPSSH, PortSsh: int32(p.VIMRef.PortSSH)},
		credential: pb.Credential{Kind: p.Credential.Kind, User: p.Credential.User,
			Secret: p.Credential.Secret, HostKey: p.Credential.HostKey, Expires: tsToPB(p.Credential.Expires)},
		allocated: resourcesValuePB(p.Allocated),
		used:      resourcesValuePB(p.Used),
	}
	m.part = pb.Part{Ref: &m.ref, Name: p.Name, State: p.State, Message: p.Message,
		VimRef: &m.vimRef, Credential: &m.credential,
		Bridge: p.Bridge, Allocated: &m.allocated, Used: &m.used, Attributes: p.Attributes}
	if len(p.Nodes) > 0 {
		// The nodes in one array that the slice points into: two allocations, not one
		// per node and per growth of the slice.
		nodes := make([]pb.Node, len(p.Nodes))
		m.part.Nodes = make([]*pb.Node, len(p.Nodes))
		for i, n := range p.Nodes {
			nodes[i] = pb.Node{Name: n.Name, Vdu: n.VDU, Id: n.ID, Type: n.Type, State: n.State,
				Cpus: int32(n.CPUs), MemoryMb: n.MemoryMB, StorageGb: n.StorageGB, Ips: n.IPs}
			m.part.Nodes[i] = &nodes[i]
		}
	}
	return &m.part
}

func resourcesValuePB(r Resources) pb.Resources {
	return pb.Resources{Cpus: int32(r.CPUs), MemoryMb: r.MemoryMB, StorageGb: r.StorageGB, Nodes: int32(r.Nodes)}
}

func partFromPB(p *pb.Part) Part {
	if p == nil {
		return Part{}
	}
	out := Part{Ref: partRefFromPB(p.Ref), Name: p.Name, State: p.State, Message: p.Message,
		Bridge: p.Bridge, Allocated: resourcesFromPB(p.Allocated), Used: resourcesFromPB(p.Used),
		Attributes: p.Attributes}
	if e := p.VimRef; e != nil {
		out.VIMRef = Endpoint{IPAPI: e.IpApi, PortAPI: int(e.PortApi), IPSSH: e.IpSsh, PortSSH: int(e.PortSsh)}
	}
	if c := p.Credential; c != nil {
		out.Credential = Credential{Kind: c.Kind, User: c.User, Secret: c.Secret, HostKey: c.HostKey,
			Expires: tsFromPB(c.Expires)}
	}
	if len(p.Nodes) > 0 {
		out.Nodes = make([]Node, len(p.Nodes))
		for i, n := range p.Nodes {
			out.Nodes[i] = Node{Name: n.Name, VDU: n.Vdu, ID: n.Id, Type: n.Type, State: n.State,
				CPUs: int(n.Cpus), MemoryMB: n.MemoryMb, StorageGB: n.StorageGb, IPs: n.Ips}
		}
	}
	return out
}

func samplesToPB(s []Sample) []*pb.Sample {
	out := make([]*pb.Sample, 0, len(s))
	for _, x := range s {
		out = append(out, &pb.Sample{Node: x.Node, NodeType: x.NodeType, Metric: x.Metric, Value: x.Value, Time: tsToPB(x.Time)})
	}
	return out
}

func samplesFromPB(s []*pb.Sample) []Sample {
	out := make([]Sample, 0, len(s))
	for _, x := range s {
		out = append(out, Sample{Node: x.Node, NodeType: x.NodeType, Metric: x.Metric, Value: x.Value, Time: tsFromPB(x.Time)})
	}
	return out
}

func workToPB(w []NodeWork) []*pb.NodeWork {
	out := make([]*pb.NodeWork, 0, len(w))
	for _, x := range w {
		out = append(out, &pb.NodeWork{Node: x.Node, Namespace: x.Namespace, Commands: x.Commands, Manifests: x.Manifests})
	}
	return out
}

func workFromPB(w []*pb.NodeWork) []NodeWork {
	out := make([]NodeWork, 0, len(w))
	for _, x := range w {
		out = append(out, NodeWork{Node: x.Node, Namespace: x.Namespace, Commands: x.Commands, Manifests: x.Manifests})
	}
	return out
}

func deploymentToPB(d Deployment) *pb.Deployment {
	out := &pb.Deployment{ServiceId: d.ServiceID, Ref: partRefToPB(d.Ref), State: d.State, Message: d.Message}
	for _, n := range d.Nodes {
		ns := &pb.NodeStatus{Node: n.Node, State: n.State}
		for _, s := range n.Steps {
			ns.Steps = append(ns.Steps, &pb.StepResult{Index: int32(s.Index), Kind: s.Kind, Step: s.Step, State: s.State,
				ExitCode: int32(s.ExitCode), Stdout: s.Stdout, Stderr: s.Stderr, Error: s.Error,
				Started: tsToPB(s.Started), Seconds: s.Duration.Seconds()})
		}
		out.Nodes = append(out.Nodes, ns)
	}
	return out
}

func deploymentFromPB(d *pb.Deployment) Deployment {
	if d == nil {
		return Deployment{}
	}
	out := Deployment{ServiceID: d.ServiceId, Ref: partRefFromPB(d.Ref), State: d.State, Message: d.Message}
	for _, n := range d.Nodes {
		ns := NodeStatus{Node: n.Node, State: n.State}
		for _, s := range n.Steps {
			ns.Steps = append(ns.Steps, StepResult{Index: int(s.Index), Kind: s.Kind, Step: s.Step, State: s.State,
				ExitCode: int(s.ExitCode), Stdout: s.Stdout, Stderr: s.Stderr, Error: s.Error,
				Started: tsFromPB(s.Started), Duration: time.Duration(s.Seconds * float64(time.Second))})
		}
		out.Nodes = append(out.Nodes, ns)
	}
	return out
}

func linkRefToPB(r LinkRef) *pb.LinkRef { return &pb.LinkRef{SliceId: r.SliceID, LinkId: r.LinkID} }

func linkRefFromPB(r *pb.LinkRef) LinkRef {
	if r == nil {
		return LinkRef{}
	}
	return LinkRef{SliceID: r.SliceId, LinkID: r.LinkId}
}

func linkEndToPB(e LinkEnd) *pb.LinkEnd {
	return &pb.LinkEnd{Site: e.Site, Part: e.Part, Underlay: e.Underlay, Netns: e.Netns, Bridge: e.Bridge}
}

func linkEndFromPB(e *pb.LinkEnd) LinkEnd {
	if e == nil {
		return LinkEnd{}
	}
	return LinkEnd{Site: e.Site, Part: e.Part, Underlay: e.Underlay, Netns: e.Netns, Bridge: e.Bridge}
}

func linkSpecToPB(l LinkSpec) *pb.LinkSpec {
	return &pb.LinkSpec{Ref: linkRefToPB(l.Ref), Name: l.Name, End1: linkEndToPB(l.End1), End2: linkEndToPB(l.End2),
		BandwidthBps: l.BandwidthBps, Vni: l.VNI}
}

func linkSpecFromPB(l *pb.LinkSpec) LinkSpec {
	if l == nil {
		return LinkSpec{}
	}
	return LinkSpec{Ref: linkRefFromPB(l.Ref), Name: l.Name, End1: linkEndFromPB(l.End1), End2: linkEndFromPB(l.End2),
		BandwidthBps: l.BandwidthBps, VNI: l.Vni}
}

func linkToPB(l Link) *pb.Link {
	return &pb.Link{Ref: linkRefToPB(l.Ref), Name: l.Name, State: l.State, Message: l.Message, Vni: l.VNI,
		End1: linkEndToPB(l.End1), End2: linkEndToPB(l.End2), BandwidthBps: l.BandwidthBps}
}

func linkFromPB(l *pb.Link) Link {
	if l == nil {
		return Link{}
	}
	return Link{Ref: linkRefFromPB(l.Ref), Name: l.Name, State: l.State, Message: l.Message, VNI: l.Vni,
		End1: linkEndFromPB(l.End1), End2: linkEndFromPB(l.End2), BandwidthBps: l.BandwidthBps}
}

func pointsToPB(p []Point) []*pb.Point {
	out := make([]*pb.Point, 0, len(p))
	for _, x := range p {
		out = append(out, &pb.Point{Metric: x.Metric, Tags: x.Tags, Value: x.Value, Time: tsToPB(x.Time)})
	}
	return out
}

func pointsFromPB(p []*pb.Point) []Point {
	out := make([]Point, 0, len(p))
	for _, x := range p {
		out = append(out, Point{Metric: x.Metric, Tags: x.Tags, Value: x.Value, Time: tsFromPB(x.Time)})
	}
	return out
}

func queryToPB(q Query) *pb.QueryRequest {
	return &pb.QueryRequest{Metric: q.Metric, Tags: q.Tags, Last: int32(q.Last), Start: tsToPB(q.Start), End: tsToPB(q.End)}
}

func queryFromPB(q *pb.QueryRequest) Query {
	return Query{Metric: q.Metric, Tags: q.Tags, Last: int(q.Last), Start: tsFromPB(q.Start), End: tsFromPB(q.End)}
}

func infoToPB(i Info) *pb.InfoResponse {
	out := &pb.InfoResponse{Name: i.Name, Version: i.Version, Description: i.Description,
		ApiVersions: i.APIVersions, Capabilities: i.Capabilities}
	for _, k := range i.Kinds {
		out.Kinds = append(out.Kinds, string(k))
	}
	return out
}

func infoFromPB(i *pb.InfoResponse) Info {
	out := Info{Name: i.Name, Version: i.Version, Description: i.Description,
		APIVersions: i.ApiVersions, Capabilities: i.Capabilities}
	for _, k := range i.Kinds {
		out.Kinds = append(out.Kinds, Kind(k))
	}
	return out
}

func secondsToDuration(s int32) time.Duration { return time.Duration(s) * time.Second }

func metricsRequestsToPB(reqs []MetricsRequest) []*pb.MetricsRequest {
	out := make([]*pb.MetricsRequest, len(reqs))
	for i, r := range reqs {
		out[i] = &pb.MetricsRequest{Ref: partRefToPB(r.Ref), Names: r.Names}
	}
	return out
}

func metricsRequestsFromPB(reqs []*pb.MetricsRequest) []MetricsRequest {
	out := make([]MetricsRequest, len(reqs))
	for i, r := range reqs {
		out[i] = MetricsRequest{Ref: partRefFromPB(r.GetRef()), Names: r.GetNames()}
	}
	return out
}

// partMetricsToPB carries each part's error as its code and message, as a failed
// Metrics call carries them in its status.
func partMetricsToPB(parts []PartMetrics) []*pb.PartMetrics {
	out := make([]*pb.PartMetrics, len(parts))
	for i, p := range parts {
		m := &pb.PartMetrics{Ref: partRefToPB(p.Ref)}
		if p.Err != nil {
			m.Error = &pb.PartError{Code: uint32(CodeOf(p.Err)), Message: p.Err.Error()}
		} else {
			m.Samples = samplesToPB(p.Samples)
		}
		out[i] = m
	}
	return out
}

func partMetricsFromPB(parts []*pb.PartMetrics) []PartMetrics {
	out := make([]PartMetrics, len(parts))
	for i, p := range parts {
		out[i] = PartMetrics{Ref: partRefFromPB(p.GetRef())}
		if e := p.GetError(); e != nil {
			code := Code(e.GetCode())
			if code == CodeOK {
				code = CodeUnknown // an error without a code is still an error
			}
			out[i].Err = &Error{Code: code, Message: e.GetMessage()}
			continue
		}
		out[i].Samples = samplesFromPB(p.GetSamples())
	}
	return out
}
