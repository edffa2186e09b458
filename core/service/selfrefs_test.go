package service

import (
	"reflect"
	"testing"

	"github.com/necos/necos/core/spec"
)

func TestSelfRefs(t *testing.T) {
	in := []spec.ServiceVDU{{
		Name:      "edge_vm",
		Namespace: "ns-${parts.edge.name}",
		Commands: []string{
			"serve --name ${parts.edge.name}/$(hostname) --core ${parts.core.vdus.vm.ip}",
			"echo ${parts.edge-2.name} $${parts.edge.name} ${parts.edge.vdus.edge_vm.ips}",
		},
		Manifests: []string{"metadata: {name: ${parts.edge.name}}"},
	}}
	got := selfRefs(in, "edge", "edge-h1")
	want := []spec.ServiceVDU{{
		Name:      "edge_vm",
		Namespace: "ns-${parts.edge-h1.name}",
		Commands: []string{
			"serve --name ${parts.edge-h1.name}/$(hostname) --core ${parts.core.vdus.vm.ip}",
			"echo ${parts.edge-2.name} $${parts.edge.name} ${parts.edge-h1.vdus.edge_vm.ips}",
		},
		Manifests: []string{"metadata: {name: ${parts.edge-h1.name}}"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if in[0].Commands[0] != "serve --name ${parts.edge.name}/$(hostname) --core ${parts.core.vdus.vm.ip}" {
		t.Error("the template's VDUs were changed")
	}
}
