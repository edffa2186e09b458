package api

import (
	"math"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// sliceView turns the engine's records into the /v1 document. It shows what the
// backends last reported (Observed) where there is such a report, else what was planned.
func sliceView(v *sro.View, events int) v1.Slice {
	out := v1.Slice{
		ID:         v.Slice.ID,
		Name:       v.Slice.Name,
		State:      string(v.Slice.State),
		Message:    v.Slice.Message,
		Deleting:   v.Slice.Deleting,
		CreatedAt:  v.Slice.CreatedAt,
		UpdatedAt:  v.Slice.UpdatedAt,
		ReadyAt:    timePtr(v.Slice.ReadyAt),
		CostPerDay: money(v.Cost()),
		Parts:      make([]v1.Part, 0, len(v.Parts)),
		Links:      make([]v1.Link, 0, len(v.Links)),
		Events:     events,
	}
	for _, p := range v.Parts {
		out.Parts = append(out.Parts, partView(p))
	}
	for _, l := range v.Links {
		out.Links = append(out.Links, linkView(l))
	}
	return out
}

func summaryView(v *sro.View) v1.SliceSummary {
	return v1.SliceSummary{
		ID:         v.Slice.ID,
		Name:       v.Slice.Name,
		State:      string(v.Slice.State),
		Message:    v.Slice.Message,
		Deleting:   v.Slice.Deleting,
		CreatedAt:  v.Slice.CreatedAt,
		ReadyAt:    timePtr(v.Slice.ReadyAt),
		CostPerDay: money(v.Cost()),
		Parts:      len(v.Parts),
		Links:      len(v.Links),
	}
}

func partView(p *store.Part) v1.Part {
	res := p.Spec.Resources()
	out := v1.Part{
		Name:       p.Name,
		UUID:       p.UUID,
		Type:       p.Spec.Type,
		Location:   p.Spec.Location,
		Provider:   p.Provider,
		State:      string(p.State),
		Message:    p.Message,
		Elastic:    p.Elastic,
		CostPerDay: money(p.PricePerDay),
		Bridge:     p.Spec.Bridge,
		Resources:  v1.Resources{Nodes: res.Nodes, CPUs: res.CPUs, MemoryMB: res.MemoryMB, StorageGB: res.StorageGB},
		Nodes:      []v1.Node{},
	}
	if d := p.Drift; d != nil {
		out.Drift = &v1.Drift{What: d.What, Why: d.Why, Since: d.Since}
	}
	o := p.Observed
	if o == nil {
		return out
	}
	if o.Bridge != "" {
		out.Bridge = o.Bridge
	}
	ref := v1.VIMRef{API: address(o.VIMRef.IPAPI, o.VIMRef.PortAPI), SSH: address(o.VIMRef.IPSSH, o.VIMRef.PortSSH)}
	if ref.API != nil || ref.SSH != nil {
		out.VIMRef = &ref
	}
	out.Attributes = o.Attributes
	if c := o.Credential; c.Kind != "" {
		out.Credential = &v1.Credential{Kind: c.Kind, User: c.User, Secret: c.Secret, HostKey: c.HostKey, Expires: timePtr(c.Expires)}
	}
	for _, n := range o.Nodes {
		ips := n.IPs
		if ips == nil {
			ips = []string{}
		}
		out.Nodes = append(out.Nodes, v1.Node{Name: n.Name, VDU: n.VDU, ID: n.ID, Type: n.Type, State: n.State,
			CPUs: n.CPUs, MemoryMB: n.MemoryMB, StorageGB: n.StorageGB, IPs: ips})
	}
	return out
}

func linkView(l *store.Link) v1.Link {
	out := v1.Link{
		Name:         l.Name,
		UUID:         l.UUID,
		Provider:     l.Provider,
		State:        string(l.State),
		Message:      l.Message,
		Elastic:      l.Elastic,
		CostPerDay:   money(l.PricePerDay),
		VNI:          l.Spec.VNI,
		BandwidthBps: l.Spec.BandwidthBps,
		Ends:         [2]v1.LinkEnd{linkEnd(l.Spec.End1), linkEnd(l.Spec.End2)},
	}
	if o := l.Observed; o != nil {
		if o.VNI != 0 {
			out.VNI = o.VNI
		}
		if o.BandwidthBps != 0 {
			out.BandwidthBps = o.BandwidthBps
		}
		out.Ends = [2]v1.LinkEnd{linkEnd(o.End1), linkEnd(o.End2)}
	}
	return out
}

// linkEnd leaves out the end's network namespace: it is the provider's plumbing, not
// something a tenant can use.
func linkEnd(e sdk.LinkEnd) v1.LinkEnd {
	return v1.LinkEnd{Part: e.Part, Site: e.Site, Underlay: e.Underlay, Bridge: e.Bridge}
}

func eventView(e store.Event) v1.Event {
	return v1.Event{Seq: e.Seq, Time: e.Time, Type: e.Type, Part: e.Part, Link: e.Link, Message: e.Message, Data: e.Data}
}

// providerView shows a catalogue entry without its plugin configurations, which hold
// the providers' credentials.
func providerView(p providers.Provider) v1.Provider {
	out := v1.Provider{Name: p.Name, Location: p.Location, Offers: []v1.Offer{}}
	if p.Controller != nil {
		out.Controller = &v1.Address{IP: p.Controller.IP, Port: p.Controller.Port}
	}
	if p.DC != nil {
		o := v1.Offer{Kind: providers.RoleDC, Plugin: p.DC.Plugin, VIM: p.DC.VIM, PartTypes: p.DC.PartTypes}
		if p.DC.Deployer != nil {
			o.Deployer = p.DC.Deployer.Plugin
		}
		out.Offers = append(out.Offers, o)
	}
	if p.WAN != nil {
		out.Offers = append(out.Offers, v1.Offer{Kind: providers.RoleWAN, Plugin: p.WAN.Plugin, WIM: p.WAN.WIM, Sites: p.WAN.Sites})
	}
	if p.Site != nil {
		out.Site = &v1.Site{Underlay: p.Site.Underlay}
	}
	return out
}

// pluginView leaves out the binary's path: where necosd keeps its files is not the
// tenants' business.
func pluginView(s pluginhost.Status) v1.Plugin {
	kinds := make([]string, 0, len(s.Kinds))
	for _, k := range s.Kinds {
		kinds = append(kinds, string(k))
	}
	return v1.Plugin{Name: s.Name, Plugin: s.Plugin, Provider: s.Provider, Location: s.Location, Version: s.Version,
		APIVersion: s.APIVersion, Kinds: kinds, SHA256: s.SHA256, State: string(s.State), Pid: s.Pid,
		Started: s.Started, Restarts: s.Restarts, NextRestart: timePtr(s.NextRestart), LastError: s.LastError}
}

func address(ip string, port int) *v1.Address {
	if ip == "" && port == 0 {
		return nil
	}
	return &v1.Address{IP: ip, Port: port}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// money rounds euros to cents: sums of float prices otherwise show as 17.000000000000004.
func money(f float64) float64 { return math.Round(f*100) / 100 }
