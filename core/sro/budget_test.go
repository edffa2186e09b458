package sro_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// perCPUVIMs prices every offer of one provider at a fixed price per vCPU per day, so
// that a part's price follows its size (vim-xen prices nodes only).
type perCPUVIMs struct {
	sro.Plugins
	provider string
	perCPU   float64
}

func (p *perCPUVIMs) VIM(ctx context.Context, provider string) (sdk.VIM, error) {
	v, err := p.Plugins.VIM(ctx, provider)
	if err != nil || provider != p.provider {
		return v, err
	}
	return &perCPUVIM{VIM: v, perCPU: p.perCPU}, nil
}

type perCPUVIM struct {
	sdk.VIM
	perCPU float64
}

func (v *perCPUVIM) Offer(ctx context.Context, req sdk.OfferRequest) (sdk.Offer, error) {
	spec := req.Part
	o, err := v.VIM.Offer(ctx, sdk.OfferRequest{Part: spec})
	o.PricePerDay = float64(spec.Resources().CPUs) * v.perCPU
	return o, err
}

// budgetSlice is a slice spec with cost.dc-model model and bound (none when model is
// empty).
func budgetSlice(id, model, bound string, parts ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "slices:\n  sliced:\n    id: %s\n", id)
	if model != "" {
		fmt.Fprintf(&b, "    cost:\n      dc-model: {model: %s, value-euros: %q}\n", model, bound)
	}
	b.WriteString("    slice-parts:\n")
	b.WriteString(strings.Join(parts, ""))
	return []byte(b.String())
}

// headAndWorkers is a part of one 1-vCPU head node and workers of cpus vCPUs each.
func headAndWorkers(name, location string, cpus, workers int) string {
	return fmt.Sprintf(`      - dc-slice-part:
          name: %s
          type: DC
          location: %s
          VIM:
            name: xen-vim
            vdus:
              - vdu:
                  name: head
                  instance-count: 1
                  epa-attributes:
                    host-epa: {cpu-number: 1, memory-mb: 512, storage-gb: 10}
              - vdu:
                  name: vm
                  instance-count: %d
                  epa-attributes:
                    host-epa: {cpu-number: %d, memory-mb: 1024, storage-gb: 10}
`, name, location, workers, cpus)
}

// TestChangesWithinTheBudget: a resize or scale is priced by the part's provider for the
// new size and checked against the slice's DC budget as creation is; one that breaks it
// fails before anything is reserved, and the part keeps its size.
func TestChangesWithinTheBudget(t *testing.T) {
	const perMachine, perPart = broker.PerMachinePerDay, broker.PerPartPerDay
	vims := &perCPUVIMs{provider: "IN", perCPU: 2.5}
	env := startWith(t, catalogue(t, `
  - name: IN
    location: ASIA.INDIA
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 64, memory_mb: 65536, storage_gb: 1000}}}
`), startOptions{wrap: func(p sro.Plugins) sro.Plugins { vims.Plugins = p; return vims }})
	ctx := context.Background()
	resize := func(node string, cpus int) func(id string) error {
		return func(id string) error { return env.engine.ResizePart(ctx, id, "core", "vm", node, cpus, 0) }
	}
	scale := func(n int) func(id string) error {
		return func(id string) error { return env.engine.ScalePart(ctx, id, "core", "vm", n) }
	}
	for _, tc := range []struct {
		name          string
		model, bound  string
		part          string
		change        func(id string) error
		over          string // the refusal's reason; "" when the change is made
		failed, price string // failure event, and the part's price once changed
	}{
		{name: "resize to the budget", model: perMachine, bound: "<=10", part: part("core", "ASIA.INDIA", 2, 1),
			change: resize("", 4), price: "10"},
		{name: "resize over the budget", model: perMachine, bound: "<=10", part: part("core", "ASIA.INDIA", 2, 1),
			change: resize("", 5), failed: sro.EvPartResizeFailed,
			over: "resize part %s/core (every node of VDU vm to 5 vCPUs) at IN: over budget by €2.50 (€12.50 per machine per day, budget <=10.00)"},
		{name: "one node to the budget", model: perMachine, bound: "<=10", part: part("core", "ASIA.INDIA", 2, 2),
			change: resize("vm-1", 6), price: "20"},
		{name: "one node over the budget", model: perMachine, bound: "<=10", part: part("core", "ASIA.INDIA", 2, 2),
			change: resize("vm-1", 7), failed: sro.EvPartResizeFailed,
			over: "(node vm-1 of VDU vm to 7 vCPUs) at IN: over budget by €1.25 (€11.25 per machine per day"},
		{name: "scale over the budget per machine", model: perMachine, bound: "<=10", part: headAndWorkers("core", "ASIA.INDIA", 6, 1),
			change: scale(2), failed: sro.EvPartScaleFailed,
			over: "scale part %s/core (VDU vm from 1 to 2 nodes) at IN: over budget by €0.83 (€10.83 per machine per day, budget <=10.00)"},
		{name: "scale to the budget per part", model: perPart, bound: "<=10", part: part("core", "ASIA.INDIA", 2, 1),
			change: scale(2), price: "10"},
		{name: "scale over the budget per part", model: perPart, bound: "<=10", part: part("core", "ASIA.INDIA", 2, 1),
			change: scale(3), failed: sro.EvPartScaleFailed, over: "over budget by €5.00 (€15.00 per day, budget <=10.00)"},
		{name: "no budget", part: part("core", "ASIA.INDIA", 2, 1), change: resize("", 8), price: "20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sl, err := env.engine.Submit(ctx, "alice", budgetSlice(strings.ReplaceAll(tc.name, " ", "-"), tc.model, tc.bound, tc.part))
			if err != nil {
				t.Fatal(err)
			}
			if got := wait(t, env.engine, sl.ID); got.State != store.SliceReady {
				t.Fatalf("state %s: %s", got.State, got.Message)
			}
			before := readyPart(t, env, sl.ID, "core")
			held := hold(t, env, "IN", sl.ID+"/core")

			err = tc.change(sl.ID)
			after := readyPart(t, env, sl.ID, "core")
			if tc.over == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := fmt.Sprint(after.PricePerDay); got != tc.price {
					t.Errorf("price %s after the change, want %s", got, tc.price)
				}
				return
			}
			want := tc.over
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, sl.ID)
			}
			if !errors.Is(err, broker.ErrOverBudget) || sro.IsProviderFull(err) || !strings.Contains(fmt.Sprint(err), want) {
				t.Fatalf("change over the budget: %v\nwant it to say %q", err, want)
			}
			if h := hold(t, env, "IN", sl.ID+"/core"); h != held {
				t.Errorf("hold %+v after the refusal, was %+v", h, held)
			}
			if after.Change != nil || !reflect.DeepEqual(after.Spec, before.Spec) || !reflect.DeepEqual(after.Observed.Nodes, before.Observed.Nodes) ||
				after.PricePerDay != before.PricePerDay {
				t.Errorf("the part changed: change %+v, spec %+v, nodes %+v, price %v",
					after.Change, after.Spec.VDUs, after.Observed.Nodes, after.PricePerDay)
			}
			vim, _ := env.reg.VIM(ctx, "IN")
			if live, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: after.Ref()}); err != nil || cpus(live.Nodes) != cpus(before.Observed.Nodes) {
				t.Errorf("IN describes %+v, %v; the part had %+v", live, err, before.Observed.Nodes)
			}
			// The failure's event says why, and marks the refusal as the budget's for a
			// caller that reads it from another necosd.
			evs, err := env.store.Events(ctx, sl.ID)
			if err != nil {
				t.Fatal(err)
			}
			var failed *store.Event
			for i := range evs {
				if evs[i].Type == tc.failed {
					failed = &evs[i]
				}
			}
			if failed == nil || !strings.Contains(failed.Message, want) || failed.Data["budget"] != "true" || failed.Data["full"] != "false" {
				t.Errorf("no %s event saying why, marked as the budget's: %+v", tc.failed, failed)
			}
		})
	}
}

// cpus lists the vCPUs of nodes, in order.
func cpus(nodes []sdk.Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, fmt.Sprintf("%s:%d", n.Name, n.CPUs))
	}
	return strings.Join(out, ",")
}
