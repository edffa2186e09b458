// Package examples holds the example provider catalogues and slice specs, and embeds the
// default catalogue necosd runs with when given none.
package examples

import _ "embed"

// DefaultCatalogue is catalogue.yaml: the five sites of the original demo on this
// machine, every one a libvirt provider (the built-in test driver), joined by VXLAN links
// in per-site network namespaces.
//
//go:embed catalogue.yaml
var DefaultCatalogue []byte
