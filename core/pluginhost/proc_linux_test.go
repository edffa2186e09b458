package pluginhost_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// processGone reports whether pid no longer runs: no such process, or a zombie (an
// orphan reparented to an init that does not reap is dead all the same).
func processGone(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 || i+2 >= len(raw) {
		return false
	}
	switch raw[i+2] {
	case 'Z', 'X', 'x':
		return true
	}
	return false
}

// schedTotals sums, over the threads of pid, the time spent running on a CPU and the
// time spent runnable but waiting for one (/proc/<pid>/task/*/schedstat). On a shared
// machine the waiting part tells contention from the cost of the code.
func schedTotals(pid int) (run, wait time.Duration) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, f := range tasks {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		var r, w int64
		if _, err := fmt.Sscan(string(raw), &r, &w); err == nil {
			run += time.Duration(r)
			wait += time.Duration(w)
		}
	}
	return run, wait
}

// ioCounters returns how many read and write system calls pid has made (all its threads,
// /proc/<pid>/io) and how often its threads blocked (voluntary context switches summed
// over /proc/<pid>/task/*/status). These counts move far less with the machine's load
// than times do: they tell a transport's work per call on a busy machine.
func ioCounters(pid int) (syscalls, blocked int64) {
	if raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "syscr" || k == "syscw") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				syscalls += n
			}
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, f := range tasks {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				blocked += n
			}
		}
	}
	return syscalls, blocked
}
