package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
)

// createSlice is POST /v1/slices: a NECOS slice spec, YAML or JSON. It answers 202 at
// once, or with ?wait=true 201 once the slice is Ready (or the failure).
func (h *Handler) createSlice(w http.ResponseWriter, r *http.Request) {
	ctx, tenant := r.Context(), TenantFrom(r.Context())
	wait, err := boolParam(r, "wait")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	doc, err := ReadDocument(w, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if err := h.checkLimits(doc); err != nil {
		WriteError(w, r, err)
		return
	}
	sl, err := h.submit(w, r, doc)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	h.log.Info("slice accepted", "slice", sl.ID, "name", sl.Name, "tenant", tenant)
	w.Header().Set("Location", slicePath(sl.ID))
	if !wait {
		v, err := h.engine.Get(ctx, tenant, sl.ID)
		if err != nil {
			WriteError(w, r, err)
			return
		}
		h.writeSlice(w, r, http.StatusAccepted, v)
		return
	}
	v, err := h.awaitSlice(ctx, tenant, sl.ID)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	h.writeSlice(w, r, http.StatusCreated, v)
}

func slicePath(id string) string { return "/v1/slices/" + id }

// checkLimits refuses a slice larger than the platform's limits (Options.Limits) before
// the engine sees it: a slice of hundreds of parts would cost thousands of offer calls
// before being refused. A document that does not parse gets the error Submit would give.
func (h *Handler) checkLimits(doc []byte) error {
	s, err := sro.ParseSpec(string(doc))
	if err != nil {
		return err
	}
	return s.CheckLimits(h.opts.Limits)
}

// listSlices is GET /v1/slices: the tenant's slices, oldest first; with ?limit=N a page
// of at most N, and a continue token when more follow (?continue= asks for the next).
func (h *Handler) listSlices(w http.ResponseWriter, r *http.Request) {
	ctx, tenant := r.Context(), TenantFrom(r.Context())
	limit, cursor, err := pageParams(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	views, next, err := h.engine.Page(ctx, tenant, cursor, limit)
	if errors.Is(err, store.ErrBadCursor) {
		err = fieldError("query continue", "expected the continue token of a previous page, got %q", r.URL.Query().Get("continue"))
	}
	if err != nil {
		WriteError(w, r, err)
		return
	}
	out := v1.SliceList{Slices: make([]v1.SliceSummary, 0, len(views))}
	for _, v := range views {
		out.Slices = append(out.Slices, summaryView(v))
	}
	if next != "" {
		out.Continue = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	WriteJSON(w, http.StatusOK, out)
}

// maxPageSize bounds ?limit so that one answer stays small.
const maxPageSize = 1000

// pageParams reads ?limit (1..maxPageSize; absent: every slice) and ?continue (a token
// from the previous page's answer).
func pageParams(r *http.Request) (int, store.PageCursor, error) {
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			return 0, "", fieldError("query limit", "expected a whole number from 1 to %d, got %q", maxPageSize, s)
		}
		limit = n
	}
	// The token is the store's cursor in URL-safe base64, so that it needs no escaping
	// in a query; the store checks the cursor (what one looks like, and whose it is).
	token := q.Get("continue")
	cursor, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || (token != "" && len(cursor) == 0) {
		return 0, "", fieldError("query continue", "expected the continue token of a previous page, got %q", token)
	}
	return limit, store.PageCursor(cursor), nil
}

// getSlice is GET /v1/slices/{id}: the JSON view, or the NECOS YAML render with
// ?format=necos or Accept: text/x-yaml.
func (h *Handler) getSlice(w http.ResponseWriter, r *http.Request) {
	ctx, tenant := r.Context(), TenantFrom(r.Context())
	necos, err := wantsNECOS(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	v, err := h.engine.Get(ctx, tenant, mux.Vars(r)["id"])
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if necos {
		h.writeNECOS(w, r, http.StatusOK, v)
		return
	}
	h.writeSlice(w, r, http.StatusOK, v)
}

// deleteSlice is DELETE /v1/slices/{id}: 202 with the slice being decommissioned, or
// with ?wait=true 204 once it is gone from every provider.
func (h *Handler) deleteSlice(w http.ResponseWriter, r *http.Request) {
	ctx, tenant, id := r.Context(), TenantFrom(r.Context()), mux.Vars(r)["id"]
	wait, err := boolParam(r, "wait")
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if _, err := h.engine.Decommission(ctx, tenant, id); err != nil {
		WriteError(w, r, err)
		return
	}
	h.log.Info("slice decommission requested", "slice", id, "tenant", tenant)
	if wait {
		if err := h.engine.WaitGone(ctx, id); err != nil {
			WriteError(w, r, fmt.Errorf("wait for slice %s to be decommissioned: %w", id, err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	v, err := h.engine.Get(ctx, tenant, id)
	if errors.Is(err, sro.ErrNotFound) {
		// Already gone: decommission is done, which is all the tenant asked for.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err != nil {
		WriteError(w, r, err)
		return
	}
	h.writeSlice(w, r, http.StatusAccepted, v)
}

// revealSecrets puts the parts' secrets (kept sealed apart from the records) back into
// a slice's view, for an answer to the tenant who owns it: a single slice's GET, or the
// answer to its create. Lists, events and streams never carry them.
func (h *Handler) revealSecrets(ctx context.Context, v *sro.View) error {
	secrets, err := h.records.PartSecrets(ctx, v.Slice.ID)
	if err != nil {
		return fmt.Errorf("secrets of slice %s: %w", v.Slice.ID, err)
	}
	for i, p := range v.Parts {
		sec, ok := secrets[p.Name]
		if !ok || p.Observed == nil {
			continue
		}
		part, obs := *p, *p.Observed
		obs.Credential.Secret = sec
		part.Observed = &obs
		v.Parts[i] = &part
	}
	return nil
}

// writeSlice answers with a slice, secrets included: every caller has checked that the
// tenant owns it (engine.Get).
func (h *Handler) writeSlice(w http.ResponseWriter, r *http.Request, status int, v *sro.View) {
	if err := h.revealSecrets(r.Context(), v); err != nil {
		WriteError(w, r, err)
		return
	}
	evs, err := h.records.Events(r.Context(), v.Slice.ID)
	if err != nil {
		WriteError(w, r, fmt.Errorf("events of slice %s: %w", v.Slice.ID, err))
		return
	}
	WriteJSON(w, status, sliceView(v, len(evs)))
}

func (h *Handler) writeNECOS(w http.ResponseWriter, r *http.Request, status int, v *sro.View) {
	if err := h.revealSecrets(r.Context(), v); err != nil {
		WriteError(w, r, err)
		return
	}
	doc, err := h.engine.Render(v)
	if err != nil {
		WriteError(w, r, fmt.Errorf("render slice %s: %w", v.Slice.ID, err))
		return
	}
	WriteYAML(w, status, doc)
}

// unavailableRetryAfter is the Retry-After of a slice refused because its providers did
// not answer.
const unavailableRetryAfter = 30 * time.Second

// awaitSlice waits until a submitted slice is Ready and returns it, or returns the
// failure as an *Error: 409 when no provider could host it (asking again will not help
// until the request or the federation changes), 503 when building it failed (a backend
// problem, worth a retry), each with the reason per part.
func (h *Handler) awaitSlice(ctx context.Context, tenant, id string) (*sro.View, error) {
	sl, err := h.engine.Wait(ctx, id)
	if errors.Is(err, sro.ErrNotFound) {
		return nil, &Error{Status: http.StatusConflict, SliceID: id,
			Message: fmt.Sprintf("slice %s was decommissioned before it was ready", id)}
	}
	if err != nil {
		return nil, fmt.Errorf("wait for slice %s: %w", id, err)
	}
	v, err := h.engine.Get(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if sl.State == store.SliceFailed {
		return nil, h.failure(ctx, v)
	}
	return v, nil
}

// failure explains why a slice failed, part by part, from its events: the parts' own
// records are gone once the rollback removed what was built.
func (h *Handler) failure(ctx context.Context, v *sro.View) *Error {
	e := &Error{Status: http.StatusServiceUnavailable, SliceID: v.Slice.ID,
		Message: fmt.Sprintf("slice %s failed: %s", v.Slice.Name, v.Slice.Message)}
	evs, err := h.records.Events(ctx, v.Slice.ID)
	if err != nil {
		h.log.Warn("read events of failed slice", "slice", v.Slice.ID, "error", err)
	}
	paths := specPaths{v}
	seen := map[v1.Problem]bool{}
	add := func(p v1.Problem) {
		if !seen[p] {
			seen[p] = true
			e.Problems = append(e.Problems, p)
		}
	}
	for _, ev := range evs {
		switch ev.Type {
		case sro.EvRefused, sro.EvUnavailable:
			e.Status = http.StatusConflict
			if ev.Type == sro.EvUnavailable {
				// The providers did not answer: a backend problem, worth a retry.
				e.Status, e.RetryAfter = http.StatusServiceUnavailable, unavailableRetryAfter
			}
			// Reasons per part, when the engine gives them (Data: part name -> reason).
			names := make([]string, 0, len(ev.Data))
			for name := range ev.Data {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				add(v1.Problem{Path: paths.of(name), Message: "part " + name + ": " + ev.Data[name]})
			}
		case sro.EvPartFailed:
			add(v1.Problem{Path: paths.of(ev.Part), Message: ev.Message})
		case sro.EvLinkFailed:
			add(v1.Problem{Path: paths.of(ev.Link), Message: ev.Message})
		}
	}
	if len(e.Problems) == 0 {
		add(v1.Problem{Path: "slices.sliced.slice-parts", Message: v.Slice.Message})
	}
	return e
}

// specPaths names a part or link by its path in the tenant's document, so that
// failures name the field the tenant wrote.
type specPaths struct{ v *sro.View }

func (p specPaths) of(name string) string {
	// A spec that does not parse (the engine records it) names parts by their names.
	if s, err := p.v.Spec(); err == nil {
		if path, ok := s.PartPath(name); ok {
			return path
		}
	}
	return "slices.sliced.slice-parts[name=" + name + "]"
}

// boolParam reads a boolean query parameter; absent is false.
func boolParam(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fieldError("query "+name, "expected true or false, got %q", s)
	}
	return b, nil
}

// wantsNECOS reads ?format (json or necos) or, without it, Accept: the first of JSON or
// YAML types it lists wins (q-values are not weighed: clients ask for one).
func wantsNECOS(r *http.Request) (bool, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "necos":
		return true, nil
	case "json":
		return false, nil
	case "":
	default:
		return false, fieldError("query format", "expected json or necos, got %q", f)
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if yamlTypes[mt] {
			return true, nil
		}
		if mt == "application/json" {
			return false, nil
		}
	}
	return false, nil
}
