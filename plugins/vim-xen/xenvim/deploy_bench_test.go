package xenvim_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/necos/necos/plugins/vim-xen/xenvim"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/necos/necos/sdk/plugintest/sshdtest"
)

// BenchmarkDeploy times deployments through the plugin's gRPC adapters onto a real sshd
// on 127.0.0.1: one op is one Deploy call, connection and host key check included. The
// sshd gives sessions an empty HOME, so that the account's shell start-up files (which
// can take seconds on a developer's machine) are not what is measured. Reported: ms per
// step (steps run one after the other on a node; nodes in parallel).
func BenchmarkDeploy(b *testing.B) {
	home := b.TempDir()
	srv := sshdtest.StartWith(b, "SetEnv HOME="+home)
	for _, c := range []struct{ nodes, steps int }{{1, 1}, {1, 10}, {8, 1}, {8, 10}} {
		b.Run(fmt.Sprintf("nodes=%d/steps=%d", c.nodes, c.steps), func(b *testing.B) {
			provider := sdk.Provider{Name: "bench-" + randomSuffix(), Location: "EUROPE.TEST"}
			cfg := fmt.Sprintf(`{"uri": "test:///default", "capacity": {"cpus": 16, "memory_mb": 16384}, "subnet": "10.80.0.0/24",
				"ssh": {"ip": %q, "port": %d, "user": %q, "host_key": %q}}`, srv.Host, srv.Port, srv.User, srv.HostKey)
			client := plugintest.InProcess(b, xenvim.New(plugintest.TestLogger(b)), provider, []byte(cfg))
			vim, _ := client.VIM()
			dep, _ := client.Deployer()
			ctx := context.Background()
			ref := sdk.PartRef{SliceID: "bench-" + randomSuffix(), PartID: "p"}
			part, err := vim.Create(ctx, sdk.CreateRequest{Part: sdk.PartSpec{Ref: ref, Name: "p", Bridge: "br-bench",
				VDUs: []sdk.VDUSpec{{Name: "vm", Instances: c.nodes, CPUs: 1, MemoryMB: 128}}}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = vim.Delete(context.Background(), sdk.DeleteRequest{Ref: ref}) })
			srv.Authorize(b, part.Attributes[xenvim.AttrSSHPublicKey])
			req := sdk.DeployRequest{ServiceID: "bench", Part: part,
				Work: []sdk.NodeWork{{Node: "vm", Commands: strings.Split(strings.Repeat("true,", c.steps-1)+"true", ",")}}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d, err := dep.Deploy(ctx, req)
				if err != nil || d.State != sdk.DeploySucceeded {
					b.Fatalf("deploy: %v %s", err, d.Message)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N*c.steps), "ms/step")
		})
	}
}
