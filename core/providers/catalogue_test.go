package providers

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/necos/necos/examples"
)

func TestMatchLocation(t *testing.T) {
	for _, c := range []struct {
		want, have string
		ok         bool
	}{
		{"", "EUROPE.SPAIN", true},
		{"EUROPE", "EUROPE.SPAIN", true},
		{"europe.spain", "EUROPE.SPAIN", true},
		{"EUROPE.SPAIN", "EUROPE.SPAIN.MADRID", true},
		{"EUROPE.SPAIN", "EUROPE", false},
		{"EUROPE.SPA", "EUROPE.SPAIN", false},
		{"AMERICA", "EUROPE.SPAIN", false},
	} {
		if got := MatchLocation(c.want, c.have); got != c.ok {
			t.Errorf("MatchLocation(%q, %q) = %v, want %v", c.want, c.have, got, c.ok)
		}
	}
}

func TestDefaultCatalogueIsValid(t *testing.T) {
	c, err := Parse(examples.DefaultCatalogue)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.VIMNames(); len(got) != 1 || got[0] != "xen-vim" {
		t.Fatalf("VIM names %v", got)
	}
	for _, p := range c.Providers {
		if p.DC != nil && p.Site == nil {
			t.Errorf("provider %s has DC parts but no WAN site", p.Name)
		}
	}
}

func TestCatalogueErrorsNameEveryField(t *testing.T) {
	_, err := Parse([]byte(`
providers:
  - name: A
    location: "EUROPE..X"
    dc: {vim: "", plugin: vim-xen, part_types: [CORE]}
    site: {underlay: not-an-ip}
  - name: A
    location: EUROPE
  - name: W
    location: EUROPE
    wan: {plugin: wan, sites: [NOPE]}
monitor: {plugin: ""}
`))
	if err == nil {
		t.Fatal("invalid catalogue accepted")
	}
	for _, want := range []string{
		"providers[0].location", "providers[0].dc.vim: required", "providers[0].dc.part_types[0]",
		"providers[0].site.underlay", "providers[1].name: duplicate", "providers[1]: offers nothing",
		"providers[2].wan.sites[0]: unknown provider", "monitor.plugin: required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte("providers: []\ntypo: 1\n")); err == nil || !strings.Contains(err.Error(), "typo") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestOfferMatching(t *testing.T) {
	d := &DCOffer{VIM: "KUBERNETES", PartTypes: []string{"EDGE"}}
	if !d.Serves("EDGE", "kubernetes") || d.Serves("DC", "KUBERNETES") || d.Serves("EDGE", "xen-vim") {
		t.Fatal("DCOffer.Serves")
	}
	w := &WANOffer{Sites: []string{"A", "B"}}
	if !w.Joins("A", "B") || w.Joins("A", "C") || !(&WANOffer{}).Joins("X", "Y") {
		t.Fatal("WANOffer.Joins")
	}
}

func TestKubernetesCatalogueIsValid(t *testing.T) {
	c, err := Load("../../examples/catalogue-kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.VIMNames(); len(got) != 2 {
		t.Fatalf("VIM names %v, want KUBERNETES and xen-vim", got)
	}
	// Plugins run in the catalogue's directory: its relative paths are the file's.
	want, _ := filepath.Abs("../../examples")
	if c.Dir != want {
		t.Errorf("Dir %q, want %q", c.Dir, want)
	}
	if p, err := Parse([]byte("providers: []")); err != nil || p.Dir != "" {
		t.Errorf("a parsed catalogue has Dir %q (%v), want none", p.Dir, err)
	}
}
