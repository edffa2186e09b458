package kubenode

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCgroupRootsShareAncestors: two nodes below the same memory cgroup share the
// directories above their roots; whichever stops first leaves them to the other without
// an error, and the last one leaves nothing behind (the registry forgets them too).
func TestCgroupRootsShareAncestors(t *testing.T) {
	mounts, err := cgroupMounts()
	if err != nil || len(mounts) == 0 || os.Geteuid() != 0 {
		t.Skip("needs root and cgroup v1 hierarchies")
	}
	prefix := fmt.Sprintf("necos-cgtest-%d", os.Getpid())
	a, err := makeCgroupRoot(prefix + "-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := makeCgroupRoot(prefix + "-b")
	if err != nil {
		a.remove()
		t.Fatal(err)
	}
	for _, m := range mounts {
		if _, err := os.Stat(filepath.Join(m, a.path)); err != nil {
			t.Errorf("root a missing in %s: %v", m, err)
		}
	}
	if err := a.remove(); err != nil {
		t.Errorf("first node to stop: %v", err)
	}
	for _, m := range mounts {
		if _, err := os.Stat(filepath.Join(m, b.path)); err != nil {
			t.Errorf("root b gone from %s after a stopped: %v", m, err)
		}
	}
	made := append([]string(nil), b.created...)
	if err := b.remove(); err != nil {
		t.Errorf("last node to stop: %v", err)
	}
	reg, err := openRegistry()
	if err != nil {
		t.Fatal(err)
	}
	defer reg.close()
	for _, d := range made {
		if _, err := os.Stat(d); err == nil && reg.dirs[d] {
			t.Errorf("%s is left behind", d)
		}
		if _, err := os.Stat(d); err != nil && reg.dirs[d] {
			t.Errorf("registry still lists %s", d)
		}
	}
}

// TestCgroupRootsAcrossProcesses: test binaries run side by side in one memory cgroup,
// so a node of another process shares the directories above the roots. The process that
// made them stops first, while this one's node still lives below: neither reports an
// error, and the last to leave removes them.
func TestCgroupRootsAcrossProcesses(t *testing.T) {
	if name := os.Getenv("NECOS_CGTEST_CHILD"); name != "" {
		r, err := makeCgroupRoot(name)
		if err != nil {
			fmt.Println("make:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		_, _ = io.ReadAll(os.Stdin) // the parent closes stdin once its own node is up
		if err := r.remove(); err != nil {
			fmt.Println("remove:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	mounts, err := cgroupMounts()
	if err != nil || len(mounts) == 0 || os.Geteuid() != 0 {
		t.Skip("needs root and cgroup v1 hierarchies")
	}
	prefix := fmt.Sprintf("necos-cgtest-%d", os.Getpid())
	child := exec.Command(os.Args[0], "-test.run=^TestCgroupRootsAcrossProcesses$")
	child.Env = append(os.Environ(), "NECOS_CGTEST_CHILD="+prefix+"-child")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("child: %q", sc.Text())
	}
	mine, err := makeCgroupRoot(prefix + "-parent")
	if err != nil {
		stdin.Close()
		child.Wait()
		t.Fatal(err)
	}
	stdin.Close()
	var rest strings.Builder
	for sc.Scan() {
		rest.WriteString(sc.Text() + "\n")
	}
	if err := child.Wait(); err != nil {
		t.Errorf("the other process's node stopped with: %v %s", err, rest.String())
	}
	made := append([]string(nil), mine.created...)
	if err := mine.remove(); err != nil {
		t.Errorf("the last node to stop: %v", err)
	}
	for _, d := range made {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s is left behind", d)
		}
	}
}
