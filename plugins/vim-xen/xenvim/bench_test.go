package xenvim

import (
	"context"
	"fmt"
	"testing"

	"github.com/necos/necos/sdk"
)

// BenchmarkCreateDelete measures a part of three nodes made and removed on the test
// driver (libvirt's own cost there is small: this is mostly the plugin's).
func BenchmarkCreateDelete(b *testing.B) {
	p := New(nil)
	raw := []byte(`{"uri":"test:///default","capacity":{"cpus":64,"memory_mb":65536,"storage_gb":1000},"subnet":"10.99.0.0/16"}`)
	if err := p.Configure(context.Background(), sdk.Config{Provider: sdk.Provider{Name: "bench-" + suffix()}, JSON: raw}); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ref := sdk.PartRef{SliceID: "bench", PartID: fmt.Sprint(i)}
		if _, err := p.Create(ctx, sdk.CreateRequest{Part: partSpec(ref, sdk.VDUSpec{Name: "master", Instances: 1, CPUs: 2, MemoryMB: 512},
			sdk.VDUSpec{Name: "worker", Instances: 2, CPUs: 1, MemoryMB: 256})}); err != nil {
			b.Fatal(err)
		}
		if err := p.Delete(ctx, sdk.DeleteRequest{Ref: ref}); err != nil {
			b.Fatal(err)
		}
	}
}
