// Package providers holds the federation's resource providers: the catalogue that
// describes them (where they are, what they offer, which plugin serves them and with what
// configuration) and the registry that runs one plugin instance per provider role.
package providers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Catalogue lists the providers of a federation.
type Catalogue struct {
	Providers []Provider `yaml:"providers" json:"providers"`
	// Monitor is the plugin that stores metrics; none disables monitoring.
	Monitor *PluginRef `yaml:"monitor,omitempty" json:"monitor,omitempty"`
	// Dir is the directory of the catalogue file (absolute), set by Load; empty for a
	// catalogue parsed from memory. Plugins run in it, so relative paths in their
	// configuration (kubeconfigs, keys, images) are relative to the catalogue file, not
	// to necosd's working directory.
	Dir string `yaml:"-" json:"-"`
}

// Provider is one resource provider (a site).
type Provider struct {
	Name string `yaml:"name" json:"name"`
	// Location is dot-separated, widest first, e.g. EUROPE.SPAIN.
	Location string `yaml:"location" json:"location"`
	// Controller is the provider's slice controller endpoint, as shown to tenants
	// (dc-slice-controller / wan-slice-controller in NECOS replies).
	Controller *Endpoint `yaml:"controller,omitempty" json:"controller,omitempty"`
	// DC is set when the provider offers DC slice parts.
	DC *DCOffer `yaml:"dc,omitempty" json:"dc,omitempty"`
	// WAN is set when the provider builds links between sites.
	WAN *WANOffer `yaml:"wan,omitempty" json:"wan,omitempty"`
	// Site is the provider's WAN endpoint, where links to its parts end.
	Site *Site `yaml:"site,omitempty" json:"site,omitempty"`
}

// Endpoint is an address and port.
type Endpoint struct {
	IP   string `yaml:"ip" json:"ip"`
	Port int    `yaml:"port" json:"port"`
}

// PluginRef names a plugin and its configuration for one provider role.
type PluginRef struct {
	// Plugin is the plugin's name: the binary necos-plugin-<name> in the plugin directory.
	Plugin string `yaml:"plugin" json:"plugin"`
	// Config is handed to the plugin's Configure as JSON.
	Config map[string]any `yaml:"config,omitempty" json:"config,omitempty"`
}

// ConfigJSON returns the plugin configuration as a JSON object.
func (p PluginRef) ConfigJSON() ([]byte, error) {
	if p.Config == nil {
		return []byte("{}"), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p.Config); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

// DCOffer is what a provider offers for DC slice parts.
type DCOffer struct {
	PluginRef `yaml:",inline" json:",inline"`
	// PartTypes are the dc-slice-part types served: DC, EDGE. Empty means both.
	PartTypes []string `yaml:"part_types,omitempty" json:"part_types,omitempty"`
	// VIM is the NECOS VIM name the provider serves, e.g. KUBERNETES or xen-vim.
	VIM string `yaml:"vim" json:"vim"`
	// Deployer deploys services on this provider's parts when the VIM plugin does not.
	Deployer *PluginRef `yaml:"deployer,omitempty" json:"deployer,omitempty"`
}

// Serves reports whether the offer covers a part type (DC/EDGE) and VIM name, matched
// without regard to case.
func (d *DCOffer) Serves(partType, vim string) bool {
	if d == nil || !strings.EqualFold(d.VIM, vim) {
		return false
	}
	if len(d.PartTypes) == 0 || partType == "" {
		return true
	}
	for _, t := range d.PartTypes {
		if strings.EqualFold(t, partType) {
			return true
		}
	}
	return false
}

// WANOffer is what a provider offers for links.
type WANOffer struct {
	PluginRef `yaml:",inline" json:",inline"`
	// WIM is the NECOS WIM name served, e.g. VXLAN.
	WIM string `yaml:"wim" json:"wim"`
	// Sites are the providers whose sites this WAN provider joins; empty means all.
	Sites []string `yaml:"sites,omitempty" json:"sites,omitempty"`
}

// Joins reports whether the WAN offer can link sites a and b.
func (w *WANOffer) Joins(a, b string) bool {
	if w == nil {
		return false
	}
	if len(w.Sites) == 0 {
		return true
	}
	var okA, okB bool
	for _, s := range w.Sites {
		okA = okA || s == a
		okB = okB || s == b
	}
	return okA && okB
}

// Site is a provider's WAN endpoint.
type Site struct {
	// Underlay is the endpoint's address on the WAN.
	Underlay string `yaml:"underlay" json:"underlay"`
	// Netns is the named network namespace holding the site's devices; empty is the host.
	Netns string `yaml:"netns,omitempty" json:"netns,omitempty"`
}

// Roles a plugin instance plays for a provider.
const (
	RoleDC       = "dc"
	RoleWAN      = "wan"
	RoleDeployer = "deployer"
	RoleMonitor  = "monitor"
)

// MatchLocation reports whether a provider at location have satisfies a request for
// location want: equal, or want is a prefix at a dot boundary (EUROPE matches
// EUROPE.SPAIN). Case does not matter; an empty want matches everything.
func MatchLocation(want, have string) bool {
	if want == "" {
		return true
	}
	w, h := strings.ToUpper(want), strings.ToUpper(have)
	return h == w || strings.HasPrefix(h, w+".")
}

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	locationRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// Load reads and validates a catalogue file.
func Load(path string) (*Catalogue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("catalogue %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("catalogue %s: %w", path, err)
	}
	c.Dir = filepath.Dir(abs)
	return c, nil
}

// Parse decodes and validates a catalogue. Unknown keys are errors: a typo in a
// provider's description must not silently change what it offers.
func Parse(b []byte) (*Catalogue, error) {
	var c Catalogue
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate reports every problem of the catalogue at once, each naming its field.
func (c *Catalogue) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	seen := map[string]bool{}
	for i, p := range c.Providers {
		at := fmt.Sprintf("providers[%d]", i)
		if !nameRE.MatchString(p.Name) {
			add("%s.name: %q is not a valid name (letters, digits, '_', '.', '-')", at, p.Name)
		} else if seen[p.Name] {
			add("%s.name: duplicate provider %q", at, p.Name)
		}
		seen[p.Name] = true
		if !locationRE.MatchString(p.Location) {
			add("%s.location: %q is not a dot-separated location like EUROPE.SPAIN", at, p.Location)
		}
		if p.DC == nil && p.WAN == nil {
			add("%s: offers nothing (set dc and/or wan)", at)
		}
		if p.DC != nil {
			if p.DC.Plugin == "" {
				add("%s.dc.plugin: required", at)
			}
			if p.DC.VIM == "" {
				add("%s.dc.vim: required (the NECOS VIM name served, e.g. KUBERNETES or xen-vim)", at)
			}
			for j, t := range p.DC.PartTypes {
				if !strings.EqualFold(t, "DC") && !strings.EqualFold(t, "EDGE") {
					add("%s.dc.part_types[%d]: %q is neither DC nor EDGE", at, j, t)
				}
			}
			if p.DC.Deployer != nil && p.DC.Deployer.Plugin == "" {
				add("%s.dc.deployer.plugin: required", at)
			}
		}
		if p.WAN != nil && p.WAN.Plugin == "" {
			add("%s.wan.plugin: required", at)
		}
		if p.Site != nil {
			if _, err := netip.ParseAddr(p.Site.Underlay); err != nil {
				add("%s.site.underlay: %q is not an IP address", at, p.Site.Underlay)
			}
		}
	}
	for i, p := range c.Providers {
		if p.WAN == nil {
			continue
		}
		for j, s := range p.WAN.Sites {
			if !seen[s] {
				add("providers[%d].wan.sites[%d]: unknown provider %q", i, j, s)
			}
		}
	}
	if c.Monitor != nil && c.Monitor.Plugin == "" {
		add("monitor.plugin: required")
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid catalogue: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Provider returns the named provider.
func (c *Catalogue) Provider(name string) (*Provider, bool) {
	for i := range c.Providers {
		if c.Providers[i].Name == name {
			return &c.Providers[i], true
		}
	}
	return nil, false
}

// VIMNames lists the NECOS VIM names the federation offers, sorted.
func (c *Catalogue) VIMNames() []string {
	set := map[string]bool{}
	for _, p := range c.Providers {
		if p.DC != nil {
			set[p.DC.VIM] = true
		}
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}
