package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/api"
	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/spec"
)

// TestNECOSDeleteBodies deletes slices with every body the original's clients and
// necos's own answers lead to: the original's slices.sliced.slice-id, by the id the
// spec gave the slice or by necos's own id (the one a 409 hands back), and the
// created slice's id.
func TestNECOSDeleteBodies(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	create := func(name string) string {
		t.Helper()
		var s v1.Slice
		do(t, "POST", env.URL+"/v1/slices?wait=true", tok, apitest.SmallSlice(name), "Content-Type", yamlType).status(t, 201).json(t, &s)
		return s.ID
	}
	deleteWith := func(body string, status int) map[string]any {
		t.Helper()
		var out map[string]any
		do(t, "POST", env.URL+"/slice_activator/delete_slice", tok, []byte(body), "Content-Type", yamlType).status(t, status).yaml(t, &out)
		return out
	}
	gone := func(id string) {
		t.Helper()
		do(t, "GET", env.URL+"/v1/slices/"+id, tok, nil).status(t, 404)
	}

	// The original's body, by the spec's id.
	id := create("by-name")
	out := deleteWith("slices:\n  sliced:\n    slice-id: by-name\n", 200)
	sliced, _ := out["slices"].(map[string]any)["sliced"].(map[string]any)
	if sliced["id"] != "by-name" || sliced["slice-id"] != id {
		t.Errorf("confirmation %v", out)
	}
	gone(id)

	// The original's body, by necos's id.
	id = create("by-id")
	deleteWith("slices: {sliced: {slice-id: "+id+"}}", 200)
	gone(id)

	// The id a 409 hands back deletes the slice that holds the name.
	id = create("dup")
	var e v1.Error
	do(t, "POST", env.URL+"/slice_activator/create_slice", tok, bytes.Replace(apitest.SmallSlice("dup"), []byte("cpu-number: 1"), []byte("cpu-number: 2"), 1),
		"Content-Type", yamlType).status(t, 409).yaml(t, &e)
	if e.SliceID != id {
		t.Errorf("409 names slice %q, want %q: %+v", e.SliceID, id, e)
	}
	deleteWith("slices: {sliced: {id: "+e.SliceID+"}}", 200)
	gone(id)

	// Both fields naming different slices, an unknown slice, another tenant's slice: the
	// field is named, nothing is deleted.
	id = create("kept")
	e = v1.Error{}
	do(t, "POST", env.URL+"/slice_activator/delete_slice", tok, []byte("slices: {sliced: {id: kept, slice-id: other}}"),
		"Content-Type", yamlType).status(t, 400).yaml(t, &e)
	if len(e.Problems) != 1 || e.Problems[0].Path != "slices.sliced.slice-id" {
		t.Errorf("two ids: %+v", e)
	}
	e = v1.Error{}
	do(t, "POST", env.URL+"/slice_activator/delete_slice", tok, []byte("slices: {sliced: {slice-id: nosuch}}"),
		"Content-Type", yamlType).status(t, 404).yaml(t, &e)
	if len(e.Problems) != 1 || e.Problems[0].Path != "slices.sliced.slice-id" {
		t.Errorf("unknown: %+v", e)
	}
	do(t, "POST", env.URL+"/slice_activator/delete_slice", env.Token("bob"), []byte("slices: {sliced: {slice-id: "+id+"}}"),
		"Content-Type", yamlType).status(t, 404)
	do(t, "GET", env.URL+"/v1/slices/"+id, tok, nil).status(t, 200)
}

// TestYAMLCharset: YAML answers say they are UTF-8, so that a client decoding text/*
// by its default charset does not mangle a price in euros.
func TestYAMLCharset(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	// A budget of €0.50 a day per machine: the refusal names prices in euros.
	poor := bytes.Replace(apitest.SmallSlice("poor"), []byte(`value-euros: "<=10"`), []byte(`value-euros: "<=0.5"`), 1)
	a := do(t, "POST", env.URL+"/slice_activator/create_slice", tok, poor, "Content-Type", yamlType).status(t, 409)
	var e v1.Error
	a.yaml(t, &e) // checks the charset
	if !strings.Contains(string(a.body), "€") {
		t.Errorf("no price in euros in the refusal:\n%s", a.body)
	}
	a = do(t, "GET", env.URL+"/v1/openapi.yaml", "", nil).status(t, 200)
	if ct := a.Header.Get("Content-Type"); ct != "application/yaml; charset=utf-8" {
		t.Errorf("openapi.yaml: Content-Type %q", ct)
	}
}

// TestSliceLimits: a slice larger than the platform's limits is refused at once, on
// both routes, with a short answer naming the first part beyond the limit and the
// setting; nothing is stored, so no provider is asked for anything.
func TestSliceLimits(t *testing.T) {
	env := apitest.Start(t, apitest.Options{API: api.Options{Limits: spec.Limits{MaxParts: 2, MaxLinks: 1, MaxInstances: 3}}})
	tok := env.Token("alice")
	do(t, "POST", env.URL+"/v1/slices?wait=true", tok, apitest.SmallSlice("fits"), "Content-Type", yamlType).status(t, 201)

	var b strings.Builder
	b.WriteString("slices:\n  sliced:\n    id: huge\n    slice-parts:\n")
	for i := range 500 {
		fmt.Fprintf(&b, "      - dc-slice-part: {name: p%d, type: EDGE, location: EUROPE, VIM: {name: xen-vim, vdus: [{vdu: {name: v, instance-count: 2, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}}]}}\n", i)
	}
	huge := []byte(b.String())
	for _, route := range []string{"/v1/slices?wait=true", "/slice_activator/create_slice"} {
		start := time.Now()
		a := do(t, "POST", env.URL+route, tok, huge, "Content-Type", yamlType).status(t, 400)
		t.Logf("%s: 500 parts refused in %v, %d bytes", route, time.Since(start).Round(time.Millisecond), len(a.body))
		if len(a.body) > 4<<10 || !strings.Contains(string(a.body), "slices.sliced.slice-parts[2].dc-slice-part") ||
			!strings.Contains(string(a.body), "--max-parts-per-slice") || !strings.Contains(string(a.body), "--max-instances-per-slice") {
			t.Errorf("%s: %d bytes:\n%.2000s", route, len(a.body), a.body)
		}
	}
	if l := listSlices(t, env, "alice"); len(l) != 1 {
		t.Errorf("slices stored: %+v", l)
	}
}

// TestIdempotentCreate: a create sent again gets the slice the first made, never a
// second slice nor a 409: with the same Idempotency-Key, or the same document without
// one, on both routes. A key sent with another document is a 422 naming the header; a
// key whose request failed may be used again.
func TestIdempotentCreate(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	post := func(route, key string, doc []byte, status int) answer {
		t.Helper()
		h := []string{"Content-Type", yamlType}
		if key != "" {
			h = append(h, "Idempotency-Key", key)
		}
		return do(t, "POST", env.URL+route, tok, doc, h...).status(t, status)
	}
	var first, again v1.Slice
	post("/v1/slices", "k-1", apitest.SmallSlice("idem"), 202).json(t, &first)
	a := post("/v1/slices?wait=true", "k-1", apitest.SmallSlice("idem"), 201)
	a.json(t, &again)
	if again.ID != first.ID || a.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry with the key: %s, first %s; replayed %q", again.ID, first.ID, a.Header.Get("Idempotent-Replayed"))
	}
	post("/slice_activator/create_slice", "k-1", apitest.SmallSlice("idem"), 201)
	post("/slice_activator/create_slice", "", apitest.SmallSlice("idem"), 201)
	var e v1.Error
	post("/v1/slices", "k-1", apitest.SmallSlice("idem-2"), 422).json(t, &e)
	if len(e.Problems) != 1 || e.Problems[0].Path != "header Idempotency-Key" {
		t.Errorf("key reused: %+v", e)
	}
	// Another tenant's key of the same name is its own.
	do(t, "POST", env.URL+"/v1/slices", env.Token("bob"), apitest.SmallSlice("idem"), "Content-Type", yamlType, "Idempotency-Key", "k-1").status(t, 202)
	// A failed request frees its key.
	post("/v1/slices", "k-2", []byte("slices: {sliced: {name: x}}"), 400)
	post("/v1/slices?wait=true", "k-2", apitest.SmallSlice("idem-3"), 201)
	if l := listSlices(t, env, "alice"); len(l) != 2 {
		t.Errorf("alice has %d slices, want 2: %+v", len(l), l)
	}
	post("/v1/slices", strings.Repeat("k", 300), apitest.SmallSlice("idem-4"), 400)

	// Ten retries at once, with a key and without: one slice each, every answer a 2xx.
	for _, key := range []string{"k-3", ""} {
		name := "idem-race" + key
		var wg sync.WaitGroup
		ids := make([]string, 10)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := []string{"Content-Type", yamlType}
				if key != "" {
					h = append(h, "Idempotency-Key", key)
				}
				a := do(t, "POST", env.URL+"/v1/slices", tok, apitest.SmallSlice(name), h...)
				var s v1.Slice
				if a.StatusCode == 202 && json.Unmarshal(a.body, &s) == nil {
					ids[i] = s.ID
				} else {
					t.Errorf("concurrent retry: %d %s", a.StatusCode, a.body)
				}
			}()
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Errorf("concurrent retries made several slices: %v", ids)
				break
			}
		}
	}
}

// TestNECOSFieldVariants: a spec written as the original's tenants could write it
// (timeframe as date parts and dates, YAML 1.1 flags, quoted numbers, "undefined" for
// none, a cost with a currency) is created on the NECOS route, and the created slice
// gives those values back as written.
func TestNECOSFieldVariants(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	doc := strings.Replace(string(apitest.SmallSlice("variants")), "    cost:\n",
		"    created-slice: no\n"+
			"    slice-timeframe:\n      service-start-time: {year: 2019, month: 6, day: 1}\n      service-stop-time: 2019-06-30\n      service-duration: 8h\n"+
			"    cost:\n", 1)
	doc = strings.Replace(doc, "{elasticity: false,", "{elasticity: yes,", 1)
	doc = strings.Replace(doc, `value-euros: "<=10"`, `value-euros: "<= 10 €"`, 1)
	doc = strings.Replace(doc, "cpu-number: 1, memory-mb: 512", "cpu-number: '1', memory-mb: \"512\", host-image: undefined", 1)
	a := do(t, "POST", env.URL+"/slice_activator/create_slice", tok, []byte(doc), "Content-Type", yamlType).status(t, 201)
	for _, want := range []string{"year: 2019", "service-stop-time: 2019-06-30", "service-duration: 8h", "value-euros: <= 10 €", "elasticity: true"} {
		if !strings.Contains(string(a.body), want) {
			t.Errorf("created slice lacks %q:\n%s", want, a.body)
		}
	}
}

// TestRefusalSaysWhoseParts: a slice whose own parts crowd each other out of the only
// provider that can host them is refused with a reason that says so, never that other
// slices reserved the room; once another slice holds that room, the reason does not
// blame the slice's own parts.
func TestRefusalSaysWhoseParts(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	edges := func(id string, cpus ...int) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "slices:\n  sliced:\n    id: %s\n    slice-parts:\n", id)
		for i, c := range cpus {
			fmt.Fprintf(&b, "      - dc-slice-part: {name: e%d, type: EDGE, location: EUROPE.SPAIN, VIM: {name: xen-vim, vdus: [{vdu: {name: v, epa-attributes: {host-epa: {cpu-number: %d, memory-mb: 512}}}}]}}\n", i, c)
		}
		return []byte(b.String())
	}
	// SPAIN, the only provider of EUROPE.SPAIN edges, has 16 CPUs.
	var e v1.Error
	do(t, "POST", env.URL+"/slice_activator/create_slice", tok, edges("crowded", 10, 10), "Content-Type", yamlType).status(t, 409).yaml(t, &e)
	if s := fmt.Sprint(e); !strings.Contains(s, "taken by this slice's other parts") || strings.Contains(s, "other slices") {
		t.Errorf("own parts: %s", s)
	}
	do(t, "POST", env.URL+"/slice_activator/create_slice", tok, edges("first", 10), "Content-Type", yamlType).status(t, 201)
	e = v1.Error{}
	do(t, "POST", env.URL+"/slice_activator/create_slice", env.Token("bob"), edges("second", 10), "Content-Type", yamlType).status(t, 409).yaml(t, &e)
	if s := fmt.Sprint(e); !strings.Contains(s, "not enough CPUs") || strings.Contains(s, "this slice's other parts") {
		t.Errorf("another slice's parts: %s", s)
	}
}
