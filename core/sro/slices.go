package sro

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/necos/necos/core/builder"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// ErrNotFound: no such slice for this tenant. A slice of another tenant is reported the
// same way, so that ids cannot be probed.
var ErrNotFound = errors.New("slice not found")

// View is a slice with its parts and links, as the store holds them.
type View struct {
	Slice *store.Slice
	Parts []*store.Part
	Links []*store.Link
	// parsed holds the slice's spec once parsed (Spec).
	parsed *specOnce
}

// Part returns the named part.
func (v *View) Part(name string) (*store.Part, bool) {
	for _, p := range v.Parts {
		if p.Name == name {
			return p, true
		}
	}
	return nil, false
}

// Cost returns the slice's price per day: parts plus links.
func (v *View) Cost() float64 {
	var c float64
	for _, p := range v.Parts {
		c += p.PricePerDay
	}
	for _, l := range v.Links {
		c += l.PricePerDay
	}
	return c
}

// Submit validates a tenant's NECOS slice spec and stores it as a Pending slice; the
// engine then builds it. A bad spec returns a *spec.Error listing every problem and
// stores nothing; a name the tenant already uses returns store.ErrExists.
func (e *Engine) Submit(ctx context.Context, tenant string, doc []byte) (*store.Slice, error) {
	text := string(doc)
	s, err := ParseSpec(text)
	if err != nil {
		return nil, err
	}
	if err := s.CheckVIMs(e.cat.VIMNames()); err != nil {
		return nil, err
	}
	if s.Update {
		return nil, &spec.Error{Problems: []spec.FieldError{{Path: "slices.sliced.created-slice",
			Message: "true asks to update an existing slice; create_slice makes new slices (elasticity adds parts by itself)"}}}
	}
	ev := store.Event{Type: EvAccepted, Message: fmt.Sprintf("%d parts, %d links", len(s.Parts), len(s.Links))}
	// An id is the spec's id and a short random suffix (ids name namespaces and domains
	// at the providers, which bound their length), so two slices may draw the same one:
	// the second draws again.
	for attempt := 1; ; attempt++ {
		sl := &store.Slice{
			ID:     builder.SliceID(s.ID, idSuffix()),
			Name:   s.ID,
			Tenant: tenant,
			Spec:   text,
			State:  store.SlicePending,
		}
		err := e.create(ctx, sl, ev)
		if errors.Is(err, store.ErrIDTaken) && attempt < maxIDDraws {
			e.log.Debug("slice id drawn twice; drawing again", "slice", sl.ID)
			continue
		}
		if err != nil {
			return nil, err
		}
		return sl, nil
	}
}

// maxIDDraws bounds the ids Submit draws for a slice: with 24 random bits and a million
// slices stored, eight draws all taken happen about once in six billion creates.
const maxIDDraws = 8

// idSuffix draws the random end of a slice's id (a variable so that a test can make
// draws repeat).
var idSuffix = func() string { return store.NewID("")[:6] }

// create stores a new slice and queues it.
func (e *Engine) create(ctx context.Context, sl *store.Slice, ev store.Event) error {
	// Queued here at once; the watch's report of the same write would queue the slice
	// again behind its own build (the leader's watch alone reads marks).
	wrote := func(int64) {}
	if e.IsLeader() {
		wrote = e.own.begin(sl.ID)
	}
	if err := e.store.CreateSlice(ctx, sl, ev); err != nil {
		wrote(0)
		return err
	}
	wrote(sl.Rev)
	e.queue.Add(sl.ID)
	return nil
}

// Get returns a tenant's slice (tenant "" reads any).
func (e *Engine) Get(ctx context.Context, tenant, id string) (*View, error) {
	sl, err := e.store.GetSlice(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && tenant != "" && sl.Tenant != tenant) {
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return e.view(ctx, sl)
}

// GetByName returns a tenant's slice by the id its spec gave it.
func (e *Engine) GetByName(ctx context.Context, tenant, name string) (*View, error) {
	id, err := e.store.SliceIDByName(ctx, tenant, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return e.Get(ctx, tenant, id)
}

func (e *Engine) view(ctx context.Context, sl *store.Slice) (*View, error) {
	parts, err := e.store.ListParts(ctx, sl.ID)
	if err != nil {
		return nil, err
	}
	links, err := e.store.ListLinks(ctx, sl.ID)
	if err != nil {
		return nil, err
	}
	return e.newView(sl, parts, links), nil
}

// List returns a tenant's slices (tenant "" lists all).
func (e *Engine) List(ctx context.Context, tenant string) ([]*store.Slice, error) {
	return e.store.ListSlices(ctx, tenant)
}

// Page returns up to limit views of a tenant's slices (limit <= 0: all), oldest first,
// from cursor on, and the cursor of the next page ("" after the last). A page costs
// the same however many slices the store holds.
func (e *Engine) Page(ctx context.Context, tenant string, cursor store.PageCursor, limit int) ([]*View, store.PageCursor, error) {
	recs, next, err := e.store.PageSlices(ctx, tenant, cursor, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]*View, len(recs))
	for i, r := range recs {
		out[i] = e.newView(r.Slice, r.Parts, r.Links)
	}
	return out, next, nil
}

// Decommission asks for a tenant's slice to be removed from every provider; the slice
// leaves the store once every backend confirmed.
func (e *Engine) Decommission(ctx context.Context, tenant, id string) (*store.Slice, error) {
	if _, err := e.Get(ctx, tenant, id); err != nil {
		return nil, err
	}
	sl, err := e.store.UpdateSlice(ctx, id, func(s *store.Slice) ([]store.Event, error) {
		if s.Deleting {
			return nil, nil
		}
		s.Deleting = true
		return []store.Event{{Type: EvDecommissionRequested}}, nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	e.queue.Add(id)
	return sl, nil
}

// Wait waits until the slice reaches a terminal state (Ready or Failed) or, when it is
// being decommissioned, until it is gone (then it returns ErrNotFound).
func (e *Engine) Wait(ctx context.Context, id string) (*store.Slice, error) {
	sl, err := e.store.WaitSlice(ctx, id, func(s *store.Slice) bool { return !s.Deleting && s.State.Terminal() })
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return sl, err
}

// WaitGone waits until a decommissioned slice has left the store.
func (e *Engine) WaitGone(ctx context.Context, id string) error {
	_, err := e.store.WaitSlice(ctx, id, func(*store.Slice) bool { return false })
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// announceReady tells listeners about a Ready slice once per process life (a restarted
// necosd announces the Ready slices it finds).
func (e *Engine) announceReady(ctx context.Context, sl *store.Slice) {
	e.mu.Lock()
	if e.announced == nil {
		e.announced = map[string]bool{}
	}
	seen := e.announced[sl.ID]
	e.announced[sl.ID] = true
	e.mu.Unlock()
	if seen {
		return
	}
	v, err := e.view(ctx, sl)
	if err != nil {
		e.log.Warn("announce ready slice", "slice", sl.ID, "error", err)
		e.forgetReady(sl.ID)
		return
	}
	e.notifyReady(v)
}

func (e *Engine) forgetReady(id string) {
	e.mu.Lock()
	delete(e.announced, id)
	e.mu.Unlock()
	e.own.forget(id)
}

// forgetAll tells listeners every announced slice is gone from this engine's care (its
// lead ended): the collector stops, and the next leader announces them to its own.
func (e *Engine) forgetAll() {
	e.mu.Lock()
	ids := make([]string, 0, len(e.announced))
	for id := range e.announced {
		ids = append(ids, id)
	}
	e.announced = nil
	e.mu.Unlock()
	e.own.forgetAll() // the next term's watch starts after these writes
	for _, id := range ids {
		e.notifyGone(id)
	}
}

// Status converts a slice's records into what spec.Render writes back to tenants.
func (e *Engine) Status(v *View) spec.Status {
	st := spec.Status{Parts: map[string]spec.PartStatus{}, Links: map[string]spec.LinkStatus{}}
	// A spec that does not parse (recorded by the reconciler) leaves the cost models out.
	s, _ := v.Spec()
	var dcModel, netModel string
	if s != nil && s.Cost.DC != nil {
		dcModel = s.Cost.DC.Model
	}
	if s != nil && s.Cost.Net != nil {
		netModel = s.Cost.Net.Model
	}
	for _, p := range v.Parts {
		ps := spec.PartStatus{
			Controller: e.controller(p.Provider),
			ID:         spec.PartID{ControllerID: p.Provider, PartUUID: p.UUID},
			VSwitch:    spec.VSwitch{Type: "linux-bridge", Bridge: p.Spec.Bridge},
		}
		if p.State == store.PartLost {
			ps.State, ps.Reason = string(p.State), p.Message
		}
		model := dcModel
		if model == "" {
			model = spec.CostPerMachinePerDay
		}
		price := p.PricePerDay
		if strings.EqualFold(model, spec.CostPerMachinePerDay) {
			if n := p.Spec.Resources().Nodes; n > 0 {
				price /= float64(n)
			}
		}
		ps.Cost = &spec.CostModel{Model: model, Euros: round2(price)}
		if o := p.Observed; o != nil {
			ps.VIMRef = spec.Endpoint{IPAPI: o.VIMRef.IPAPI, PortAPI: o.VIMRef.PortAPI, IPSSH: o.VIMRef.IPSSH, PortSSH: o.VIMRef.PortSSH}
			ps.Credential = credential(o.Credential)
			if o.Bridge != "" {
				ps.VSwitch.Bridge = o.Bridge
			}
			for _, n := range o.Nodes {
				ns := spec.NodeStatus{Name: n.Name, VDU: n.VDU, ID: n.ID, Type: n.Type}
				if len(n.IPs) > 0 {
					ns.IP = n.IPs[0]
				}
				ps.Nodes = append(ps.Nodes, ns)
			}
		}
		st.Parts[p.Name] = ps
	}
	for _, l := range v.Links {
		model := netModel
		if model == "" {
			model = spec.CostPerLinkPerDay
		}
		ls := spec.LinkStatus{
			Controller: e.controller(l.Provider),
			ID:         spec.PartID{ControllerID: l.Provider, PartUUID: l.UUID},
			Cost:       &spec.CostModel{Model: model, Euros: round2(l.PricePerDay)},
			End1IP:     l.Spec.End1.Underlay,
			End2IP:     l.Spec.End2.Underlay,
		}
		if o := l.Observed; o != nil {
			ls.End1IP, ls.End2IP = o.End1.Underlay, o.End2.Underlay
		}
		if l.State == store.LinkNotBuilt {
			ls.State, ls.Reason = string(l.State), l.Message
		}
		st.Links[l.Name] = ls
	}
	return st
}

// Render writes a slice back in the NECOS format, enriched with what was created.
func (e *Engine) Render(v *View) ([]byte, error) {
	// Parts added by elasticity are not in the tenant's spec: render them too.
	s, err := v.WholeSpec()
	if err != nil {
		return nil, err
	}
	// The tenant asked for construction; the document says where the slice is now.
	if s.Lifecycle == nil {
		s.Lifecycle = &spec.Lifecycle{Description: "lifecycle status"}
	}
	s.Lifecycle.Status = LifecycleStatus(v.Slice.State)
	return spec.Render(s, e.Status(v))
}

// LifecycleStatus is the NECOS slice-lifecycle status of a slice in state st:
// construction while it is built, active once Ready, degraded while a provider lacks
// one of its parts, failed, or decommissioning while it is taken down.
func LifecycleStatus(st store.SliceState) string {
	switch st {
	case store.SliceReady:
		return "active"
	case store.SliceDegraded:
		return "degraded"
	case store.SliceRollingBack, store.SliceFailed:
		return "failed"
	case store.SliceDeleting:
		return "decommissioning"
	}
	return "construction"
}

func elasticPart(p *store.Part) spec.DCPart {
	dp := spec.DCPart{Name: p.Name, Type: p.Spec.Type, Location: p.Spec.Location}
	for _, v := range p.Spec.VDUs {
		dp.VIM.VDUs = append(dp.VIM.VDUs, spec.VDU{Name: v.Name, Description: v.Description, Image: v.Image,
			Instances: v.Instances, CPUs: v.CPUs, MemoryMB: v.MemoryMB, StorageGB: v.StorageGB, Type: v.Type})
	}
	return dp
}

func (e *Engine) controller(provider string) spec.Controller {
	c := spec.Controller{Provider: provider}
	if pr, ok := e.cat.Provider(provider); ok && pr.Controller != nil {
		c.IP, c.Port = pr.Controller.IP, pr.Controller.Port
	}
	return c
}

func credential(c sdk.Credential) *spec.Credential {
	switch c.Kind {
	case sdk.CredentialKubeconfig:
		return &spec.Credential{Type: spec.CredentialKubeconfig, User: c.User, Kubeconfig: c.Secret, Expires: c.Expires}
	case sdk.CredentialSSHKey:
		return &spec.Credential{Type: spec.CredentialSSHKey, User: c.User, PrivateKey: c.Secret, HostKey: c.HostKey, Expires: c.Expires}
	case sdk.CredentialPassword:
		return &spec.Credential{Type: spec.CredentialPassword, User: c.User, Password: c.Secret}
	}
	return nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
