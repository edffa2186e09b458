package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting JSONToYAML follows: far beyond any document of the
// API (the NECOS parsers refuse 64 levels), short of a stack a hostile body could
// grow.
const maxJSONDepth = 256

// JSONToYAML rewrites a JSON document as block-style YAML (indented by four, as
// yaml.v3 writes it), keeping the order of keys and every scalar as it was written
// (1.0 stays 1.0, "yes" stays a string). The server uses it to store JSON slice specs
// in the NECOS format; clients to print YAML.
//
// It streams: the document is never held as a tree, so converting costs about the
// size of the output, whatever the number of values (a tree of a dense 1 MiB document
// took hundreds of megabytes).
func JSONToYAML(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	c := &converter{dec: dec}
	c.out.Grow(len(doc) + len(doc)/4)
	tok, err := dec.Token()
	if err != nil {
		return nil, invalid(err)
	}
	if err := c.value(tok, 0, lineStart); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("data after the document")
		}
		return nil, invalid(err)
	}
	return c.out.Bytes(), nil
}

func invalid(err error) error { return fmt.Errorf("invalid JSON: %w", err) }

type converter struct {
	dec   *json.Decoder
	out   bytes.Buffer
	depth int
}

// Where a value is written: at the start of a line (the document itself), after
// "key:", or after "- ".
const (
	lineStart = iota
	afterKey
	afterDash
)

// value writes the value that starts with tok, its block lines indented by indent.
func (c *converter) value(tok json.Token, indent, at int) error {
	switch t := tok.(type) {
	case json.Delim:
		if c.depth++; c.depth > maxJSONDepth {
			return invalid(fmt.Errorf("nested deeper than %d levels", maxJSONDepth))
		}
		defer func() { c.depth-- }()
		switch t {
		case '{':
			return c.object(indent, at)
		case '[':
			return c.array(indent, at)
		}
		return invalid(fmt.Errorf("unexpected %q", t))
	case string:
		c.space(at)
		c.str(t, indent, false)
	case json.Number:
		c.space(at)
		c.out.WriteString(string(t))
	case bool:
		c.space(at)
		fmt.Fprint(&c.out, t)
	case nil:
		c.space(at)
		c.out.WriteString("null")
	}
	c.out.WriteByte('\n')
	return nil
}

func (c *converter) space(at int) {
	if at == afterKey {
		c.out.WriteByte(' ')
	}
}

func (c *converter) next() (json.Token, error) {
	tok, err := c.dec.Token()
	if err != nil {
		return nil, invalid(err)
	}
	return tok, nil
}

// object writes a mapping: after a key, on the lines below; after "- ", its first key
// on the dash's line.
func (c *converter) object(indent, at int) error {
	first := true
	for c.dec.More() {
		tok, err := c.next()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		switch {
		case first && at == afterDash:
		case first && at == afterKey:
			c.out.WriteByte('\n')
			c.pad(indent)
		default:
			c.pad(indent)
		}
		first = false
		c.str(key, indent, true)
		c.out.WriteByte(':')
		v, err := c.next()
		if err != nil {
			return err
		}
		if err := c.value(v, indent+4, afterKey); err != nil {
			return err
		}
	}
	if _, err := c.next(); err != nil { // '}'
		return err
	}
	if first {
		c.space(at)
		c.out.WriteString("{}\n")
	}
	return nil
}

// array writes a sequence, its items at indent ("- "), a mapping item's other keys two
// further in.
func (c *converter) array(indent, at int) error {
	first := true
	for c.dec.More() {
		switch {
		case first && at == afterDash:
		case first && at == afterKey:
			c.out.WriteByte('\n')
			c.pad(indent)
		default:
			c.pad(indent)
		}
		first = false
		c.out.WriteString("- ")
		v, err := c.next()
		if err != nil {
			return err
		}
		if err := c.value(v, indent+2, afterDash); err != nil {
			return err
		}
	}
	if _, err := c.next(); err != nil { // ']'
		return err
	}
	if first {
		c.space(at)
		c.out.WriteString("[]\n")
	}
	return nil
}

func (c *converter) pad(n int) {
	for range n {
		c.out.WriteByte(' ')
	}
}

// plainRE matches strings YAML reads back as the same string when written plain.
var plainRE = regexp.MustCompile(`^[A-Za-z_/][A-Za-z0-9_./@-]*( [A-Za-z0-9_./@-]+)*$`)

// reserved are the plain words YAML (1.2, or 1.1's booleans) reads as something else
// than a string.
var reserved = map[string]bool{"true": true, "false": true, "yes": true, "no": true, "on": true, "off": true,
	"null": true, "nan": true, "inf": true}

// str writes a string: plain when YAML reads it back as that string, a literal block
// for printable multi-line text, else double-quoted (JSON's escapes are YAML's).
func (c *converter) str(s string, indent int, isKey bool) {
	switch {
	case plainRE.MatchString(s) && !reserved[strings.ToLower(s)]:
		c.out.WriteString(s)
	case !isKey && literalOK(s):
		c.literal(s, indent)
	default:
		c.quoted(s)
	}
}

// quoted writes s double-quoted, escaping what YAML does not take as it is.
func (c *converter) quoted(s string) {
	c.out.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			c.out.WriteByte('\\')
			c.out.WriteRune(r)
		case r == '\n':
			c.out.WriteString(`\n`)
		case r == '\t':
			c.out.WriteString(`\t`)
		case r == utf8.RuneError, unicode.IsControl(r), !unicode.IsPrint(r) && r != ' ':
			if r > 0xffff {
				fmt.Fprintf(&c.out, `\U%08x`, r)
			} else {
				fmt.Fprintf(&c.out, `\u%04x`, r)
			}
		default:
			c.out.WriteRune(r)
		}
	}
	c.out.WriteByte('"')
}

// literalOK: multi-line text without characters a literal block cannot hold as they
// are (control characters, carriage returns, a first line starting with a space).
func literalOK(s string) bool {
	if !strings.Contains(s, "\n") || strings.HasPrefix(s, " ") || strings.HasPrefix(s, "\n") {
		return false
	}
	for _, r := range s {
		if r != '\n' && (unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' && r != '\t' || r == utf8.RuneError) {
			return false
		}
	}
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimRight(line, " ") != line {
			return false // trailing spaces are kept by a literal block but easily lost
		}
	}
	return true
}

// literal writes s as a literal block ("|"), with the chomping indicator that gives its
// trailing line breaks back.
func (c *converter) literal(s string, indent int) {
	body := strings.TrimRight(s, "\n")
	switch trailing := len(s) - len(body); {
	case trailing == 0:
		c.out.WriteString("|-")
	case trailing == 1:
		c.out.WriteString("|")
	default:
		c.out.WriteString("|+")
	}
	lines := strings.Split(s[:len(body)+max(0, len(s)-len(body)-1)], "\n")
	for _, line := range lines {
		c.out.WriteByte('\n')
		if line != "" {
			c.pad(indent)
			c.out.WriteString(line)
		}
	}
}
