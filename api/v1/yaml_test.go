package v1

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestJSONToYAML(t *testing.T) {
	in := `{"slices":{"sliced":{"id":"x","version":1.0,"flag":"true","n":10,"parts":[{"b":1,"a":null}]}}}`
	out, err := JSONToYAML([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := `slices:
    sliced:
        id: x
        version: 1.0
        flag: "true"
        n: 10
        parts:
            - b: 1
              a: null
`
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	var back map[string]any
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	sliced := back["slices"].(map[string]any)["sliced"].(map[string]any)
	if sliced["flag"] != "true" || sliced["n"] != 10 {
		t.Fatalf("types changed: %#v", sliced)
	}
}

func TestJSONToYAMLInvalid(t *testing.T) {
	for _, in := range []string{`{"a":`, `slices: {}`, `{"a":1}{"b":2}`} {
		if _, err := JSONToYAML([]byte(in)); err == nil || !strings.Contains(err.Error(), "invalid JSON") {
			t.Errorf("%q: got %v, want invalid JSON", in, err)
		}
	}
}
