package main

import "gopkg.in/yaml.v3"

// mapValue returns the value of key in a YAML mapping node, or nil (also when m is nil
// or not a mapping): documents are read and edited as nodes where their comments and
// order must stay as the user wrote them.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
