package sro_test

import (
	"context"
	"strings"
	"testing"

	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
)

// link is a net-slice-part between parts a and b.
func link(name, a, b string) string {
	return `      - net-slice-part:
          name: ` + name + `
          WIM: {name: VXLAN}
          links: [{dc-part1: ` + a + `}, {dc-part2: ` + b + `}, {requirements: {bandwidth-GB: 0.1}}]
`
}

// linksOptional makes a slice document accept links not built.
func linksOptional(doc []byte) []byte {
	return []byte(strings.Replace(string(doc), "    cost:", "    slice-requirements: {elasticity: false, links-optional: true}\n    cost:", 1))
}

// A link no WAN provider can build refuses the slice, naming the link and how to accept
// it; the tenant who accepts links not built gets a Ready slice whose link says NotBuilt
// and why, in the record, its events and the NECOS document.
func TestUnbuildableLinks(t *testing.T) {
	env := start(t, catalogue(t, "")) // no WAN provider
	ctx := context.Background()
	doc := slice("linked", part("core", "AMERICA.BRAZIL", 1, 1), part("edge", "EUROPE.SPAIN", 1, 1), link("core-to-edge", "core", "edge"))

	sl, err := env.engine.Submit(ctx, "alice", doc)
	if err != nil {
		t.Fatal(err)
	}
	got := wait(t, env.engine, sl.ID)
	if got.State != store.SliceFailed || !strings.Contains(got.Message, "link core-to-edge: no WAN provider in the catalogue builds links") ||
		!strings.Contains(got.Message, "links-optional: true") {
		t.Fatalf("without links-optional: %s: %s", got.State, got.Message)
	}
	evs, err := env.store.Events(ctx, sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	refused := false
	for _, ev := range evs {
		refused = refused || (ev.Type == sro.EvRefused && strings.Contains(ev.Data["core-to-edge"], "no WAN provider"))
	}
	if !refused {
		t.Fatalf("no refusal naming the link in %s", eventTypes(t, env, sl.ID))
	}
	for _, p := range []string{"BR", "ES"} {
		if h := hold(t, env, p, sl.ID+"/core"); h.Nodes != 0 {
			t.Fatalf("refused slice still holds %+v at %s", h, p)
		}
		if h := hold(t, env, p, sl.ID+"/edge"); h.Nodes != 0 {
			t.Fatalf("refused slice still holds %+v at %s", h, p)
		}
	}
	if v, _ := env.engine.Get(ctx, "alice", sl.ID); v == nil || len(v.Parts) != 0 || len(v.Links) != 0 {
		t.Fatalf("refused slice has records: %+v", v)
	}

	sl, err = env.engine.Submit(ctx, "alice", linksOptional([]byte(strings.Replace(string(doc), "id: linked", "id: linked-optional", 1))))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("with links-optional: %s: %s", got.State, got.Message)
	}
	v, err := env.engine.Get(ctx, "alice", sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Links) != 1 || v.Links[0].State != store.LinkNotBuilt || v.Links[0].Provider != "" ||
		v.Links[0].Message != "not built: no WAN provider in the catalogue builds links" ||
		v.Links[0].Spec.End1.Part != "core" || v.Links[0].Spec.End2.Part != "edge" {
		t.Fatalf("links %+v", v.Links)
	}
	if ev := eventTypes(t, env, sl.ID); !strings.Contains(ev, sro.EvLinkNoWAN) {
		t.Fatalf("no %s event: %s", sro.EvLinkNoWAN, ev)
	}
	yml, err := env.engine.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(yml), "link-state: NotBuilt") || !strings.Contains(string(yml), "link-state-reason: 'not built: no WAN provider") {
		t.Fatalf("NECOS document does not say the link is not built:\n%s", yml)
	}
}

// Horizontal elasticity links the new part like slice creation does: without a WAN
// provider the add fails (and leaves nothing), unless the slice accepts links not built.
func TestAddPartUnbuildableLink(t *testing.T) {
	env := start(t, catalogue(t, ""))
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("cdn", part("core", "AMERICA.BRAZIL", 1, 1), part("edge", "EUROPE.SPAIN", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	_, err = env.engine.AddPart(ctx, sl.ID, "edge", sro.AddPartOptions{Location: "EUROPE"})
	if err == nil || !strings.Contains(err.Error(), "link core-to-edge-h1: no WAN provider") {
		t.Fatalf("add part without a WAN provider: %v", err)
	}
	v, _ := env.engine.Get(ctx, "alice", sl.ID)
	if len(v.Parts) != 2 || len(v.Links) != 0 {
		t.Fatalf("failed add left parts %d, links %d", len(v.Parts), len(v.Links))
	}
	if h := hold(t, env, "GR", sl.ID+"/edge-h1"); h.Nodes != 0 {
		t.Fatalf("failed add still holds %+v at GR", h)
	}
}
