package elastic

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/sdk"
)

func policy(t *testing.T, doc string) *spec.Policy {
	t.Helper()
	p, err := spec.ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func series(node, source string, values ...float64) []sdk.Point {
	tags := map[string]string{sdk.TagResourceID: node, sdk.TagNodeType: "worker"}
	if source != "" {
		tags["source"] = source
	}
	out := make([]sdk.Point, len(values))
	for i, v := range values {
		out[i] = sdk.Point{Metric: "cpu", Tags: tags, Value: v, Time: time.Unix(int64(i), 0)}
	}
	return out
}

func TestJudge(t *testing.T) {
	points := policy(t, `{name: p, part: edge, operator: '>', value: 80, trigger: {points: 3}, metric-collector: {metric-name: cpu}}`)
	window := policy(t, `{name: p, part: edge, operator: '>=', value: 80, trigger: {time-window: 30}, metric-collector: {metric-name: cpu}}`)
	below := policy(t, `{name: p, part: edge, operator: '<', value: 10, trigger: {points: 2}, metric-collector: {metric-name: cpu}}`)
	// Scale-in fires only when every node is below, unless it says any; a growing
	// policy may ask for every node too.
	shrink := policy(t, `{name: p, part: edge, operator: '<', value: 10, trigger: {points: 2}, metric-collector: {metric-name: cpu},
  post-deployment: {actions: {vertical: [{action: remove-node}]}}}`)
	shrinkAny := policy(t, `{name: p, part: edge, operator: '<', value: 10, trigger: {points: 2, nodes: any}, metric-collector: {metric-name: cpu},
  post-deployment: {actions: {vertical: [{action: remove-node}]}}}`)
	shrinkWindow := policy(t, `{name: p, part: edge, operator: '<', value: 10, trigger: {time-window: 30}, metric-collector: {metric-name: cpu},
  post-deployment: {actions: {vertical: [{action: remove-node}]}}}`)
	growAll := policy(t, `{name: p, part: edge, operator: '>', value: 80, trigger: {points: 3, nodes: all}, metric-collector: {metric-name: cpu}}`)
	growAvg := policy(t, `{name: p, part: edge, operator: '>', value: 80, trigger: {points: 3, nodes: average}, metric-collector: {metric-name: cpu}}`)
	shrinkAvg := policy(t, `{name: p, part: edge, operator: '<', value: 10, trigger: {points: 2, nodes: average}, metric-collector: {metric-name: cpu},
  post-deployment: {actions: {vertical: [{action: remove-node}]}}}`)
	cat := func(ss ...[]sdk.Point) []sdk.Point {
		var out []sdk.Point
		for _, s := range ss {
			out = append(out, s...)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		p      *spec.Policy
		pts    []sdk.Point
		node   string
		values []float64
	}{
		{"last three above", points, series("w-1", "", 10, 90, 95, 99), "w-1", []float64{90, 95, 99}},
		{"one of three below", points, series("w-1", "", 90, 70, 99), "", nil},
		{"too few points", points, series("w-1", "", 95, 99), "", nil},
		{"equal is not above", points, series("w-1", "", 80, 95, 99), "", nil},
		{"oscillating", points, series("w-1", "", 95, 20, 95, 20, 95), "", nil},
		{"second node fires", points, cat(series("w-1", "", 10, 10, 10), series("w-2", "", 81, 82, 83)), "w-2", []float64{81, 82, 83}},
		// A probe's series is judged apart from the collector's for the same node.
		{"pushed series apart", points, cat(series("w-1", "", 1, 2, 1), series("w-1", "push", 95, 96, 97)), "w-1", []float64{95, 96, 97}},
		{"window all above", window, series("w-1", "", 80, 85, 90, 85, 99), "w-1", []float64{80, 85, 90, 85, 99}},
		{"window one below", window, series("w-1", "", 85, 79.9, 90), "", nil},
		{"window empty", window, nil, "", nil},
		{"below threshold policy", below, series("w-1", "", 50, 5, 3), "w-1", []float64{5, 3}},
		{"scale-in: one node idle, its sibling busy", shrink, cat(series("w-1", "", 5, 3), series("w-2", "", 70, 90)), "", nil},
		{"scale-in: every node idle", shrink, cat(series("w-1", "", 5, 3), series("w-2", "", 4, 2)), "w-1", []float64{5, 3}},
		// The last node to cross names the firing: w-2's idle values start later.
		{"scale-in: every node idle, the last to cross", shrink, cat(series("w-1", "", 5, 3, 2), series("w-2", "", 50, 50, 4, 2)), "w-2", []float64{4, 2}},
		{"scale-in: a node with too few points", shrink, cat(series("w-1", "", 5, 3), series("w-2", "", 4)), "", nil},
		{"scale-in: one series of a node busy", shrink, cat(series("w-1", "", 5, 3), series("w-1", "push", 50, 60)), "", nil},
		{"scale-in: any node idle", shrinkAny, cat(series("w-1", "", 70, 90), series("w-2", "", 5, 3)), "w-2", []float64{5, 3}},
		{"scale-in window: every node idle", shrinkWindow, cat(series("w-1", "", 5, 3, 1), series("w-2", "", 9)), "w-1", []float64{5, 3, 1}},
		{"scale-in window: one value busy", shrinkWindow, cat(series("w-1", "", 5, 3, 1), series("w-2", "", 9, 11)), "", nil},
		{"scale-in: no node measured", shrink, nil, "", nil},
		{"grow on every node: one busy", growAll, cat(series("w-1", "", 81, 82, 83), series("w-2", "", 10, 10, 10)), "", nil},
		{"grow on every node: both busy", growAll, cat(series("w-1", "", 81, 82, 83), series("w-2", "", 90, 91, 92)), "w-1", []float64{81, 82, 83}},
		// The mean decides: one hot node among idle ones does not, two warm ones do.
		{"average: one hot node", growAvg, cat(series("w-1", "", 99, 99, 99), series("w-2", "", 10, 10, 10)), "", nil},
		{"average: above together", growAvg, cat(series("w-1", "", 70, 72, 74), series("w-2", "", 100, 98, 96)), "w-2", []float64{85, 85, 85}},
		{"average: one point of the mean below", growAvg, cat(series("w-1", "", 70, 60, 74), series("w-2", "", 100, 98, 96)), "", nil},
		{"average: a node with too few points", growAvg, cat(series("w-1", "", 90, 90, 90), series("w-2", "", 90, 90)), "", nil},
		{"average scale-in: the idlest first", shrinkAvg, cat(series("w-1", "", 12, 12), series("w-2", "", 2, 4)), "w-2", []float64{7, 8}},
		{"average scale-in: one idle node", shrinkAvg, cat(series("w-1", "", 30, 30), series("w-2", "", 0, 0)), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Judge(tc.p, tc.pts)
			if tc.values == nil {
				if f != nil {
					t.Fatalf("fired on %s", f)
				}
				return
			}
			if f == nil {
				t.Fatal("did not fire")
			}
			if tc.p.Average() && (!f.Average || f.Nodes[0] != f.Node || len(f.Nodes) != len(nodesOf(tc.pts)) || f.Crossed.IsZero() ||
				!strings.HasPrefix(f.String(), fmt.Sprintf("the mean of %d nodes, node %s furthest: ", len(f.Nodes), f.Node))) {
				t.Fatalf("fired on %s, nodes %v: want the mean of every node measured, %s first", f, f.Nodes, f.Node)
			}
			if tc.p.EveryNode() && (!f.Every || f.Nodes[0] != f.Node || len(f.Nodes) != len(nodesOf(tc.pts))) {
				t.Fatalf("fired on %s, nodes %v: want every node measured, %s first", f, f.Nodes, f.Node)
			}
			if f.Node != tc.node || len(f.Values) != len(tc.values) {
				t.Fatalf("fired on %s, want node %s values %v", f, tc.node, tc.values)
			}
			// The series' points are at 0 s, 1 s...: the first value that fired is
			// the crossing.
			all := tc.pts
			for _, pt := range all {
				if pt.Tags[sdk.TagResourceID] == f.Node && pt.Tags["source"] == f.Tags["source"] && pt.Value == tc.values[0] {
					if !f.Crossed.Equal(pt.Time) {
						t.Fatalf("crossed at %s, want %s", f.Crossed, pt.Time)
					}
					break
				}
			}
			if f.Crossed.IsZero() {
				t.Fatal("no crossing time")
			}
			for i := range tc.values {
				if f.Values[i] != tc.values[i] {
					t.Fatalf("fired on %s, want values %v", f, tc.values)
				}
			}
		})
	}
}

// nodesOf lists the nodes pts name, each once.
func nodesOf(pts []sdk.Point) []string {
	var out []string
	for _, pt := range pts {
		if n := pt.Tags[sdk.TagResourceID]; !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func TestQuery(t *testing.T) {
	now := time.Unix(1000, 0)
	p := policy(t, `{name: p, part: edge, operator: '>', value: 80, trigger: {points: 3}, metric-collector: {node-type: worker, metric-name: cpu}}`)
	q := Query("s1", p, 2*time.Second, time.Time{}, now)
	if q.Metric != "cpu" || q.Last != 3 || !q.Start.Equal(now.Add(-10*time.Second)) || !q.End.IsZero() ||
		q.Tags[sdk.TagSlice] != "s1" || q.Tags[sdk.TagPart] != "edge" || q.Tags[sdk.TagNodeType] != "worker" || len(q.Tags) != 3 {
		t.Errorf("points query %+v", q)
	}
	// Only points after the last action count.
	since := now.Add(-3 * time.Second)
	if q := Query("s1", p, 2*time.Second, since, now); !q.Start.Equal(since) {
		t.Errorf("after an action: start %s", q.Start)
	}
	w := policy(t, `{name: p, part: edge, operator: '>', value: 80, trigger: {time-window: 60}, metric-collector: {metric-name: cpu}}`)
	q = Query("s1", w, time.Second, time.Time{}, now)
	if q.Last != 0 || !q.Start.Equal(now.Add(-time.Minute)) || len(q.Tags) != 2 {
		t.Errorf("window query %+v", q)
	}
}

func TestGranularity(t *testing.T) {
	s, err := spec.ParseSlice([]byte(`slices:
  sliced:
    id: s
    slice-parts:
      - dc-slice-part:
          name: edge
          monitoring-parameters: {granularity-secs: 3}
          VIM: {name: xen-vim, vdus: [{vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	own := policy(t, `{name: p, part: edge, operator: '>', value: 80, trigger: {points: 3}, metric-collector: {metric-name: cpu, granularity: 7}}`)
	def := policy(t, `{name: p, part: edge, operator: '>', value: 80, trigger: {points: 3}, metric-collector: {metric-name: cpu, granularity: default}}`)
	other := policy(t, `{name: p, part: core, operator: '>', value: 80, trigger: {points: 3}, metric-collector: {metric-name: cpu}}`)
	for _, tc := range []struct {
		p    *spec.Policy
		want time.Duration
	}{{own, 7 * time.Second}, {def, 3 * time.Second}, {other, DefaultGranularity}} {
		if got := granularity(tc.p, s, DefaultGranularity); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.p.Part, got, tc.want)
		}
	}
}
