package spec

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is one problem of a document: where it is and what was expected.
type FieldError struct {
	// Path names the field as it appears in the document, e.g.
	// "slices.sliced.slice-parts[2].dc-slice-part.VIM.vdus[0].vdu.name". An empty path
	// means the document as a whole.
	Path string `json:"path"`
	// Message says what is wrong and what was expected.
	Message string `json:"message"`
}

// String returns "path: message".
func (f FieldError) String() string {
	if f.Path == "" {
		return f.Message
	}
	return f.Path + ": " + f.Message
}

// Error is returned by the parsers and checks of this package: every problem found in
// a document, so that a tenant can fix them all in one go. The API returns it as JSON.
type Error struct {
	Problems []FieldError `json:"problems"`
	// Omitted counts problems left out of Problems because there were too many.
	Omitted int `json:"omitted,omitempty"`
	cause   error
}

// Sentinel causes of an [Error]; test with errors.Is.
var (
	// ErrTooLarge: the document exceeds the size limit.
	ErrTooLarge = errors.New("document too large")
	// ErrTooComplex: the document has too many nodes once aliases are expanded, or is
	// nested too deeply (an alias bomb, or input not meant for this API).
	ErrTooComplex = errors.New("document too complex")
)

// Error lists the problems on one line.
func (e *Error) Error() string {
	var b strings.Builder
	switch n := len(e.Problems) + e.Omitted; n {
	case 1:
		b.WriteString("1 problem: ")
	default:
		fmt.Fprintf(&b, "%d problems: ", n)
	}
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "; and %d more", e.Omitted)
	}
	return b.String()
}

// Unwrap returns ErrTooLarge or ErrTooComplex when one of them caused the error.
func (e *Error) Unwrap() error { return e.cause }

// maxProblems bounds the problems kept, so that hostile input cannot make an error
// message as large as itself many times over.
const maxProblems = 100

// problems collects the errors and warnings of one document.
type problems struct {
	errs     []FieldError
	warnings []FieldError
	omitted  int
	// reported holds the paths that already have an error, so that a field with a wrong
	// type is not reported a second time by the checks on the model.
	reported map[string]bool
	cause    error
}

func (p *problems) add(path, format string, args ...any) {
	if p.reported == nil {
		p.reported = map[string]bool{}
	}
	if p.reported[path] {
		return
	}
	p.reported[path] = true
	if len(p.errs) >= maxProblems {
		p.omitted++
		return
	}
	p.errs = append(p.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) warn(path, format string, args ...any) {
	if len(p.warnings) >= maxProblems {
		return
	}
	p.warnings = append(p.warnings, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// err returns the collected errors as an *Error, or nil.
func (p *problems) err() error {
	if len(p.errs) == 0 && p.omitted == 0 {
		return nil
	}
	return &Error{Problems: p.errs, Omitted: p.omitted, cause: p.cause}
}
