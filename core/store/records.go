package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/necos/necos/sdk"
)

// SliceState is where a slice is in its life.
type SliceState string

// Slice states. Pending → Creating → Ready; a failure goes RollingBack → Failed; a
// decommission goes Deleting → (gone). A Ready slice whose parts a provider no longer
// has is Degraded until they are back.
const (
	SlicePending     SliceState = "Pending"
	SliceCreating    SliceState = "Creating"
	SliceReady       SliceState = "Ready"
	SliceDegraded    SliceState = "Degraded"
	SliceRollingBack SliceState = "RollingBack"
	SliceFailed      SliceState = "Failed"
	SliceDeleting    SliceState = "Deleting"
)

// Terminal reports whether the reconciler has nothing more to do in this state.
func (s SliceState) Terminal() bool {
	return s == SliceReady || s == SliceFailed || s == SliceDegraded
}

// Slice is a tenant's slice: its spec and where it is.
type Slice struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
	// Spec is the tenant's NECOS slice YAML as received.
	Spec    string     `json:"spec"`
	State   SliceState `json:"state"`
	Message string     `json:"message,omitempty"`
	// Deleting is set when the tenant asked for decommission.
	Deleting  bool      `json:"deleting,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	ReadyAt   time.Time `json:"ready_at,omitempty"`
	// Rev is the record's revision in the store (not stored).
	Rev int64 `json:"-"`
}

func (s *Slice) setRev(rev int64) { s.Rev = rev }

// PartState is where a DC part is.
type PartState string

// Part states.
const (
	PartPlanned  PartState = "Planned"
	PartCreating PartState = "Creating"
	PartReady    PartState = "Ready"
	// PartLost: the part's provider no longer has it as created (Message says what is
	// missing); its slice is Degraded until it is back.
	PartLost     PartState = "Lost"
	PartFailed   PartState = "Failed"
	PartDeleting PartState = "Deleting"
	PartDeleted  PartState = "Deleted"
)

// Part is a DC slice part: what was asked, where it went, what the backend holds.
type Part struct {
	SliceID string `json:"slice_id"`
	// Name is the part's name in the spec (and its id within the slice).
	Name string `json:"name"`
	// UUID identifies the part towards tenants (slice-part-uuid).
	UUID     string `json:"uuid"`
	Provider string `json:"provider"`
	// Spec is what the VIM plugin is asked to build.
	Spec        sdk.PartSpec `json:"spec"`
	PricePerDay float64      `json:"price_per_day"`
	State       PartState    `json:"state"`
	Message     string       `json:"message,omitempty"`
	// Observed is the part as its VIM last described it.
	Observed *sdk.Part `json:"observed,omitempty"`
	// Elastic marks a part added by horizontal elasticity.
	Elastic bool `json:"elastic,omitempty"`
	// Change is an elasticity change asked of the part that the reconciler has not yet
	// converged or rolled back (nil when none): the intent, written before anything is
	// reserved or built, so that a restarted necosd resumes it.
	Change *PartChange `json:"change,omitempty"`
	// Drift is a difference between the part as recorded and as its provider holds it
	// that the reconciler could not repair (nil when none): kept, and retried, until a
	// health pass finds the part as recorded again.
	Drift     *PartDrift `json:"drift,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
	Rev       int64      `json:"-"`
}

// PartDrift is a drift of a part that could not be repaired.
type PartDrift struct {
	// What differs, e.g. "node vm-1 of VDU vm has 4 vCPUs and 1024 MB at the provider, 2
	// vCPUs and 1024 MB recorded". A pass that finds the same What records no new event.
	What string `json:"what"`
	// Why the repair failed, as the last attempt was answered.
	Why string `json:"why"`
	// Since is when What was first found unrepaired.
	Since time.Time `json:"since"`
}

// Kinds of PartChange.
const (
	ChangeResize = "resize" // the size of a VDU's nodes, or of one node
	ChangeScale  = "scale"  // the number of nodes of a VDU
	ChangeAdd    = "add"    // the part itself is being added (horizontal elasticity)
	ChangeRemove = "remove" // the part (added by elasticity) is being removed
)

// PartChange is an elasticity intent on a part. At most one is pending per part.
type PartChange struct {
	// ID names the change in its outcome events (Data["change"]).
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Resize and scale: the VDU, the node (resize of one node) and the new size.
	VDU       string `json:"vdu,omitempty"`
	Node      string `json:"node,omitempty"`
	CPUs      int    `json:"cpus,omitempty"`
	MemoryMB  int64  `json:"memory_mb,omitempty"`
	Instances int    `json:"instances,omitempty"`
	// Hold is the part's reservation before the change (given back on failure), Want the
	// reservation after it; Reserved says Want is held.
	Hold     ChangeAmount `json:"hold"`
	Want     ChangeAmount `json:"want"`
	Reserved bool         `json:"reserved,omitempty"`
	// Add: the part copied, the provider excluded (the template's), the part linked to
	// and the link's name (chosen with the intent, so that a resumed add reuses it), its
	// bandwidth in GB and who asked.
	Template    string  `json:"template,omitempty"`
	Exclude     string  `json:"exclude,omitempty"`
	VIM         string  `json:"vim,omitempty"`
	LinkTo      string  `json:"link_to,omitempty"`
	Link        string  `json:"link,omitempty"`
	BandwidthGB float64 `json:"bandwidth_gb,omitempty"`
	Reason      string  `json:"reason,omitempty"`
	// Drift, on a resize or scale the reconciler wrote itself, is the drift it repairs:
	// what the provider holds otherwise than recorded. Such a change brings the part back
	// to its recorded size; empty on a change a tenant or a policy asked for.
	Drift string `json:"drift,omitempty"`
	// Failed is why the change failed, set while its rollback runs.
	Failed    string    `json:"failed,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ChangeAmount is an amount of resources as a PartChange stores it.
type ChangeAmount struct {
	CPUs      int   `json:"cpus"`
	MemoryMB  int64 `json:"memory_mb"`
	StorageGB int64 `json:"storage_gb"`
	Nodes     int   `json:"nodes"`
}

// AmountOf converts r.
func AmountOf(r sdk.Resources) ChangeAmount {
	return ChangeAmount{CPUs: r.CPUs, MemoryMB: r.MemoryMB, StorageGB: r.StorageGB, Nodes: r.Nodes}
}

// Resources converts a back.
func (a ChangeAmount) Resources() sdk.Resources {
	return sdk.Resources{CPUs: a.CPUs, MemoryMB: a.MemoryMB, StorageGB: a.StorageGB, Nodes: a.Nodes}
}

// Ref returns the part's plugin reference.
func (p *Part) Ref() sdk.PartRef { return sdk.PartRef{SliceID: p.SliceID, PartID: p.Name} }

// LinkState is where a net slice part is.
type LinkState string

// Link states.
const (
	LinkPlanned  LinkState = "Planned"
	LinkCreating LinkState = "Creating"
	LinkReady    LinkState = "Ready"
	LinkFailed   LinkState = "Failed"
	// LinkNotBuilt: no WAN provider can build links here; the link is recorded only.
	LinkNotBuilt LinkState = "NotBuilt"
	LinkDeleting LinkState = "Deleting"
)

// Link is a net slice part between two DC parts.
type Link struct {
	SliceID     string       `json:"slice_id"`
	Name        string       `json:"name"`
	UUID        string       `json:"uuid"`
	Provider    string       `json:"provider,omitempty"`
	Spec        sdk.LinkSpec `json:"spec"`
	PricePerDay float64      `json:"price_per_day"`
	State       LinkState    `json:"state"`
	Message     string       `json:"message,omitempty"`
	Observed    *sdk.Link    `json:"observed,omitempty"`
	Elastic     bool         `json:"elastic,omitempty"`
	UpdatedAt   time.Time    `json:"updated_at"`
	Rev         int64        `json:"-"`
}

// Ref returns the link's plugin reference.
func (l *Link) Ref() sdk.LinkRef { return sdk.LinkRef{SliceID: l.SliceID, LinkID: l.Name} }

// NewID returns a random identifier with a readable prefix, e.g. "s-3f9a0c1b2d4e".
func NewID(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// NewUUID returns a random RFC 4122 version 4 UUID.
func NewUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *Store) sliceKey(id string) string          { return s.key("slices", id) }
func (s *Store) nameKey(tenant, name string) string { return s.key("names", tenant, name) }
func (s *Store) partKey(slice, name string) string  { return s.key("parts", slice, name) }
func (s *Store) linkKey(slice, name string) string  { return s.key("links", slice, name) }

// CreateSlice stores a new slice. A tenant's slice names are unique among its live
// slices: a second one with the same name gets a *SliceExistsError (ErrExists). An id
// that another slice has (any tenant's) gets ErrIDTaken, and nothing is stored: the
// caller chooses another id.
func (s *Store) CreateSlice(ctx context.Context, sl *Slice, ev Event) error {
	now := time.Now().UTC()
	sl.CreatedAt, sl.UpdatedAt = now, now
	ev.Slice = sl.ID
	rev, err := s.commit(ctx,
		op{key: s.nameKey(sl.Tenant, sl.Name), v: sl.ID, rev: 0},
		op{key: s.sliceKey(sl.ID), v: sl, rev: 0},
		op{key: s.orderKey(sl.Tenant, sl.CreatedAt, sl.ID), v: sl.ID, rev: anyRev},
		s.eventOp(ev),
	)
	if err != nil {
		var ex *ExistsError
		if errors.As(err, &ex) && ex.Key == strings.TrimPrefix(s.sliceKey(sl.ID), s.prefix) {
			return fmt.Errorf("slice %s: %w", sl.ID, ErrIDTaken)
		}
		if errors.Is(err, ErrExists) {
			e := &SliceExistsError{Tenant: sl.Tenant, Name: sl.Name}
			// Which slice holds the name, so that the tenant can reach it (it may have
			// left meanwhile: then the id stays empty).
			_, _ = s.get(ctx, s.nameKey(sl.Tenant, sl.Name), &e.ID)
			return e
		}
		return err
	}
	sl.Rev = rev
	return nil
}

// SliceExistsError is CreateSlice's answer when the tenant has a live slice of that name:
// it names that slice. It matches ErrExists.
type SliceExistsError struct {
	Tenant, Name string
	// ID is the slice that holds the name ("" if it was gone by the time it was read).
	ID string
}

func (e *SliceExistsError) Error() string {
	return fmt.Sprintf("slice %q of tenant %s: %v (slice %s)", e.Name, e.Tenant, ErrExists, e.ID)
}

// Is makes errors.Is(err, ErrExists) true.
func (e *SliceExistsError) Is(target error) bool { return target == ErrExists }

// GetSlice reads a slice.
func (s *Store) GetSlice(ctx context.Context, id string) (*Slice, error) {
	var sl Slice
	rev, err := s.get(ctx, s.sliceKey(id), &sl)
	if err != nil {
		return nil, fmt.Errorf("slice %s: %w", id, err)
	}
	sl.Rev = rev
	return &sl, nil
}

// SliceIDByName finds a tenant's slice by its spec name.
func (s *Store) SliceIDByName(ctx context.Context, tenant, name string) (string, error) {
	var id string
	if _, err := s.get(ctx, s.nameKey(tenant, name), &id); err != nil {
		return "", fmt.Errorf("slice %q of tenant %s: %w", name, tenant, err)
	}
	return id, nil
}

// ListSlices lists slices, of one tenant or (tenant "") all.
func (s *Store) ListSlices(ctx context.Context, tenant string) ([]*Slice, error) {
	var out []*Slice
	err := s.list(ctx, s.key("slices")+"/", func(key string, rev int64, raw []byte) error {
		var sl Slice
		if err := jsonUnmarshal(key, raw, &sl); err != nil {
			return err
		}
		if tenant == "" || sl.Tenant == tenant {
			sl.Rev = rev
			out = append(out, &sl)
		}
		return nil
	})
	return out, err
}

// UpdateSlice changes a slice with fn (retried on concurrent writes) and records the
// events fn returns in the same transaction.
func (s *Store) UpdateSlice(ctx context.Context, id string, fn func(*Slice) ([]Event, error)) (*Slice, error) {
	sl, err := update(ctx, s, s.sliceKey(id), func(sl *Slice) ([]op, error) {
		evs, err := fn(sl)
		if err != nil {
			return nil, err
		}
		sl.UpdatedAt = time.Now().UTC()
		return s.eventOps(id, evs), nil
	})
	if err != nil {
		return nil, fmt.Errorf("slice %s: %w", id, err)
	}
	return &sl, nil
}

// SavePlan records the parts and links chosen for a slice and moves the slice to state,
// atomically, provided the slice is still at revision sliceRev.
func (s *Store) SavePlan(ctx context.Context, sl *Slice, parts []*Part, links []*Link, state SliceState, evs ...Event) error {
	now := time.Now().UTC()
	next := *sl
	next.State, next.UpdatedAt = state, now
	ops := []op{{key: s.sliceKey(sl.ID), v: &next, rev: sl.Rev}}
	for _, p := range parts {
		p.UpdatedAt = now
		rec := *p
		if sec, _, ok := s.sealPart(&rec); ok {
			ops = append(ops, sec)
		}
		ops = append(ops, op{key: s.partKey(p.SliceID, p.Name), v: &rec, rev: anyRev})
	}
	for _, l := range links {
		l.UpdatedAt = now
		ops = append(ops, op{key: s.linkKey(l.SliceID, l.Name), v: l, rev: anyRev})
	}
	ops = append(ops, s.eventOps(sl.ID, evs)...)
	rev, err := s.commit(ctx, ops...)
	if err != nil {
		return fmt.Errorf("save plan of slice %s: %w", sl.ID, err)
	}
	*sl = next
	sl.Rev = rev
	return nil
}

// PutPart creates or replaces a part (used when elasticity adds one).
func (s *Store) PutPart(ctx context.Context, p *Part, evs ...Event) error {
	p.UpdatedAt = time.Now().UTC()
	rec := *p
	ops := []op{{key: s.partKey(p.SliceID, p.Name), v: &rec, rev: anyRev}}
	if sec, _, ok := s.sealPart(&rec); ok {
		ops = append(ops, sec)
	}
	ops = append(ops, s.eventOps(p.SliceID, evs)...)
	_, err := s.commit(ctx, ops...)
	return err
}

// CreatePart stores a new part; ErrExists when the slice has a part of that name.
func (s *Store) CreatePart(ctx context.Context, p *Part, evs ...Event) error {
	p.UpdatedAt = time.Now().UTC()
	rec := *p
	ops := []op{{key: s.partKey(p.SliceID, p.Name), v: &rec, rev: 0}}
	if sec, _, ok := s.sealPart(&rec); ok {
		ops = append(ops, sec)
	}
	ops = append(ops, s.eventOps(p.SliceID, evs)...)
	_, err := s.commit(ctx, ops...)
	return err
}

// PutLink creates or replaces a link.
func (s *Store) PutLink(ctx context.Context, l *Link, evs ...Event) error {
	l.UpdatedAt = time.Now().UTC()
	ops := append([]op{{key: s.linkKey(l.SliceID, l.Name), v: l, rev: anyRev}}, s.eventOps(l.SliceID, evs)...)
	_, err := s.commit(ctx, ops...)
	return err
}

// ListParts lists a slice's parts, by name.
func (s *Store) ListParts(ctx context.Context, sliceID string) ([]*Part, error) {
	var out []*Part
	err := s.list(ctx, s.key("parts", sliceID)+"/", func(key string, rev int64, raw []byte) error {
		p, err := decodePart(key, rev, raw)
		if err == nil {
			out = append(out, p)
		}
		return err
	})
	return out, err
}

// decodePart reads a stored part; a record of an earlier version may still hold its
// secret, which readers never see.
func decodePart(key string, rev int64, raw []byte) (*Part, error) {
	var p Part
	if err := jsonUnmarshal(key, raw, &p); err != nil {
		return nil, err
	}
	blankSecret(&p)
	p.Rev = rev
	return &p, nil
}

// GetPart reads one part (without its secret).
func (s *Store) GetPart(ctx context.Context, sliceID, name string) (*Part, error) {
	var p Part
	rev, err := s.get(ctx, s.partKey(sliceID, name), &p)
	if err != nil {
		return nil, fmt.Errorf("part %s/%s: %w", sliceID, name, err)
	}
	blankSecret(&p)
	p.Rev = rev
	return &p, nil
}

// ListLinks lists a slice's links, by name.
func (s *Store) ListLinks(ctx context.Context, sliceID string) ([]*Link, error) {
	var out []*Link
	err := s.list(ctx, s.key("links", sliceID)+"/", func(key string, rev int64, raw []byte) error {
		l, err := decodeLink(key, rev, raw)
		if err == nil {
			out = append(out, l)
		}
		return err
	})
	return out, err
}

func decodeLink(key string, rev int64, raw []byte) (*Link, error) {
	var l Link
	if err := jsonUnmarshal(key, raw, &l); err != nil {
		return nil, err
	}
	l.Rev = rev
	return &l, nil
}

// UpdatePart changes one part with fn (retried on concurrent writes) and records the
// events fn returns in the same transaction.
func (s *Store) UpdatePart(ctx context.Context, sliceID, name string, fn func(*Part) ([]Event, error)) (*Part, error) {
	var secret string
	p, err := update(ctx, s, s.partKey(sliceID, name), func(p *Part) ([]op, error) {
		// A record of an earlier version may hold its secret: fn never sees it.
		legacy := ""
		if p.Observed != nil {
			legacy = p.Observed.Credential.Secret
		}
		blankSecret(p)
		evs, err := fn(p)
		if err != nil {
			return nil, err
		}
		p.UpdatedAt = time.Now().UTC()
		ops := s.eventOps(sliceID, evs)
		if p.Observed != nil && p.Observed.Credential.Secret == "" && legacy != "" {
			obs := *p.Observed
			obs.Credential.Secret = legacy
			p.Observed = &obs
		}
		secret = ""
		if sec, plain, ok := s.sealPart(p); ok {
			ops = append(ops, sec)
			secret = plain
		}
		return ops, nil
	})
	if err != nil {
		return nil, fmt.Errorf("part %s/%s: %w", sliceID, name, err)
	}
	// The caller gets back what it wrote, its secret included.
	if secret != "" && p.Observed != nil {
		obs := *p.Observed
		obs.Credential.Secret = secret
		p.Observed = &obs
	}
	return &p, nil
}

// UpdateLink changes one link with fn, like UpdatePart.
func (s *Store) UpdateLink(ctx context.Context, sliceID, name string, fn func(*Link) ([]Event, error)) (*Link, error) {
	l, err := update(ctx, s, s.linkKey(sliceID, name), func(l *Link) ([]op, error) {
		evs, err := fn(l)
		if err != nil {
			return nil, err
		}
		l.UpdatedAt = time.Now().UTC()
		return s.eventOps(sliceID, evs), nil
	})
	if err != nil {
		return nil, fmt.Errorf("link %s/%s: %w", sliceID, name, err)
	}
	return &l, nil
}

// DeletePart removes a part record.
func (s *Store) DeletePart(ctx context.Context, sliceID, name string, evs ...Event) error {
	ops := append([]op{{key: s.partKey(sliceID, name), rev: anyRev}, {key: s.secretKey(sliceID, name), rev: anyRev}}, s.eventOps(sliceID, evs)...)
	_, err := s.commit(ctx, ops...)
	return err
}

// DeleteLink removes a link record.
func (s *Store) DeleteLink(ctx context.Context, sliceID, name string, evs ...Event) error {
	ops := append([]op{{key: s.linkKey(sliceID, name), rev: anyRev}}, s.eventOps(sliceID, evs)...)
	_, err := s.commit(ctx, ops...)
	return err
}

// DeleteSlice removes a slice with its name, order record, parts, links, events, policies
// and services; sl is the slice as stored (its creation time names its order record).
// The caller has made sure every backend let go of them first.
func (s *Store) DeleteSlice(ctx context.Context, sl *Slice) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := s.cli.Txn(ctx).Then(
		clientOpDelete(s.sliceKey(sl.ID), false),
		clientOpDelete(s.nameKey(sl.Tenant, sl.Name), false),
		clientOpDelete(s.orderKey(sl.Tenant, sl.CreatedAt, sl.ID), false),
		clientOpDelete(s.key("parts", sl.ID)+"/", true),
		clientOpDelete(s.key("secrets", sl.ID)+"/", true),
		clientOpDelete(s.key("links", sl.ID)+"/", true),
		clientOpDelete(s.key("events", sl.ID)+"/", true),
		clientOpDelete(s.key("policies", sl.ID)+"/", true),
		clientOpDelete(s.key("services", sl.ID)+"/", true),
	).Commit()
	if err != nil {
		return fmt.Errorf("delete slice %s: %w", sl.ID, err)
	}
	return nil
}

func trimKey(prefix, key string) string { return strings.TrimPrefix(key, prefix) }
