package spec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// billionLaughs returns a document of a few hundred bytes that names 10^levels nodes
// through nested aliases.
func billionLaughs(levels int) string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < levels; i++ {
		p := fmt.Sprintf("*a%d", i-1)
		fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, strings.Repeat(p+", ", 9)+p)
	}
	fmt.Fprintf(&b, "slices: {sliced: {id: x, slice-parts: *a%d}}\n", levels-1)
	return b.String()
}

func TestHostileInput(t *testing.T) {
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	deepMap := "slices:\n  sliced:\n    id: x\n    extra: " + strings.Repeat("{a: ", 200) + "1" + strings.Repeat("}", 200)
	cases := []struct {
		name  string
		doc   string
		cause error
		msg   string
	}{
		{"billion laughs", billionLaughs(9), ErrTooComplex, "too many nodes once aliases are expanded"},
		{"cyclic alias", "a: &a [*a]\nslices: {sliced: *a}\n", ErrTooComplex, ""},
		{"deep flow nesting", deep, nil, ""},
		{"deep mapping", deepMap, ErrTooComplex, "nested deeper than 64 levels"},
		{"too large", "slices: {sliced: {id: x}}\n#" + strings.Repeat("x", DefaultMaxBytes), ErrTooLarge, "larger than 1048576 bytes"},
		{"dense scalars", "[" + strings.Repeat("1,", DefaultMaxBytes/2-1) + "]", ErrTooComplex, "too many values"},
		{"dense keys", "{" + strings.Repeat("a,", DefaultMaxBytes/2-1) + "}", ErrTooComplex, "too many values"},
		{"many problems", "slices: {sliced: {id: x, slice-parts: [" + strings.Repeat("{dc-slice-part: {name: a b}}, ", 500) + "]}}", nil, "and "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// All three parsers refuse each document; the message is checked on the
			// slice parser's, as a policy document has fewer fields to complain about.
			for i, parse := range []func([]byte) error{
				func(b []byte) error { _, err := ParseSlice(b); return err },
				func(b []byte) error { _, err := ParseService(b); return err },
				func(b []byte) error { _, err := ParsePolicy(b); return err },
			} {
				err := parse([]byte(c.doc))
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("want *Error, got %v", err)
				}
				if c.cause != nil && !errors.Is(err, c.cause) {
					t.Errorf("want %v, got %v", c.cause, err)
				}
				if len(e.Error()) > 64<<10 {
					t.Errorf("error message of %d bytes", len(e.Error()))
				}
				if i == 0 && !strings.Contains(e.Error(), c.msg) {
					t.Errorf("want %q in %v", c.msg, e)
				}
			}
		})
	}
}

func TestParserLimits(t *testing.T) {
	doc := []byte(minimal)
	if _, err := (Parser{MaxBytes: 100}).Slice(doc); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxBytes: %v", err)
	}
	if _, err := (Parser{MaxNodes: 20}).Slice(doc); !errors.Is(err, ErrTooComplex) {
		t.Errorf("MaxNodes: %v", err)
	}
	if _, err := (Parser{MaxDepth: 3}).Slice(doc); !errors.Is(err, ErrTooComplex) {
		t.Errorf("MaxDepth: %v", err)
	}
	if _, err := (Parser{MaxBytes: len(doc), MaxNodes: 1000, MaxDepth: 20}).Slice(doc); err != nil {
		t.Errorf("within limits: %v", err)
	}
	// A billion laughs with few enough nodes is just aliases.
	if _, err := (Parser{}).Slice([]byte(billionLaughs(3))); errors.Is(err, ErrTooComplex) {
		t.Errorf("1000 nodes: %v", err)
	}
}

func TestReadAll(t *testing.T) {
	p := Parser{MaxBytes: 10}
	if b, err := p.ReadAll(strings.NewReader("0123456789")); err != nil || len(b) != 10 {
		t.Errorf("%q %v", b, err)
	}
	if _, err := p.ReadAll(strings.NewReader("0123456789A")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("want ErrTooLarge, got %v", err)
	}
}

func BenchmarkParseSlice(b *testing.B) {
	doc := []byte(minimal)
	for b.Loop() {
		if _, err := ParseSlice(doc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRefuseBillionLaughs(b *testing.B) {
	doc := []byte(billionLaughs(9))
	for b.Loop() {
		if _, err := ParseSlice(doc); !errors.Is(err, ErrTooComplex) {
			b.Fatal(err)
		}
	}
}

// wideMappings is a document with two mappings of n keys each, one merged into the
// other.
func wideMappings(n int) []byte {
	var b strings.Builder
	b.WriteString("a: &a {")
	for i := range n {
		fmt.Fprintf(&b, "k%d: 1, ", i)
	}
	b.WriteString("}\nslices:\n  sliced:\n    <<: *a\n    id: x\n")
	for i := range n {
		fmt.Fprintf(&b, "    j%d: 1\n", i)
	}
	return []byte(b.String())
}

// Wide mappings merged into each other are read, and rendered back with every key
// kept (BenchmarkWideMappings shows it stays linear in their size).
func TestWideMappings(t *testing.T) {
	s, err := ParseCreatedSlice(wideMappings(12_000))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Extra) != 24_000 || len(s.Warnings) != maxProblems {
		t.Errorf("%d keys kept, %d warnings", len(s.Extra), len(s.Warnings))
	}
	if _, err := Render(s, Status{}); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkWideMappings(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		doc := wideMappings(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				s, err := ParseCreatedSlice(doc)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Render(s, Status{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A huge key cannot make a huge error: paths quote and shorten it.
func TestHugeKeys(t *testing.T) {
	key := strings.Repeat("k", 200_000)
	// YAML limits implicit keys to 1024 characters; explicit ones ("? key") are not.
	doc := "slices:\n  sliced:\n    id: x\n    ? " + key + "\n    : 1\n    ? " + key + "\n    : 2\n    slice-parts: [{? " + key + " : 1}]\n"
	_, err := ParseSlice([]byte(doc))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %v", err)
	}
	if len(e.Error()) > 4<<10 {
		t.Errorf("error of %d bytes: %.300s", len(e.Error()), e.Error())
	}
	wantProblem(t, err, `slices.sliced."`+strings.Repeat("k", 64)+`..."`, "given twice")
}

// countNodes counts the nodes of a tree as yaml.v3 builds it (aliases not expanded).
func countNodes(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	c := 1
	for _, e := range n.Content {
		c += countNodes(e)
	}
	return c
}

// estimateHolds fails when yaml.v3 builds more nodes from data than EstimateNodes said.
func estimateHolds(t *testing.T, data []byte) {
	t.Helper()
	var n yaml.Node
	func() {
		defer func() { _ = recover() }()
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc yaml.Node
			if dec.Decode(&doc) != nil {
				return
			}
			n.Content = append(n.Content, &doc)
		}
	}()
	if got, est := countNodes(&n)-1, EstimateNodes(data); got > est {
		t.Fatalf("yaml.v3 built %d nodes, estimated at most %d:\n%q", got, est, data)
	}
}

// TestEstimateNodes: the estimate bounds what yaml.v3 builds, for the shapes that make
// the most nodes per byte, and for every payload and example.
func TestEstimateNodes(t *testing.T) {
	docs := []string{
		"[1,1,1,1,1,1]", "{a,b,c,d}", "{a: , b: }", "- \n- \n-\n", "- - - - a\n", "? \n? \n", "[a: b, c: d]",
		"a:\nb:\nc:\n", "[[[[]]]]", "{{}: {}}", "a: &x [*x]\nb: *x\n", "!!str a: !!int 1\n", "a: |\n  x\n  y\nb: >\n  z\n",
		"'a b': \"c, d\"\n", "#c\n---\na\n...\n", "[ ? a, ? b : c ]", "- ? : \n",
	}
	for _, d := range docs {
		estimateHolds(t, []byte(d))
	}
	for _, pattern := range []string{"testdata/*", "../../examples/slices/*.yaml", "../../examples/services/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			estimateHolds(t, b)
		}
	}
}

// FuzzEstimateNodes: whatever the input, yaml.v3 never builds more nodes than estimated.
func FuzzEstimateNodes(f *testing.F) {
	seeds(f)
	for _, d := range []string{"{a,b}", "- - -", "[a: b]", "? \n"} {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		estimateHolds(t, data)
	})
}

// hostileAtLimit returns documents just within the estimate limit, of the shapes that
// make the most YAML per byte: what a parse may cost at most.
func hostileAtLimit() map[string][]byte {
	words := DefaultMaxNodes - 10 // each word counts nodesPerWord
	var seq, keys, nulls strings.Builder
	seq.WriteString("[")
	keys.WriteString("{")
	for i := range words {
		seq.WriteString("1,")
		fmt.Fprintf(&keys, "k%d,", i)
	}
	for range words / 2 {
		nulls.WriteString("-\n")
	}
	seq.WriteString("]")
	keys.WriteString("}")
	return map[string][]byte{"flow sequence": []byte(seq.String()), "flow keys": []byte(keys.String()), "block nulls": []byte(nulls.String())}
}

// BenchmarkHostileAtLimit reports what parsing the most expensive documents the limits
// admit costs (B/op: bytes allocated; each is refused, being no slice).
func BenchmarkHostileAtLimit(b *testing.B) {
	for name, doc := range hostileAtLimit() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = ParseSlice(doc)
			}
		})
	}
}

// A document with too many values is refused before anything of it is built: a 1 MiB
// flow list of ~520k scalars allocates next to nothing (it made ~115 MB of nodes when
// the node limit was checked on the built tree).
func TestDenseDocumentRefusedUnbuilt(t *testing.T) {
	doc := []byte("[" + strings.Repeat("1,", DefaultMaxBytes/2-1) + "]")
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := ParseSlice(doc); !errors.Is(err, ErrTooComplex) {
			t.Fatalf("want ErrTooComplex, got %v", err)
		}
	})
	if allocs > 50 {
		t.Errorf("refusing it took %.0f allocations", allocs)
	}
}
