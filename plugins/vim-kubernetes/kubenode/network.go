package kubenode

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/necos/necos/sdk/nsnet"
)

// The cluster network lives in namespaces the data plane makes; the host namespace gets
// nothing but loopback forwarders. Every cluster has its own namespaces, so the same
// private ranges serve every cluster on the machine:
//
//	hub namespace   bridge hubBridge 10.250.0.1/24: the cluster's LAN and router, routes
//	                to every node's pod range; metrics-server and the cluster DNS (dns.go,
//	                UDP 53) listen here
//	node i          eth0 10.250.0.(10+i)/24, default route via the hub; pods in
//	                10.244.i.0/24, each on a point-to-point veth (CNI ptp)
//	services        10.0.0.0/24 (the API server's default range), made real by kube-proxy
//	                inside each node namespace
const (
	hubBridge   = "br0"
	hubCIDR     = "10.250.0.1/24"
	hubIP       = "10.250.0.1"
	podCIDRs    = PodCIDRs
	nodeIface   = "eth0"
	maxNodes    = 200
	apiPortInNS = 6443 // the API server's loopback forwarder inside every namespace
)

func nodeIP(i int) string      { return fmt.Sprintf("10.250.0.%d", 10+i) }
func nodePodCIDR(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }
func hubPort(i int) string     { return fmt.Sprintf("n%d", i) }
func ipNet(cidr string) *net.IPNet {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

// PodCIDRs is the range every pod's address comes from, in every cluster the data plane
// runs (each cluster in namespaces of its own). A VIM that keeps other slices' pods out
// of a part while letting NodePort clients in names it (vim-kubernetes' pod_cidrs).
const PodCIDRs = "10.244.0.0/16"

// serviceCIDR is the API server's default service range.
const serviceCIDR = "10.0.0.0/24"

// inNS runs f with a netlink handle inside the named namespace.
func inNS(name string, f func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(nsnet.Path(name))
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	defer h.Close()
	return f(h)
}

// setSysctl writes a per-namespace sysctl (net.*) inside the named namespace.
func setSysctl(name, key, value string) error {
	return nsnet.In(name, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}

// makeHub creates the hub namespace with its bridge.
func makeHub(name string) error {
	if err := nsnet.Create(name); err != nil {
		return err
	}
	if err := setSysctl(name, "net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	return inNS(name, func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: hubBridge}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("hub bridge: %w", err)
		}
		if err := h.AddrAdd(br, &netlink.Addr{IPNet: ipNet(hubCIDR)}); err != nil {
			return fmt.Errorf("hub address: %w", err)
		}
		return h.LinkSetUp(br)
	})
}

// makeNodeNet creates node i's namespace, wires it to the hub and routes its pods.
func makeNodeNet(hub, node string, i int) error {
	if err := nsnet.Create(node); err != nil {
		return err
	}
	if err := setSysctl(node, "net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	nodeNS, err := netns.GetFromPath(nsnet.Path(node))
	if err != nil {
		return err
	}
	defer nodeNS.Close()
	err = inNS(hub, func(h *netlink.Handle) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hubPort(i)}, PeerName: nodeIface,
			PeerNamespace: netlink.NsFd(int(nodeNS))}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth to %s: %w", node, err)
		}
		br, err := h.LinkByName(hubBridge)
		if err != nil {
			return err
		}
		port, err := h.LinkByName(hubPort(i))
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(port, br); err != nil {
			return err
		}
		if err := h.LinkSetUp(port); err != nil {
			return err
		}
		return h.RouteAdd(&netlink.Route{Dst: ipNet(nodePodCIDR(i)), Gw: net.ParseIP(nodeIP(i))})
	})
	if err != nil {
		return err
	}
	return inNS(node, func(h *netlink.Handle) error {
		eth, err := h.LinkByName(nodeIface)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(nodeIP(i) + "/24")}); err != nil {
			return err
		}
		if err := h.LinkSetUp(eth); err != nil {
			return err
		}
		return h.RouteAdd(&netlink.Route{Gw: net.ParseIP(hubIP), LinkIndex: eth.Attrs().Index})
	})
}
