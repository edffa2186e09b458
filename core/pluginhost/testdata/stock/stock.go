// Package stock is the baseline of the plugin-call benchmark: a go-plugin plugin as its
// documentation shows one (gRPC, AutoMTLS, the generated stubs, go-plugin's default
// server and dial options) serving VIM.Describe with nothing of necos around it. Its
// answer is the message the memvim plugin gives to the benchmark's part, so both paths
// move the same bytes and what necos's path costs above this one is necos's own.
package stock

import (
	"context"
	"os"
	"strconv"

	plugin "github.com/hashicorp/go-plugin"
	pb "github.com/necos/necos/sdk/proto/pluginv1"
	"google.golang.org/grpc"
)

// Handshake is the stock plugin's own: it is not a necos plugin.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "NECOS_STOCK_BENCH_PLUGIN",
	MagicCookieValue: "stock",
}

// Name is the name the plugin is dispensed under.
const Name = "vim"

// Plugin is the go-plugin adapter of both sides; the host's side leaves Impl nil.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl pb.VIMServer
}

// GRPCServer registers the VIM service.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterVIMServer(s, p.Impl)
	return nil
}

// GRPCClient returns the generated client.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pb.NewVIMClient(c), nil
}

// Server answers Describe with the part memvim builds for the benchmark's part (slice
// "bench", part "core": two nodes of the VDU "web"), built once.
type Server struct {
	pb.UnimplementedVIMServer
	resp *pb.DescribeResponse
}

// NewServer returns the server.
func NewServer() *Server {
	node := func(name string) *pb.Node {
		return &pb.Node{Name: name, Vdu: "web", State: "running", Cpus: 1, MemoryMb: 512, StorageGb: 1}
	}
	return &Server{resp: &pb.DescribeResponse{Part: &pb.Part{
		Ref:        &pb.PartRef{SliceId: "bench", PartId: "core"},
		Name:       "core",
		State:      "ready",
		Nodes:      []*pb.Node{node("web-1"), node("web-2")},
		VimRef:     &pb.Endpoint{},
		Credential: &pb.Credential{},
		Bridge:     "br-bench",
		Allocated:  &pb.Resources{Cpus: 2, MemoryMb: 1024, StorageGb: 2, Nodes: 2},
		Used:       &pb.Resources{},
		Attributes: map[string]string{"provider": "bench", "location": "EUROPE.BENCH",
			"pid": strconv.Itoa(os.Getpid())},
	}}}
}

// Describe returns the fixed part.
func (s *Server) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	return s.resp, nil
}
