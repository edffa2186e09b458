// Command vim-kubernetes is the necos plugin for Kubernetes slice parts (VIM and
// Deployer kinds). The necos core launches it; it is not run by hand.
package main

import (
	"github.com/necos/necos/plugins/vim-kubernetes/kubevim"
	"github.com/necos/necos/sdk"
)

func main() { sdk.Serve(kubevim.New()) }
