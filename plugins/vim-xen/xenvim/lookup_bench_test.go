package xenvim

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/sdk"
)

// BenchmarkPartCallsWithDomains measures Describe, Resize and a Create+Delete of one
// part while N other domains of the provider exist, on the libvirt test driver behind
// a libvirtd (NECOS_LIBVIRT_URI, scripts/libvirtd.sh; test:///default without it). A
// per-call cost that does not grow from N=0 to N=1,000 is the point:
//
//	go test -run '^$' -bench PartCallsWithDomains ./plugins/vim-xen/xenvim
func BenchmarkPartCallsWithDomains(b *testing.B) {
	uri := os.Getenv("NECOS_LIBVIRT_URI")
	if uri == "" {
		uri = "test:///default"
	}
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("domains=%d", n), func(b *testing.B) {
			p := New(hclog.NewNullLogger())
			room := n + 10
			raw := mustJSON(b, Config{URI: uri, Capacity: Capacity{CPUs: 4 * room, MemoryMB: int64(room) << 10, StorageGB: int64(room)},
				MaxNode: NodeLimit{CPUs: 2, MemoryMB: 512}, KeyDir: b.TempDir()})
			if err := p.Configure(context.Background(), sdk.Config{Provider: sdk.Provider{Name: "bench-" + suffix()}, JSON: raw}); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = p.Close() }()
			ctx := context.Background()
			slice := "fill-" + suffix()
			var refs []sdk.PartRef
			defer func() {
				for _, ref := range refs {
					_ = p.Delete(ctx, sdk.DeleteRequest{Ref: ref})
				}
			}()
			node := sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 1, MemoryMB: 64}
			for i := 0; i < n; i++ {
				ref := sdk.PartRef{SliceID: slice, PartID: fmt.Sprint(i)}
				refs = append(refs, ref)
				if _, err := p.Create(ctx, sdk.CreateRequest{Part: partSpec(ref, node)}); err != nil {
					b.Fatal(err)
				}
			}
			target := sdk.PartRef{SliceID: slice, PartID: "target"}
			refs = append(refs, target)
			if _, err := p.Create(ctx, sdk.CreateRequest{Part: partSpec(target, node)}); err != nil {
				b.Fatal(err)
			}
			b.Run("describe", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := p.Describe(ctx, sdk.DescribeRequest{Ref: target}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("resize", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := p.Resize(ctx, sdk.ResizeRequest{Ref: target, VDU: "vm", CPUs: 1 + (i+1)%2}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("create-delete", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					ref := sdk.PartRef{SliceID: slice, PartID: fmt.Sprint("x", i)}
					if _, err := p.Create(ctx, sdk.CreateRequest{Part: partSpec(ref, node)}); err != nil {
						b.Fatal(err)
					}
					if err := p.Delete(ctx, sdk.DeleteRequest{Ref: ref}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
