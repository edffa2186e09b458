// Package builder turns a tenant's slice spec into a plan: the DC parts to place and
// build (as the VIM plugins will be asked for them) and the links to stitch between
// them, with the names the platform chooses (part ids, per-slice bridges).
package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strings"

	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/sdk"
)

// Plan is what a slice needs built.
type Plan struct {
	SliceID string
	Parts   []Part
	Links   []Link
	// DCBudget bounds each part's price, NetBudget each link's (from the spec's cost).
	DCBudget  broker.Budget
	NetBudget broker.Budget
}

// Part is one DC part to place and create.
type Part struct {
	// VIM is the NECOS VIM name asked for.
	VIM  string
	Spec sdk.PartSpec
}

// Link is one link to place and connect, between two parts of the plan (or of the slice).
type Link struct {
	Name string
	WIM  string
	// Part1 and Part2 name the linked DC parts.
	Part1, Part2 string
	BandwidthBps uint64
}

// BitsPerGB converts the NECOS requirement `bandwidth-GB` into bits per second: the
// original used it as a link's bandwidth, and this platform reads it as gigabits per
// second (bandwidth-GB: 1 is 1 Gbit/s; 0.05 is 50 Mbit/s) in each direction.
const BitsPerGB = 1e9

// BandwidthBps converts bandwidth-GB into bits per second.
func BandwidthBps(gb float64) uint64 {
	if gb <= 0 {
		return 0
	}
	return uint64(math.Round(gb * BitsPerGB))
}

// New plans a parsed slice spec for slice sliceID of tenant.
func New(sliceID, tenant string, s *spec.Slice) *Plan {
	p := &Plan{
		SliceID:   sliceID,
		DCBudget:  budget(s.Cost.DC),
		NetBudget: budget(s.Cost.Net),
	}
	for _, dp := range s.Parts {
		p.Parts = append(p.Parts, Part{VIM: dp.VIM.Name, Spec: PartSpec(sliceID, tenant, dp)})
	}
	for _, l := range s.Links {
		p.Links = append(p.Links, Link{Name: l.Name, WIM: l.WIM.Name, Part1: l.DCPart1, Part2: l.DCPart2,
			BandwidthBps: BandwidthBps(l.BandwidthGB)})
	}
	return p
}

func budget(c *spec.CostModel) broker.Budget {
	if c == nil {
		return broker.Budget{}
	}
	op := c.Op
	if op == "" {
		op = "<="
	}
	return broker.Budget{Model: c.Model, Op: op, Euros: c.Euros}
}

// PartSpec is what a VIM plugin is asked to build for one dc-slice-part.
func PartSpec(sliceID, tenant string, dp spec.DCPart) sdk.PartSpec {
	ps := sdk.PartSpec{
		Ref:      sdk.PartRef{SliceID: sliceID, PartID: dp.Name},
		Name:     dp.Name,
		Type:     dp.Type,
		Location: dp.Location,
		Bridge:   Bridge(sliceID, dp.Name),
		Tenant:   tenant,
	}
	for _, v := range dp.VIM.VDUs {
		ps.VDUs = append(ps.VDUs, sdk.VDUSpec{
			Name: v.Name, Description: v.Description, Image: v.Image, Instances: v.Instances,
			CPUs: v.CPUs, MemoryMB: v.MemoryMB, StorageGB: v.StorageGB, Type: v.NodeType(),
			CPUArchitecture: v.CPUArchitecture, OS: v.OS,
		})
	}
	return ps
}

// Requests returns the broker requests for the plan's parts, each naming the parts it
// has links to (so that the broker spreads linked parts over distinct providers).
func (p *Plan) Requests() []broker.PartRequest {
	linked := map[string][]string{}
	for _, l := range p.Links {
		linked[l.Part1] = append(linked[l.Part1], l.Part2)
		linked[l.Part2] = append(linked[l.Part2], l.Part1)
	}
	out := make([]broker.PartRequest, 0, len(p.Parts))
	for _, part := range p.Parts {
		out = append(out, broker.PartRequest{Spec: part.Spec, VIM: part.VIM, Linked: linked[part.Spec.Name]})
	}
	return out
}

// Bridge names the per-slice bridge of a part at its site. Linux interface names have
// at most 15 characters, so the name is a digest of the slice and part: stable, and
// distinct for every part even when several share a host's network.
func Bridge(sliceID, part string) string {
	sum := sha256.Sum256([]byte(sliceID + "/" + part))
	return "nb" + hex.EncodeToString(sum[:])[:12]
}

// LinkEnd is one end of a link: the part, its bridge, and its provider's WAN site.
func LinkEnd(sliceID, part, provider string, underlay, netns string) sdk.LinkEnd {
	return sdk.LinkEnd{Site: provider, Part: part, Underlay: underlay, Netns: netns, Bridge: Bridge(sliceID, part)}
}

// LinkSpec is what a WAN plugin is asked to build for a link.
func LinkSpec(sliceID string, l Link, end1, end2 sdk.LinkEnd, vni uint32) sdk.LinkSpec {
	return sdk.LinkSpec{
		Ref:          sdk.LinkRef{SliceID: sliceID, LinkID: l.Name},
		Name:         l.Name,
		End1:         end1,
		End2:         end2,
		BandwidthBps: l.BandwidthBps,
		VNI:          vni,
	}
}

// SliceID makes a slice id from the spec's id: readable (its lowercase letters and
// digits) and unique (a random suffix), short enough for provider resource names.
func SliceID(specID, random string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(specID) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '-' || r == '_' || r == '.' || r == ' ':
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
				b.WriteByte('-')
			}
		}
		if b.Len() >= 20 {
			break
		}
	}
	base := strings.Trim(b.String(), "-")
	if base == "" {
		base = "slice"
	}
	return fmt.Sprintf("%s-%s", base, random)
}
