// Command stock serves the benchmark's baseline plugin (see package stock).
package main

import (
	plugin "github.com/hashicorp/go-plugin"
	"github.com/necos/necos/core/pluginhost/testdata/cpuprofile"
	"github.com/necos/necos/core/pluginhost/testdata/stock"
)

func main() {
	defer cpuprofile.Start("stock")()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: stock.Handshake,
		Plugins:         plugin.PluginSet{stock.Name: &stock.Plugin{Impl: stock.NewServer()}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
