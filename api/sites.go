package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/gorilla/mux"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/sites"
	"github.com/necos/necos/sdk"
)

// SiteSource gives the catalogue and its WAN providers' plugin clients;
// *providers.Registry is one.
type SiteSource interface {
	Catalogue() *providers.Catalogue
	WAN(ctx context.Context, provider string) (sdk.WAN, error)
}

// SiteRoutes returns an Options.Extra adding POST /v1/sites/release (sites.Release): the
// network namespaces that WAN plugins built for the providers' sites are removed when no
// live slice uses them, as the ledger in st says (?site=NAME, repeated, limits it to
// those sites).
func SiteRoutes(src SiteSource, st sites.Ledgers) Extra {
	return func(r *mux.Router, auth func(http.Handler) http.Handler) {
		r.Handle("/v1/sites/release", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var cat *providers.Catalogue
			if src != nil {
				cat = src.Catalogue()
			}
			res, err := sites.Release(r.Context(), cat, src, st, r.URL.Query()["site"])
			if err != nil {
				if errors.Is(err, sites.ErrUnknownSite) {
					err = fieldError("site", "%s", err.Error())
				}
				WriteError(w, r, err)
				return
			}
			out := v1.SiteRelease{Removed: res.Removed, Kept: make([]v1.KeptSite, 0, len(res.Kept))}
			for _, k := range res.Kept {
				out.Kept = append(out.Kept, v1.KeptSite{Site: k.Site, Netns: k.Netns, Reason: k.Reason, Slices: k.Slices})
			}
			WriteJSON(w, http.StatusOK, out)
		}))).Methods(http.MethodPost)
	}
}
