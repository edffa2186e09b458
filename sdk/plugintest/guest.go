package plugintest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// GuestChecks are the promises only a VIM whose nodes are real machines can show: what
// the guest itself sees. A plugin runs them by setting [VIMOptions].Guest in the test
// that drives real guests; a run against a test driver leaves it nil, and the subtests
// are then not run at all (by design: there is no guest to ask).
type GuestChecks struct {
	// Exec runs a shell command on a node of a part (as the part's credential allows)
	// and returns its output. It fails while the node does not answer yet; the suite
	// retries until Timeout.
	Exec func(ctx context.Context, part sdk.Part, node, cmd string) (string, error)
	// Volumes lists the storage the backend still holds for a part (disks, seeds,
	// overlays), by name. After Delete it must list nothing.
	Volumes func(ctx context.Context, ref sdk.PartRef) ([]string, error)
	// Timeout bounds each wait for a node to answer or to show a change; zero means 2
	// minutes (a first boot under software emulation takes seconds).
	Timeout time.Duration
}

// runGuest runs the guest checks as subtests of "Guest":
//
//   - ResizeVisible: a live Resize of a node's vCPUs and memory is what the guest
//     sees, without a reboot: nproc gives the new vCPUs, MemTotal grows;
//   - ScaleAnswers: a node added by Scale boots and answers, under the name Describe
//     gives it;
//   - DeleteLeavesNoVolume: after Delete, Volumes lists nothing of the part.
func (s *vimSuite) runGuest(t *testing.T) {
	g := s.opts.Guest
	if g.Exec == nil || g.Volumes == nil {
		t.Fatalf("VIMOptions.Guest: Exec and Volumes are required")
	}
	if g.Timeout <= 0 {
		g.Timeout = 2 * time.Minute
	}
	t.Run("ResizeVisible", func(t *testing.T) { s.testGuestResize(t, g) })
	t.Run("ScaleAnswers", func(t *testing.T) { s.testGuestScale(t, g) })
	t.Run("DeleteLeavesNoVolume", func(t *testing.T) { s.testGuestDelete(t, g) })
}

// until runs cmd on node until check accepts its output, and returns that output.
func (s *vimSuite) until(t *testing.T, g *GuestChecks, part sdk.Part, node, cmd, want string, check func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(g.Timeout)
	var out string
	var err error
	for {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err = g.Exec(c, part, node, cmd)
		cancel()
		if err == nil && check(strings.TrimSpace(out)) {
			return strings.TrimSpace(out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %q gave %q (%v) for %s, want %s", node, cmd, out, err, g.Timeout, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// memTotalKB is the command reading a guest's MemTotal in kB.
const memTotalKB = "awk '/^MemTotal:/ {print $2}' /proc/meminfo"

func (s *vimSuite) testGuestResize(t *testing.T, g *GuestChecks) {
	ref := s.ref("guest-resize")
	part := s.create(t, s.spec(ref, s.vdu("vm", sdk.NodeWorker, 1, 1)))
	node := part.Nodes[0].Name
	s.until(t, g, part, node, "nproc", "1", func(o string) bool { return o == strconv.Itoa(s.opts.Node.CPUs) })
	// A guest may boot with its maximum memory and give back the rest through its balloon
	// after boot (vim-xen does so), so MemTotal falls for a while: read it once the guest
	// is down to its size, or a grow that ends where the balloon was would pass unseen
	// and a smaller one would read as no growth.
	size := int(s.opts.Node.MemoryMB) * 1024
	before, _ := strconv.Atoi(s.until(t, g, part, node, memTotalKB, "at most "+strconv.Itoa(size), func(o string) bool {
		n, err := strconv.Atoi(o)
		return err == nil && n > 0 && n <= size
	}))
	cpus, mem := s.opts.Node.CPUs+1, 2*s.opts.Node.MemoryMB
	p, err := s.vim.Resize(ctx(t), sdk.ResizeRequest{Ref: ref, VDU: "vm", CPUs: cpus, MemoryMB: mem})
	if err != nil {
		t.Fatalf("Resize %s to %d vCPUs, %d MB: %v", ref, cpus, mem, err)
	}
	s.until(t, g, p, node, "nproc", strconv.Itoa(cpus), func(o string) bool { return o == strconv.Itoa(cpus) })
	// The guest's MemTotal counts the kernel's own memory out: it grows by most of what
	// was added, not all.
	grow := int(s.opts.Node.MemoryMB) * 1024 / 2
	s.until(t, g, p, node, memTotalKB, "> "+strconv.Itoa(before+grow), func(o string) bool {
		n, err := strconv.Atoi(o)
		return err == nil && n > before+grow
	})
}

func (s *vimSuite) testGuestScale(t *testing.T, g *GuestChecks) {
	ref := s.ref("guest-scale")
	part := s.create(t, s.spec(ref, s.vdu("vm", sdk.NodeWorker, 1, 1)))
	s.until(t, g, part, part.Nodes[0].Name, "true", "an answer", func(string) bool { return true })
	p, err := s.vim.Scale(ctx(t), sdk.ScaleRequest{Ref: ref, VDU: "vm", Instances: 2})
	if err != nil {
		t.Fatalf("Scale %s to 2: %v", ref, err)
	}
	added := sdk.NodeName("vm", 2)
	found := false
	for _, n := range p.Nodes {
		found = found || n.Name == added
	}
	if !found {
		t.Fatalf("Scale to 2: no node %s in %+v", added, p.Nodes)
	}
	s.until(t, g, p, added, "hostname", added, func(o string) bool { return o == added })
}

func (s *vimSuite) testGuestDelete(t *testing.T, g *GuestChecks) {
	ref := s.ref("guest-delete")
	part := s.create(t, s.spec(ref, s.vdu("vm", sdk.NodeWorker, 2, 1)))
	vols, err := g.Volumes(ctx(t), ref)
	if err != nil {
		t.Fatalf("Volumes %s: %v", ref, err)
	}
	if len(vols) == 0 {
		t.Fatalf("Volumes %s lists nothing for a part of %d nodes: the check would prove nothing", ref, len(part.Nodes))
	}
	if err := s.vim.Delete(ctx(t), sdk.DeleteRequest{Ref: ref}); err != nil {
		t.Fatalf("Delete %s: %v", ref, err)
	}
	left, err := g.Volumes(ctx(t), ref)
	if err != nil {
		t.Fatalf("Volumes %s: %v", ref, err)
	}
	if len(left) > 0 {
		t.Errorf("after Delete %s the backend still holds %v (had %v)", ref, left, vols)
	}
}
