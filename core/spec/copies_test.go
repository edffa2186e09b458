package spec

import (
	"testing"
	"time"
)

func TestTemplateOfCopy(t *testing.T) {
	for name, want := range map[string]string{"edge-h1": "edge", "edge-h12": "edge", "edge-h1-h2": "edge-h1", "edge": "",
		"edge-h": "", "edge-h0": "", "edge-h01": "", "edge-hx": "", "-h1": "", "edge-h-1": ""} {
		got, ok := TemplateOfCopy(name)
		if got != want || ok != (want != "") {
			t.Errorf("TemplateOfCopy(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	if got, ok := TemplateOfCopy(CopyName("edge-h1", 12)); got != "edge-h1" || !ok {
		t.Errorf("CopyName does not split back: %q %v", got, ok)
	}
}

// A part's metric is measured at its own granularity, else the part's, else the default;
// a copy as the part it copies; a part the spec does not have at the default.
func TestMeasuredEvery(t *testing.T) {
	s := &Slice{Parts: []DCPart{
		{Name: "core"},
		{Name: "edge", Monitoring: &Monitoring{GranularitySecs: 5, Metrics: []Metric{
			{Name: "PERCENT_CPU_UTILIZATION", GranularitySecs: 2}, {Name: "MEMORY_USED_MB"}}}},
	}}
	const def = 10 * time.Second
	for _, c := range []struct {
		part, metric string
		want         time.Duration
	}{
		{"core", "PERCENT_CPU_UTILIZATION", def},
		{"edge", "PERCENT_CPU_UTILIZATION", 2 * time.Second},
		{"edge", "MEMORY_USED_MB", 5 * time.Second},
		{"edge", "OTHER", 5 * time.Second},
		{"edge-h2", "PERCENT_CPU_UTILIZATION", 2 * time.Second},
		{"edge-h1-h1", "MEMORY_USED_MB", 5 * time.Second},
		{"gone", "PERCENT_CPU_UTILIZATION", def},
		{"gone-h1", "PERCENT_CPU_UTILIZATION", def},
	} {
		if got := s.MeasuredEvery(c.part, c.metric, def); got != c.want {
			t.Errorf("MeasuredEvery(%s, %s) = %s, want %s", c.part, c.metric, got, c.want)
		}
	}
	var none *Slice
	if got := none.MeasuredEvery("edge", "X", def); got != def {
		t.Errorf("no spec: %s", got)
	}
}
