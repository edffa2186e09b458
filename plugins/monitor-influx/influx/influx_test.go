package influx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/plugins/monitor-influx/influx"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	"github.com/necos/necos/sdk/plugintest/influxtest"
)

// config returns the plugin configuration for srv, with extra keys merged in.
func config(t testing.TB, srv *influxtest.Server, extra map[string]any) []byte {
	t.Helper()
	c := map[string]any{"url": srv.URL, "create_database": true, "flush_interval_ms": 200}
	for k, v := range extra {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inProcess configures a plugin for srv through the in-memory gRPC connection; the
// plugin is closed (its queue sent) when the test ends, as Serve would.
func inProcess(t testing.TB, srv *influxtest.Server, extra map[string]any) *sdk.Client {
	t.Helper()
	p := influx.New(plugintest.TestLogger(t))
	t.Cleanup(func() { _ = p.Close() })
	return plugintest.InProcess(t, p, plugintest.Provider, config(t, srv, extra))
}

func monitor(t testing.TB, c *sdk.Client) sdk.Monitor {
	t.Helper()
	m, err := c.Monitor()
	if err != nil {
		t.Fatalf("monitor: %v", err)
	}
	return m
}

func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestInfluxDB runs everything against one real influxd: it takes 7-10 s to start, so
// the checks share it (each under names of its own) and the one that stops the server
// runs last.
func TestInfluxDB(t *testing.T) {
	srv := influxtest.Start(t)

	t.Run("Conformance/InProcess", func(t *testing.T) {
		c := inProcess(t, srv, nil)
		plugintest.RunMonitor(t, c, plugintest.MonitorOptions{})
	})
	t.Run("Conformance/Binary", func(t *testing.T) {
		bin := plugintest.Build(t, "github.com/necos/necos/plugins/monitor-influx")
		c := plugintest.Binary(t, bin, plugintest.Provider, config(t, srv, nil))
		if info := c.Info(); info.Name != influx.Name || !info.Serves(sdk.KindMonitor) {
			t.Fatalf("info: %+v", info)
		}
		plugintest.RunMonitor(t, c, plugintest.MonitorOptions{})
	})
	t.Run("Conformance/PrecisionSeconds", func(t *testing.T) {
		// Own database and retention policy, through the "database/rp" bucket.
		db := "necos_seconds"
		c := inProcess(t, srv, map[string]any{"database": db, "precision": "s", "batch_size": 777})
		srv.Query(t, fmt.Sprintf(`CREATE RETENTION POLICY "week" ON %q DURATION 100000h REPLICATION 1`, db))
		c2 := inProcess(t, srv, map[string]any{"database": db, "retention_policy": "week", "precision": "s", "create_database": false})
		plugintest.RunMonitor(t, c, plugintest.MonitorOptions{Precision: time.Second, BatchPoints: 5000})
		plugintest.RunMonitor(t, c2, plugintest.MonitorOptions{Precision: time.Second, BatchPoints: 2000})
	})
	t.Run("CreateDatabase", func(t *testing.T) { testCreateDatabase(t, srv) })
	t.Run("MissingDatabase", func(t *testing.T) { testMissingDatabase(t, srv) })
	t.Run("RefusedPoints", func(t *testing.T) { testRefusedPoints(t, srv) })
	t.Run("OddQueryValues", func(t *testing.T) { testOddQueryValues(t, srv) })
	t.Run("QueueFull", func(t *testing.T) { testQueueFull(t, srv) })
	t.Run("WriteErrorSurfaces", func(t *testing.T) { testWriteErrorSurfaces(t, srv) })
}

func testCreateDatabase(t *testing.T, srv *influxtest.Server) {
	db := fmt.Sprintf("necos_created_%d", time.Now().UnixNano())
	if strings.Contains(srv.Query(t, "SHOW DATABASES"), db) {
		t.Fatalf("database %s exists before Configure", db)
	}
	extra := map[string]any{"database": db, "create_database": true}
	c := inProcess(t, srv, extra)
	if !strings.Contains(srv.Query(t, "SHOW DATABASES"), `"`+db+`"`) {
		t.Fatalf("Configure with create_database did not create %s: %s", db, srv.Query(t, "SHOW DATABASES"))
	}
	// Its default retention policy keeps points DefaultRetentionDays, not forever.
	rps := func() string { return srv.Query(t, fmt.Sprintf(`SHOW RETENTION POLICIES ON %q`, db)) }
	if out := rps(); !strings.Contains(out, `["autogen","720h0m0s","24h0m0s",1,true]`) {
		t.Fatalf("default retention after create_database is not 30 days: %s", out)
	}
	// Configuring again when it exists is fine (CREATE DATABASE is idempotent), and
	// retention_days changes the duration (0: forever).
	inProcess(t, srv, map[string]any{"database": db, "create_database": true, "retention_days": 0})
	if out := rps(); !strings.Contains(out, `["autogen","0s",`) {
		t.Fatalf("retention_days 0 does not keep points forever: %s", out)
	}
	inProcess(t, srv, extra)
	if out := rps(); !strings.Contains(out, `["autogen","720h0m0s","24h0m0s",1,true]`) {
		t.Fatalf("configuring again did not set 30 days back: %s", out)
	}
	// A retention_policy that does not exist is made with the duration asked.
	c7 := inProcess(t, srv, map[string]any{"database": db, "create_database": true, "retention_policy": "necos7d", "retention_days": 7})
	if out := rps(); !strings.Contains(out, `["necos7d","168h0m0s","24h0m0s",1,false]`) {
		t.Fatalf("retention_policy necos7d with retention_days 7 was not made: %s", out)
	}
	p7 := sdk.Point{Metric: "cpu", Tags: map[string]string{sdk.TagResourceID: "node-7"}, Value: 7.5, Time: time.Now().Truncate(time.Second)}
	if err := monitor(t, c7).Write(callCtx(t), sdk.WriteRequest{Points: []sdk.Point{p7}}); err != nil {
		t.Fatal(err)
	}
	if err := monitor(t, c7).Flush(callCtx(t)); err != nil {
		t.Fatal(err)
	}
	if out := srv.Query(t, fmt.Sprintf(`SELECT "value" FROM %q."necos7d".cpu`, db)); !strings.Contains(out, "7.5") {
		t.Fatalf("the point is not in necos7d: %s", out)
	}
	// A negative retention is refused, naming the key.
	bad, _ := json.Marshal(map[string]any{"url": srv.URL, "database": db, "create_database": true, "retention_days": -1})
	if err := influx.New(plugintest.TestLogger(t)).Configure(callCtx(t), sdk.Config{JSON: bad}); err == nil || !strings.Contains(err.Error(), "retention_days") {
		t.Fatalf("retention_days -1: %v", err)
	}

	m := monitor(t, c)
	ctx := callCtx(t)
	p := sdk.Point{Metric: "cpu", Tags: map[string]string{sdk.TagResourceID: "node-1"}, Value: 81.5, Time: time.Now().Truncate(time.Second)}
	if err := m.Write(ctx, sdk.WriteRequest{Points: []sdk.Point{p}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The point is where the original demo's tools look for it: InfluxQL on the database.
	out := srv.Query(t, fmt.Sprintf(`SELECT "value" FROM %q..cpu WHERE "ResourceID" = 'node-1'`, db))
	if !strings.Contains(out, "81.5") {
		t.Fatalf("InfluxQL does not see the point: %s", out)
	}
}

func testMissingDatabase(t *testing.T, srv *influxtest.Server) {
	c := inProcess(t, srv, map[string]any{"database": "necos_never_created", "create_database": false})
	m := monitor(t, c)
	ctx := callCtx(t)
	_, err := m.Query(ctx, sdk.Query{Metric: "cpu"})
	if sdk.CodeOf(err) != sdk.CodeFailedPrecondition {
		t.Errorf("Query of a missing database: got %v (code %v), want FailedPrecondition", err, sdk.CodeOf(err))
	}
	p := sdk.Point{Metric: "cpu", Value: 1}
	if err := m.Write(ctx, sdk.WriteRequest{Points: []sdk.Point{p}}); err != nil {
		t.Fatalf("Write queues without waiting for InfluxDB: %v", err)
	}
	err = m.Flush(ctx)
	if sdk.CodeOf(err) != sdk.CodeFailedPrecondition || !strings.Contains(err.Error(), "dropped") {
		t.Errorf("Flush into a missing database: got %v (code %v), want FailedPrecondition, points dropped", err, sdk.CodeOf(err))
	}
	// Reported once: the next Flush has nothing left to say.
	if err := m.Flush(ctx); err != nil {
		t.Errorf("second Flush: %v", err)
	}
}

func testRefusedPoints(t *testing.T, srv *influxtest.Server) {
	c := inProcess(t, srv, nil)
	m := monitor(t, c)
	ctx := callCtx(t)
	now := time.Now()
	cases := map[string]sdk.Point{
		"NaN":               {Metric: "cpu", Value: nanValue(), Time: now},
		"backslash":         {Metric: "cpu", Tags: map[string]string{"k": `a\`}, Value: 1, Time: now},
		"newline in tag":    {Metric: "cpu", Tags: map[string]string{"k": "a\nb"}, Value: 1, Time: now},
		"reserved tag key":  {Metric: "cpu", Tags: map[string]string{"_field": "x"}, Value: 1, Time: now},
		"empty tag value":   {Metric: "cpu", Tags: map[string]string{"k": ""}, Value: 1, Time: now},
		"comment metric":    {Metric: "#cpu", Value: 1, Time: now},
		"time out of range": {Metric: "cpu", Value: 1, Time: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for name, p := range cases {
		err := m.Write(ctx, sdk.WriteRequest{Points: []sdk.Point{p}})
		if sdk.CodeOf(err) != sdk.CodeInvalidArgument || !strings.Contains(err.Error(), "point 0") {
			t.Errorf("%s: got %v (code %v), want InvalidArgument naming point 0", name, err, sdk.CodeOf(err))
		}
	}
}

func testOddQueryValues(t *testing.T, srv *influxtest.Server) {
	c := inProcess(t, srv, nil)
	m := monitor(t, c)
	// Values that cannot be stored may still be asked for: every byte must reach Flux
	// as data, and the answer is simply empty.
	for _, v := range []string{"a\nb", "tab\there", "bell\x07", `back\slash`, `trailing\`, `"`, `\"`, "${", "$"} {
		got, err := m.Query(callCtx(t), sdk.Query{Metric: "cpu", Tags: map[string]string{"k\"": v}})
		if err != nil || len(got) != 0 {
			t.Errorf("Query with tag value %q: %d points, error %v; want none and no error", v, len(got), err)
		}
	}
}

func nanValue() float64 {
	var zero float64
	return zero / zero
}

func testQueueFull(t *testing.T, srv *influxtest.Server) {
	c := inProcess(t, srv, map[string]any{"queue_size": 100, "batch_size": 100, "flush_interval_ms": 60000})
	m := monitor(t, c)
	ctx := callCtx(t)
	points := make([]sdk.Point, 101)
	// Recent times: InfluxDB refuses points older than the retention (30 days).
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := range points {
		points[i] = sdk.Point{Metric: "queue_full", Value: float64(i), Time: base.Add(time.Duration(i) * time.Second)}
	}
	if err := m.Write(ctx, sdk.WriteRequest{Points: points}); sdk.CodeOf(err) != sdk.CodeResourceExhausted {
		t.Fatalf("Write beyond queue_size: got %v (code %v), want ResourceExhausted", err, sdk.CodeOf(err))
	}
	if err := m.Write(ctx, sdk.WriteRequest{Points: points[:100]}); err != nil {
		t.Fatalf("Write up to queue_size: %v", err)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// testWriteErrorSurfaces stops InfluxDB under a configured plugin: the failure of the
// background write must come back on the next Flush and Write, the points must stay
// queued while the retry time lasts, and reach InfluxDB once it is back.
func testWriteErrorSurfaces(t *testing.T, srv *influxtest.Server) {
	c := inProcess(t, srv, map[string]any{"database": "necos_outage", "max_retry_time_ms": 120000, "timeout_ms": 2000})
	m := monitor(t, c)
	ctx := callCtx(t)
	node := map[string]string{sdk.TagResourceID: "node-1"}
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	point := func(i int) sdk.Point {
		return sdk.Point{Metric: "cpu", Tags: node, Value: float64(i), Time: at.Add(time.Duration(i) * time.Second)}
	}
	if err := m.Write(ctx, sdk.WriteRequest{Points: []sdk.Point{point(0)}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	if err := m.Health(ctx); sdk.CodeOf(err) != sdk.CodeUnavailable {
		t.Errorf("Health with InfluxDB stopped: got %v, want Unavailable", err)
	}
	// Write still returns at once: the failure happens in the background.
	if err := m.Write(ctx, sdk.WriteRequest{Points: []sdk.Point{point(1), point(2)}}); err != nil {
		t.Fatalf("Write with InfluxDB stopped: %v (want it queued)", err)
	}
	err := m.Flush(ctx)
	if sdk.CodeOf(err) != sdk.CodeUnavailable || !strings.Contains(err.Error(), "retrying") {
		t.Fatalf("Flush with InfluxDB stopped: got %v (code %v), want Unavailable, retrying", err, sdk.CodeOf(err))
	}
	t.Logf("Flush: %v", err)
	// Without Flush, a later Write reports the failure, and refuses its points.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = m.Write(ctx, sdk.WriteRequest{Points: []sdk.Point{point(3)}})
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if sdk.CodeOf(err) != sdk.CodeUnavailable || !strings.Contains(err.Error(), "not queued") {
		t.Fatalf("Write after a failed background write: got %v (code %v), want Unavailable, not queued", err, sdk.CodeOf(err))
	}
	t.Logf("Write: %v", err)

	srv.Restart(t)
	if err := m.Health(ctx); err != nil {
		t.Fatalf("Health after restart: %v", err)
	}
	// Retried as a caller would: a refused call is made again. Until the sender's next
	// attempt (it backs off up to 5 s) the queued points are still undelivered, and a
	// Write may still say so.
	for {
		err := m.Write(ctx, sdk.WriteRequest{Points: []sdk.Point{point(3)}})
		if err == nil {
			break
		}
		if sdk.CodeOf(err) != sdk.CodeUnavailable {
			t.Fatalf("Write after restart: %v", err)
		}
		t.Logf("Write while the retry backs off: %v", err)
		time.Sleep(200 * time.Millisecond)
	}
	for {
		err := m.Flush(ctx)
		if err == nil {
			break
		}
		if sdk.CodeOf(err) != sdk.CodeUnavailable {
			t.Fatalf("Flush after restart: %v", err)
		}
		t.Logf("Flush while the retry backs off: %v", err)
	}
	got, err := m.Query(ctx, sdk.Query{Metric: "cpu", Tags: node})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("after the outage: %d points stored, want 4 (the queued ones delivered): %v", len(got), got)
	}
}
