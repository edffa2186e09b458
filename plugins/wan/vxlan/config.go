package vxlan

import (
	"fmt"
	"path"
	"strings"

	"github.com/necos/necos/sdk"
)

// Limits of the configuration and of requests.
const (
	maxVNI = 1<<24 - 1
	// minBandwidthBps keeps tbf's token bucket (burst time in kernel ticks) in range.
	minBandwidthBps = 64_000
	defaultVNIMin   = 1000
	defaultUDPPort  = 4789
	// defaultMaxBandwidthBps is the capacity between two sites when none is configured.
	defaultMaxBandwidthBps = 1_000_000_000
)

// Config is the plugin's configuration (a JSON object; every key is optional).
// Bandwidths are bits per second, each direction.
type Config struct {
	// MaxBandwidthBps is the capacity between any two sites: the sum of the rates of
	// the links joining them may not exceed it. Pairs overrides it per pair.
	MaxBandwidthBps uint64 `json:"max_bandwidth_bps"`
	// Pairs overrides MaxBandwidthBps for given pairs of sites.
	Pairs []PairConfig `json:"pairs"`
	// Sites limits, per site, the sum of the rates of every link touching it (the
	// site's uplink). A site not listed has no such limit.
	Sites map[string]SiteConfig `json:"sites"`
	// PricePerLinkDay is the price of one link per day, in euros (the NECOS
	// COST_PER_LINK_PER_DAY model).
	PricePerLinkDay float64 `json:"price_per_link_day"`
	// VNIMin and VNIMax bound the VNIs the plugin allocates when the caller names none.
	VNIMin uint32 `json:"vni_min"`
	VNIMax uint32 `json:"vni_max"`
	// UDPPort is the VXLAN destination port at both ends.
	UDPPort int `json:"udp_port"`
	// MTU is the VXLAN devices' MTU; zero derives it from the underlay device (its MTU
	// minus 50 bytes of VXLAN over IPv4, 70 over IPv6).
	MTU int `json:"mtu"`
	// Netns lists the named network namespaces the plugin manages, as path.Match
	// patterns; empty means all. Every call reads the devices of the host's namespace and
	// of these, so on a machine with many namespaces (a Kubernetes node) name yours.
	Netns []string `json:"netns"`
	// Provision, when set, makes the plugin build missing sites (namespace, underlay
	// device and address) of a one-machine federation on first use.
	Provision *ProvisionConfig `json:"provision_sites"`
}

// PairConfig is the capacity between two sites.
type PairConfig struct {
	// Sites are the two sites, in either order.
	Sites []string `json:"sites"`
	// MaxBandwidthBps is the sum of the rates the links between them may have.
	MaxBandwidthBps uint64 `json:"max_bandwidth_bps"`
}

// SiteConfig is one site's limit.
type SiteConfig struct {
	// MaxBandwidthBps is the sum of the rates the links touching the site may have.
	MaxBandwidthBps uint64 `json:"max_bandwidth_bps"`
}

// DefaultConfig is the configuration of a plugin configured with an empty object.
func DefaultConfig() Config {
	return Config{
		MaxBandwidthBps: defaultMaxBandwidthBps,
		VNIMin:          defaultVNIMin,
		VNIMax:          maxVNI,
		UDPPort:         defaultUDPPort,
	}
}

// schema is what ConfigSchema returns; DefaultConfig holds the same defaults.
func schema() sdk.ConfigSchema {
	return sdk.ConfigSchema{Fields: []sdk.ConfigField{
		{Name: "max_bandwidth_bps", Type: sdk.FieldInt, Default: defaultMaxBandwidthBps,
			Description: "capacity between any two sites, bits/s each direction: the sum of the rates of the links joining them"},
		{Name: "pairs", Type: sdk.FieldList,
			Description: `per-pair capacity overriding max_bandwidth_bps: [{"sites": ["a", "b"], "max_bandwidth_bps": N}]`},
		{Name: "sites", Type: sdk.FieldObject,
			Description: `per-site limit on the sum of the rates of every link touching the site: {"a": {"max_bandwidth_bps": N}}`},
		{Name: "price_per_link_day", Type: sdk.FieldNumber, Default: 0.0,
			Description: "price of one link per day, in euros"},
		{Name: "vni_min", Type: sdk.FieldInt, Default: defaultVNIMin,
			Description: "lowest VNI the plugin allocates when the caller names none"},
		{Name: "vni_max", Type: sdk.FieldInt, Default: maxVNI,
			Description: "highest VNI the plugin allocates"},
		{Name: "udp_port", Type: sdk.FieldInt, Default: defaultUDPPort,
			Description: "VXLAN UDP destination port"},
		{Name: "mtu", Type: sdk.FieldInt, Default: 0,
			Description: "MTU of the VXLAN devices; 0 = the underlay device's MTU minus the VXLAN overhead (50 over IPv4, 70 over IPv6)"},
		{Name: "netns", Type: sdk.FieldList,
			Description: `named network namespaces the plugin manages, as glob patterns (e.g. ["necos-*"]); absent = all`},
		{Name: "provision_sites", Type: sdk.FieldObject,
			Description: `build missing sites of a one-machine federation on first use: {"underlay_netns": "necos-underlay", "prefix_len": 24}`},
	}}
}

// validate reports every problem of the configuration at once, each naming its key.
func (c Config) validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.MaxBandwidthBps == 0 {
		add("max_bandwidth_bps: must be positive")
	}
	if c.VNIMin < 1 || c.VNIMin > maxVNI {
		add("vni_min: %d is outside 1..%d", c.VNIMin, maxVNI)
	}
	if c.VNIMax < 1 || c.VNIMax > maxVNI {
		add("vni_max: %d is outside 1..%d", c.VNIMax, maxVNI)
	}
	if c.VNIMin > c.VNIMax {
		add("vni_min: %d is above vni_max %d", c.VNIMin, c.VNIMax)
	}
	if c.UDPPort < 1 || c.UDPPort > 65535 {
		add("udp_port: %d is outside 1..65535", c.UDPPort)
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		add("mtu: %d is outside 68..65535 (or 0 for automatic)", c.MTU)
	}
	if c.PricePerLinkDay < 0 {
		add("price_per_link_day: must not be negative")
	}
	if pc := c.Provision; pc != nil {
		if pc.PrefixLen < 0 || pc.PrefixLen > 128 {
			add("provision_sites.prefix_len: %d is outside 1..128 (0: 24)", pc.PrefixLen)
		}
		if strings.ContainsRune(pc.UnderlayNetns, '/') || pc.UnderlayNetns == "." || pc.UnderlayNetns == ".." {
			add("provision_sites.underlay_netns: %q is not a namespace name", pc.UnderlayNetns)
		}
	}
	seen := map[[2]string]int{}
	for i, p := range c.Pairs {
		if len(p.Sites) != 2 || p.Sites[0] == "" || p.Sites[1] == "" || p.Sites[0] == p.Sites[1] {
			add("pairs[%d].sites: expected two different site names, got %q", i, p.Sites)
			continue
		}
		if p.MaxBandwidthBps == 0 {
			add("pairs[%d].max_bandwidth_bps: must be positive", i)
		}
		k := pairKey(p.Sites[0], p.Sites[1])
		if j, dup := seen[k]; dup {
			add("pairs[%d]: same sites as pairs[%d]", i, j)
		}
		seen[k] = i
	}
	for i, pat := range c.Netns {
		if _, err := path.Match(pat, ""); err != nil || pat == "" {
			add("netns[%d]: %q is not a glob pattern", i, pat)
		}
	}
	for name, s := range c.Sites {
		if s.MaxBandwidthBps == 0 {
			add("sites.%s.max_bandwidth_bps: must be positive", name)
		}
	}
	if len(problems) > 0 {
		return sdk.Errorf(sdk.CodeInvalidArgument, "config: %s", strings.Join(problems, "; "))
	}
	return nil
}

// pairKey orders two site names so that a pair has one key whatever its order.
func pairKey(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// managesNetns reports whether the named namespace is one the plugin manages.
func (c Config) managesNetns(name string) bool {
	if len(c.Netns) == 0 {
		return true
	}
	for _, pat := range c.Netns {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// pairCapacity returns the capacity between sites a and b.
func (c Config) pairCapacity(a, b string) uint64 {
	k := pairKey(a, b)
	for _, p := range c.Pairs {
		if len(p.Sites) == 2 && pairKey(p.Sites[0], p.Sites[1]) == k {
			return p.MaxBandwidthBps
		}
	}
	return c.MaxBandwidthBps
}
