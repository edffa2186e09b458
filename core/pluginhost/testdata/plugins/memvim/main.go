// Command memvim serves the in-memory test VIM as a plugin.
package main

import (
	"github.com/necos/necos/core/pluginhost/testdata/cpuprofile"
	"github.com/necos/necos/core/pluginhost/testdata/memvim"
	"github.com/necos/necos/sdk"
)

func main() {
	defer cpuprofile.Start("memvim")()
	sdk.Serve(memvim.New())
}
