package influx

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/necos/necos/sdk"
)

// window returns the bounds of q's time window for Flux's range(), [start, stop), with
// unset and out-of-range bounds clamped to what InfluxDB can store. empty reports a
// window no point can be in.
func window(q sdk.Query) (start, stop time.Time, empty bool) {
	start, stop = minTime, maxTime.Add(time.Nanosecond)
	if !q.Start.IsZero() && q.Start.After(start) {
		start = q.Start.UTC()
	}
	if !q.End.IsZero() && q.End.Before(stop) {
		stop = q.End.UTC()
	}
	return start, stop, !start.Before(stop)
}

// buildFlux returns the Flux program answering q from bucket: the points of q.Metric's
// value field inside the window, of the series holding every tag of q.Tags, the last
// q.Last of each series when set. InfluxDB returns one table per series, oldest first.
//
// InfluxDB 1.8 takes no query parameters, so every string from the caller is a quoted
// Flux literal built by fluxString, never syntax.
func buildFlux(bucket string, q sdk.Query, start, stop time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "from(bucket: %s)\n", fluxString(bucket))
	fmt.Fprintf(&b, "  |> range(start: %s, stop: %s)\n", fluxTime(start), fluxTime(stop))
	fmt.Fprintf(&b, "  |> filter(fn: (r) => r._measurement == %s and r._field == %s",
		fluxString(q.Metric), fluxString(ValueField))
	if !q.End.IsZero() {
		// InfluxDB 1.8 reads range()'s stop inclusively; Flux means it exclusive.
		fmt.Fprintf(&b, " and r._time < %s", fluxTime(stop))
	}
	b.WriteString(")\n")
	if len(q.Tags) > 0 {
		keys := make([]string, 0, len(q.Tags))
		for k := range q.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		conds := make([]string, 0, len(keys))
		for _, k := range keys {
			conds = append(conds, fmt.Sprintf("r[%s] == %s", fluxString(k), fluxString(q.Tags[k])))
		}
		fmt.Fprintf(&b, "  |> filter(fn: (r) => %s)\n", strings.Join(conds, " and "))
	}
	if q.Last > 0 {
		fmt.Fprintf(&b, "  |> tail(n: %d)\n", q.Last)
	}
	return b.String()
}

// fluxString quotes s as a Flux string literal: the quote and the backslash escaped,
// control characters written as escapes, and '$' as \x24 so that "${" cannot start an
// interpolation. (Flux's own "\$" is no good: the 1.8 scanner rejects it unless a '{'
// follows.)
func fluxString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '$':
			b.WriteString(`\x24`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 || c == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, c)
				continue
			}
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// fluxTime writes t as a Flux time literal (RFC 3339, UTC, nanoseconds).
func fluxTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// Columns of a Flux result that are not tags.
var resultColumns = map[string]bool{
	"result": true, "table": true, "_start": true, "_stop": true, "_time": true,
	"_value": true, "_field": true, "_measurement": true,
}

// toFloat converts a stored value to the SDK's float64: the plugin writes floats, but
// another writer may have stored integers in the same field.
func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case string:
		return strconv.ParseFloat(x, 64)
	}
	return 0, fmt.Errorf("value of type %T", v)
}
