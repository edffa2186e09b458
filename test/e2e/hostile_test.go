package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// hostileDocuments are documents of at most 1 MiB (the body limit) that cost the most to
// read: dense scalars in YAML and JSON, keys without values, an alias bomb, deep
// nesting, wide merged mappings, and the costliest ones the limits still admit.
func hostileDocuments() map[string][]byte {
	const mib = 1 << 20
	var wide strings.Builder
	wide.WriteString("a: &a {")
	for i := range 12_000 {
		fmt.Fprintf(&wide, "k%d: 1, ", i)
	}
	wide.WriteString("}\nslices:\n  sliced:\n    <<: *a\n    id: x\n")
	var laughs strings.Builder
	laughs.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		p := fmt.Sprintf("*a%d", i-1)
		fmt.Fprintf(&laughs, "a%d: &a%d [%s]\n", i, i, strings.Repeat(p+", ", 9)+p)
	}
	laughs.WriteString("slices: {sliced: {id: x, slice-parts: *a8}}\n")
	var keysAtLimit strings.Builder
	keysAtLimit.WriteString("{")
	for i := range 99_000 {
		fmt.Fprintf(&keysAtLimit, "k%d,", i)
	}
	keysAtLimit.WriteString("}")
	var jsonKeys strings.Builder
	jsonKeys.WriteString(`{"slices": {"sliced": {"id": "x"`)
	for i := 0; jsonKeys.Len() < mib-64; i++ {
		fmt.Fprintf(&jsonKeys, `,"k%d":null`, i)
	}
	jsonKeys.WriteString("}}}")
	return map[string][]byte{
		"dense YAML list":      []byte("[" + strings.Repeat("1,", mib/2-2) + "]"),
		"dense JSON array":     []byte("[" + strings.Repeat("1,", mib/2-2) + "1]"),
		"dense JSON keys":      []byte(jsonKeys.String()),
		"flow keys at limit":   []byte(keysAtLimit.String()),
		"flow list at limit":   []byte("[" + strings.Repeat("1,", 99_000) + "]"),
		"billion laughs":       []byte(laughs.String()),
		"deep nesting":         []byte(strings.Repeat("[", mib/2-1) + strings.Repeat("]", mib/2-1)),
		"wide merged mappings": []byte(wide.String()),
	}
}

// TestHostileDocumentsMemory sends 64 hostile documents at once to the document routes,
// three times over: each is refused (4xx), and necosd's resident memory never goes
// above 300 MB (its peak, VmHWM, is read at the end). A tenant's slice is then built
// as usual.
func TestHostileDocumentsMemory(t *testing.T) {
	const limitKB = 300 << 10
	d := startDaemon(t, xenCatalogue(t, nil, ""))
	_, baseRSS, _, err := procStat(d.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	docs := hostileDocuments()
	type target struct{ route, contentType string }
	targets := []target{{"/v1/slices", "text/x-yaml"}, {"/slice_activator/create_slice", "text/x-yaml"},
		{"/v1/slices", "application/json"}, {"/service_orchestrator/deploy_service", "text/x-yaml"}}
	names := make([]string, 0, len(docs))
	for name := range docs {
		names = append(names, name)
	}
	for round := range 3 {
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name, tg := names[i%len(names)], targets[(i/len(names)+round)%len(targets)]
				ct := tg.contentType
				if strings.HasPrefix(name, "dense JSON") {
					ct = "application/json"
				}
				r := d.do("demo", "POST", tg.route, ct, docs[name])
				if r.Status < 400 || r.Status >= 500 {
					t.Errorf("%s to %s: HTTP %d: %.200s", name, tg.route, r.Status, r.Body)
				}
			}()
		}
		wg.Wait()
	}
	_, rss, hwm, err := procStat(d.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("necosd RSS: %d MB before, %d MB after, peak %d MB (limit %d MB)", baseRSS>>10, rss>>10, hwm>>10, limitKB>>10)
	if hwm > limitKB {
		t.Errorf("necosd peaked at %d MB under hostile documents", hwm>>10)
	}
	d.expect(d.do("demo", "POST", "/v1/slices?wait=true", "text/x-yaml", exampleUnlinked(t, "touristic-cdn-xen.yaml")), 201, "a slice after the flood")
}
