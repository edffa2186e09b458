package v1

import (
	"encoding/json"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// JSONToYAML rewrites a JSON document as block-style YAML, keeping the order of keys
// and every scalar as it was written (1.0 stays 1.0, "yes" stays a string). The server
// uses it to store JSON slice specs in the NECOS format; clients to print YAML.
func JSONToYAML(doc []byte) ([]byte, error) {
	if !json.Valid(doc) {
		// json.Unmarshal says where the document breaks; json.Valid does not.
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		return nil, errors.New("invalid JSON")
	}
	// JSON is YAML: parsing it as YAML keeps key order and the literal form of numbers,
	// which decoding into Go values would lose.
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return nil, fmt.Errorf("convert JSON to YAML: %w", err)
	}
	block(&n)
	out, err := yaml.Marshal(&n)
	if err != nil {
		return nil, fmt.Errorf("convert JSON to YAML: %w", err)
	}
	return out, nil
}

// block drops the flow style and quotes JSON parsed into, so that the YAML reads as
// NECOS files do. The encoder still quotes a string that would read back as another
// type ("true", "10"), because the node keeps its !!str tag.
func block(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		block(c)
	}
}
