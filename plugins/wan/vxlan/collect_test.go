package vxlan

import (
	"context"
	"math/rand/v2"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/vishvananda/netlink"
)

// TestCollect leaves in a site what killed plugin processes leave (a link's bridges
// without their VXLAN devices, a device still under its temporary name) beside what is
// not the plugin's to remove, and checks that a starting plugin and a Disconnect
// remove exactly the former.
func TestCollect(t *testing.T) {
	n := newTestNet(t, "core", "edge1")
	ctx := call(t)
	first := n.plugin(t)
	spec := sdk.LinkSpec{Ref: sdk.LinkRef{SliceID: "gc", LinkID: "l"}, End1: n.sites[0].end("core-dc", "br-gc"),
		End2: n.sites[1].end("edge-dc", "br-gc"), BandwidthBps: 10_000_000}
	l, err := first.Connect(ctx, sdk.ConnectRequest{Link: spec})
	if err != nil {
		t.Fatal(err)
	}
	// A process killed between deleting the VXLAN devices and the bridges.
	for i := range 2 {
		n.delete(i, deviceName(l.VNI))
	}
	h := n.handle(n.sites[0].NS)
	defer h.Close()
	add := func(name string, alias string) netlink.Link {
		t.Helper()
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			t.Fatalf("bridge %s: %v", name, err)
		}
		br, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if alias != "" {
			if err := h.LinkSetAlias(br, alias); err != nil {
				t.Fatal(err)
			}
		}
		return br
	}
	provider := n.provider().Name
	half := tempName(provider)           // killed between creating a device and naming it
	foreignTemp := tempName("other-wan") // another provider's, maybe being made right now
	add(half, "")
	add(foreignTemp, "")
	add("br-vim", "")                                                                         // a VIM's own bridge
	add("br-other", bridgeTag{Provider: "other-wan", SliceID: "x", Part: "y"}.encode())       // another provider's
	add("br-legacy", bridgeAlias)                                                             // made by an earlier version, unused
	used := add("br-used", bridgeTag{Provider: provider, SliceID: "gc2", Part: "p"}.encode()) // the plugin's, with a VM on it
	n.veth(h, "vm-port", used, n.ul, "vm-peer", 0)

	// A new process collects at start-up.
	second := n.plugin(t)
	want := []string{"br-other", "br-used", "br-vim", "eth0", foreignTemp, "lo", "vm-port"}
	sort.Strings(want)
	if got := names(n.devices(0)); !equal(got, want) {
		t.Errorf("core after start-up collection:\n got  %v\n want %v", got, want)
	}
	if got := names(n.devices(1)); !equal(got, []string{"eth0", "lo"}) {
		t.Errorf("edge1 after start-up collection: %v, want only the fixture's eth0 and lo", got)
	}

	// Once the VM's port is gone, a Disconnect (the engine's retry) collects its bridge.
	n.delete(0, "vm-port")
	if err := second.Disconnect(ctx, sdk.DisconnectRequest{Ref: spec.Ref}); err != nil {
		t.Fatalf("Disconnect of the half-removed link: %v", err)
	}
	if _, ok := n.devices(0)["br-used"]; ok {
		t.Errorf("bridge br-used, the plugin's and unused, survived a Disconnect")
	}
}

func names(devs map[string]string) []string {
	out := make([]string, 0, len(devs))
	for k := range devs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestKill9LeaksNothing kills the plugin process with SIGKILL at a random moment of a
// Connect or a Disconnect, 100 times, then does what the engine does after a crash:
// relaunch the plugin and Disconnect the link (a rollback or a decommission). Nothing
// the plugin made may remain: no VXLAN device, no bridge, no half-made device.
func TestKill9LeaksNothing(t *testing.T) {
	const kills = 100
	n := newTestNet(t, "core", "edge1")
	bin := plugintest.Build(t, pluginPkg)
	quiet := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: hclogWriter{t}})
	launch := func() *sdk.Client {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: bin, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Configure(ctx, n.provider(), n.config()); err != nil {
			c.Kill()
			t.Fatal(err)
		}
		return c
	}
	wanOf := func(c *sdk.Client) sdk.WAN {
		w, err := c.WAN()
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// How long a call takes through a plugin process, to spread the kills over it.
	var took [2]time.Duration
	{
		c := launch()
		w := wanOf(c)
		spec := killSpec(n, -1)
		start := time.Now()
		if _, err := w.Connect(call(t), sdk.ConnectRequest{Link: spec}); err != nil {
			t.Fatal(err)
		}
		took[0] = time.Since(start)
		start = time.Now()
		if err := w.Disconnect(call(t), sdk.DisconnectRequest{Ref: spec.Ref}); err != nil {
			t.Fatal(err)
		}
		took[1] = time.Since(start)
		c.Kill()
	}
	t.Logf("through a plugin process: Connect %v, Disconnect %v", took[0], took[1])

	leaked, dirty := 0, 0
	for i := range kills {
		spec := killSpec(n, i)
		duringConnect := i%2 == 0
		c := launch()
		w := wanOf(c)
		if !duringConnect {
			if _, err := w.Connect(call(t), sdk.ConnectRequest{Link: spec}); err != nil {
				t.Fatal(err)
			}
		}
		op := took[1]
		if duringConnect {
			op = took[0]
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if duringConnect {
				_, _ = w.Connect(context.Background(), sdk.ConnectRequest{Link: spec})
			} else {
				_ = w.Disconnect(context.Background(), sdk.DisconnectRequest{Ref: spec.Ref})
			}
		}()
		time.Sleep(time.Duration(rand.Int64N(int64(op) * 3 / 2)))
		if err := syscall.Kill(c.Pid(), syscall.SIGKILL); err != nil {
			t.Fatalf("kill: %v", err)
		}
		<-done
		c.Kill()
		if !n.pristine() {
			dirty++ // the kill left something for the relaunched plugin to clean
		}

		c = launch()
		if err := wanOf(c).Disconnect(call(t), sdk.DisconnectRequest{Ref: spec.Ref}); err != nil {
			t.Fatalf("kill %d: Disconnect after relaunch: %v", i, err)
		}
		c.Kill()
		if left := n.leftovers(); len(left) > 0 {
			leaked++
			t.Errorf("kill %d (during %s): left %v", i, map[bool]string{true: "Connect", false: "Disconnect"}[duringConnect], left)
			n.clear()
		}
	}
	t.Logf("%d kills (half during Connect, half during Disconnect): %d left devices behind at the kill, %d leaked after relaunch and Disconnect",
		kills, dirty, leaked)
}

// killSpec is the link of kill i, on bridges of its own.
func killSpec(n *testNet, i int) sdk.LinkSpec {
	id := "k" + string(rune('a'+(i+1)/26)) + string(rune('a'+(i+1)%26))
	return sdk.LinkSpec{Ref: sdk.LinkRef{SliceID: "kill-" + id, LinkID: "l"},
		End1: n.sites[0].end("core-dc", "br-"+id), End2: n.sites[1].end("edge-dc", "br-"+id), BandwidthBps: 10_000_000}
}

// leftovers lists, per site, the devices other than the fixture's lo and eth0.
func (n *testNet) leftovers() []string {
	var out []string
	for i, s := range n.sites {
		for name, typ := range n.devices(i) {
			if name != "lo" && name != "eth0" {
				out = append(out, s.Name+"/"+name+"("+typ+")")
			}
		}
	}
	sort.Strings(out)
	return out
}

func (n *testNet) pristine() bool { return len(n.leftovers()) == 0 }

// clear removes the leftovers, so that one leak does not count again at the next kill.
func (n *testNet) clear() {
	for i := range n.sites {
		for name := range n.devices(i) {
			if name != "lo" && name != "eth0" {
				n.delete(i, name)
			}
		}
	}
}

// hclogWriter sends a plugin's warnings into the test log.
type hclogWriter struct{ t testing.TB }

func (w hclogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
