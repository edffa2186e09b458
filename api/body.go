package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/spec"
	"golang.org/x/sync/semaphore"
)

// yamlType is the media type NECOS components exchanged documents with.
const yamlType = "text/x-yaml"

// yamlAnswerType is what YAML answers carry: text/* types default to US-ASCII (RFC
// 2046) without a charset, and answers hold UTF-8 (prices in €, names).
const yamlAnswerType = yamlType + "; charset=utf-8"

// yamlTypes are the media types read as YAML: the NECOS one and the registered ones.
var yamlTypes = map[string]bool{
	"text/x-yaml": true, "application/x-yaml": true, "application/yaml": true, "text/yaml": true,
}

type maxBodyKey struct{}

func withMaxBody(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, maxBodyKey{}, n)
}

func maxBodyFrom(ctx context.Context) int64 {
	if n, ok := ctx.Value(maxBodyKey{}).(int64); ok && n > 0 {
		return n
	}
	return DefaultMaxBody
}

// ReadDocument reads a request body holding a YAML document, or a JSON document of the
// same structure (Content-Type application/json), which it returns converted to YAML;
// an absent Content-Type reads as YAML. It enforces the API's size limit (413) and
// refuses other media types (415) and empty bodies (400), returning an *Error to pass
// to WriteError.
func ReadDocument(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	isJSON, err := documentType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, err
	}
	body, err := readBody(w, r, "a document")
	if err != nil {
		return nil, err
	}
	if !isJSON {
		return body, nil
	}
	// JSON is read whole into a tree to be converted: the same bounds as YAML first.
	var doc []byte
	err = spec.Parser{MaxBytes: int(maxBodyFrom(r.Context()))}.Bounded(body, func() (err error) {
		doc, err = v1.JSONToYAML(body)
		return err
	})
	var se *spec.Error
	if errors.As(err, &se) {
		return nil, err
	}
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Message: "body is not valid JSON",
			Problems: []v1.Problem{{Path: "", Message: err.Error()}}}
	}
	return doc, nil
}

type bodyGateKey struct{}

// holdBody waits until n more bytes of bodies may be held (the API's MaxBodiesInFlight),
// and has them released once the request is answered.
func holdBody(r *http.Request, n int64) error {
	gate, _ := r.Context().Value(bodyGateKey{}).(*semaphore.Weighted)
	info := infoFrom(r.Context())
	if gate == nil || info == nil {
		return nil
	}
	if err := gate.Acquire(r.Context(), n); err != nil {
		return err
	}
	info.done = append(info.done, func() { gate.Release(n) })
	return nil
}

// readBody reads a request body within the API's size limit (413 beyond it); an empty
// body is a 400 saying what was expected.
func readBody(w http.ResponseWriter, r *http.Request, expected string) ([]byte, error) {
	limit := maxBodyFrom(r.Context())
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	hold := limit
	if r.ContentLength >= 0 {
		hold = r.ContentLength
	}
	if err := holdBody(r, hold); err != nil {
		return nil, err
	}
	var body []byte
	var err error
	in := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength >= 0 {
		// Exactly what was announced: no growing buffer holding twice the body.
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(in, body)
	} else {
		body, err = io.ReadAll(in)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		return nil, &Error{Status: http.StatusBadRequest, Message: "cannot read the request body", Cause: err}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		msg := "empty body: expected " + expected
		return nil, &Error{Status: http.StatusBadRequest, Message: msg, Problems: []v1.Problem{{Path: "", Message: msg}}}
	}
	return body, nil
}

// documentType says whether a Content-Type is JSON (true) or YAML (false); anything
// else is an error.
func documentType(contentType string) (bool, error) {
	if strings.TrimSpace(contentType) == "" {
		return false, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil {
		if yamlTypes[mt] {
			return false, nil
		}
		if mt == "application/json" || strings.HasSuffix(mt, "+json") {
			return true, nil
		}
	}
	msg := fmt.Sprintf("%q is not accepted: send text/x-yaml or application/json", contentType)
	return false, &Error{Status: http.StatusUnsupportedMediaType, Message: "unsupported media type: " + msg,
		Problems: []v1.Problem{{Path: "header Content-Type", Message: msg}}}
}

func tooLarge(limit int64) *Error {
	msg := fmt.Sprintf("the body exceeds the limit of %d bytes", limit)
	return &Error{Status: http.StatusRequestEntityTooLarge, Message: "request too large: " + msg,
		Problems: []v1.Problem{{Path: "", Message: msg}}}
}
