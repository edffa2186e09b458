package spec

import (
	"fmt"
	"regexp"
	"strings"
)

// Node types, as the sdk names them.
const (
	NodeMaster = "master"
	NodeWorker = "worker"
)

// NodeName returns the name of the i-th (from 1) node of a VDU: "<vdu>-<i>", as
// sdk.NodeName does.
func NodeName(vdu string, i int) string { return fmt.Sprintf("%s-%d", vdu, i) }

// NodeNames returns the names of the VDU's nodes: instance-count n gives
// "<name>-1" ... "<name>-n".
func (v VDU) NodeNames() []string {
	out := make([]string, 0, v.Instances)
	for i := 1; i <= v.Instances; i++ {
		out = append(out, NodeName(v.Name, i))
	}
	return out
}

// NodeType returns the VDU's node type: the type given explicitly, else the one its name
// says (see [NodeTypeOf]).
func (v VDU) NodeType() string {
	if v.Type != "" {
		return v.Type
	}
	return NodeTypeOf(v.Name)
}

// NodeTypeOf infers a node type from a VDU name, as the original did: a name that says
// "master" is NodeMaster ("k8s-master"), one that says "node" or "worker" is NodeWorker
// ("k8s-node", "worker-a"); anything else ("core_vm") has no type, "". Matching ignores
// case, and master wins when a name says both.
func NodeTypeOf(name string) string {
	n := strings.ToLower(name)
	switch {
	case strings.Contains(n, "master"):
		return NodeMaster
	case strings.Contains(n, "worker"), strings.Contains(n, "node"):
		return NodeWorker
	}
	return ""
}

// nameRE is what names in a slice may look like: they become parts of resource names
// and label values at the providers (63 characters at most there), and of the
// references of service files, which split on dots.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

const nameRule = "letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters"

// locationRE: dot-separated segments from the continent down, e.g. AMERICA.BRAZIL.UFSCAR.
var locationRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)*$`)

// ValidLocation reports whether s is a location: dot-separated names from the
// continent down ("EUROPE.SPAIN", "AMERICA.BRAZIL.UFSCAR").
func ValidLocation(s string) bool { return len(s) <= 253 && locationRE.MatchString(s) }

// InLocation reports whether location lies within want, segment by segment, ignoring
// case: "AMERICA.BRAZIL.UFSCAR" is in "AMERICA.BRAZIL" and in itself, not in
// "AMERICA.BRAZIL.UNICAMP". An empty want matches everything.
func InLocation(location, want string) bool {
	if want == "" {
		return true
	}
	l, w := strings.Split(strings.ToUpper(location), "."), strings.Split(strings.ToUpper(want), ".")
	if len(w) > len(l) {
		return false
	}
	for i := range w {
		if l[i] != w[i] {
			return false
		}
	}
	return true
}
