package pluginhost_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
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
