// Command wan is the necos WAN plugin: VXLAN links with tc rate limits between the
// per-slice bridges of DC slice parts. See README.md for its configuration.
package main

import (
	"github.com/necos/necos/plugins/wan/vxlan"
	"github.com/necos/necos/sdk"
)

func main() { sdk.Serve(vxlan.New()) }
