package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	// failFirst: the first calls fail with fail, the next answer.
	failFirst int32
	calls     atomic.Int32
}

func (v *offerVIM) Offer(_ context.Context, req sdk.OfferRequest) (sdk.Offer, error) {
	p := req.Part
	n := v.calls.Add(1)
	if v.fail != nil && (v.failFirst == 0 || n <= v.failFirst) {
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

func linked(r PartRequest, to ...string) PartRequest {
	r.Linked = to
	return r
}

func providersOf(ps []Placement) map[string]string {
	out := map[string]string{}
	for _, p := range ps {
		out[p.Part] = p.Provider
	}
	return out
}

// Linked parts go to distinct providers when their locations and room allow it, and
// share one when only one can host them; unlinked parts go to the cheapest.
func TestLinkedPartsAtDistinctProviders(t *testing.T) {
	big := sdk.Resources{CPUs: 100, MemoryMB: 100000}
	b := setup(t, plugins{"CHEAP": {capacity: big, price: 2}, "DEAR": {capacity: big, price: 5}, "K8S": {capacity: big, price: 1}}, cat)
	ctx := context.Background()
	for i, c := range []struct {
		name string
		reqs []PartRequest
		want map[string]string
	}{
		{"unlinked: cheapest for both", []PartRequest{req("a", "EUROPE", "xen-vim", 1, 1), req("b", "EUROPE", "xen-vim", 1, 1)},
			map[string]string{"a": "CHEAP", "b": "CHEAP"}},
		{"linked: distinct", []PartRequest{linked(req("a", "EUROPE", "xen-vim", 1, 1), "b"), linked(req("b", "EUROPE", "xen-vim", 1, 1), "a")},
			map[string]string{"a": "CHEAP", "b": "DEAR"}},
		{"linked, the constrained part first", []PartRequest{linked(req("a", "EUROPE", "xen-vim", 1, 1), "b"),
			linked(req("b", "EUROPE.SPAIN.MADRID", "xen-vim", 1, 1), "a")},
			map[string]string{"a": "CHEAP", "b": "DEAR"}},
		{"linked, one provider in the region: co-located", []PartRequest{linked(req("a", "EUROPE.SPAIN.MADRID", "xen-vim", 1, 1), "b"),
			linked(req("b", "EUROPE.SPAIN.MADRID", "xen-vim", 1, 1), "a")},
			map[string]string{"a": "DEAR", "b": "DEAR"}},
		{"a core and two edges: the edges may share", []PartRequest{linked(req("core", "EUROPE", "xen-vim", 1, 1), "e1", "e2"),
			linked(req("e1", "EUROPE", "xen-vim", 1, 1), "core"), linked(req("e2", "EUROPE", "xen-vim", 1, 1), "core")},
			map[string]string{"core": "CHEAP", "e1": "DEAR", "e2": "DEAR"}},
	} {
		got, err := b.PlaceParts(ctx, fmt.Sprintf("l%d", i), c.reqs, Budget{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if p := providersOf(got); fmt.Sprint(p) != fmt.Sprint(c.want) {
			t.Errorf("%s: placed %v, want %v", c.name, p, c.want)
		}
	}
}

// When the parts' first choices do not fit together, another combination is found;
// when none does, the refusal says whose parts took the room.
func TestPartsFitTogether(t *testing.T) {
	b := setup(t, plugins{"CHEAP": {capacity: sdk.Resources{CPUs: 2, MemoryMB: 100000}, price: 2},
		"DEAR": {capacity: sdk.Resources{CPUs: 1, MemoryMB: 100000}, price: 5}}, cat)
	ctx := context.Background()
	got, err := b.PlaceParts(ctx, "fit", []PartRequest{req("x", "EUROPE", "xen-vim", 1, 1), req("y", "EUROPE", "xen-vim", 2, 1)}, Budget{})
	if err != nil {
		t.Fatal(err)
	}
	if p := providersOf(got); p["x"] != "DEAR" || p["y"] != "CHEAP" {
		t.Errorf("placed %v, want x at DEAR and y at CHEAP (the only combination that fits)", p)
	}
	_, err = b.PlaceParts(ctx, "own", []PartRequest{req("z", "EUROPE.SPAIN.MADRID", "xen-vim", 1, 1), req("w", "EUROPE.SPAIN.MADRID", "xen-vim", 1, 1)}, Budget{})
	if err == nil {
		t.Fatal("two parts were placed in room for none")
	}
	if !strings.Contains(err.Error(), "reserved by other slices") {
		t.Errorf("refusal does not say other slices hold the room: %v", err)
	}
	// Room for one of two parts of the same slice at DEAR (released first).
	l, _ := b.store.GetLedger(ctx, "DEAR")
	for h := range l.Holds {
		if err := b.store.Release(ctx, "DEAR", h); err != nil {
			t.Fatal(err)
		}
	}
	_, err = b.PlaceParts(ctx, "own2", []PartRequest{req("z", "EUROPE.SPAIN.MADRID", "xen-vim", 1, 1), req("w", "EUROPE.SPAIN.MADRID", "xen-vim", 1, 1)}, Budget{})
	if err == nil || !strings.Contains(err.Error(), "taken by this slice's other parts") || strings.Contains(err.Error(), "other slices") {
		t.Errorf("refusal for a slice crowding itself out: %v, want it to say its own parts took the room", err)
	}
}

// Concurrent two-part placements against room for exactly 6: exactly 6 slices hold
// both parts, no slice holds one part only, and nothing is overbooked, every run.
func TestMultiPartPlacementsAllOrNothing(t *testing.T) {
	room := sdk.Resources{CPUs: 6, MemoryMB: 100000}
	for run := range 5 {
		b := setup(t, plugins{"CHEAP": {capacity: room, price: 1}, "DEAR": {capacity: room, price: 2}}, cat)
		var mu sync.Mutex
		won := 0
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := b.PlaceParts(context.Background(), fmt.Sprintf("s%d", i), []PartRequest{
					linked(req("a", "EUROPE", "xen-vim", 1, 1), "b"), linked(req("b", "EUROPE", "xen-vim", 1, 1), "a")}, Budget{})
				mu.Lock()
				defer mu.Unlock()
				var np *NoPlacementError
				switch {
				case err == nil:
					won++
				case !errors.As(err, &np):
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		holds := 0
		for _, p := range []string{"CHEAP", "DEAR"} {
			l, _ := b.store.GetLedger(context.Background(), p)
			holds += len(l.Holds)
			if tot := l.Total(); tot.Resources.CPUs > room.CPUs {
				t.Errorf("run %d: %s overbooked: %d CPUs of %d", run, p, tot.Resources.CPUs, room.CPUs)
			}
		}
		if won != 6 || holds != 12 {
			t.Errorf("run %d: %d slices placed holding %d parts; want 6 slices, 12 parts", run, won, holds)
		}
	}
}

// TestSlowProviders: an offer that fails for want of an answer is asked again while the
// part has no other acceptable offer; a part whose every provider stays unanswering is
// refused as unavailable (worth asking later), unlike one that does not fit.
func TestSlowProviders(t *testing.T) {
	down := sdk.Errorf(sdk.CodeUnavailable, "plugin restarting")
	big := sdk.Resources{CPUs: 100, MemoryMB: 100000}
	ctx := context.Background()

	t.Run("answers after two failures", func(t *testing.T) {
		flaky := &offerVIM{capacity: big, price: 2, fail: down, failFirst: 2}
		b := setup(t, plugins{"CHEAP": flaky, "DEAR": {fail: errors.New("refused for good")}}, cat)
		b.OfferPatience, b.retryPause = time.Minute, time.Millisecond
		got, err := b.PlaceParts(ctx, "s1", []PartRequest{req("a", "EUROPE.SPAIN", "xen-vim", 1, 1)}, Budget{})
		if err != nil || got[0].Provider != "CHEAP" || flaky.calls.Load() != 3 {
			t.Fatalf("placements %+v, %v after %d calls", got, err, flaky.calls.Load())
		}
	})
	t.Run("never answers", func(t *testing.T) {
		b := setup(t, plugins{"CHEAP": {fail: down}, "DEAR": {fail: sdk.Errorf(sdk.CodeDeadlineExceeded, "slow")}}, cat)
		b.OfferPatience, b.retryPause = 50*time.Millisecond, time.Millisecond
		_, err := b.PlaceParts(ctx, "s2", []PartRequest{req("a", "EUROPE.SPAIN", "xen-vim", 1, 1)}, Budget{})
		var np *NoPlacementError
		if !errors.As(err, &np) || !np.Unavailable() || !strings.Contains(err.Error(), "CHEAP: provider unavailable") {
			t.Fatalf("got %v, want an unavailable refusal", err)
		}
	})
	t.Run("a refusal is not unavailable", func(t *testing.T) {
		b := setup(t, plugins{"CHEAP": {fail: down}, "DEAR": {capacity: sdk.Resources{CPUs: 1}, price: 1}}, cat)
		b.OfferPatience, b.retryPause = 50*time.Millisecond, time.Millisecond
		_, err := b.PlaceParts(ctx, "s3", []PartRequest{req("a", "EUROPE.SPAIN", "xen-vim", 4, 1)}, Budget{})
		var np *NoPlacementError
		if !errors.As(err, &np) || np.Unavailable() {
			t.Fatalf("got %v, want a refusal that is not unavailable", err)
		}
	})
	t.Run("another offer settles the part", func(t *testing.T) {
		// Were the unanswering provider asked again, the pause of an hour would hang
		// the test: an acceptable offer from another provider ends the asking.
		slow := &offerVIM{fail: down}
		b := setup(t, plugins{"CHEAP": {capacity: big, price: 2}, "DEAR": slow}, cat)
		b.OfferPatience, b.retryPause = time.Hour, time.Hour
		got, err := b.PlaceParts(ctx, "s4", []PartRequest{req("a", "EUROPE.SPAIN", "xen-vim", 1, 1)}, Budget{})
		if err != nil || got[0].Provider != "CHEAP" || slow.calls.Load() != 1 {
			t.Fatalf("placements %+v, %v; the unanswering provider was asked %d times", got, err, slow.calls.Load())
		}
	})
}

// CheckPart prices an offer per the budget's model, as placements do: per machine is the
// part's price over its nodes.
func TestCheckPart(t *testing.T) {
	spec := func(nodes int) sdk.PartSpec {
		return sdk.PartSpec{VDUs: []sdk.VDUSpec{{Name: "vm", Instances: nodes, CPUs: 1, MemoryMB: 512}}}
	}
	for _, tc := range []struct {
		name   string
		budget Budget
		price  float64
		nodes  int
		want   string // "" when it fits
	}{
		{"no budget", Budget{}, 1000, 1, ""},
		{"per machine, at the bound", Budget{Model: PerMachinePerDay, Op: "<=", Euros: 10}, 20, 2, ""},
		{"per machine, over", Budget{Model: PerMachinePerDay, Op: "<=", Euros: 10}, 24, 2, "over budget by €2.00 (€12.00 per machine per day, budget <=10.00)"},
		{"per part, over", Budget{Model: PerPartPerDay, Op: "<=", Euros: 10}, 12, 2, "over budget by €2.00 (€12.00 per day, budget <=10.00)"},
		{"per part, under a floor", Budget{Model: PerPartPerDay, Op: ">=", Euros: 10}, 5, 1, "outside budget (€5.00 per day, budget >=10.00)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.budget.CheckPart(sdk.Offer{PricePerDay: tc.price}, spec(tc.nodes))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "":
			case !errors.Is(err, ErrOverBudget) || err.Error() != tc.want:
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
