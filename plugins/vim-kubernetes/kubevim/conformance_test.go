package kubevim

import (
	"testing"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
)

// TestConformance runs the VIM conformance suite against the built plugin binary,
// launched as the core launches it, on the real control plane.
func TestConformance(t *testing.T) {
	c := needCluster(t)
	capa := sdk.Resources{CPUs: 8, MemoryMB: 8192, StorageGB: 40}
	bin := plugintest.Build(t, "github.com/necos/necos/plugins/vim-kubernetes")
	client := plugintest.Binary(t, bin, plugintest.Provider, configJSON(t, c, map[string]any{
		"capacity": map[string]any{"cpus": capa.CPUs, "memory_mb": capa.MemoryMB, "storage_gb": capa.StorageGB},
	}))
	plugintest.RunVIM(t, client, plugintest.VIMOptions{Capacity: capa})
}
