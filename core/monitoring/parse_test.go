package monitoring

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/sdk"
)

func TestParseLineProtocol(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	body := `# a load test's CPU
PERCENT_CPU_UTILIZATION,ResourceID=k8s-node-1,part=dc-slice2 value=93.5 1700000000

PERCENT_CPU_UTILIZATION,ResourceID=k8s-node-2 usage=7i
MEMORY_USED_MB,ResourceID=vm-1 value=512u 1700000001
`
	pts, err := ParsePoints("text/plain; charset=utf-8", "s", []byte(body), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 3 {
		t.Fatalf("%d points: %+v", len(pts), pts)
	}
	want := []sdk.Point{
		{Metric: "PERCENT_CPU_UTILIZATION", Tags: map[string]string{"ResourceID": "k8s-node-1", "part": "dc-slice2"}, Value: 93.5, Time: time.Unix(1700000000, 0)},
		{Metric: "PERCENT_CPU_UTILIZATION", Tags: map[string]string{"ResourceID": "k8s-node-2"}, Value: 7, Time: now},
		{Metric: "MEMORY_USED_MB", Tags: map[string]string{"ResourceID": "vm-1"}, Value: 512, Time: time.Unix(1700000001, 0)},
	}
	for i, w := range want {
		g := pts[i]
		if g.Metric != w.Metric || g.Value != w.Value || !g.Time.Equal(w.Time) || len(g.Tags) != len(w.Tags) {
			t.Errorf("point %d: %+v, want %+v", i, g, w)
		}
		for k, v := range w.Tags {
			if g.Tags[k] != v {
				t.Errorf("point %d: tag %s=%q, want %q", i, k, g.Tags[k], v)
			}
		}
	}

	bad := "cpu value=1\ncpu,host=a\ncpu a=1,b=2\ncpu value=\"high\"\n"
	_, err = ParseLineProtocol([]byte(bad), time.Nanosecond, now)
	var se *spec.Error
	if !errors.As(err, &se) || len(se.Problems) != 3 {
		t.Fatalf("bad lines: %v", err)
	}
	for i, want := range []string{"line 2: column", "line 3: needs a field \"value\" or a single field, got a, b", "line 4: value must be a number"} {
		if got := se.Problems[i].String(); !strings.HasPrefix(got, want) {
			t.Errorf("problem %d: %q, want prefix %q", i, got, want)
		}
	}
	if _, err := ParsePoints("text/plain", "minutes", []byte("cpu value=1"), now); err == nil || !strings.Contains(err.Error(), "precision") {
		t.Errorf("bad precision: %v", err)
	}
	if _, err := ParsePoints("application/xml", "", []byte("<x/>"), now); err == nil || !strings.Contains(err.Error(), "Content-Type") {
		t.Errorf("bad content type: %v", err)
	}
}

func TestParseJSON(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, body := range []string{
		`{"points": [{"metric": "PERCENT_CPU_UTILIZATION", "node": "k8s-node-1", "value": 95, "time": "2026-01-02T03:04:00Z"}]}`,
		`[{"metric": "PERCENT_CPU_UTILIZATION", "tags": {"ResourceID": "k8s-node-1"}, "value": 95, "time": "2026-01-02T03:04:00Z"}]`,
		`{"metric": "PERCENT_CPU_UTILIZATION", "node": "k8s-node-1", "value": 95, "time": "2026-01-02T03:04:00Z"}`,
	} {
		pts, err := ParsePoints("application/json", "", []byte(body), now)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if len(pts) != 1 || pts[0].Tags[sdk.TagResourceID] != "k8s-node-1" || pts[0].Value != 95 || pts[0].Time.Minute() != 4 {
			t.Errorf("%s: %+v", body, pts)
		}
	}
	pts, err := ParseJSON([]byte(`{"points":[{"metric":"m","value":0}]}`), now)
	if err != nil || !pts[0].Time.Equal(now) {
		t.Errorf("no time: %+v %v", pts, err)
	}
	_, err = ParseJSON([]byte(`{"points": [{"metric": "m"}, {"metric": "m", "value": 1, "colour": "red"}, {"metric": "m", "value": 1, "node": "a", "tags": {"ResourceID": "b"}}]}`), now)
	var se *spec.Error
	if !errors.As(err, &se) || len(se.Problems) != 3 {
		t.Fatalf("bad points: %v", err)
	}
	for i, want := range []string{"points[0].value: required", "points[1]: unknown field \"colour\"", "points[2].node: \"a\" contradicts tags.ResourceID"} {
		if got := se.Problems[i].String(); !strings.HasPrefix(got, want) {
			t.Errorf("problem %d: %q, want prefix %q", i, got, want)
		}
	}
}

func TestGroups(t *testing.T) {
	sp, err := spec.ParseSlice([]byte(`slices:
  sliced:
    id: s
    slice-parts:
      - dc-slice-part:
          name: core
          monitoring-parameters:
            granularity-secs: 5
            metrics:
              - metric: {name: PERCENT_CPU_UTILIZATION}
              - metric: {name: MEMORY_USED_MB, granularity-secs: 60}
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
      - dc-slice-part:
          name: edge
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: vm, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	// The whole spec, and what the collector keeps of it, give the same groups.
	for name, sp := range map[string]*spec.Slice{"spec": sp, "kept": monitoringOnly(sp)} {
		got := groups(sp, "core", DefaultGranularity)
		if len(got) != 2 || got[0].every != 5*time.Second || got[0].metrics[0] != sdk.MetricCPUPercent ||
			got[1].every != time.Minute || got[1].metrics[0] != sdk.MetricMemoryUsedMB {
			t.Errorf("%s: core: %+v", name, got)
		}
		// An elastic copy is measured like the part it copies.
		if c := groups(sp, "core-h2", DefaultGranularity); len(c) != 2 || c[0].every != 5*time.Second {
			t.Errorf("%s: core-h2: %+v", name, c)
		}
		for _, p := range []string{"edge", "other", "edge-h1"} {
			if g := groups(sp, p, DefaultGranularity); len(g) != 1 || g[0].every != DefaultGranularity || g[0].metrics != nil {
				t.Errorf("%s: %s: %+v", name, p, g)
			}
		}
	}
	if kept := monitoringOnly(sp); len(kept.Parts) != 2 || kept.Parts[0].VIM.Name != "" || kept.Parts[1].Name != "edge" {
		t.Errorf("kept more than names and monitoring: %+v", kept.Parts)
	}
	pts := Points(sdk.PartRef{SliceID: "s", PartID: "core"}, []sdk.Sample{
		{Node: "vm-1", NodeType: "worker", Metric: "m", Value: 1},
		{Node: "vm-2", Metric: "m", Value: 2, Time: time.Unix(5, 0)},
	}, time.Unix(9, 0))
	if len(pts) != 2 || pts[0].Tags[sdk.TagNodeType] != "worker" || pts[0].Time.Unix() != 9 ||
		pts[1].Tags[sdk.TagResourceID] != "vm-2" || pts[1].Tags[sdk.TagPart] != "core" || pts[1].Tags[sdk.TagSlice] != "s" {
		t.Errorf("points %+v", pts)
	}
	if _, typed := pts[1].Tags[sdk.TagNodeType]; typed {
		t.Errorf("untyped node got a node-type tag: %+v", pts[1].Tags)
	}
}
