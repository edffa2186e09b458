package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
)

// necosCreate is POST /slice_activator/create_slice, as the original Slice Activator
// served it: a NECOS slice spec in, and once the slice is built, 201 with the slice
// YAML enriched with what was created (controllers, endpoints, credentials, nodes and
// their addresses, link ends, prices). A slice that failed answers 409 (nothing can host
// it) or 503 (building it failed) with the reason per part, in YAML.
func (h *Handler) necosCreate(w http.ResponseWriter, r *http.Request) {
	ctx, tenant := r.Context(), TenantFrom(r.Context())
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
	v, err := h.awaitSlice(ctx, tenant, sl.ID)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	h.writeNECOS(w, r, http.StatusCreated, v)
}

// deleted is the confirmation of delete_slice.
type deleted struct {
	Message string `yaml:"message"`
	Slices  struct {
		Sliced struct {
			ID string `yaml:"id"`
			// SliceID is necos's own id of the slice.
			SliceID   string `yaml:"slice-id"`
			Lifecycle struct {
				Status string `yaml:"status"`
			} `yaml:"slice-lifecycle"`
		} `yaml:"sliced"`
	} `yaml:"slices"`
}

// necosDelete is POST /slice_activator/delete_slice: a NECOS document naming the slice
// by slices.sliced.slice-id (the original's delete body) or slices.sliced.id (the
// created slice's YAML will do), either the id the spec gave the slice or necos's own id
// for it (the one a 409 hands back); decommissioned before the answer, 200 with a short
// YAML confirmation.
func (h *Handler) necosDelete(w http.ResponseWriter, r *http.Request) {
	ctx, tenant := r.Context(), TenantFrom(r.Context())
	doc, err := ReadDocument(w, r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	ref, err := spec.ParseSliceRef(doc)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	v, err := h.engine.GetByName(ctx, tenant, ref.ID)
	if errors.Is(err, sro.ErrNotFound) {
		v, err = h.engine.Get(ctx, tenant, ref.ID)
	}
	if err != nil {
		WriteError(w, r, notFoundByName(err, ref))
		return
	}
	if _, err := h.engine.Decommission(ctx, tenant, v.Slice.ID); err != nil {
		WriteError(w, r, notFoundByName(err, ref))
		return
	}
	h.log.Info("slice decommission requested", "slice", v.Slice.ID, "name", v.Slice.Name, "tenant", tenant)
	if err := h.engine.WaitGone(ctx, v.Slice.ID); err != nil {
		WriteError(w, r, fmt.Errorf("wait for slice %s to be decommissioned: %w", v.Slice.ID, err))
		return
	}
	var out deleted
	out.Message = fmt.Sprintf("slice %s decommissioned", ref.ID)
	out.Slices.Sliced.ID = v.Slice.Name
	out.Slices.Sliced.SliceID = v.Slice.ID
	out.Slices.Sliced.Lifecycle.Status = "decommissioned"
	WriteYAML(w, http.StatusOK, out)
}

// notFoundByName names the field when the slice a NECOS document names is unknown.
func notFoundByName(err error, ref spec.SliceRef) error {
	if e := asError(err); e.Status == http.StatusNotFound {
		nf := fieldError(ref.Path, "no slice %q of this tenant", ref.ID)
		nf.Status, nf.Cause = http.StatusNotFound, err
		nf.Message = fmt.Sprintf("slice %q not found", ref.ID)
		return nf
	}
	return err
}
