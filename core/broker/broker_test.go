package broker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// offerVIM answers offers from a fixed capacity and price: the selection logic is what
// is tested here; the real plugins are tested against the engine and end to end.
type offerVIM struct {
	sdk.VIM
	capacity sdk.Resources
	price    float64
	fail     error
}

func (v *offerVIM) Offer(_ context.Context, p sdk.PartSpec) (sdk.Offer, error) {
	if v.fail != nil {
		return sdk.Offer{}, v.fail
	}
	r := p.Resources()
	o := sdk.Offer{Accepted: true, PricePerDay: v.price * float64(r.Nodes), Requested: r, Free: v.capacity, Capacity: v.capacity}
	if ok, why := r.Fits(v.capacity); !ok {
		o.Accepted, o.Reason = false, why
	}
	return o, nil
}

type plugins map[string]*offerVIM

func (p plugins) VIM(_ context.Context, name string) (sdk.VIM, error) { return p[name], nil }
func (p plugins) WAN(context.Context, string) (sdk.WAN, error)        { return nil, errors.New("no WAN") }

func setup(t *testing.T, vims plugins, cat string) *Broker {
	t.Helper()
	c, err := providers.Parse([]byte(cat))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(c, vims, st, nil)
}

const cat = `
providers:
  - {name: CHEAP, location: EUROPE.SPAIN, dc: {vim: xen-vim, plugin: x}}
  - {name: DEAR, location: EUROPE.SPAIN.MADRID, dc: {vim: xen-vim, plugin: x}}
  - {name: K8S, location: EUROPE.GREECE, dc: {vim: KUBERNETES, plugin: x, part_types: [EDGE]}}
`

func req(part, loc, vim string, cpus, nodes int) PartRequest {
	return PartRequest{VIM: vim, Spec: sdk.PartSpec{Ref: sdk.PartRef{SliceID: "s", PartID: part}, Name: part, Type: "DC",
		Location: loc, VDUs: []sdk.VDUSpec{{Name: "vm", Instances: nodes, CPUs: cpus, MemoryMB: 512}}}}
}

func TestCheapestWithinLocationAndBudget(t *testing.T) {
	big := sdk.Resources{CPUs: 100, MemoryMB: 100000}
	b := setup(t, plugins{"CHEAP": {capacity: big, price: 2}, "DEAR": {capacity: big, price: 5}, "K8S": {capacity: big, price: 1}}, cat)
	ctx := context.Background()
	got, err := b.PlaceParts(ctx, "s1", []PartRequest{req("a", "EUROPE", "xen-vim", 1, 1), req("b", "EUROPE.SPAIN.MADRID", "XEN-VIM", 1, 2)}, Budget{})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Provider != "CHEAP" || got[1].Provider != "DEAR" {
		t.Fatalf("placements %+v", got)
	}
	// A budget of 4 per machine per day excludes DEAR (5): part b cannot be placed, and
	// part a's reservation is given back.
	_, err = b.PlaceParts(ctx, "s2", []PartRequest{req("a", "EUROPE", "xen-vim", 1, 1), req("b", "EUROPE.SPAIN.MADRID", "xen-vim", 1, 2)},
		Budget{Model: PerMachinePerDay, Op: "<=", Euros: 4})
	var np *NoPlacementError
	if !errors.As(err, &np) || len(np.Refusals) != 1 || np.Refusals[0].Part != "b" ||
		!strings.Contains(np.Refusals[0].Reasons[0], "DEAR: over budget by €1.00 (€5.00 per machine per day") {
		t.Fatalf("budget refusal: %v", err)
	}
	l, _ := b.store.GetLedger(ctx, "CHEAP")
	if _, held := l.Holds["s2/a"]; held {
		t.Fatal("a refused slice keeps a reservation")
	}
}

func TestRefusalReasons(t *testing.T) {
	small := sdk.Resources{CPUs: 2, MemoryMB: 100000}
	b := setup(t, plugins{"CHEAP": {capacity: small, price: 2}, "DEAR": {fail: errors.New("plugin down")}, "K8S": {capacity: small, price: 1}}, cat)
	_, err := b.PlaceParts(context.Background(), "s", []PartRequest{
		req("nowhere", "ASIA", "xen-vim", 1, 1),
		req("novim", "EUROPE.SPAIN", "KUBERNETES", 1, 1),
		req("notype", "EUROPE.GREECE", "KUBERNETES", 1, 1),
		req("toobig", "EUROPE.SPAIN", "xen-vim", 4, 1),
	}, Budget{})
	msg := err.Error()
	for _, want := range []string{
		"part nowhere: no provider at location ASIA",
		"part novim: no provider at EUROPE.SPAIN offers VIM KUBERNETES",
		"part notype: no provider at EUROPE.GREECE offers DC parts with VIM KUBERNETES",
		"part toobig: CHEAP: not enough CPUs: need 4, 2 free, DEAR: provider unavailable",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal lacks %q:\n%s", want, msg)
		}
	}
}

// Concurrent placements against room for 10 parts: exactly 10 win, the others are
// refused naming the shortage.
func TestConcurrentPlacementsNeverOverbook(t *testing.T) {
	b := setup(t, plugins{"CHEAP": {capacity: sdk.Resources{CPUs: 10, MemoryMB: 100000}, price: 1}}, `
providers:
  - {name: CHEAP, location: EUROPE.SPAIN, dc: {vim: xen-vim, plugin: x}}
`)
	var mu sync.Mutex
	won, lost := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.PlaceParts(context.Background(), "s"+string(rune('A'+i)), []PartRequest{req("p", "EUROPE", "xen-vim", 1, 1)}, Budget{})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won++
			} else if strings.Contains(err.Error(), "not enough CPUs") {
				lost++
			} else {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won != 10 || lost != 40 {
		t.Fatalf("won %d lost %d", won, lost)
	}
}
