package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// seeds adds the payloads and examples to a fuzz corpus.
func seeds(f *testing.F) {
	f.Helper()
	for _, pattern := range []string{"testdata/*.yaml", "testdata/*.json", "../../examples/slices/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(minimal))
	f.Add([]byte(serviceDoc))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("slices: {sliced: {id: x, slice-parts: [{dc-slice-part: null, name: a, <<: {VIM: {name: x}}}]}}"))
}

// checkErr fails unless err is nil or an *Error with problems.
func checkErr(t *testing.T, err error) {
	if err == nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) || (len(e.Problems) == 0 && e.Omitted == 0) {
		t.Fatalf("error is not a list of problems: %#v", err)
	}
	_ = e.Error()
}

// FuzzParseSlice: any input gives a slice or problems, never a panic; a slice that
// parses renders, and what it renders parses again.
func FuzzParseSlice(f *testing.F) {
	seeds(f)
	p := Parser{MaxBytes: 64 << 10, MaxNodes: 20_000}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte) (*Slice, error){p.Slice, p.CreatedSlice} {
			s, err := parse(data)
			checkErr(t, err)
			if err != nil {
				continue
			}
			_ = s.Validate()
			_ = s.CheckVIMs([]string{"KUBERNETES"})
			if _, err := json.Marshal(s); err != nil {
				t.Fatalf("JSON: %v", err)
			}
			out, err := Render(s, s.Status())
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			if _, err := (Parser{MaxNodes: 1 << 20}).CreatedSlice(out); err != nil {
				t.Fatalf("parse(render) failed: %v\ninput:\n%s\nrendered:\n%s", err, data, out)
			}
			if expandErr := Expand(&Service{SliceID: s.ID, Parts: []ServicePart{{Name: "a", VDUs: []ServiceVDU{{Name: "b",
				Commands: []string{"${parts.a.vdus.b.ip} ${slice.id}"}}}}}}, Resolver(s, s.Status())); expandErr != nil {
				checkErr(t, expandErr)
			}
		}
	})
}

// FuzzParseService: any input gives a service or problems, never a panic; references
// in what parses expand or are reported.
func FuzzParseService(f *testing.F) {
	seeds(f)
	p := Parser{MaxBytes: 64 << 10, MaxNodes: 20_000}
	f.Fuzz(func(t *testing.T, data []byte) {
		svc, err := p.Service(data)
		checkErr(t, err)
		if err == nil {
			if _, err := json.Marshal(svc); err != nil {
				t.Fatalf("JSON: %v", err)
			}
			checkErr(t, svc.CheckVIMs([]string{"KUBERNETES"}))
			checkErr(t, Expand(svc, func(ref string) (string, bool) { return "x", len(ref)%2 == 0 }))
		}
		pol, err := p.Policy(data)
		checkErr(t, err)
		if err == nil {
			// A policy goes through JSON to the API and back, unchanged.
			data, err := json.Marshal(pol)
			if err != nil {
				t.Fatalf("JSON: %v", err)
			}
			var back Policy
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatalf("JSON round trip: %v\n%s", err, data)
			}
			_ = pol.String()
			_ = pol.HorizontalActions()
			_ = pol.VerticalActions()
		}
	})
}
