package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"gopkg.in/yaml.v3"
)

// Error is an error with the HTTP status it answers with and, when they are known, the
// fields at fault. Handlers return it to WriteError; other errors are mapped to a status
// by what they wrap (see WriteError).
type Error struct {
	Status   int
	Message  string
	Problems []v1.Problem
	// SliceID names the slice concerned, when one exists (a create that failed).
	SliceID string
	// Cause is logged, never shown: it may hold internals.
	Cause error
	// RetryAfter, when set, is sent as Retry-After: when asking again may succeed.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Message + ": " + e.Cause.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// errorf returns an *Error with a status and message.
func errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// fieldError returns a 400 naming the field at fault (a document path, a query
// parameter or a header).
func fieldError(path, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Status: http.StatusBadRequest, Message: path + ": " + msg, Problems: []v1.Problem{{Path: path, Message: msg}}}
}

// asError maps an error to the answer it gets:
//
//   - *Error: as it says;
//   - *spec.Error: 400 with every problem (413 when the document is too large);
//   - sro.ErrNotFound or store.ErrNotFound: 404;
//   - store.ErrExists: 409 (a live slice with that spec id);
//   - broker.ErrOverBudget: 422, with the error's message (the part, the price and the
//     budget): the change breaks the tenant's own cost bound, and asking again will not
//     help until the slice's budget or the provider's price changes (unlike a provider
//     without room, which may have some later);
//   - a cancelled or expired context: 503;
//   - anything else: 500, with the details only in the log.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var se *spec.Error
	if errors.As(err, &se) {
		out := &Error{Status: http.StatusBadRequest, Message: "invalid document"}
		if errors.Is(err, spec.ErrTooLarge) {
			out.Status = http.StatusRequestEntityTooLarge
			out.Message = "document too large"
		} else if errors.Is(err, spec.ErrTooComplex) {
			out.Message = "document too complex"
		}
		for _, p := range se.Problems {
			out.Problems = append(out.Problems, v1.Problem{Path: p.Path, Message: p.Message})
		}
		if se.Omitted > 0 {
			out.Problems = append(out.Problems, v1.Problem{Message: fmt.Sprintf("%d more problems not listed", se.Omitted)})
		}
		if len(se.Problems) == 1 {
			out.Message = se.Problems[0].String()
		} else if len(se.Problems) > 1 {
			out.Message = fmt.Sprintf("invalid document: %d problems", len(se.Problems)+se.Omitted)
		}
		return out
	}
	switch {
	case errors.Is(err, sro.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Message: "slice not found", Cause: err}
	case errors.Is(err, store.ErrExists):
		out := &Error{Status: http.StatusConflict, Message: "a live slice of this tenant already has this id",
			Problems: []v1.Problem{{Path: "slices.sliced.id", Message: "already used by a live slice of this tenant: delete it first or choose another id"}},
			Cause:    err}
		var ex *store.SliceExistsError
		if errors.As(err, &ex) {
			out.SliceID = ex.ID
		}
		return out
	case errors.Is(err, broker.ErrOverBudget):
		return &Error{Status: http.StatusUnprocessableEntity, Message: err.Error()}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Message: "request cancelled or timed out", Cause: err}
	}
	return &Error{Status: http.StatusInternalServerError, Message: "internal error", Cause: err}
}

// WriteError answers a request with err, as JSON (or YAML on the NECOS routes), and has
// it logged with the request. See asError for how errors map to statuses.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	if info := infoFrom(r.Context()); info != nil {
		info.err = err
	}
	if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
		return // the client left: nobody to answer (logged as 499)
	}
	e := asError(err)
	body := v1.Error{Error: e.Message, Problems: e.Problems, SliceID: e.SliceID}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	if e.Status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="necos"`)
	}
	if yamlErrorsFrom(r.Context()) || isNECOSPath(r.URL.Path) {
		WriteYAML(w, e.Status, body)
		return
	}
	WriteJSON(w, e.Status, body)
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"error":"internal error: encode answer"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// WriteYAML answers with v as YAML (text/x-yaml, as the original NECOS components did,
// with charset=utf-8); a []byte is sent as it is.
func WriteYAML(w http.ResponseWriter, status int, v any) {
	b, ok := v.([]byte)
	if !ok {
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(v); err != nil {
			http.Error(w, "error: 'internal error: encode answer'", http.StatusInternalServerError)
			return
		}
		b = buf.Bytes()
	}
	w.Header().Set("Content-Type", yamlAnswerType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

type yamlErrorsKey struct{}

// YAMLErrors makes WriteError answer next's errors in YAML: the NECOS-compatible routes
// (/slice_activator/..., /service_orchestrator/...) speak nothing else.
func YAMLErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), yamlErrorsKey{}, true)))
	})
}

func yamlErrorsFrom(ctx context.Context) bool {
	v, _ := ctx.Value(yamlErrorsKey{}).(bool)
	return v
}

// isNECOSPath tells the paths of the original's components, whose clients expect YAML
// even from a route that does not exist.
func isNECOSPath(path string) bool {
	return strings.HasPrefix(path, "/slice_activator/") || strings.HasPrefix(path, "/service_orchestrator/")
}
