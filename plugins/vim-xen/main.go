// Command vim-xen is the necos VIM plugin for Xen hosts: a DC slice part is one libvirt
// domain per VDU instance. The necos core launches it; see package xenvim.
package main

import (
	"github.com/necos/necos/plugins/vim-xen/xenvim"
	"github.com/necos/necos/sdk"
)

func main() { sdk.Serve(xenvim.New(nil)) }
