package pluginhost_test

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/necos/necos/core/pluginhost"
)

// A host killed with SIGKILL cannot stop its plugins: they must notice and exit by
// themselves. testdata/host starts one plugin through pluginhost and prints its pid.
func TestPluginsExitWhenHostIsKilled(t *testing.T) {
	dir := pluginDir(t, "memvim")
	if _, err := pluginhost.New(pluginhost.Options{Dir: dir}).Lock(); err != nil {
		t.Fatal(err)
	}
	host := exec.Command(binary(t, "host"), "-dir", dir)
	logs := &logBuffer{t: t}
	t.Cleanup(func() { logs.mu.Lock(); logs.done = true; logs.mu.Unlock() })
	host.Stderr = logs
	stdout, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })

	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read the plugin pid from the host: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		t.Fatalf("host printed %q", line)
	}
	if processGone(pid) {
		t.Fatalf("plugin %d is not running", pid)
	}
	t.Cleanup(func() {
		if !processGone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // do not leak it if the test fails
		}
	})

	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	took := waitFor(t, "orphaned plugin exits", 10*time.Second, func() bool { return processGone(pid) })
	t.Logf("plugin %d exited %s after its host was SIGKILLed", pid, took.Round(time.Millisecond))
}
