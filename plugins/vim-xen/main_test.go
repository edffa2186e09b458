package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/plugins/vim-xen/xenvim"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"libvirt.org/go/libvirt"
)

// EnvLibvirtURI points at a libvirtd serving the test driver (scripts/libvirtd.sh), whose
// domains outlive the plugin processes that made them.
const EnvLibvirtURI = "NECOS_LIBVIRT_URI"

var capacity = xenvim.Capacity{CPUs: 10, MemoryMB: 8192, StorageGB: 100}

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func config(t *testing.T, uri string) []byte {
	t.Helper()
	b, err := json.Marshal(xenvim.Config{URI: uri, Capacity: capacity, PricePerNodeDay: 2,
		Subnet: "10.78.0.0/24", SSH: &xenvim.SSHConfig{IP: "127.0.0.1", Port: 22}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBinary builds the plugin once and runs it as the core does: launched, over gRPC
// with mutual TLS.
func TestBinary(t *testing.T) {
	bin := plugintest.Build(t, "github.com/necos/necos/plugins/vim-xen")

	t.Run("Conformance", func(t *testing.T) {
		// test:///default lives inside the plugin process: fresh for this launch.
		conformance(t, bin, "test:///default")
	})

	t.Run("ConformanceDaemon", func(t *testing.T) {
		// Through libvirtd, whose state other processes share: the plugin counts only its
		// own provider's domains, so the suite's exact accounting holds.
		uri := os.Getenv(EnvLibvirtURI)
		if uri == "" {
			plugintest.NeedBackend(t, EnvLibvirtURI+" is not set: start a libvirtd with the test driver (scripts/libvirtd.sh)")
		}
		conformance(t, bin, uri)
	})

	t.Run("Restart", func(t *testing.T) { testRestart(t, bin) })
}

func conformance(t *testing.T, bin, uri string) {
	provider := sdk.Provider{Name: "conformance-bin-" + suffix(), Location: "EUROPE.TEST"}
	prefix := "xen-bin-" + suffix()
	if uri != "test:///default" {
		t.Cleanup(func() { purgePrefix(t, uri, prefix) })
	}
	c := plugintest.Binary(t, bin, provider, config(t, uri))
	plugintest.RunVIM(t, c, plugintest.VIMOptions{
		Capacity:    sdk.Resources{CPUs: capacity.CPUs, MemoryMB: capacity.MemoryMB, StorageGB: capacity.StorageGB},
		Spec:        func(p sdk.PartSpec) sdk.PartSpec { p.Bridge = "br-conformance"; return p },
		SlicePrefix: prefix,
	})
}

// testRestart creates a part with one plugin process, kills it, and checks that a new
// process finds the part, accounts for it and deletes it, with nothing but libvirt in
// between.
func testRestart(t *testing.T, bin string) {
	uri := os.Getenv(EnvLibvirtURI)
	if uri == "" {
		plugintest.NeedBackend(t, EnvLibvirtURI+" is not set: start a libvirtd with the test driver (scripts/libvirtd.sh)")
	}
	provider := sdk.Provider{Name: "restart-" + suffix(), Location: "EUROPE.TEST"}
	ref := sdk.PartRef{SliceID: "xen-restart-" + suffix(), PartID: "core-dc"}
	// The daemon is shared by everyone on the machine: whatever happens, leave none of
	// this test's domains behind.
	t.Cleanup(func() { purgePrefix(t, uri, ref.SliceID+".") })
	spec := sdk.PartSpec{Ref: ref, Name: "core-dc", Type: "DC", Bridge: "br-restart", VDUs: []sdk.VDUSpec{
		{Name: "master", Instances: 1, CPUs: 2, MemoryMB: 512, StorageGB: 10, Type: sdk.NodeMaster},
		{Name: "worker", Instances: 2, CPUs: 1, MemoryMB: 256, StorageGB: 5, Type: sdk.NodeWorker},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first := plugintest.Binary(t, bin, provider, config(t, uri))
	vim1, err := first.VIM()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	created, err := vim1.Create(ctx, sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Logf("create of %d nodes through libvirtd took %v", len(created.Nodes), time.Since(start))

	// A crash, not a shutdown: nothing gets a chance to save state.
	proc, err := os.FindProcess(first.Pid())
	if err != nil || first.Pid() == 0 {
		t.Fatalf("plugin pid %d: %v", first.Pid(), err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatalf("kill plugin: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); !first.Exited(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("killed plugin did not exit")
		}
	}

	second := plugintest.Binary(t, bin, provider, config(t, uri))
	vim2, err := second.VIM()
	if err != nil {
		t.Fatal(err)
	}
	found, err := vim2.Describe(ctx, sdk.DescribeRequest{Ref: ref})
	if err != nil {
		t.Fatalf("describe after restart: %v", err)
	}
	if !reflect.DeepEqual(found.Nodes, created.Nodes) || found.Name != created.Name || found.Bridge != created.Bridge {
		t.Errorf("after restart the part is\n%+v\nwas\n%+v", found, created)
	}
	o, err := vim2.Offer(ctx, sdk.OfferRequest{Part: spec})
	if err != nil {
		t.Fatal(err)
	}
	need := spec.Resources()
	if o.Free.CPUs != capacity.CPUs-need.CPUs || o.Free.MemoryMB != capacity.MemoryMB-need.MemoryMB ||
		o.Free.StorageGB != capacity.StorageGB-need.StorageGB {
		t.Errorf("offer after restart: free %+v, want the capacity %+v minus the part %+v", o.Free, capacity, need)
	}
	again, err := vim2.Create(ctx, sdk.CreateRequest{Part: spec})
	if err != nil || !reflect.DeepEqual(again.Nodes, created.Nodes) {
		t.Errorf("create retried after restart: %v\n%+v\nwant\n%+v", err, again.Nodes, created.Nodes)
	}
	start = time.Now()
	if err := vim2.Delete(ctx, sdk.DeleteRequest{Ref: ref}); err != nil {
		t.Fatalf("delete after restart: %v", err)
	}
	t.Logf("delete of %d nodes through libvirtd took %v", len(created.Nodes), time.Since(start))
	if _, err := vim2.Describe(ctx, sdk.DescribeRequest{Ref: ref}); !sdk.IsNotFound(err) {
		t.Errorf("describe after delete: %v, want NotFound", err)
	}
	if left := domainsOf(t, uri, ref.SliceID+"."); len(left) > 0 {
		t.Errorf("domains left after delete: %v", left)
	}
}

// domainsOf lists the daemon's domains of slices whose id starts with prefix (domain
// names start with "necos.<slice id>.").
func domainsOf(t *testing.T, uri, prefix string) []string {
	t.Helper()
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	defer func() { _, _ = conn.Close() }()
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		t.Fatalf("list domains: %v", err)
	}
	var out []string
	for i := range doms {
		if name, err := doms[i].GetName(); err == nil && strings.HasPrefix(name, "necos."+prefix) {
			out = append(out, name)
		}
		_ = doms[i].Free()
	}
	return out
}

// purgePrefix destroys and undefines the domains of slices whose id starts with prefix,
// whatever state the test left.
func purgePrefix(t *testing.T, uri, prefix string) {
	names := domainsOf(t, uri, prefix)
	if len(names) == 0 {
		return
	}
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Errorf("cleanup: connect %s: %v", uri, err)
		return
	}
	defer func() { _, _ = conn.Close() }()
	for _, name := range names {
		d, err := conn.LookupDomainByName(name)
		if err != nil {
			continue
		}
		_ = d.Destroy()
		if err := d.Undefine(); err != nil {
			t.Errorf("cleanup: undefine %s: %v", name, err)
		}
		_ = d.Free()
	}
}
