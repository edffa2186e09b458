package api_test

import (
	"testing"

	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
)

// The marketplace asks each provider's real plugin (vim-xen on libvirt's test driver)
// for a quote and reads what slices reserved from the store.
func TestMarketplace(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	do(t, "GET", env.URL+"/v1/marketplace", "", nil).status(t, 401)

	read := func() map[string]v1.MarketEntry {
		var m v1.Marketplace
		do(t, "GET", env.URL+"/v1/marketplace", tok, nil).status(t, 200).json(t, &m)
		if m.Probe.Nodes != 1 || m.Probe.CPUs != 1 || len(m.Providers) != 3 {
			t.Fatalf("marketplace %+v", m)
		}
		out := map[string]v1.MarketEntry{}
		for _, e := range m.Providers {
			out[e.Provider] = e
		}
		return out
	}
	before := read()
	u := before["UNICAMP"]
	// The catalogue gives UNICAMP 32 vCPUs and 4 euros per node per day.
	if u.Location != "AMERICA.BRAZIL.UNICAMP" || len(u.Kinds) != 1 || u.Kinds[0] != "dc" || u.Error != "" ||
		u.Capacity == nil || u.Capacity.CPUs != 32 || u.Free == nil || u.Free.CPUs > 32 ||
		u.PricePerNodeDay == nil || *u.PricePerNodeDay != 4 || u.Holders != 0 || u.Reserved.CPUs != 0 {
		t.Errorf("UNICAMP %+v", u)
	}
	if s := before["SPAIN"]; s.PricePerNodeDay == nil || *s.PricePerNodeDay != 6 {
		t.Errorf("SPAIN %+v", s)
	}

	var sl v1.Slice
	do(t, "POST", env.URL+"/v1/slices?wait=true", tok, apitest.SmallSlice("m"), "Content-Type", yamlType).status(t, 201).json(t, &sl)
	after := read()
	held := 0
	for _, p := range sl.Parts {
		e := after[p.Provider]
		if e.Holders == 0 || e.Reserved.CPUs < p.Resources.CPUs || e.Reserved.MemoryMB < p.Resources.MemoryMB {
			t.Errorf("provider %s of part %s: %+v", p.Provider, p.Name, e)
		}
		held += p.Resources.CPUs
	}
	total := 0
	for _, e := range after {
		total += e.Reserved.CPUs
	}
	if held == 0 || total != held {
		t.Errorf("reserved %d vCPUs in all, the slice's parts hold %d", total, held)
	}
}
