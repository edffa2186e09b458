package examples

import (
	"reflect"
	"testing"
)

func TestCataloguesOffering(t *testing.T) {
	for vim, want := range map[string][]string{
		"KUBERNETES": {"examples/catalogue-kubernetes.yaml"},
		"kubernetes": {"examples/catalogue-kubernetes.yaml"},
		"xen-vim":    {"examples/catalogue-bench.yaml", "examples/catalogue-kubernetes.yaml", "examples/catalogue.yaml"},
		"openstack":  nil,
	} {
		if got := CataloguesOffering(vim); !reflect.DeepEqual(got, want) {
			t.Errorf("CataloguesOffering(%q) = %v, want %v", vim, got, want)
		}
	}
}
