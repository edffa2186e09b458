package sdk

import (
	"context"
	"errors"
	"sync/atomic"

	plugin "github.com/hashicorp/go-plugin"
	pb "github.com/necos/necos/sdk/proto/pluginv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus turns a plugin's error into a gRPC status carrying its Code.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return status.Error(codes.Code(e.Code), err.Error())
	}
	return status.Error(codes.Code(CodeOf(err)), err.Error())
}

// fromStatus turns a gRPC error back into an *Error with the same Code.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return &Error{Code: Code(s.Code()), Message: s.Message()}
	}
	return &Error{Code: CodeOf(err), Message: err.Error()}
}

// Names under which each kind is dispensed over the go-plugin connection.
const (
	dispenseBase = "base"
)

// grpcPlugin adapts one service pair (server registration, client stub) to go-plugin.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	register func(*grpc.Server)
	client   func(*grpc.ClientConn) any
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.register == nil {
		return errors.New("client-side plugin used as a server")
	}
	p.register(s)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return p.client(c), nil
}

// pluginSet returns the go-plugin set for impl; with impl nil, the client side only.
func pluginSet(impl Plugin) plugin.PluginSet {
	set := plugin.PluginSet{
		dispenseBase:    &grpcPlugin{client: func(c *grpc.ClientConn) any { return &baseClient{c: pb.NewBaseClient(c)} }},
		string(KindVIM): &grpcPlugin{client: func(c *grpc.ClientConn) any { return &vimClient{c: pb.NewVIMClient(c)} }},
		string(KindDeployer): &grpcPlugin{client: func(c *grpc.ClientConn) any {
			return &deployerClient{c: pb.NewDeployerClient(c)}
		}},
		string(KindWAN):     &grpcPlugin{client: func(c *grpc.ClientConn) any { return &wanClient{c: pb.NewWANClient(c)} }},
		string(KindMonitor): &grpcPlugin{client: func(c *grpc.ClientConn) any { return &monitorClient{c: pb.NewMonitorClient(c)} }},
	}
	if impl == nil {
		return set
	}
	set[dispenseBase].(*grpcPlugin).register = func(s *grpc.Server) { pb.RegisterBaseServer(s, &baseServer{impl: impl}) }
	if v, ok := impl.(VIM); ok {
		set[string(KindVIM)].(*grpcPlugin).register = func(s *grpc.Server) { pb.RegisterVIMServer(s, &vimServer{impl: v}) }
	} else {
		delete(set, string(KindVIM))
	}
	if d, ok := impl.(Deployer); ok {
		set[string(KindDeployer)].(*grpcPlugin).register = func(s *grpc.Server) {
			pb.RegisterDeployerServer(s, &deployerServer{impl: d})
		}
	} else {
		delete(set, string(KindDeployer))
	}
	if w, ok := impl.(WAN); ok {
		set[string(KindWAN)].(*grpcPlugin).register = func(s *grpc.Server) { pb.RegisterWANServer(s, &wanServer{impl: w}) }
	} else {
		delete(set, string(KindWAN))
	}
	if m, ok := impl.(Monitor); ok {
		set[string(KindMonitor)].(*grpcPlugin).register = func(s *grpc.Server) {
			pb.RegisterMonitorServer(s, &monitorServer{impl: m})
		}
	} else {
		delete(set, string(KindMonitor))
	}
	return set
}

// kindsOf lists the kinds impl implements.
func kindsOf(impl Plugin) []Kind {
	var kinds []Kind
	if _, ok := impl.(VIM); ok {
		kinds = append(kinds, KindVIM)
	}
	if _, ok := impl.(Deployer); ok {
		kinds = append(kinds, KindDeployer)
	}
	if _, ok := impl.(WAN); ok {
		kinds = append(kinds, KindWAN)
	}
	if _, ok := impl.(Monitor); ok {
		kinds = append(kinds, KindMonitor)
	}
	return kinds
}

// completeInfo fills what Serve derives: kinds from the interfaces, default API versions.
func completeInfo(impl Plugin, i Info) Info {
	if len(i.Kinds) == 0 {
		i.Kinds = kindsOf(impl)
	}
	if len(i.APIVersions) == 0 {
		i.APIVersions = append([]string(nil), SupportedAPIVersions...)
	}
	return i
}

// ---- Base ----

type baseServer struct {
	pb.UnimplementedBaseServer
	impl Plugin
}

func (s *baseServer) Info(ctx context.Context, _ *pb.InfoRequest) (*pb.InfoResponse, error) {
	i, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return infoToPB(completeInfo(s.impl, i)), nil
}

func (s *baseServer) ConfigSchema(ctx context.Context, _ *pb.ConfigSchemaRequest) (*pb.ConfigSchemaResponse, error) {
	sc, err := s.impl.ConfigSchema(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ConfigSchemaResponse{}
	for _, f := range sc.Fields {
		def, err := marshalDefault(f.Default)
		if err != nil {
			return nil, toStatus(Errorf(CodeInternal, "config schema: default of %s: %v", f.Name, err))
		}
		out.Fields = append(out.Fields, &pb.ConfigField{Name: f.Name, Type: f.Type, Required: f.Required,
			DefaultJson: def, Description: f.Description})
	}
	return out, nil
}

func (s *baseServer) Configure(ctx context.Context, r *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	cfg := Config{APIVersion: r.ApiVersion, JSON: r.ConfigJson}
	if r.Provider != nil {
		cfg.Provider = Provider{Name: r.Provider.Name, Location: r.Provider.Location}
	}
	return &pb.ConfigureResponse{}, toStatus(s.impl.Configure(ctx, cfg))
}

type baseClient struct{ c pb.BaseClient }

func (c *baseClient) Info(ctx context.Context) (Info, error) {
	r, err := c.c.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus(err)
	}
	return infoFromPB(r), nil
}

func (c *baseClient) ConfigSchema(ctx context.Context) (ConfigSchema, error) {
	r, err := c.c.ConfigSchema(ctx, &pb.ConfigSchemaRequest{})
	if err != nil {
		return ConfigSchema{}, fromStatus(err)
	}
	var sc ConfigSchema
	for _, f := range r.Fields {
		def, err := unmarshalDefault(f.DefaultJson)
		if err != nil {
			return ConfigSchema{}, Errorf(CodeInternal, "config schema: default of %s: %v", f.Name, err)
		}
		sc.Fields = append(sc.Fields, ConfigField{Name: f.Name, Type: f.Type, Required: f.Required,
			Default: def, Description: f.Description})
	}
	return sc, nil
}

func (c *baseClient) Configure(ctx context.Context, cfg Config) error {
	_, err := c.c.Configure(ctx, &pb.ConfigureRequest{ApiVersion: cfg.APIVersion, ConfigJson: cfg.JSON,
		Provider: &pb.Provider{Name: cfg.Provider.Name, Location: cfg.Provider.Location}})
	return fromStatus(err)
}

// ---- VIM ----

type vimServer struct {
	pb.UnimplementedVIMServer
	impl VIM
}

func (s *vimServer) Offer(ctx context.Context, r *pb.VIMOfferRequest) (*pb.VIMOfferResponse, error) {
	req := OfferRequest{Part: partSpecFromPB(r.Part)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	o, err := s.impl.Offer(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return offerToPB(o), nil
}

func (s *vimServer) Create(ctx context.Context, r *pb.CreateRequest) (*pb.CreateResponse, error) {
	req := CreateRequest{Part: partSpecFromPB(r.Part)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	p, err := s.impl.Create(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CreateResponse{Part: partToPB(p)}, nil
}

func (s *vimServer) Describe(ctx context.Context, r *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	req := DescribeRequest{Ref: partRefFromPB(r.Ref)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	p, err := s.impl.Describe(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DescribeResponse{Part: partToPB(p)}, nil
}

func (s *vimServer) Resize(ctx context.Context, r *pb.ResizeRequest) (*pb.ResizeResponse, error) {
	req := ResizeRequest{Ref: partRefFromPB(r.Ref), VDU: r.Vdu, Node: r.Node, CPUs: int(r.Cpus), MemoryMB: r.MemoryMb}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	p, err := s.impl.Resize(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ResizeResponse{Part: partToPB(p)}, nil
}

func (s *vimServer) Scale(ctx context.Context, r *pb.ScaleRequest) (*pb.ScaleResponse, error) {
	req := ScaleRequest{Ref: partRefFromPB(r.Ref), VDU: r.Vdu, Instances: int(r.Instances)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	p, err := s.impl.Scale(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ScaleResponse{Part: partToPB(p)}, nil
}

func (s *vimServer) Delete(ctx context.Context, r *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	req := DeleteRequest{Ref: partRefFromPB(r.Ref)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteResponse{}, toStatus(s.impl.Delete(ctx, req))
}

func (s *vimServer) Metrics(ctx context.Context, r *pb.MetricsRequest) (*pb.MetricsResponse, error) {
	req := MetricsRequest{Ref: partRefFromPB(r.Ref), Names: r.Names}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	m, err := s.impl.Metrics(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.MetricsResponse{Samples: samplesToPB(m)}, nil
}

type vimClient struct {
	c pb.VIMClient
	// noBatch is set once the plugin answered MetricsBatch with Unimplemented (built
	// before the call existed): its batches are then measured part by part at once.
	noBatch atomic.Bool
}

func (c *vimClient) Offer(ctx context.Context, req OfferRequest) (Offer, error) {
	if err := req.Validate(); err != nil {
		return Offer{}, err
	}
	r, err := c.c.Offer(ctx, &pb.VIMOfferRequest{Part: partSpecToPB(req.Part)})
	if err != nil {
		return Offer{}, fromStatus(err)
	}
	return offerFromPB(r), nil
}

func (c *vimClient) Create(ctx context.Context, req CreateRequest) (Part, error) {
	if err := req.Validate(); err != nil {
		return Part{}, err
	}
	r, err := c.c.Create(ctx, &pb.CreateRequest{Part: partSpecToPB(req.Part)})
	if err != nil {
		return Part{}, fromStatus(err)
	}
	return partFromPB(r.Part), nil
}

func (c *vimClient) Describe(ctx context.Context, req DescribeRequest) (Part, error) {
	if err := req.Validate(); err != nil {
		return Part{}, err
	}
	r, err := c.c.Describe(ctx, &pb.DescribeRequest{Ref: partRefToPB(req.Ref)})
	if err != nil {
		return Part{}, fromStatus(err)
	}
	return partFromPB(r.Part), nil
}

func (c *vimClient) Resize(ctx context.Context, req ResizeRequest) (Part, error) {
	if err := req.Validate(); err != nil {
		return Part{}, err
	}
	r, err := c.c.Resize(ctx, &pb.ResizeRequest{Ref: partRefToPB(req.Ref), Vdu: req.VDU, Node: req.Node,
		Cpus: int32(req.CPUs), MemoryMb: req.MemoryMB})
	if err != nil {
		return Part{}, fromStatus(err)
	}
	return partFromPB(r.Part), nil
}

func (c *vimClient) Scale(ctx context.Context, req ScaleRequest) (Part, error) {
	if err := req.Validate(); err != nil {
		return Part{}, err
	}
	r, err := c.c.Scale(ctx, &pb.ScaleRequest{Ref: partRefToPB(req.Ref), Vdu: req.VDU, Instances: int32(req.Instances)})
	if err != nil {
		return Part{}, fromStatus(err)
	}
	return partFromPB(r.Part), nil
}

func (c *vimClient) Delete(ctx context.Context, req DeleteRequest) error {
	if err := req.Validate(); err != nil {
		return err
	}
	_, err := c.c.Delete(ctx, &pb.DeleteRequest{Ref: partRefToPB(req.Ref)})
	return fromStatus(err)
}

func (c *vimClient) Metrics(ctx context.Context, req MetricsRequest) ([]Sample, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	r, err := c.c.Metrics(ctx, &pb.MetricsRequest{Ref: partRefToPB(req.Ref), Names: req.Names})
	if err != nil {
		return nil, fromStatus(err)
	}
	return samplesFromPB(r.Samples), nil
}

// ---- Deployer ----

type deployerServer struct {
	pb.UnimplementedDeployerServer
	impl Deployer
}

func (s *deployerServer) Deploy(ctx context.Context, r *pb.DeployRequest) (*pb.DeployResponse, error) {
	req := DeployRequest{ServiceID: r.ServiceId, Part: partFromPB(r.Part),
		Work: workFromPB(r.Work), StepTimeout: secondsToDuration(r.StepTimeoutSeconds)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	d, err := s.impl.Deploy(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeployResponse{Deployment: deploymentToPB(d)}, nil
}

func (s *deployerServer) Undeploy(ctx context.Context, r *pb.UndeployRequest) (*pb.UndeployResponse, error) {
	req := UndeployRequest{ServiceID: r.ServiceId, Part: partFromPB(r.Part)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	return &pb.UndeployResponse{}, toStatus(s.impl.Undeploy(ctx, req))
}

func (s *deployerServer) DeployStatus(ctx context.Context, r *pb.DeployStatusRequest) (*pb.DeployStatusResponse, error) {
	req := DeployStatusRequest{ServiceID: r.ServiceId, Ref: partRefFromPB(r.Ref)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	d, err := s.impl.DeployStatus(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeployStatusResponse{Deployment: deploymentToPB(d)}, nil
}

type deployerClient struct{ c pb.DeployerClient }

func (c *deployerClient) Deploy(ctx context.Context, req DeployRequest) (Deployment, error) {
	if err := req.Validate(); err != nil {
		return Deployment{}, err
	}
	r, err := c.c.Deploy(ctx, &pb.DeployRequest{ServiceId: req.ServiceID, Part: partToPB(req.Part),
		Work: workToPB(req.Work), StepTimeoutSeconds: int32(req.StepTimeout.Seconds())})
	if err != nil {
		return Deployment{}, fromStatus(err)
	}
	return deploymentFromPB(r.Deployment), nil
}

func (c *deployerClient) Undeploy(ctx context.Context, req UndeployRequest) error {
	if err := req.Validate(); err != nil {
		return err
	}
	_, err := c.c.Undeploy(ctx, &pb.UndeployRequest{ServiceId: req.ServiceID, Part: partToPB(req.Part)})
	return fromStatus(err)
}

func (c *deployerClient) DeployStatus(ctx context.Context, req DeployStatusRequest) (Deployment, error) {
	if err := req.Validate(); err != nil {
		return Deployment{}, err
	}
	r, err := c.c.DeployStatus(ctx, &pb.DeployStatusRequest{ServiceId: req.ServiceID, Ref: partRefToPB(req.Ref)})
	if err != nil {
		return Deployment{}, fromStatus(err)
	}
	return deploymentFromPB(r.Deployment), nil
}

// ---- WAN ----

type wanServer struct {
	pb.UnimplementedWANServer
	impl WAN
}

func (s *wanServer) OfferLink(ctx context.Context, r *pb.WANOfferRequest) (*pb.WANOfferResponse, error) {
	req := OfferLinkRequest{Link: linkSpecFromPB(r.Link)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	o, err := s.impl.OfferLink(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.WANOfferResponse{Accepted: o.Accepted, Reason: o.Reason, PricePerDay: o.PricePerDay,
		AvailableBps: o.AvailableBps, CapacityBps: o.CapacityBps}, nil
}

func (s *wanServer) Connect(ctx context.Context, r *pb.ConnectRequest) (*pb.ConnectResponse, error) {
	req := ConnectRequest{Link: linkSpecFromPB(r.Link)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	l, err := s.impl.Connect(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ConnectResponse{Link: linkToPB(l)}, nil
}

func (s *wanServer) DescribeLink(ctx context.Context, r *pb.DescribeLinkRequest) (*pb.DescribeLinkResponse, error) {
	req := DescribeLinkRequest{Ref: linkRefFromPB(r.Ref)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	l, err := s.impl.DescribeLink(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DescribeLinkResponse{Link: linkToPB(l)}, nil
}

func (s *wanServer) Disconnect(ctx context.Context, r *pb.DisconnectRequest) (*pb.DisconnectResponse, error) {
	req := DisconnectRequest{Ref: linkRefFromPB(r.Ref)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	return &pb.DisconnectResponse{}, toStatus(s.impl.Disconnect(ctx, req))
}

func (s *wanServer) ReleaseSites(ctx context.Context, r *pb.ReleaseSitesRequest) (*pb.ReleaseSitesResponse, error) {
	rel, ok := s.impl.(SiteReleaser)
	if !ok {
		return nil, toStatus(Errorf(CodeUnimplemented, "this WAN plugin builds no sites to release"))
	}
	req := ReleaseSitesRequest{Sites: make([]LinkEnd, len(r.Sites))}
	for i, e := range r.Sites {
		req.Sites[i] = linkEndFromPB(e)
	}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	out, err := rel.ReleaseSites(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ReleaseSitesResponse{Removed: out.Removed}
	for _, k := range out.Kept {
		resp.Kept = append(resp.Kept, &pb.KeptSite{Site: k.Site, Netns: k.Netns, Reason: k.Reason})
	}
	return resp, nil
}

type wanClient struct{ c pb.WANClient }

// The client serves SiteReleaser whatever the plugin does: a plugin without it answers
// CodeUnimplemented.
var _ SiteReleaser = (*wanClient)(nil)

func (c *wanClient) ReleaseSites(ctx context.Context, req ReleaseSitesRequest) (SiteRelease, error) {
	if err := req.Validate(); err != nil {
		return SiteRelease{}, err
	}
	in := &pb.ReleaseSitesRequest{Sites: make([]*pb.LinkEnd, len(req.Sites))}
	for i, e := range req.Sites {
		in.Sites[i] = linkEndToPB(e)
	}
	r, err := c.c.ReleaseSites(ctx, in)
	if err != nil {
		return SiteRelease{}, fromStatus(err)
	}
	out := SiteRelease{Removed: r.Removed}
	for _, k := range r.Kept {
		out.Kept = append(out.Kept, KeptSite{Site: k.Site, Netns: k.Netns, Reason: k.Reason})
	}
	return out, nil
}

func (c *wanClient) OfferLink(ctx context.Context, req OfferLinkRequest) (LinkOffer, error) {
	if err := req.Validate(); err != nil {
		return LinkOffer{}, err
	}
	r, err := c.c.OfferLink(ctx, &pb.WANOfferRequest{Link: linkSpecToPB(req.Link)})
	if err != nil {
		return LinkOffer{}, fromStatus(err)
	}
	return LinkOffer{Accepted: r.Accepted, Reason: r.Reason, PricePerDay: r.PricePerDay,
		AvailableBps: r.AvailableBps, CapacityBps: r.CapacityBps}, nil
}

func (c *wanClient) Connect(ctx context.Context, req ConnectRequest) (Link, error) {
	if err := req.Validate(); err != nil {
		return Link{}, err
	}
	r, err := c.c.Connect(ctx, &pb.ConnectRequest{Link: linkSpecToPB(req.Link)})
	if err != nil {
		return Link{}, fromStatus(err)
	}
	return linkFromPB(r.Link), nil
}

func (c *wanClient) DescribeLink(ctx context.Context, req DescribeLinkRequest) (Link, error) {
	if err := req.Validate(); err != nil {
		return Link{}, err
	}
	r, err := c.c.DescribeLink(ctx, &pb.DescribeLinkRequest{Ref: linkRefToPB(req.Ref)})
	if err != nil {
		return Link{}, fromStatus(err)
	}
	return linkFromPB(r.Link), nil
}

func (c *wanClient) Disconnect(ctx context.Context, req DisconnectRequest) error {
	if err := req.Validate(); err != nil {
		return err
	}
	_, err := c.c.Disconnect(ctx, &pb.DisconnectRequest{Ref: linkRefToPB(req.Ref)})
	return fromStatus(err)
}

// ---- Monitor ----

type monitorServer struct {
	pb.UnimplementedMonitorServer
	impl Monitor
}

func (s *monitorServer) Write(ctx context.Context, r *pb.WriteRequest) (*pb.WriteResponse, error) {
	req := WriteRequest{Points: pointsFromPB(r.Points)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	return &pb.WriteResponse{}, toStatus(s.impl.Write(ctx, req))
}

func (s *monitorServer) Flush(ctx context.Context, _ *pb.FlushRequest) (*pb.FlushResponse, error) {
	return &pb.FlushResponse{}, toStatus(s.impl.Flush(ctx))
}

func (s *monitorServer) Query(ctx context.Context, r *pb.QueryRequest) (*pb.QueryResponse, error) {
	q := queryFromPB(r)
	if err := q.Validate(); err != nil {
		return nil, toStatus(err)
	}
	p, err := s.impl.Query(ctx, q)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.QueryResponse{Points: pointsToPB(p)}, nil
}

func (s *monitorServer) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	if err := s.impl.Health(ctx); err != nil {
		return &pb.HealthResponse{Ok: false, Message: err.Error()}, nil
	}
	return &pb.HealthResponse{Ok: true}, nil
}

type monitorClient struct{ c pb.MonitorClient }

func (c *monitorClient) Write(ctx context.Context, req WriteRequest) error {
	if err := req.Validate(); err != nil {
		return err
	}
	_, err := c.c.Write(ctx, &pb.WriteRequest{Points: pointsToPB(req.Points)})
	return fromStatus(err)
}

func (c *monitorClient) Flush(ctx context.Context) error {
	_, err := c.c.Flush(ctx, &pb.FlushRequest{})
	return fromStatus(err)
}

func (c *monitorClient) Query(ctx context.Context, q Query) ([]Point, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	r, err := c.c.Query(ctx, queryToPB(q))
	if err != nil {
		return nil, fromStatus(err)
	}
	return pointsFromPB(r.Points), nil
}

func (c *monitorClient) Health(ctx context.Context) error {
	r, err := c.c.Health(ctx, &pb.HealthRequest{})
	if err != nil {
		return fromStatus(err)
	}
	if !r.Ok {
		return Errorf(CodeUnavailable, "%s", r.Message)
	}
	return nil
}

// ---- VIM: MetricsBatch ----

// MetricsBatch answers with the plugin's [MetricsBatcher] when it has one, else part
// by part through its Metrics ([MetricsEach]), so every plugin built with this SDK
// serves the call.
func (s *vimServer) MetricsBatch(ctx context.Context, r *pb.MetricsBatchRequest) (*pb.MetricsBatchResponse, error) {
	req := MetricsBatchRequest{Parts: metricsRequestsFromPB(r.Parts)}
	if err := req.Validate(); err != nil {
		return nil, toStatus(err)
	}
	reqs := req.Parts
	var got []PartMetrics
	if b, ok := s.impl.(MetricsBatcher); ok {
		// The parts whose request is bad are answered here; the batcher gets the others.
		got = make([]PartMetrics, len(reqs))
		var valid []MetricsRequest
		var at []int
		for i, pr := range reqs {
			got[i].Ref = pr.Ref
			if got[i].Err = pr.Validate(); got[i].Err == nil {
				valid = append(valid, pr)
				at = append(at, i)
			}
		}
		var answers []PartMetrics
		var err error
		if len(valid) > 0 {
			answers, err = b.MetricsBatch(ctx, MetricsBatchRequest{Parts: valid})
		}
		switch {
		case CodeOf(err) == CodeUnimplemented:
			// A batcher that cannot batch here (a wrapper around another VIM).
			answers = MetricsEach(ctx, s.impl, valid)
		case err != nil:
			return nil, toStatus(err)
		default:
			if err := CheckMetricsBatch(valid, answers); err != nil {
				return nil, toStatus(err)
			}
		}
		for j, i := range at {
			got[i] = answers[j]
		}
	} else {
		got = MetricsEach(ctx, s.impl, reqs)
	}
	return &pb.MetricsBatchResponse{Parts: partMetricsToPB(got)}, nil
}

// The client serves MetricsBatcher whatever the plugin does: a plugin built before
// MetricsBatch existed answers Unimplemented, and its parts are then measured one by
// one with Metrics, now and for the rest of the connection's life.
var _ MetricsBatcher = (*vimClient)(nil)

func (c *vimClient) MetricsBatch(ctx context.Context, req MetricsBatchRequest) ([]PartMetrics, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	reqs := req.Parts
	if c.noBatch.Load() {
		return MetricsEach(ctx, c, reqs), nil
	}
	r, err := c.c.MetricsBatch(ctx, &pb.MetricsBatchRequest{Parts: metricsRequestsToPB(reqs)})
	if status.Code(err) == codes.Unimplemented {
		c.noBatch.Store(true)
		return MetricsEach(ctx, c, reqs), nil
	}
	if err != nil {
		return nil, fromStatus(err)
	}
	got := partMetricsFromPB(r.Parts)
	if err := CheckMetricsBatch(reqs, got); err != nil {
		return nil, err
	}
	return got, nil
}
