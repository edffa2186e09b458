package api

import (
	"context"
	"errors"
	"net/http"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/store"
)

// IdempotencyHeader names a create: a retry with the same key and document gets the
// slice the first request made instead of a new one (or a 409), for IdempotencyTTL.
const IdempotencyHeader = "Idempotency-Key"

// ReplayedHeader marks an answer about a slice an earlier request made.
const ReplayedHeader = "Idempotent-Replayed"

const maxIdempotencyKey = 255

// submit stores a tenant's new slice, or finds the one an earlier request made with the
// same document: under the same Idempotency-Key, or, without a key, under the same
// slice id (a create whose answer was lost, sent again). A key sent again with another
// document is a 422; another document under a live slice's id stays a 409, but replaces
// a Failed slice that holds nothing (refused at placement, or rolled back entirely).
func (h *Handler) submit(w http.ResponseWriter, r *http.Request, doc []byte) (*store.Slice, error) {
	ctx, tenant, st := r.Context(), TenantFrom(r.Context()), h.records
	key, digest := r.Header.Get(IdempotencyHeader), store.Digest(doc)
	replay := func(sl *store.Slice) (*store.Slice, error) {
		w.Header().Set(ReplayedHeader, "true")
		h.log.Info("create replayed", "slice", sl.ID, "tenant", tenant, "idempotency_key", key != "")
		return sl, nil
	}
	if len(key) > maxIdempotencyKey {
		return nil, fieldError("header "+IdempotencyHeader, "at most %d characters, got %d", maxIdempotencyKey, len(key))
	}
	claimed := false
	if key != "" {
		prev, err := st.ClaimIdempotencyKey(ctx, tenant, key, digest)
		if err != nil {
			return nil, err
		}
		claimed = prev == nil
		if prev != nil && prev.Digest != digest {
			msg := "already used for another document: send that document again, or use a new key for this one"
			return nil, &Error{Status: http.StatusUnprocessableEntity, Message: IdempotencyHeader + " " + msg,
				Problems: []v1.Problem{{Path: "header " + IdempotencyHeader, Message: msg}}}
		}
		if prev != nil && prev.SliceID != "" {
			if sl, err := st.GetSlice(ctx, prev.SliceID); err == nil && sl.Tenant == tenant && !sl.Deleting {
				return replay(sl)
			}
			// That slice is gone: the document makes a new one.
		}
	}
	sl, err := h.engine.Submit(ctx, tenant, doc)
	replayed := false
	var ex *store.SliceExistsError
	if errors.As(err, &ex) && ex.ID != "" {
		prev, gerr := st.GetSlice(ctx, ex.ID)
		switch {
		case gerr != nil || prev.Tenant != tenant || prev.Deleting:
		case store.Digest([]byte(prev.Spec)) == digest:
			sl, err, replayed = prev, nil, true
		case h.dropEmptyFailed(ctx, prev):
			// A Failed slice holding nothing is not live: another document takes its id.
			sl, err = h.engine.Submit(ctx, tenant, doc)
		}
	}
	if key != "" {
		if err != nil {
			// Nothing was made: a corrected document may come under the same key. Only
			// the request that claimed the key frees it: a concurrent retry's failure
			// must not free a key whose first request is still making its slice.
			if !claimed {
				return nil, err
			}
			if rerr := st.ReleaseIdempotencyKey(ctx, tenant, key); rerr != nil {
				h.log.Warn("release idempotency key", "tenant", tenant, "error", rerr)
			}
			return nil, err
		}
		if serr := st.SetIdempotencyKey(ctx, tenant, key, store.Idempotency{Digest: digest, SliceID: sl.ID}); serr != nil {
			// The slice exists; a retry still finds it by its document.
			h.log.Warn("record idempotency key", "slice", sl.ID, "tenant", tenant, "error", serr)
		}
	}
	if err != nil {
		return nil, err
	}
	if replayed {
		return replay(sl)
	}
	return sl, nil
}

// dropEmptyFailed removes sl from the store when it is Failed and holds no part and no
// link on any provider, and reports whether it did: such a slice keeps nothing but its
// id and its events, and a tenant who corrects the document expects the id free.
func (h *Handler) dropEmptyFailed(ctx context.Context, sl *store.Slice) bool {
	st := h.records
	if sl.State != store.SliceFailed || sl.Deleting {
		return false
	}
	parts, err := st.ListParts(ctx, sl.ID)
	if err != nil || len(parts) > 0 {
		return false
	}
	links, err := st.ListLinks(ctx, sl.ID)
	if err != nil || len(links) > 0 {
		return false
	}
	if err := st.DeleteSlice(ctx, sl); err != nil {
		h.log.Warn("drop failed slice", "slice", sl.ID, "error", err)
		return false
	}
	h.log.Info("failed slice holding nothing replaced", "slice", sl.ID, "name", sl.Name, "tenant", sl.Tenant)
	return true
}
