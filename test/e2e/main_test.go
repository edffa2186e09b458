// Package e2e runs necos as its users do: the necosd and necosctl binaries and the
// plugin binaries built from this repository, necosd started as a process on loopback,
// real backends behind the plugins (libvirtd with its test driver, network namespaces,
// InfluxDB, a Kubernetes API server), driven through the HTTP API.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// bin holds the binaries built for this run: necosd, necosctl, and plugins/ with the
// plugin binaries (locked in plugins/plugins.lock).
var bin string

var plugins = []string{"vim-xen", "vim-kubernetes", "wan", "monitor-influx"}

func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "necos-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	code := 1
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(dir string) error {
	run := func(args ...string) error {
		cmd := exec.Command("go", args...)
		cmd.Dir = root()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %v: %v\n%s", args, err, out)
		}
		return nil
	}
	if err := run("build", "-o", dir+"/", "./cmd/necosd", "./cmd/necosctl"); err != nil {
		return err
	}
	pdir := filepath.Join(dir, "plugins")
	for _, p := range plugins {
		if err := run("build", "-o", filepath.Join(pdir, "necos-plugin-"+p), "./plugins/"+p); err != nil {
			return err
		}
	}
	cmd := exec.Command(filepath.Join(dir, "necosctl"), "plugins", "lock", "--dir", pdir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("necosctl plugins lock: %v\n%s", err, out)
	}
	return nil
}
