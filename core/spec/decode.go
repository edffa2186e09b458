package spec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sync/semaphore"
	"gopkg.in/yaml.v3"
)

// Default limits of a [Parser]. A real slice spec is a few kilobytes and a few hundred
// nodes deep at most ten levels; the limits leave ample room above that.
const (
	DefaultMaxBytes = 1 << 20
	DefaultMaxNodes = 100_000
	DefaultMaxDepth = 64
)

// Parser reads the NECOS documents with limits against hostile input. The zero value
// uses the default limits; the package-level functions use a zero Parser.
type Parser struct {
	// MaxBytes bounds the size of a document (DefaultMaxBytes when 0).
	MaxBytes int
	// MaxNodes bounds the YAML nodes of a document counted with every alias expanded,
	// which is what stops a "billion laughs" document (DefaultMaxNodes when 0).
	MaxNodes int
	// MaxDepth bounds the nesting of mappings and lists (DefaultMaxDepth when 0).
	MaxDepth int
}

func (p Parser) maxBytes() int { return orDefault(p.MaxBytes, DefaultMaxBytes) }
func (p Parser) maxNodes() int { return orDefault(p.MaxNodes, DefaultMaxNodes) }
func (p Parser) maxDepth() int { return orDefault(p.MaxDepth, DefaultMaxDepth) }

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// ReadAll reads a document from r, refusing one larger than MaxBytes without reading
// more than one byte past the limit (for request bodies).
func (p Parser) ReadAll(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(p.maxBytes())+1))
	if err != nil {
		return nil, fmt.Errorf("read document: %w", err)
	}
	if len(data) > p.maxBytes() {
		return nil, tooLarge(p.maxBytes())
	}
	return data, nil
}

func tooLarge(max int) error {
	return &Error{Problems: []FieldError{{Message: fmt.Sprintf("document is larger than %d bytes", max)}}, cause: ErrTooLarge}
}

// nodesPerWord bounds the YAML nodes one word of a document can make: a key makes its
// scalar, the block mapping it opens and the null value it may lack; "-" its sequence
// and a null entry; anything else fewer. Flow collections count their opening bracket.
const nodesPerWord = 3

// EstimateNodes returns an upper bound of the YAML nodes a document makes before its
// aliases are expanded, in one pass over its bytes without allocating: every node
// needs a word (a run of characters other than spaces, line breaks and ",]}") or a
// "[" or "{". Quoted strings, comments and block scalars count their words too, so the
// bound overcounts prose, never undercounts nodes.
func EstimateNodes(data []byte) int {
	n, inWord := 1, false
	for _, c := range data {
		switch c {
		case ' ', '\t', '\r', '\n', ',', ']', '}':
			inWord = false
		case '[', '{':
			n++
			inWord = false
		default:
			if !inWord {
				n += nodesPerWord
				inWord = true
			}
		}
	}
	return n
}

// maxEstimate is the bound of EstimateNodes above which a document is refused unread:
// the parser could build up to that many nodes before MaxNodes is checked on its tree.
func (p Parser) maxEstimate() int { return nodesPerWord * p.maxNodes() }

// parseBudget bounds the YAML nodes being built at once by every parse of the process,
// in EstimateNodes units: the costliest document the default limits admit allocates
// ~70 MB while it is read (BenchmarkHostileAtLimit), and this admits one such at a time
// beside any number of ordinary ones (a slice spec estimates a few thousand); parses
// beyond it wait their turn (the costliest takes ~70 ms).
const parseBudget = nodesPerWord * DefaultMaxNodes

var parseGate = semaphore.NewWeighted(parseBudget)

// admit checks a document's size and estimated nodes against the limits and waits for
// room to parse it; the caller calls release when its tree is gone.
func (p Parser) admit(data []byte) (release func(), err error) {
	if len(data) > p.maxBytes() {
		return nil, tooLarge(p.maxBytes())
	}
	est := EstimateNodes(data)
	if est > p.maxEstimate() {
		return nil, &Error{Problems: []FieldError{{Message: fmt.Sprintf(
			"document has too many values: about %d YAML nodes, at most %d", est/nodesPerWord, p.maxNodes())}}, cause: ErrTooComplex}
	}
	w := int64(min(est, parseBudget))
	_ = parseGate.Acquire(context.Background(), w) // never fails without a deadline
	return func() { parseGate.Release(w) }, nil
}

// Bounded runs fn, which reads data as YAML or JSON by other means (converting JSON to
// YAML, say), under the same limits and the same budget of concurrent parses as the
// parsers: data too large or with too many values is refused before fn runs.
func (p Parser) Bounded(data []byte, fn func() error) error {
	release, err := p.admit(data)
	if err != nil {
		return err
	}
	defer release()
	return fn()
}

// load parses one YAML (or JSON) document into a tree without aliases or merge keys,
// within the parser's limits. It returns nil for an empty document. The caller calls
// release once it has read the tree: until then the tree counts against the budget of
// concurrent parses.
func (p Parser) load(data []byte) (root *yaml.Node, release func(), err error) {
	release, err = p.admit(data)
	if err != nil {
		return nil, nil, err
	}
	root, err = p.tree(data)
	if err != nil {
		release()
		return nil, nil, err
	}
	return root, release, nil
}

func (p Parser) tree(data []byte) (root *yaml.Node, err error) {
	// yaml.v3 has panicked on malformed input in the past; a request must never take
	// the daemon down, so a panic becomes a syntax error.
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, syntaxError(fmt.Errorf("%v", r))
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(err)
		}
		return nil, &Error{Problems: []FieldError{{Message: "expected one YAML document, got several (---)"}}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	x := expander{budget: p.maxNodes(), maxDepth: p.maxDepth()}
	out, err := x.copy(doc.Content[0], 0)
	if err != nil {
		return nil, &Error{Problems: []FieldError{{Message: err.Error()}}, cause: ErrTooComplex}
	}
	return out, nil
}

func syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return &Error{Problems: []FieldError{{Message: "not valid YAML: " + msg}}}
}

// expander copies a node tree, replacing each alias by a copy of what it names and
// applying merge keys (<<), and counts every node it makes: a document of a few
// hundred bytes can name a tree of billions of nodes through nested aliases, and
// counting while copying refuses it after MaxNodes, never materialising it.
type expander struct {
	budget   int
	maxDepth int
}

func (x *expander) copy(n *yaml.Node, depth int) (*yaml.Node, error) {
	if depth > x.maxDepth {
		return nil, fmt.Errorf("document is nested deeper than %d levels", x.maxDepth)
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil, fmt.Errorf("line %d: alias to nothing", n.Line)
		}
		n = n.Alias
		if x.budget--; x.budget < 0 {
			return nil, x.tooMany()
		}
	}
	if x.budget--; x.budget < 0 {
		return nil, x.tooMany()
	}
	c := &yaml.Node{Kind: n.Kind, Style: n.Style, Tag: n.Tag, Value: n.Value, Line: n.Line, Column: n.Column}
	switch n.Kind {
	case yaml.SequenceNode:
		c.Content = make([]*yaml.Node, 0, len(n.Content))
		for _, e := range n.Content {
			ce, err := x.copy(e, depth+1)
			if err != nil {
				return nil, err
			}
			c.Content = append(c.Content, ce)
		}
	case yaml.MappingNode:
		var merged []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
				m, err := x.merge(v, depth+1)
				if err != nil {
					return nil, err
				}
				merged = append(merged, m...)
				continue
			}
			ck, err := x.copy(k, depth+1)
			if err != nil {
				return nil, err
			}
			cv, err := x.copy(v, depth+1)
			if err != nil {
				return nil, err
			}
			c.Content = append(c.Content, ck, cv)
		}
		// Merged keys yield to the mapping's own keys, as YAML's merge key says.
		if len(merged) > 0 {
			own := scalarKeys(c.Content)
			for i := 0; i+1 < len(merged); i += 2 {
				if k := merged[i]; k.Kind != yaml.ScalarNode || !own[k.Value] {
					c.Content = append(c.Content, merged[i], merged[i+1])
				}
			}
		}
	}
	return c, nil
}

// merge returns the key/value nodes a merge key brings in: those of a mapping, or of a
// list of mappings (earlier ones win).
func (x *expander) merge(v *yaml.Node, depth int) ([]*yaml.Node, error) {
	m, err := x.copy(v, depth)
	if err != nil {
		return nil, err
	}
	switch m.Kind {
	case yaml.MappingNode:
		return m.Content, nil
	case yaml.SequenceNode:
		var out []*yaml.Node
		seen := map[string]bool{}
		for _, e := range m.Content {
			if e.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("line %d: merge key (<<) takes a mapping or a list of mappings", e.Line)
			}
			for i := 0; i+1 < len(e.Content); i += 2 {
				k := e.Content[i]
				if k.Kind == yaml.ScalarNode {
					if seen[k.Value] {
						continue
					}
					seen[k.Value] = true
				}
				out = append(out, k, e.Content[i+1])
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("line %d: merge key (<<) takes a mapping or a list of mappings", v.Line)
}

// scalarKeys returns the set of a mapping's scalar keys, so that checking many keys
// against a large mapping stays linear.
func scalarKeys(content []*yaml.Node) map[string]bool {
	keys := make(map[string]bool, len(content)/2)
	for i := 0; i+1 < len(content); i += 2 {
		if content[i].Kind == yaml.ScalarNode {
			keys[content[i].Value] = true
		}
	}
	return keys
}

func (x *expander) tooMany() error {
	return errors.New("document has too many nodes once aliases are expanded (alias bomb?)")
}

// kindOf names what a node holds, for messages ("got a list").
func kindOf(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("string %s", quote(n.Value))
		case "!!int", "!!float":
			return n.Value
		case "!!bool":
			return "boolean " + n.Value
		default:
			return fmt.Sprintf("a %s value", n.ShortTag())
		}
	}
	return "an unexpected node"
}

// quote quotes s for a message, shortened so that a huge value does not flood it.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// obj is a YAML mapping being read: its keys in order, which of them were read, and
// where it sits in the document.
type obj struct {
	d     *decoder
	path  string
	keys  []string
	vals  map[string]*yaml.Node
	used  map[string]bool
	empty bool
}

// decoder reads typed values out of node trees, recording each problem with its path.
type decoder struct {
	p *problems
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// mapping reads n as a mapping. A null node gives an empty mapping; anything else but a
// mapping is an error and gives an empty mapping too, so that reading goes on.
func (d *decoder) mapping(n *yaml.Node, path string) *obj {
	o := &obj{d: d, path: path, vals: map[string]*yaml.Node{}, used: map[string]bool{}}
	if isNull(n) {
		o.empty = true
		return o
	}
	if n.Kind != yaml.MappingNode {
		d.p.add(path, "must be a mapping, got %s", kindOf(n))
		o.empty = true
		return o
	}
	o.addPairs(n.Content)
	return o
}

// addPairs adds key/value nodes to the mapping; a key given twice is an error.
func (o *obj) addPairs(content []*yaml.Node) {
	for i := 0; i+1 < len(content); i += 2 {
		k, v := content[i], content[i+1]
		if k.Kind != yaml.ScalarNode {
			o.d.p.add(o.path, "keys must be plain strings, got %s", kindOf(k))
			continue
		}
		if _, dup := o.vals[k.Value]; dup {
			o.d.p.add(o.at(k.Value), "given twice")
			continue
		}
		o.keys = append(o.keys, k.Value)
		o.vals[k.Value] = v
	}
}

// has reports whether key is present, null or not.
func (o *obj) has(key string) bool { _, ok := o.vals[key]; return ok }

// node returns the value of key (nil when absent) and marks the key read.
func (o *obj) node(key string) *yaml.Node {
	o.used[key] = true
	return o.vals[key]
}

// at returns the path of key in the mapping. A key from the document that is not a
// plain name is quoted and shortened, so that a hostile key cannot make paths and
// messages as large as the document.
func (o *obj) at(key string) string { return join(o.path, segment(key)) }

var segmentRE = regexp.MustCompile(`^[A-Za-z0-9_<-]{1,64}$`)

func segment(key string) string {
	if segmentRE.MatchString(key) {
		return key
	}
	return quote(key)
}

// keyList lists a mapping's keys for a message, at most a few.
func keyList(keys []string) string {
	const max = 5
	out := make([]string, 0, max+1)
	for i, k := range keys {
		if i == max {
			out = append(out, fmt.Sprintf("... (%d keys)", len(keys)))
			break
		}
		out = append(out, segment(k))
	}
	return strings.Join(out, ", ")
}

// str reads a string. Numbers, booleans and dates are taken as written ("18.04",
// "1.0", 2019-06-01); null or absent gives "".
func (o *obj) str(key string) string {
	n := o.node(key)
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		o.d.p.add(o.at(key), "must be a string, got %s", kindOf(n))
		return ""
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return n.Value
	}
	o.d.p.add(o.at(key), "must be a string, got %s", kindOf(n))
	return ""
}

// noValue reports a value the original's documents wrote for "none": null, an empty
// string, or one of the words orEmpty knows ("undefined", "indefined", "none"...). A
// number or a flag so written is absent.
func noValue(n *yaml.Node) bool {
	return isNull(n) || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && orEmpty(strings.TrimSpace(n.Value)) == "")
}

// numberText unquotes a number written as a string ("2", " 4096 "): the original's
// readers took such values with int() or float(). Hex, octal, NaN and infinities are
// not numbers there.
func numberText(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", false
	}
	t := strings.TrimSpace(n.Value)
	if t == "" || strings.ContainsAny(t, "xXoObBpP_") || strings.ContainsAny(strings.ToLower(t), "naif") {
		return "", false
	}
	if _, err := strconv.ParseFloat(t, 64); err != nil {
		return "", false
	}
	return t, true
}

// integer reads an integer; ok is false when absent or wrong (then reported).
func (o *obj) integer(key string) (v int64, ok bool) {
	n := o.node(key)
	if noValue(n) {
		return 0, false
	}
	return o.d.integer(n, o.at(key))
}

func (d *decoder) integer(n *yaml.Node, path string) (int64, bool) {
	if t, ok := numberText(n); ok {
		n = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: t}
		if _, err := strconv.ParseInt(t, 10, 64); err == nil {
			n.Tag = "!!int"
		}
	}
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!int":
			var v int64
			if err := n.Decode(&v); err == nil {
				return v, true
			}
			d.p.add(path, "must be an integer, got %s (out of range)", n.Value)
			return 0, false
		case "!!float":
			var f float64
			if err := n.Decode(&f); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				return int64(f), true
			}
		}
	}
	d.p.add(path, "must be an integer, got %s", kindOf(n))
	return 0, false
}

// number reads a finite number; ok is false when absent or wrong (then reported).
func (o *obj) number(key string) (v float64, ok bool) {
	n := o.node(key)
	if noValue(n) {
		return 0, false
	}
	return o.d.number(n, o.at(key))
}

func (d *decoder) number(n *yaml.Node, path string) (float64, bool) {
	if t, ok := numberText(n); ok {
		n = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: t}
	}
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
		var f float64
		if err := n.Decode(&f); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f, true
		}
		d.p.add(path, "must be a finite number, got %s", n.Value)
		return 0, false
	}
	d.p.add(path, "must be a number, got %s", kindOf(n))
	return 0, false
}

// boolean reads true or false; absent, null or a word for "none" gives false. The
// original read its documents as YAML 1.1, where yes/no and on/off are booleans too;
// those, quoted or not, and 0/1 are taken.
func (o *obj) boolean(key string) bool {
	n := o.node(key)
	if noValue(n) {
		return false
	}
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err == nil {
				return b
			}
		case "!!str", "!!int":
			switch strings.ToLower(strings.TrimSpace(n.Value)) {
			case "true", "yes", "on", "y", "1":
				return true
			case "false", "no", "off", "n", "0":
				return false
			}
		}
	}
	o.d.p.add(o.at(key), "must be true or false (yes/no, on/off), got %s", kindOf(n))
	return false
}

// asWritten reads a value of any shape, kept as plain values (see plain); absent gives
// nil. For fields the format never fixed and the platform does not interpret.
func (o *obj) asWritten(key string) any {
	n := o.node(key)
	if n == nil {
		return nil
	}
	return plain(n)
}

// list reads a list; null or absent gives nil.
func (o *obj) list(key string) []*yaml.Node {
	n := o.node(key)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		o.d.p.add(o.at(key), "must be a list, got %s", kindOf(n))
		return nil
	}
	return n.Content
}

// strings reads a list of strings; a single string is taken as a list of one.
func (o *obj) strings(key string) []string {
	n := o.node(key)
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		if s := o.str(key); s != "" {
			return []string{s}
		}
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		o.d.p.add(o.at(key), "must be a list of strings, got %s", kindOf(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, e := range n.Content {
		if e.Kind != yaml.ScalarNode || isNull(e) {
			o.d.p.add(index(o.at(key), i), "must be a string, got %s", kindOf(e))
			continue
		}
		out = append(out, e.Value)
	}
	return out
}

// sub reads key as a mapping.
func (o *obj) sub(key string) *obj {
	return o.d.mapping(o.node(key), o.at(key))
}

// rest returns the keys not read as plain values, for rendering them back, and warns
// about each of them unless it is listed in known (keys of the format this package
// accepts without modelling them).
func (o *obj) rest(known ...string) map[string]any {
	var out map[string]any
	for _, k := range o.keys {
		if o.used[k] {
			continue
		}
		if !contains(known, k) && len(o.d.p.warnings) < maxProblems {
			if s := suggest(k, o.used); s != "" {
				o.d.p.warn(o.at(k), "unknown key (did you mean %s?)", s)
			} else {
				o.d.p.warn(o.at(k), "unknown key")
			}
		}
		if out == nil {
			out = map[string]any{}
		}
		out[k] = plain(o.vals[k])
	}
	return out
}

var separators = strings.NewReplacer("-", "", "_", "")

// suggest returns a read key that differs from k only in case or separators.
func suggest(k string, used map[string]bool) string {
	norm := func(s string) string { return separators.Replace(strings.ToLower(s)) }
	var cands []string
	for u := range used {
		if norm(u) == norm(k) {
			cands = append(cands, u)
		}
	}
	sort.Strings(cands)
	if len(cands) > 0 {
		return cands[0]
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// Timestamp is a date or time a document wrote unquoted (2019-06-01, YAML reads it as
// a timestamp), kept as its text and rendered back unquoted, as written.
type Timestamp string

// MarshalYAML writes the timestamp as it was written, unquoted.
func (t Timestamp) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!timestamp", Value: string(t)}, nil
}

// plain converts an alias-free node tree to plain Go values that encode as both YAML
// and JSON: map[string]any, []any, string, int64, float64, bool, Timestamp and nil.
func plain(n *yaml.Node) any {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = plain(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			l = append(l, plain(e))
		}
		return l
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b
			}
		case "!!int":
			var i int64
			if n.Decode(&i) == nil {
				return i
			}
		case "!!float":
			var f float64
			// NaN and infinities have no JSON form; they stay as written.
			if n.Decode(&f) == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f
			}
		case "!!timestamp":
			return Timestamp(n.Value)
		}
		return n.Value
	}
	return nil
}
