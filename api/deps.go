package api

import (
	"context"

	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
)

// Slices is what the API asks of the slice engine: submit, read, render, wait for and
// decommission slices. *sro.Engine is one.
type Slices interface {
	Submit(ctx context.Context, tenant string, doc []byte) (*store.Slice, error)
	Get(ctx context.Context, tenant, id string) (*sro.View, error)
	GetByName(ctx context.Context, tenant, name string) (*sro.View, error)
	Page(ctx context.Context, tenant string, cursor store.PageCursor, limit int) ([]*sro.View, store.PageCursor, error)
	Render(v *sro.View) ([]byte, error)
	Wait(ctx context.Context, id string) (*store.Slice, error)
	WaitGone(ctx context.Context, id string) error
	Decommission(ctx context.Context, tenant, id string) (*store.Slice, error)
	Catalogue() *providers.Catalogue
}

// Records are the records the API reads itself, and the few it writes: the store's
// liveness, tenants' tokens, a slice's events (and their watch, which resumes by
// itself), its parts' secrets, and the idempotency keys of creation together with the
// removal of a failed slice that holds nothing. *store.Store is one.
type Records interface {
	Ping(ctx context.Context) error
	TenantByToken(ctx context.Context, token string) (string, error)
	GetSlice(ctx context.Context, id string) (*store.Slice, error)
	Events(ctx context.Context, slice string) ([]store.Event, error)
	WatchEvents(ctx context.Context, slice string, since int64) <-chan store.Event
	PartSecrets(ctx context.Context, sliceID string) (map[string]string, error)
	ClaimIdempotencyKey(ctx context.Context, tenant, key, digest string) (*store.Idempotency, error)
	SetIdempotencyKey(ctx context.Context, tenant, key string, idem store.Idempotency) error
	ReleaseIdempotencyKey(ctx context.Context, tenant, key string) error
	ListParts(ctx context.Context, sliceID string) ([]*store.Part, error)
	ListLinks(ctx context.Context, sliceID string) ([]*store.Link, error)
	DeleteSlice(ctx context.Context, sl *store.Slice) error
}

// PluginLister lists the plugin instances that run. *pluginhost.Host is one.
type PluginLister interface {
	Instances() []pluginhost.Status
}

var (
	_ Slices       = (*sro.Engine)(nil)
	_ Records      = (*store.Store)(nil)
	_ PluginLister = (*pluginhost.Host)(nil)
)
