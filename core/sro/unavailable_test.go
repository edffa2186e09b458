package sro_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// silentVIMs makes the VIM of one provider fail its offers as a plugin that does not
// answer would (CodeUnavailable), the first failures ones (0: all).
type silentVIMs struct {
	sro.Plugins
	provider string
	failures int32
	calls    atomic.Int32
}

func (s *silentVIMs) VIM(ctx context.Context, provider string) (sdk.VIM, error) {
	v, err := s.Plugins.VIM(ctx, provider)
	if err != nil || provider != s.provider {
		return v, err
	}
	return &silentVIM{VIM: v, parent: s}, nil
}

type silentVIM struct {
	sdk.VIM
	parent *silentVIMs
}

func (v *silentVIM) Offer(ctx context.Context, req sdk.OfferRequest) (sdk.Offer, error) {
	spec := req.Part
	if n := v.parent.calls.Add(1); v.parent.failures == 0 || n <= v.parent.failures {
		return sdk.Offer{}, sdk.Errorf(sdk.CodeUnavailable, "plugin not answering")
	}
	return v.VIM.Offer(ctx, sdk.OfferRequest{Part: spec})
}

// TestUnansweringProvider: a provider that does not answer for a while costs the slice
// time, not its life; one that never answers within OfferPatience refuses it as
// unavailable (slice.unavailable), which a tenant may submit again.
func TestUnansweringProvider(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		failures int32
		want     store.SliceState
		event    string
	}{
		{"answers late", 3, store.SliceReady, sro.EvReady},
		{"never answers", 0, store.SliceFailed, sro.EvUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vims := &silentVIMs{provider: "ES", failures: tc.failures}
			env := startWith(t, catalogue(t, ""), startOptions{patience: 3 * time.Second,
				wrap: func(p sro.Plugins) sro.Plugins { vims.Plugins = p; return vims }})
			sl, err := env.engine.Submit(ctx, "alice", slice("cdn", part("edge", "EUROPE.SPAIN", 1, 1)))
			if err != nil {
				t.Fatal(err)
			}
			got := wait(t, env.engine, sl.ID)
			evs, err := env.store.Events(ctx, sl.ID)
			if err != nil {
				t.Fatal(err)
			}
			last := evs[len(evs)-1]
			if got.State != tc.want || last.Type != tc.event {
				t.Fatalf("state %s (%s), last event %s; want %s and %s", got.State, got.Message, last.Type, tc.want, tc.event)
			}
			if n := vims.calls.Load(); n < 2 {
				t.Fatalf("the provider was asked %d times: never asked again", n)
			}
		})
	}
}
