// Package cpuprofile lets a test plugin profile itself, so that a benchmark's profile
// shows the plugin's side of a call too: with NECOS_TEST_PLUGIN_CPUPROFILE set to a
// directory, the plugin writes <dir>/<name>.<pid>.pprof when it is shut down gracefully.
package cpuprofile

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// Env names the variable holding the directory profiles are written to.
const Env = "NECOS_TEST_PLUGIN_CPUPROFILE"

// Start starts profiling when Env is set and returns what stops it.
func Start(name string) (stop func()) {
	dir := os.Getenv(Env)
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s.%d.pprof", name, os.Getpid())))
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
