package main

import (
	"strings"
	"testing"

	v1 "github.com/necos/necos/api/v1"
)

func TestForwardTarget(t *testing.T) {
	s := &v1.Slice{ID: "s1", Parts: []v1.Part{{Name: "core-dc", Attributes: map[string]string{"netns": "necosvm-abc"},
		Nodes: []v1.Node{{Name: "core_vm-1", IPs: []string{"10.10.1.3"}}, {Name: "core_vm-2"}}}}}
	to, err := forwardTarget(s, "core-dc", "core_vm-1", 80)
	if err != nil || to.Netns != "necosvm-abc" || to.Addr != "10.10.1.3:80" {
		t.Errorf("got %+v, %v", to, err)
	}
	for _, c := range []struct{ part, node, want string }{
		{"edge", "x", "no part \"edge\" (parts: core-dc)"},
		{"core-dc", "x", "no node \"x\" (nodes: core_vm-1, core_vm-2)"},
		{"core-dc", "core_vm-2", "has no address"},
	} {
		if _, err := forwardTarget(s, c.part, c.node, 80); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s/%s: %v, want %q", c.part, c.node, err, c.want)
		}
	}
}
