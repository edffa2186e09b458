package influx

import (
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

func TestFluxString(t *testing.T) {
	cases := map[string]string{
		``:                `""`,
		`node-1`:          `"node-1"`,
		`quote"d`:         `"quote\"d"`,
		`back\slash`:      `"back\\slash"`,
		`${x}`:            `"\x24{x}"`,
		`$`:               `"\x24"`,
		`x" or true or "`: `"x\" or true or \""`,
		"new\nline\ttab":  `"new\nline\ttab"`,
		"bell\x07":        `"bell\x07"`,
		"São Carlos":      `"São Carlos"`,
	}
	for in, want := range cases {
		if got := fluxString(in); got != want {
			t.Errorf("fluxString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestBuildFlux(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	end := start.Add(time.Minute)
	q := sdk.Query{Metric: "cpu", Tags: map[string]string{sdk.TagSlice: "s1", sdk.TagResourceID: `n"1`}, Last: 5, Start: start, End: end}
	from, to, empty := window(q)
	if empty {
		t.Fatal("window is empty")
	}
	got := buildFlux("E2E_SLICE/autogen", q, from, to)
	want := `from(bucket: "E2E_SLICE/autogen")
  |> range(start: 2026-01-02T03:04:05.000000006Z, stop: 2026-01-02T03:05:05.000000006Z)
  |> filter(fn: (r) => r._measurement == "cpu" and r._field == "value" and r._time < 2026-01-02T03:05:05.000000006Z)
  |> filter(fn: (r) => r["ResourceID"] == "n\"1" and r["slice"] == "s1")
  |> tail(n: 5)
`
	if got != want {
		t.Errorf("buildFlux:\n%s\nwant:\n%s", got, want)
	}

	// Unbounded: InfluxDB's whole time range, no tail, no time filter.
	from, to, _ = window(sdk.Query{Metric: "cpu"})
	got = buildFlux("E2E_SLICE", sdk.Query{Metric: "cpu"}, from, to)
	if !strings.Contains(got, "range(start: 1677-09-21T00:12:43.145224194Z, stop: 2262-04-11T23:47:16.854775807Z)") ||
		strings.Contains(got, "tail") || strings.Contains(got, "_time") {
		t.Errorf("unbounded query:\n%s", got)
	}
	if _, _, empty := window(sdk.Query{Metric: "cpu", Start: start, End: start}); !empty {
		t.Error("Start == End must be an empty window")
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"url": "http://127.0.0.1:8086/"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://127.0.0.1:8086" || c.Database != DefaultDatabase || c.Bucket() != DefaultDatabase ||
		c.BatchSize != DefaultBatchSize || c.Precision != "ns" || c.CreateDatabase || c.token() != "" ||
		c.RetentionDays == nil || *c.RetentionDays != DefaultRetentionDays {
		t.Errorf("defaults: %+v", c)
	}
	c, err = ParseConfig([]byte(`{"url": "https://influx:8086", "retention_policy": "week", "username": "u", "password": "p"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bucket() != "E2E_SLICE/week" || c.token() != "u:p" {
		t.Errorf("bucket %q token %q", c.Bucket(), c.token())
	}

	_, err = ParseConfig([]byte(`{"url": "influx:8086", "database": "a/b", "precision": "m", "batch_size": -1, "password": "p"}`))
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument {
		t.Fatalf("code %v: %v", sdk.CodeOf(err), err)
	}
	for _, want := range []string{"url:", "database:", "precision:", "batch_size:", "password:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
	if _, err := ParseConfig([]byte(`{"url": "http://x:1", "bogus": 1}`)); err == nil {
		t.Error("unknown key accepted")
	}
	// The schema accepts exactly the keys Config has.
	if err := Schema.Validate([]byte(`{"url": "http://x:1", "database": "d", "retention_policy": "r", "username": "u",
		"password": "p", "batch_size": 1, "flush_interval_ms": 1, "create_database": true, "precision": "s",
		"queue_size": 10, "max_retry_time_ms": 1, "timeout_ms": 1}`)); err != nil {
		t.Error(err)
	}
}

func TestEncode(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	e := encoder{precision: time.Millisecond, now: func() time.Time { return now }}
	lines, err := e.encode([]sdk.Point{
		{Metric: "cpu load", Tags: map[string]string{"site": "São Carlos, BR", "ResourceID": "n=1"}, Value: 0.25},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `cpu\ load,ResourceID=n\=1,site=São\ Carlos\,\ BR value=0.25 1700000000123`
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("encode: %q, want %q", lines, want)
	}
	_, err = e.encode([]sdk.Point{{Metric: "ok", Value: 1}, {Metric: "", Value: 1}, {Metric: "x", Tags: map[string]string{"time": "1"}, Value: 1}})
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument || !strings.Contains(err.Error(), "point 1: metric") ||
		!strings.Contains(err.Error(), "point 2: tag key") || !strings.Contains(err.Error(), "2 of 3") {
		t.Errorf("bad points: %v", err)
	}
}
