package main

import (
	"fmt"
	"os/exec"
	"strings"

	"github.com/necos/necos/sdk/nsnet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// hostDev is a network device in a site's namespace.
type hostDev struct{ name, master, kind string }

// linksIn lists the devices of a network namespace, with the device each is enslaved to.
func linksIn(name string) ([]hostDev, error) {
	ns, err := netns.GetFromPath(nsnet.Path(name))
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	byIndex := map[int]string{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l.Attrs().Name
	}
	out := make([]hostDev, 0, len(links))
	for _, l := range links {
		out = append(out, hostDev{name: l.Attrs().Name, master: byIndex[l.Attrs().MasterIndex], kind: l.Type()})
	}
	return out, nil
}

// libvirtLeftovers lists the domains and storage volumes whose names carry one of the
// slices' ids (vim-xen names domains necos.<slice>.<...> and their disks after them),
// asking virsh: necosctl does not link libvirt.
func libvirtLeftovers(uri string, sliceIDs []string) (domains, volumes []string, err error) {
	if len(sliceIDs) == 0 {
		return nil, nil, nil
	}
	virsh, err := exec.LookPath("virsh")
	if err != nil {
		return nil, nil, fmt.Errorf("no virsh: %w", err)
	}
	run := func(args ...string) ([]string, error) {
		out, err := exec.Command(virsh, append([]string{"-q", "-c", uri}, args...)...).Output()
		if err != nil {
			return nil, fmt.Errorf("virsh %s: %w", strings.Join(args, " "), err)
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		return lines, nil
	}
	ours := func(name string) bool {
		for _, id := range sliceIDs {
			if strings.Contains(name, "."+id+".") {
				return true
			}
		}
		return false
	}
	names, err := run("list", "--all", "--name")
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		if ours(n) {
			domains = append(domains, n)
		}
	}
	pools, err := run("pool-list", "--all", "--name")
	if err != nil {
		return nil, nil, err
	}
	for _, p := range pools {
		vols, err := run("vol-list", "--pool", p)
		if err != nil {
			continue // an inactive pool lists nothing
		}
		for _, v := range vols {
			if f := strings.Fields(v); len(f) > 0 && ours(f[0]) {
				volumes = append(volumes, p+"/"+f[0])
			}
		}
	}
	return domains, volumes, nil
}
