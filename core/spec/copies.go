package spec

import (
	"strconv"
	"strings"
	"time"
)

// CopyName is the name horizontal elasticity gives the n-th copy (n ≥ 1) of a part:
// "<template>-h<n>".
func CopyName(template string, n int) string { return template + "-h" + strconv.Itoa(n) }

// TemplateOfCopy splits a name CopyName made: the part copied, and true; "" and false for
// any other name.
func TemplateOfCopy(name string) (string, bool) {
	i := strings.LastIndex(name, "-h")
	if i <= 0 {
		return "", false
	}
	if n, err := strconv.Atoi(name[i+2:]); err != nil || n < 1 || strconv.Itoa(n) != name[i+2:] {
		return "", false
	}
	return name[:i], true
}

// Given returns the part called name as the tenant's spec describes it: the part itself,
// or, for a copy elasticity made ("<template>-h<n>", copied from its template's spec, a
// copy of a copy included), the part it was copied from. False when the spec has neither.
func (s *Slice) Given(name string) (*DCPart, bool) {
	if s == nil {
		return nil, false
	}
	for name != "" {
		if dp, ok := s.Part(name); ok {
			return dp, true
		}
		t, ok := TemplateOfCopy(name)
		if !ok {
			return nil, false
		}
		name = t
	}
	return nil, false
}

// MeasuredEvery is how often the monitoring measures metric on part: the metric's own
// granularity-secs in the part's monitoring-parameters, else the part's granularity-secs,
// else def. A copy is measured as the part it copies (Given).
func (s *Slice) MeasuredEvery(part, metric string, def time.Duration) time.Duration {
	dp, ok := s.Given(part)
	if !ok || dp.Monitoring == nil {
		return def
	}
	every := def
	if g := dp.Monitoring.GranularitySecs; g > 0 {
		every = time.Duration(g) * time.Second
	}
	for _, m := range dp.Monitoring.Metrics {
		if m.Name == metric && m.GranularitySecs > 0 {
			return time.Duration(m.GranularitySecs) * time.Second
		}
	}
	return every
}
