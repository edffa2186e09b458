package pluginhost_test

import (
	"bytes"
	"fmt"
	"os"
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
