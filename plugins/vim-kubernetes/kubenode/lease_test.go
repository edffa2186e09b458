package kubenode

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest"
)

const leaseHelperEnv = "NECOS_KUBENODE_LEASE_HELPER"

// TestMain runs, in the child TestLeaseOfAKilledProcessIsSwept starts, the process it
// kills: it takes a lease, makes a hub's and a node's namespaces, says so, and waits.
func TestMain(m *testing.M) {
	if arg := os.Getenv(leaseHelperEnv); arg != "" {
		id, dir, _ := strings.Cut(arg, ",")
		if _, err := takeLease(id, dir); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for _, ns := range []string{"necos-k" + id + "-hub", "necos-k" + id + "-n1"} {
			if err := nsnet.Create(ns); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A data plane's namespaces outlive a process killed before Stop; the next Prepare's
// sweep removes them, and never those of a data plane whose process lives.
func TestLeaseOfAKilledProcessIsSwept(t *testing.T) {
	if os.Geteuid() != 0 {
		plugintest.NeedBackend(t, "root (network namespaces)")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	names := []string{"necos-k" + id + "-hub", "necos-k" + id + "-n1"}
	t.Cleanup(func() {
		for _, ns := range names {
			_ = nsnet.Remove(ns)
		}
		_ = os.Remove(leaseDir + "/" + id)
	})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), leaseHelperEnv+"="+id+","+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper: %q", line)
	}
	exists := func() (n int) {
		for _, ns := range names {
			if _, err := os.Stat(nsnet.Path(ns)); err == nil {
				n++
			}
		}
		return n
	}

	removed, err := sweepLeases()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(removed, id) || exists() != 2 {
		t.Fatalf("a live data plane's namespaces were swept: %v, %d of 2 left", removed, exists())
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	removed, err = sweepLeases()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, id) || exists() != 0 {
		t.Errorf("after the kill: swept %v, %d of 2 namespaces left", removed, exists())
	}
	if _, err := os.Stat(leaseDir + "/" + id); err == nil {
		t.Error("the lease file is left")
	}
}
