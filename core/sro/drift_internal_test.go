package sro

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// driftPart is a part of VDU vm (vms nodes of 2 vCPUs, 1024 MB, 10 GB) and VDU db (one
// node of 4 vCPUs, 2048 MB), recorded as made, with nodes resized by sizes (name →
// vCPUs).
func driftPart(vms int, sizes map[string]int) *store.Part {
	p := &store.Part{SliceID: "s-1", Name: "core", Provider: "BR", Spec: sdk.PartSpec{VDUs: []sdk.VDUSpec{
		{Name: "vm", Instances: vms, CPUs: 2, MemoryMB: 1024, StorageGB: 10},
		{Name: "db", Instances: 1, CPUs: 4, MemoryMB: 2048, StorageGB: 20},
	}}}
	obs := &sdk.Part{}
	for _, v := range p.Spec.VDUs {
		for i := 1; i <= v.Instances; i++ {
			n := sdk.Node{Name: sdk.NodeName(v.Name, i), VDU: v.Name, State: sdk.StateRunning, CPUs: v.CPUs, MemoryMB: v.MemoryMB, StorageGB: v.StorageGB}
			if c, ok := sizes[n.Name]; ok {
				n.CPUs = c
			}
			obs.Nodes = append(obs.Nodes, n)
		}
	}
	p.Observed = obs
	return p
}

// liveOf is p's record as its provider would describe it, changed by f.
func liveOf(p *store.Part, f func(*sdk.Part)) sdk.Part {
	live := *p.Observed
	live.Nodes = append([]sdk.Node(nil), p.Observed.Nodes...)
	if f != nil {
		f(&live)
	}
	return live
}

func without(name string) func(*sdk.Part) {
	return func(l *sdk.Part) {
		for i, n := range l.Nodes {
			if n.Name == name {
				l.Nodes = append(l.Nodes[:i], l.Nodes[i+1:]...)
				return
			}
		}
	}
}

func sized(name string, cpus int) func(*sdk.Part) {
	return func(l *sdk.Part) {
		for i := range l.Nodes {
			if l.Nodes[i].Name == name {
				l.Nodes[i].CPUs = cpus
			}
		}
	}
}

func both(fs ...func(*sdk.Part)) func(*sdk.Part) {
	return func(l *sdk.Part) {
		for _, f := range fs {
			f(l)
		}
	}
}

func TestCompareNodes(t *testing.T) {
	extra := func(l *sdk.Part) {
		l.Nodes = append(l.Nodes, sdk.Node{Name: "vm-3", VDU: "vm", CPUs: 2, MemoryMB: 1024, State: sdk.StateRunning})
	}
	for _, tc := range []struct {
		name    string
		part    *store.Part
		live    func(*sdk.Part)
		repairs []string // kind vdu node cpus/instances, what
		stuck   []string
		gone    []string
	}{
		{name: "as recorded", part: driftPart(2, nil)},
		{name: "as recorded, one node resized by necos", part: driftPart(2, map[string]int{"vm-2": 3})},
		{name: "node deleted", part: driftPart(2, nil), live: without("vm-2"),
			repairs: []string{"scale vm  2: VDU vm has 1 node at the provider, 2 recorded (vm-2 not found)"},
			gone:    []string{"vm-2 "}},
		{name: "node necos did not make", part: driftPart(2, nil), live: extra,
			repairs: []string{"scale vm  2: VDU vm has 3 nodes at the provider, 2 recorded (vm-3 not recorded)"}},
		{name: "one node bigger", part: driftPart(2, nil), live: sized("vm-1", 4),
			repairs: []string{"resize vm vm-1 2: node vm-1 of VDU vm has 4 vCPUs and 1024 MB at the provider, 2 vCPUs and 1024 MB recorded"}},
		{name: "one node smaller than necos resized it", part: driftPart(2, map[string]int{"vm-2": 3}), live: sized("vm-2", 2),
			repairs: []string{"resize vm vm-2 3: node vm-2 of VDU vm has 2 vCPUs and 1024 MB at the provider, 3 vCPUs and 1024 MB recorded"}},
		{name: "every node of a VDU", part: driftPart(2, nil), live: both(sized("vm-1", 1), sized("vm-2", 1)),
			repairs: []string{"resize vm  2: every node of VDU vm has 1 vCPUs and 1024 MB at the provider, 2 vCPUs and 1024 MB recorded"}},
		{name: "every node, but one was resized by necos", part: driftPart(2, map[string]int{"vm-2": 3}), live: both(sized("vm-1", 1), sized("vm-2", 1)),
			repairs: []string{"resize vm vm-1 2: node vm-1 of VDU vm has 1 vCPUs and 1024 MB at the provider, 2 vCPUs and 1024 MB recorded",
				"resize vm vm-2 3: node vm-2 of VDU vm has 1 vCPUs and 1024 MB at the provider, 3 vCPUs and 1024 MB recorded"}},
		{name: "resize before scale", part: driftPart(2, nil), live: both(without("vm-2"), sized("db-1", 8)),
			repairs: []string{"resize db  4: every node of VDU db has 8 vCPUs and 2048 MB at the provider, 4 vCPUs and 2048 MB recorded",
				"scale vm  2: VDU vm has 1 node at the provider, 2 recorded (vm-2 not found)"},
			gone: []string{"vm-2 "}},
		{name: "stopped node", part: driftPart(2, nil), live: func(l *sdk.Part) { l.Nodes[0].State = sdk.StateStopped },
			gone: []string{"vm-1 stopped"}},
		{name: "same count, other names", part: driftPart(2, nil), live: both(without("vm-2"), extra),
			stuck: []string{"VDU vm has other nodes at the provider than recorded (vm-2 not found; vm-3 not recorded)"},
			gone:  []string{"vm-2 "}},
		{name: "a VDU the part lacks", part: driftPart(2, nil), live: func(l *sdk.Part) { l.Nodes = append(l.Nodes, sdk.Node{Name: "x-1", VDU: "x"}) },
			stuck: []string{"node x-1 of VDU x, which the part does not have, is at the provider"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := compareNodes(tc.part, liveOf(tc.part, tc.live))
			var repairs, stucks, gone []string
			for _, r := range d.repairs {
				n := r.change.Instances
				if r.change.Kind == store.ChangeResize {
					n = r.change.CPUs
				}
				repairs = append(repairs, fmt.Sprintf("%s %s %s %d: %s", r.change.Kind, r.change.VDU, r.change.Node, n, r.what))
			}
			for _, s := range d.stuck {
				stucks = append(stucks, s.what)
			}
			for _, g := range d.gone {
				gone = append(gone, g.name+" "+g.state)
			}
			if !reflect.DeepEqual(repairs, tc.repairs) {
				t.Errorf("repairs:\n%s\nwant:\n%s", strings.Join(repairs, "\n"), strings.Join(tc.repairs, "\n"))
			}
			if !reflect.DeepEqual(stucks, tc.stuck) {
				t.Errorf("stuck %q, want %q", stucks, tc.stuck)
			}
			if !reflect.DeepEqual(gone, tc.gone) {
				t.Errorf("gone %q, want %q", gone, tc.gone)
			}
		})
	}
}

func TestRecordedSize(t *testing.T) {
	// 2 + 3 + 4 vCPUs; storage as the spec says whatever the nodes report.
	p := driftPart(2, map[string]int{"vm-2": 3})
	p.Observed.Nodes[0].StorageGB = 0
	want := sdk.Resources{CPUs: 9, MemoryMB: 4096, StorageGB: 40, Nodes: 3}
	if got := recordedSize(p); got != want {
		t.Errorf("recorded size %+v, want %+v", got, want)
	}
	// A record with fewer nodes than the spec asks: the spec's count, sized as recorded
	// where recorded.
	p.Spec.VDUs[0].Instances = 3
	want = sdk.Resources{CPUs: 11, MemoryMB: 5120, StorageGB: 50, Nodes: 4}
	if got := recordedSize(p); got != want {
		t.Errorf("recorded size with a node unrecorded %+v, want %+v", got, want)
	}
}

func TestRecordObserved(t *testing.T) {
	nodes := func(p *sdk.Part) string {
		var out []string
		for _, n := range p.Nodes {
			out = append(out, fmt.Sprintf("%s:%d:%s", n.Name, n.CPUs, n.ID))
		}
		return strings.Join(out, " ")
	}
	rec := driftPart(2, nil).Observed
	for _, tc := range []struct {
		name   string
		change store.PartChange
		obs    func(*sdk.Part)
		want   string
	}{
		{name: "a resize of one node records that node only",
			change: store.PartChange{Kind: store.ChangeResize, VDU: "vm", Node: "vm-1", CPUs: 3},
			obs:    both(sized("vm-1", 3), sized("vm-2", 5)),
			want:   "vm-1:3: vm-2:2: db-1:4:"},
		{name: "a VDU-wide resize records the VDU",
			change: store.PartChange{Kind: store.ChangeResize, VDU: "vm", CPUs: 3},
			obs:    both(sized("vm-1", 3), sized("vm-2", 3), sized("db-1", 1)),
			want:   "vm-1:3: vm-2:3: db-1:4:"},
		{name: "a scale records the nodes it made; a node gone from another VDU stays recorded",
			change: store.PartChange{Kind: store.ChangeScale, VDU: "vm", Instances: 3},
			obs: both(without("db-1"), sized("vm-1", 7), func(l *sdk.Part) {
				l.Nodes[1].ID = "new-domain"
				l.Nodes = append(l.Nodes, sdk.Node{Name: "vm-3", VDU: "vm", CPUs: 2})
			}),
			// vm-1 drifted to 7 vCPUs: its recorded size stays; vm-2's new domain is taken.
			want: "vm-1:2: vm-2:2:new-domain vm-3:2: db-1:4:"},
		{name: "a scale down drops the nodes the VIM removed",
			change: store.PartChange{Kind: store.ChangeScale, VDU: "vm", Instances: 1},
			obs:    without("vm-2"),
			want:   "vm-1:2: db-1:4:"},
		{name: "a node necos did not make is not recorded",
			change: store.PartChange{Kind: store.ChangeResize, VDU: "vm", CPUs: 2},
			obs:    func(l *sdk.Part) { l.Nodes = append(l.Nodes, sdk.Node{Name: "db-2", VDU: "db", CPUs: 4}) },
			want:   "vm-1:2: vm-2:2: db-1:4:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := *rec
			obs.Nodes = append([]sdk.Node(nil), rec.Nodes...)
			tc.obs(&obs)
			got := recordObserved(rec, obs, &tc.change)
			if s := nodes(got); s != tc.want {
				t.Errorf("recorded %s, want %s", s, tc.want)
			}
		})
	}
	if got := recordObserved(nil, *rec, &store.PartChange{Kind: store.ChangeScale}); !reflect.DeepEqual(got, rec) {
		t.Errorf("without a record: %+v", got)
	}
}
