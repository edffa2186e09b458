package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// site is one of the five providers of the original demo.
type site struct {
	Name, Location, Types string
	Underlay              string
	Price                 float64
	CPUs                  int
}

var demoSites = []site{
	{"UNICAMP", "AMERICA.BRAZIL.UNICAMP", "[DC, EDGE]", "10.100.0.1", 4, 64},
	{"UFSCAR", "AMERICA.BRAZIL.UFSCAR", "[EDGE]", "10.100.0.2", 5, 16},
	{"SPAIN", "EUROPE.SPAIN", "[EDGE]", "10.100.0.3", 6, 16},
	{"GREECE", "EUROPE.GREECE", "[EDGE]", "10.100.0.4", 5, 16},
	{"5TONIC", "EUROPE.SPAIN.MADRID", "[DC, EDGE]", "10.100.0.5", 7, 32},
}

// xenCatalogue is the default catalogue's federation with every provider on the libvirt
// daemon (so the test sees the domains), WAN sites in the test's own namespaces when fed
// is not nil, and the given extra YAML (e.g. a monitor section) appended.
func xenCatalogue(t *testing.T, fed *federation, extra string) string {
	uri := libvirtURI(t)
	var b strings.Builder
	b.WriteString("providers:\n")
	for i, s := range demoSites {
		fmt.Fprintf(&b, `  - name: %s
    location: %s
    controller: {ip: 127.0.0.1, port: %d}
    dc:
      vim: xen-vim
      part_types: %s
      plugin: vim-xen
      config: {uri: "%s", capacity: {cpus: %d, memory_mb: 262144, storage_gb: 4000}, price_per_node_day: %g, subnet: 10.10.%d.0/24}
`, s.Name, s.Location, 5000+i, s.Types, uri, s.CPUs, s.Price, i+1)
		if fed != nil {
			fmt.Fprintf(&b, "    site: {underlay: %s, netns: %s}\n", s.Underlay, fed.netns(s.Name))
		}
	}
	if fed != nil {
		fmt.Fprintf(&b, `  - name: WAN
    location: AMERICA.BRAZIL
    wan:
      wim: VXLAN
      plugin: wan
      config:
        netns: ["%s-*"]
        provision_sites: {underlay_netns: %s, prefix_len: 24}
        price_per_link_day: 2
`, fed.prefix, fed.netns("underlay"))
	}
	b.WriteString(extra)
	return b.String()
}
