package v1

import (
	"encoding/json"
	"reflect"
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

// Whatever JSON holds, the YAML written reads back as the same values.
func TestJSONToYAMLRoundTrip(t *testing.T) {
	docs := []string{
		`{"a":"multi\nline\n","b":"two\n\n","c":"no end\nx","d":" lead\nx","e":"tab\there","f":"yes","g":"10","h":"a: b","i":"#x","j":"","k":"with trailing \nx"}`,
		`[[],{},[[1,2],{"a":[{"b":{}}]}],"- x",null,true,1e3,-0.5]`,
		`{"":1,"key with spaces":2,"k:":3,"é":"ü","\u2028":"x","kube":"apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"}`,
		`"top"`, `42`,
	}
	for _, in := range docs {
		out, err := JSONToYAML([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var want, got any
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s: YAML does not read back: %v\n%s", in, err, out)
		}
		if !reflect.DeepEqual(normal(want), normal(got)) {
			t.Errorf("%s: read back as %#v\n%s", in, got, out)
		}
	}
	deep := strings.Repeat("[", 300) + strings.Repeat("]", 300)
	if _, err := JSONToYAML([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep: %v", err)
	}
}

// normal turns numbers into float64 and maps into map[string]any, so that JSON's and
// YAML's readings compare.
func normal(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			m[k] = normal(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normal(e)
		}
		return out
	case int:
		return float64(x)
	case uint64:
		return float64(x)
	}
	return v
}

// FuzzJSONToYAML: valid JSON converts, and its YAML reads back as the same values;
// invalid JSON is refused.
func FuzzJSONToYAML(f *testing.F) {
	for _, s := range []string{`{"a":"b\nc"}`, `[1,{"x":[]}]`, `"yes"`, `{"k":"v: w"}`, `{"a":1}{"b":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := JSONToYAML(in)
		if !json.Valid(in) {
			if err == nil {
				t.Fatalf("invalid JSON %q converted", in)
			}
			return
		}
		if err != nil {
			if strings.Contains(err.Error(), "nested deeper") {
				return
			}
			t.Fatalf("%q: %v", in, err)
		}
		var want, got any
		_ = json.Unmarshal(in, &want)
		if err := yaml.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q: YAML does not read back: %v\n%s", in, err, out)
		}
		if !reflect.DeepEqual(normal(want), normal(got)) {
			t.Fatalf("%q: read back as %#v\n%s", in, got, out)
		}
	})
}
