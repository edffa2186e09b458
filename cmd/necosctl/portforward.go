package main

import (
	"fmt"
	"net"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/spf13/cobra"
)

// attrNetns is the part attribute naming the network namespace its nodes are reached
// from (vim-xen's real guests).
const attrNetns = "netns"

func newSlicePortForward(a *app) *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "port-forward SLICE PART/NODE:PORT LOCALPORT",
		Short: "Forward a loopback port to a port of a slice's node or pod (like kubectl port-forward)",
		Long: `Listen on 127.0.0.1:LOCALPORT and relay each connection to PORT of the node NODE of
part PART of the slice, from inside the network namespace its nodes are reached from:
guests have private addresses that live only inside the project's namespaces, never in
the host's. Runs until interrupted. Needs to run as root on the machine of the part's
provider (it enters the part's network namespace).

On a Kubernetes part, whose nodes are shares of a quota without addresses, NODE is a
label selector of the part's pods instead (dc-slice1/app=gui:8080): the port of a ready
pod it matches is reached through the cluster's API server (pods/portforward, as
kubectl port-forward does) with the part's own kubeconfig; no root needed.`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			partNode, portText, ok := strings.Cut(args[1], ":")
			part, node, ok2 := strings.Cut(partNode, "/")
			port, err := strconv.Atoi(portText)
			if !ok || !ok2 || part == "" || node == "" || err != nil || port < 1 || port > 65535 {
				return fmt.Errorf("target: expected PART/NODE:PORT (e.g. core-dc/core_vm-1:80; on a Kubernetes part PART/SELECTOR:PORT, e.g. dc-slice1/app=gui:8080), got %q", args[1])
			}
			local, err := strconv.Atoi(args[2])
			if err != nil || local < 0 || local > 65535 {
				return fmt.Errorf("local port: expected 0-65535, got %q", args[2])
			}
			if ip := net.ParseIP(address); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("--address: expected a loopback address, got %q", address)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.GetSlice(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if p, ok := kubePart(s, part); ok {
				f, err := forwardPod(ctx, p, node, address, local, port, time.Minute)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Forwarding from %s -> %s/pod %s:%d (selector %s)\n", f.Addr, part, f.Pod, port, node)
				<-ctx.Done()
				f.Close()
				return nil
			}
			to, err := forwardTarget(s, part, node, port)
			if err != nil {
				return err
			}
			f, err := nsnet.Forward(ctx, nsnet.Endpoint{Addr: net.JoinHostPort(address, strconv.Itoa(local))}, to,
				func(err error) { fmt.Fprintln(cmd.ErrOrStderr(), "port-forward:", err) })
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Forwarding from %s -> %s/%s %s\n", f.Addr(), part, node, to)
			<-ctx.Done()
			return f.Close()
		},
	}
	cmd.Flags().StringVar(&address, "address", "127.0.0.1", "loopback address to listen on")
	return cmd
}

// kubePart returns the slice's part called name when it is a Kubernetes part: one whose
// credential is a kubeconfig.
func kubePart(s *v1.Slice, name string) (v1.Part, bool) {
	for _, p := range s.Parts {
		if p.Name == name && p.Credential != nil && p.Credential.Kind == "kubeconfig" {
			return p, true
		}
	}
	return v1.Part{}, false
}

// forwardTarget finds where a node's port is reached from: its first address, inside the
// part's namespace.
func forwardTarget(s *v1.Slice, part, node string, port int) (nsnet.Endpoint, error) {
	var names []string
	for _, p := range s.Parts {
		names = append(names, p.Name)
		if p.Name != part {
			continue
		}
		var nodes []string
		for _, n := range p.Nodes {
			nodes = append(nodes, n.Name)
			if n.Name != node {
				continue
			}
			if len(n.IPs) == 0 {
				return nsnet.Endpoint{}, fmt.Errorf("node %s of part %s has no address", node, part)
			}
			return nsnet.Endpoint{Netns: p.Attributes[attrNetns], Addr: net.JoinHostPort(n.IPs[0], strconv.Itoa(port))}, nil
		}
		return nsnet.Endpoint{}, fmt.Errorf("part %s has no node %q (nodes: %s)", part, node, strings.Join(nodes, ", "))
	}
	return nsnet.Endpoint{}, fmt.Errorf("slice %s has no part %q (parts: %s)", s.ID, part, strings.Join(names, ", "))
}
