// Package examples holds the example provider catalogues and slice specs, and embeds the
// default catalogue necosd runs with when given none.
package examples

import (
	"embed"
	"io/fs"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultCatalogue is catalogue.yaml: the five sites of the original demo on this
// machine, every one a libvirt provider (the built-in test driver), joined by VXLAN links
// in per-site network namespaces.
//
//go:embed catalogue.yaml
var DefaultCatalogue []byte

//go:embed catalogue*.yaml
var catalogues embed.FS

// Dir is where the example catalogues are, from the repository's root.
const Dir = "examples"

// KubernetesCatalogue is the catalogue with Kubernetes providers next to the libvirt
// ones, which scripts/run.sh --kubernetes runs with a cluster of this machine.
const KubernetesCatalogue = Dir + "/catalogue-kubernetes.yaml"

// CataloguesOffering returns the example catalogues (paths from the repository's root,
// sorted) with a provider whose DC part runs vim, matched ignoring case as slices'
// VIM names are: what a user whose slice names a VIM the running catalogue lacks can
// run necosd with instead.
func CataloguesOffering(vim string) []string {
	names, _ := fs.Glob(catalogues, "catalogue*.yaml")
	var out []string
	for _, name := range names {
		b, err := catalogues.ReadFile(name)
		if err != nil {
			continue
		}
		var cat struct {
			Providers []struct {
				DC *struct {
					VIM string `yaml:"vim"`
				} `yaml:"dc"`
			} `yaml:"providers"`
		}
		if yaml.Unmarshal(b, &cat) != nil {
			continue
		}
		for _, p := range cat.Providers {
			if p.DC != nil && strings.EqualFold(p.DC.VIM, vim) {
				out = append(out, path.Join(Dir, name))
				break
			}
		}
	}
	sort.Strings(out)
	return out
}
