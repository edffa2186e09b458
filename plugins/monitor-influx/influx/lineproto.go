package influx

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/influxdata/influxdb-client-go/v2/api/write"
	lp "github.com/influxdata/line-protocol"
	"github.com/necos/necos/sdk"
)

// ValueField is the field every point's value is stored in; the measurement is the metric.
const ValueField = "value"

// InfluxDB's time range: nanoseconds since the epoch in an int64, minus the two values it
// reserves.
var (
	minTime = time.Unix(0, math.MinInt64+2).UTC()
	maxTime = time.Unix(0, math.MaxInt64-1).UTC()
)

// reservedTagKeys would collide with the columns of a Flux result, InfluxDB's own time
// column or the value field.
var reservedTagKeys = map[string]bool{"time": true, "result": true, "table": true, ValueField: true}

// maxProblems bounds how many bad points one error lists.
const maxProblems = 5

// encoder turns points into line protocol, one line per point.
type encoder struct {
	precision time.Duration
	now       func() time.Time
}

// encode checks every point and returns their lines (without the trailing newline), or
// an InvalidArgument error naming the bad points; then nothing is returned.
func (e encoder) encode(points []sdk.Point) ([]string, error) {
	var problems []string
	for i, p := range points {
		if msg := checkPoint(p); msg != "" {
			problems = append(problems, fmt.Sprintf("point %d: %s", i, msg))
		}
	}
	if len(problems) > 0 {
		more := ""
		if len(problems) > maxProblems {
			more = fmt.Sprintf("; and %d more", len(problems)-maxProblems)
			problems = problems[:maxProblems]
		}
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "write: %d of %d points refused: %s%s",
			len(problems), len(points), strings.Join(problems, "; "), more)
	}
	now := e.now()
	var buf bytes.Buffer
	enc := lp.NewEncoder(&buf)
	enc.SetPrecision(e.precision)
	enc.FailOnFieldErr(true)
	lines := make([]string, 0, len(points))
	for i, p := range points {
		t := p.Time
		if t.IsZero() {
			t = now
		}
		wp := write.NewPointWithMeasurement(p.Metric).AddField(ValueField, p.Value).SetTime(t)
		keys := make([]string, 0, len(p.Tags))
		for k := range p.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys) // InfluxDB's canonical order: cheaper to index
		for _, k := range keys {
			wp.AddTag(k, p.Tags[k])
		}
		buf.Reset()
		if _, err := enc.Encode(wp); err != nil {
			return nil, sdk.Errorf(sdk.CodeInvalidArgument, "write: point %d: %v", i, err)
		}
		lines = append(lines, strings.TrimSuffix(buf.String(), "\n"))
	}
	return lines, nil
}

// checkPoint returns what is wrong with p, or "". Line protocol cannot carry everything:
// control characters and backslashes do not survive InfluxDB 1.x's parser, a line
// starting with '#' is a comment, and empty tag values mean "no tag".
func checkPoint(p sdk.Point) string {
	var msgs []string
	if msg := checkName(p.Metric); msg != "" {
		msgs = append(msgs, "metric: "+msg)
	} else if strings.HasPrefix(p.Metric, "#") {
		msgs = append(msgs, fmt.Sprintf("metric: must not start with '#', got %q", p.Metric))
	}
	keys := make([]string, 0, len(p.Tags))
	for k := range p.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if msg := checkTagKey(k); msg != "" {
			msgs = append(msgs, "tag key: "+msg)
			continue
		}
		if msg := checkName(p.Tags[k]); msg != "" {
			msgs = append(msgs, fmt.Sprintf("tag %s: %s", k, msg))
		}
	}
	if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
		msgs = append(msgs, fmt.Sprintf("value: must be a finite number, got %v", p.Value))
	}
	if !p.Time.IsZero() && (p.Time.Before(minTime) || p.Time.After(maxTime)) {
		msgs = append(msgs, fmt.Sprintf("time: must be between %s and %s, got %s",
			minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339), p.Time.Format(time.RFC3339)))
	}
	return strings.Join(msgs, ", ")
}

func checkTagKey(k string) string {
	if msg := checkName(k); msg != "" {
		return msg
	}
	if strings.HasPrefix(k, "_") || reservedTagKeys[k] {
		return fmt.Sprintf("%q is reserved (keys starting with '_', time, result, table, value)", k)
	}
	return ""
}

func checkName(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case !utf8.ValidString(s):
		return fmt.Sprintf("must be UTF-8, got %q", s)
	case strings.ContainsFunc(s, isControl):
		return fmt.Sprintf("must not contain control characters, got %q", s)
	case strings.Contains(s, `\`):
		return fmt.Sprintf("must not contain a backslash, got %q", s)
	}
	return ""
}
