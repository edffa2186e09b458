// Command necos-kube runs a Kubernetes cluster on this machine for the main job
// (scripts/run.sh --kubernetes): etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler on 127.0.0.1, and real nodes (containerd, runc, kubelet, kube-proxy,
// each node in a network namespace of its own, and metrics-server) — the cluster the
// tests run on (package kubetest). No fake node is added: the cluster's capacity is its
// real nodes'.
//
// Once every node is Ready it writes an administrator's kubeconfig to each --kubeconfig
// file (written whole, then renamed: a file that exists is usable) and prints one line.
// On SIGINT or SIGTERM it stops everything it started, removes its namespaces and the
// kubeconfig files, and exits 0.
//
// The binaries come from the environment, as for the tests: KUBEBUILDER_ASSETS
// (scripts/kube-binaries.sh), NECOS_KUBE_NODE (scripts/node-binaries.sh) and
// NECOS_IMAGES (scripts/images.sh). Run as root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/necos/necos/plugins/vim-kubernetes/kubenode"
	"github.com/necos/necos/plugins/vim-kubernetes/kubetest"
)

// files collects a repeated flag.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var kubeconfigs files
	// A flag set of its own: controller-runtime registers a --kubeconfig of its own on
	// the default one.
	f := flag.NewFlagSet("necos-kube", flag.ExitOnError)
	nodes := f.Int("nodes", 2, "real nodes to run")
	timeout := f.Duration("start-timeout", 10*time.Minute, "how long the cluster may take to be ready")
	f.Var(&kubeconfigs, "kubeconfig", "file to write the administrator's kubeconfig to, once ready (repeatable)")
	_ = f.Parse(os.Args[1:])
	if err := run(*nodes, *timeout, kubeconfigs); err != nil {
		fmt.Fprintln(os.Stderr, "necos-kube:", err)
		os.Exit(1)
	}
}

func run(nodes int, timeout time.Duration, kubeconfigs []string) error {
	if len(kubeconfigs) == 0 {
		return errors.New("--kubeconfig: at least one file to write the cluster's kubeconfig to")
	}
	if nodes < 1 {
		return fmt.Errorf("--nodes: expected at least 1, got %d", nodes)
	}
	if !kubetest.Available() {
		return errors.New(kubetest.MissingReason)
	}
	if !kubenode.Available() {
		return errors.New(kubenode.MissingReason)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := kubetest.Start(startCtx, kubetest.Options{RealNodes: nodes, NoFakeNode: true})
	if err != nil {
		return fmt.Errorf("start the cluster: %w", err)
	}
	defer func() {
		for _, f := range kubeconfigs {
			_ = os.Remove(f)
		}
	}()
	kc, err := os.ReadFile(c.Kubeconfig)
	if err == nil {
		err = writeAll(kubeconfigs, kc)
	}
	if err != nil {
		return errors.Join(err, c.Stop())
	}
	names := make([]string, 0, len(c.Data.Nodes))
	for _, n := range c.Data.Nodes {
		names = append(names, n.Name)
	}
	fmt.Printf("necos-kube: API server https://%s, nodes %s ready in %v; kubeconfig in %s\n",
		c.APIAddr, strings.Join(names, ", "), c.Started.Round(time.Second), strings.Join(kubeconfigs, ", "))
	<-ctx.Done()
	fmt.Println("necos-kube: stopping")
	return c.Stop()
}

// writeAll writes b to every file: to a temporary file first, renamed into place.
func writeAll(paths []string, b []byte) error {
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("kubeconfig %s: %w", p, err)
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return fmt.Errorf("kubeconfig %s: %w", p, err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return fmt.Errorf("kubeconfig %s: %w", p, err)
		}
	}
	return nil
}
