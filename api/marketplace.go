package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// VIMSource gives a provider's VIM plugin client; *providers.Registry is one.
type VIMSource interface {
	Catalogue() *providers.Catalogue
	VIM(ctx context.Context, provider string) (sdk.VIM, error)
}

// probeNode is what each DC provider is asked to quote for the marketplace.
var probeNode = sdk.VDUSpec{Name: "probe", Instances: 1, CPUs: 1, MemoryMB: 1024, StorageGB: 10}

// marketCallTimeout bounds each provider's quote: a slow plugin shows as an error in its
// entry, never holds the page.
const marketCallTimeout = 10 * time.Second

// MarketplaceRoutes returns an Options.Extra adding GET /v1/marketplace: every provider
// of the catalogue with its location and kinds, what its VIM quotes now for one probe
// node (capacity, free, price per node per day; asked in parallel) and what slices hold
// there (the ledger in st). A provider whose plugin cannot answer has an error in its
// entry.
func MarketplaceRoutes(vims VIMSource, st LedgerReader) Extra {
	m := &marketRoutes{vims: vims, store: st}
	return func(r *mux.Router, auth func(http.Handler) http.Handler) {
		r.Handle("/v1/marketplace", auth(http.HandlerFunc(m.get))).Methods(http.MethodGet)
	}
}

// LedgerReader tells what slices hold at a provider. *store.Store is one.
type LedgerReader interface {
	LedgerSummary(ctx context.Context, provider string) (store.Hold, int, error)
}

type marketRoutes struct {
	vims  VIMSource
	store LedgerReader
}

func resources(r sdk.Resources) v1.Resources {
	return v1.Resources{Nodes: r.Nodes, CPUs: r.CPUs, MemoryMB: r.MemoryMB, StorageGB: r.StorageGB}
}

func (m *marketRoutes) get(w http.ResponseWriter, r *http.Request) {
	probe := sdk.PartSpec{Ref: sdk.PartRef{SliceID: "marketplace", PartID: "probe"}, Name: "probe", VDUs: []sdk.VDUSpec{probeNode}}
	out := v1.Marketplace{Probe: resources(probe.Resources()), Providers: []v1.MarketEntry{}}
	var cat *providers.Catalogue
	if m.vims != nil {
		cat = m.vims.Catalogue()
	}
	if cat == nil {
		WriteJSON(w, http.StatusOK, out)
		return
	}
	out.Providers = make([]v1.MarketEntry, len(cat.Providers))
	var wg sync.WaitGroup
	for i, p := range cat.Providers {
		e := &out.Providers[i]
		e.Provider, e.Location, e.Kinds = p.Name, p.Location, []string{}
		if p.DC != nil {
			e.Kinds = append(e.Kinds, providers.RoleDC)
		}
		if p.WAN != nil {
			e.Kinds = append(e.Kinds, providers.RoleWAN)
		}
		if m.store != nil {
			t, holders, err := m.store.LedgerSummary(r.Context(), p.Name)
			if err != nil {
				wg.Wait() // the offers asked so far write into out
				WriteError(w, r, err)
				return
			}
			e.Reserved, e.ReservedBps, e.Holders = resources(t.Resources), t.BandwidthBps, holders
		}
		if p.DC == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), marketCallTimeout)
			defer cancel()
			spec := probe
			spec.Location = p.Location
			if len(p.DC.PartTypes) > 0 {
				spec.Type = p.DC.PartTypes[0]
			}
			vim, err := m.vims.VIM(ctx, p.Name)
			var o sdk.Offer
			if err == nil {
				o, err = vim.Offer(ctx, sdk.OfferRequest{Part: spec})
			}
			if err != nil {
				e.Error = "plugin unavailable: " + sdk.CodeOf(err).String()
				return
			}
			c, f := resources(o.Capacity), resources(o.Free)
			e.Capacity, e.Free = &c, &f
			if o.Accepted {
				price := o.PricePerDay
				e.PricePerNodeDay = &price
			} else {
				e.Error = o.Reason
			}
		}()
	}
	wg.Wait()
	WriteJSON(w, http.StatusOK, out)
}
