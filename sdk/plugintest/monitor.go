package plugintest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// MonitorOptions tunes [RunMonitor] to what the backend behind a Monitor plugin can do.
type MonitorOptions struct {
	// Precision is the time resolution the plugin stores points at, as configured; times
	// read back are compared with the written ones truncated to it. Zero means a
	// nanosecond.
	Precision time.Duration
	// BatchPoints is how many points the large-batch check writes in one call; zero
	// means 10000 (about 1.7 MB on the wire, well inside gRPC's default 4 MB message).
	BatchPoints int
}

// RunMonitor checks that the Monitor served by client keeps the contract of
// [sdk.Monitor]:
//
//   - a point is identified by its metric, tags and time; its value, tags and time (at
//     the backend's precision) are read back after Flush, and writing it again
//     replaces its value;
//   - Query returns the points of each series (one tag set) oldest first; Last=N keeps
//     the last N points of each series; Start is inclusive and End exclusive; Tags
//     keeps the series holding all of those tag values, compared exactly, whatever
//     characters they contain;
//   - Write takes large and concurrent batches, and Flush makes all of them visible;
//   - Health answers; malformed calls get [sdk.CodeInvalidArgument] and leave the
//     plugin working.
//
// Every run writes under metric names and tag values of its own, so runs against one
// long-lived backend do not see each other's points.
func RunMonitor(t *testing.T, client *sdk.Client, opts MonitorOptions) {
	t.Helper()
	if opts.Precision <= 0 {
		opts.Precision = time.Nanosecond
	}
	if opts.BatchPoints <= 0 {
		opts.BatchPoints = 10000
	}
	m, err := client.Monitor()
	if err != nil {
		t.Fatalf("monitor client: %v", err)
	}
	s := &monitorSuite{m: m, opts: opts, run: monitorRandomID()}
	// Points sit about an hour in the past, on whole seconds plus a sub-second part (see
	// at): clear of the present, so clock skew with the backend does not matter.
	s.base = time.Now().UTC().Add(-time.Hour).Truncate(time.Second)

	t.Run("Health", s.health)
	t.Run("WriteFlushQuery", s.writeFlushQuery)
	t.Run("Rewrite", s.rewrite)
	t.Run("Last", s.last)
	t.Run("TimeWindow", s.timeWindow)
	t.Run("TagFilter", s.tagFilter)
	t.Run("SpecialCharacters", s.specialCharacters)
	t.Run("LargeBatch", s.largeBatch)
	t.Run("ConcurrentWrites", s.concurrentWrites)
	t.Run("InvalidArguments", s.invalidArguments)
}

type monitorSuite struct {
	m    sdk.Monitor
	opts MonitorOptions
	run  string
	base time.Time
}

func monitorRandomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// metric returns a metric name unique to this run and check.
func (s *monitorSuite) metric(name string) string {
	return "conformance_" + s.run + "_" + name
}

// tags returns the tags of one node of this run, as the core writes them.
func (s *monitorSuite) tags(node, slice string) map[string]string {
	return map[string]string{
		sdk.TagResourceID: node + "-" + s.run,
		sdk.TagSlice:      slice + "-" + s.run,
		sdk.TagPart:       "part-" + slice,
		"run":             s.run,
	}
}

// at returns the i-th time of a series: a second apart, each with a sub-second part
// (123456789 ns) of which a backend storing coarser times keeps only what it can.
func (s *monitorSuite) at(i int) time.Time {
	return s.base.Add(time.Duration(i)*time.Second + 123456789*time.Nanosecond)
}

func (s *monitorSuite) write(t *testing.T, points []sdk.Point) {
	t.Helper()
	if err := s.m.Write(ctx(t), sdk.WriteRequest{Points: points}); err != nil {
		t.Fatalf("Write(%d points): %v", len(points), err)
	}
}

func (s *monitorSuite) flush(t *testing.T) {
	t.Helper()
	if err := s.m.Flush(ctx(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func (s *monitorSuite) query(t *testing.T, q sdk.Query) []sdk.Point {
	t.Helper()
	got, err := s.m.Query(ctx(t), q)
	if err != nil {
		t.Fatalf("Query(%s): %v", monitorDescribeQuery(q), err)
	}
	monitorCheckOldestFirst(t, q, got)
	return got
}

func (s *monitorSuite) health(t *testing.T) {
	if err := s.m.Health(ctx(t)); err != nil {
		t.Fatalf("Health: %v", err)
	}
}

func (s *monitorSuite) writeFlushQuery(t *testing.T) {
	metric := s.metric("roundtrip")
	values := []float64{0, -1.5, 42, 3.141592653589793, 1e-9, -2.5e12, 0.1 + 0.2}
	var want []sdk.Point
	for _, node := range []string{"node-a", "node-b"} {
		tags := s.tags(node, "slice-1")
		tags[sdk.TagNodeType] = "worker"
		for i, v := range values {
			want = append(want, sdk.Point{Metric: metric, Tags: tags, Value: v, Time: s.at(i)})
		}
	}
	// Newest first, so the backend, not the order of writing, must sort.
	rev := append([]sdk.Point(nil), want...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	s.write(t, rev)
	s.flush(t)
	got := s.query(t, sdk.Query{Metric: metric})
	s.samePoints(t, "all points", got, want)

	// A metric nobody wrote is no error: there is nothing to read yet.
	if got := s.query(t, sdk.Query{Metric: s.metric("never_written")}); len(got) != 0 {
		t.Errorf("Query of a metric never written: got %d points, want none", len(got))
	}
	// Flush with nothing queued returns at once.
	s.flush(t)
}

func (s *monitorSuite) rewrite(t *testing.T) {
	metric := s.metric("rewrite")
	tags := s.tags("node-a", "slice-1")
	p := sdk.Point{Metric: metric, Tags: tags, Value: 1, Time: s.at(0)}
	s.write(t, []sdk.Point{p})
	s.flush(t)
	// A retried Write must not duplicate: the same metric, tags and time is the same point.
	p.Value = 2
	s.write(t, []sdk.Point{p})
	s.write(t, []sdk.Point{p})
	s.flush(t)
	s.samePoints(t, "rewritten point", s.query(t, sdk.Query{Metric: metric}), []sdk.Point{p})
}

func (s *monitorSuite) last(t *testing.T) {
	metric := s.metric("last")
	var all []sdk.Point
	series := []map[string]string{
		s.tags("node-a", "slice-1"), s.tags("node-b", "slice-1"), s.tags("node-c", "slice-2"),
	}
	for k, tags := range series {
		for i := range 10 - k { // series of 10, 9 and 8 points
			all = append(all, sdk.Point{Metric: metric, Tags: tags, Value: float64(100*k + i), Time: s.at(i)})
		}
	}
	// Interleave the series and scramble the times within the write.
	scrambled := append([]sdk.Point(nil), all...)
	mrand.New(mrand.NewPCG(1, 2)).Shuffle(len(scrambled), func(i, j int) {
		scrambled[i], scrambled[j] = scrambled[j], scrambled[i]
	})
	s.write(t, scrambled)
	s.flush(t)

	lastOf := func(n int, tags map[string]string) []sdk.Point {
		var out []sdk.Point
		for _, p := range all {
			if monitorTagsMatch(p.Tags, tags) {
				out = append(out, p)
			}
		}
		if len(out) > n {
			out = out[len(out)-n:]
		}
		return out
	}
	var want []sdk.Point
	for _, tags := range series {
		want = append(want, lastOf(3, tags)...)
	}
	s.samePoints(t, "Last=3 of every series", s.query(t, sdk.Query{Metric: metric, Last: 3}), want)

	node := map[string]string{sdk.TagResourceID: series[1][sdk.TagResourceID]}
	s.samePoints(t, "Last=1 of one node", s.query(t, sdk.Query{Metric: metric, Last: 1, Tags: node}), lastOf(1, series[1]))
	s.samePoints(t, "Last beyond the series' length", s.query(t, sdk.Query{Metric: metric, Last: 50, Tags: node}),
		lastOf(50, series[1]))
}

func (s *monitorSuite) timeWindow(t *testing.T) {
	metric := s.metric("window")
	tags := s.tags("node-a", "slice-1")
	var all []sdk.Point
	for i := range 10 {
		all = append(all, sdk.Point{Metric: metric, Tags: tags, Value: float64(i), Time: s.at(i)})
	}
	s.write(t, all)
	s.flush(t)
	// Bounds on the stored times exactly, so inclusiveness is what is checked.
	stored := func(i int) time.Time { return s.at(i).Truncate(s.opts.Precision) }
	cases := []struct {
		name string
		q    sdk.Query
		want []sdk.Point
	}{
		{"Start inclusive, End exclusive", sdk.Query{Start: stored(3), End: stored(7)}, all[3:7]},
		{"Start only", sdk.Query{Start: stored(3)}, all[3:]},
		{"End only", sdk.Query{End: stored(7)}, all[:7]},
		{"between points", sdk.Query{Start: stored(3).Add(time.Nanosecond), End: stored(4).Add(time.Nanosecond)}, all[4:5]},
		{"window and Last", sdk.Query{Start: stored(3), End: stored(7), Last: 2}, all[5:7]},
		{"window before every point", sdk.Query{Start: stored(0).Add(-time.Hour), End: stored(0)}, nil},
		{"window after every point", sdk.Query{Start: stored(9).Add(time.Nanosecond), End: stored(9).Add(time.Hour)}, nil},
	}
	for _, c := range cases {
		q := c.q
		q.Metric = metric
		s.samePoints(t, c.name, s.query(t, q), c.want)
	}
}

func (s *monitorSuite) tagFilter(t *testing.T) {
	metric := s.metric("tags")
	a1, b1, c2 := s.tags("node-a", "slice-1"), s.tags("node-b", "slice-1"), s.tags("node-c", "slice-2")
	var all []sdk.Point
	for k, tags := range []map[string]string{a1, b1, c2} {
		for i := range 3 {
			all = append(all, sdk.Point{Metric: metric, Tags: tags, Value: float64(10*k + i), Time: s.at(i)})
		}
	}
	s.write(t, all)
	s.flush(t)
	pick := func(sets ...map[string]string) []sdk.Point {
		var out []sdk.Point
		for _, p := range all {
			for _, tags := range sets {
				if monitorTagsMatch(p.Tags, tags) {
					out = append(out, p)
					break
				}
			}
		}
		return out
	}
	cases := []struct {
		name string
		tags map[string]string
		want []sdk.Point
	}{
		{"one node", map[string]string{sdk.TagResourceID: a1[sdk.TagResourceID]}, pick(a1)},
		{"one slice", map[string]string{sdk.TagSlice: b1[sdk.TagSlice]}, pick(a1, b1)},
		{"slice and node", map[string]string{sdk.TagSlice: c2[sdk.TagSlice], sdk.TagResourceID: c2[sdk.TagResourceID]}, pick(c2)},
		{"no series has both", map[string]string{sdk.TagSlice: c2[sdk.TagSlice], sdk.TagResourceID: a1[sdk.TagResourceID]}, nil},
		{"unknown value", map[string]string{sdk.TagResourceID: "no-such-node-" + s.run}, nil},
		{"unknown key", map[string]string{"no_such_tag": "x"}, nil},
		{"empty filter", map[string]string{}, all},
	}
	for _, c := range cases {
		s.samePoints(t, c.name, s.query(t, sdk.Query{Metric: metric, Tags: c.tags}), c.want)
	}
}

// specialCharacters checks that tag values are data, never syntax: a backend that builds
// query text must escape them.
func (s *monitorSuite) specialCharacters(t *testing.T) {
	metric := s.metric("special")
	values := []string{
		`quote"d`, `single'quote`, "space and, comma=equals", `paren) or (true`,
		"${interpolation}", "costs $5 & 100%", "São Carlos — Ελλάδα", `r["ResourceID"] != ""`, `semi;colon|pipe`,
	}
	var all []sdk.Point
	for i, v := range values {
		tags := s.tags("node-"+fmt.Sprint(i), "slice-1")
		tags["site"] = v
		all = append(all, sdk.Point{Metric: metric, Tags: tags, Value: float64(i), Time: s.at(i)})
	}
	s.write(t, all)
	s.flush(t)
	s.samePoints(t, "every value read back", s.query(t, sdk.Query{Metric: metric}), all)
	for i, v := range values {
		s.samePoints(t, fmt.Sprintf("filter site=%q", v), s.query(t, sdk.Query{Metric: metric, Tags: map[string]string{"site": v}}), all[i:i+1])
	}
	// Values built to break out of a quoted string must match nothing.
	for _, probe := range []string{`x" or true or "`, `x") or (true`, `\" or true or \"`, `quote\"d`, "quote\"d\\", `${"x"}`} {
		if got := s.query(t, sdk.Query{Metric: metric, Tags: map[string]string{"site": probe}}); len(got) != 0 {
			t.Errorf("filter site=%q: got %d points, want none (tag values must not be query syntax)", probe, len(got))
		}
	}
}

func (s *monitorSuite) largeBatch(t *testing.T) {
	metric := s.metric("batch")
	n := s.opts.BatchPoints
	nodes := 10
	// Points of one node must not share a stored time, or they would replace each other.
	step := max(s.opts.Precision*time.Duration(nodes), time.Millisecond)
	points := make([]sdk.Point, 0, n)
	for i := range n {
		points = append(points, sdk.Point{
			Metric: metric, Tags: s.tags(fmt.Sprintf("node-%d", i%nodes), "slice-1"),
			Value: float64(i), Time: s.base.Add(-time.Duration(n-i) * step),
		})
	}
	// One call with every point, then the same points again in small calls: both
	// shapes must be taken whole (the second rewrites the first).
	s.write(t, points)
	for i := 0; i < n; i += 500 {
		s.write(t, points[i:min(i+500, n)])
	}
	s.flush(t)
	got := s.query(t, sdk.Query{Metric: metric})
	if len(got) != n {
		t.Fatalf("read back %d points, want %d", len(got), n)
	}
	s.samePoints(t, "batch", got, points)
	last := s.query(t, sdk.Query{Metric: metric, Last: 1})
	if len(last) != nodes {
		t.Errorf("Last=1 over %d nodes: got %d points", nodes, len(last))
	}
}

func (s *monitorSuite) concurrentWrites(t *testing.T) {
	metric := s.metric("concurrent")
	const writers, each = 8, 250
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	var want []sdk.Point
	var mu sync.Mutex
	c := ctx(t)
	for w := range writers {
		tags := s.tags(fmt.Sprintf("node-%d", w), "slice-1")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := sdk.Point{Metric: metric, Tags: tags, Value: float64(i), Time: s.at(i)}
				if err := s.m.Write(c, sdk.WriteRequest{Points: []sdk.Point{p}}); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				mu.Lock()
				want = append(want, p)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.flush(t)
	s.samePoints(t, "points of concurrent writers", s.query(t, sdk.Query{Metric: metric}), want)
}

func (s *monitorSuite) invalidArguments(t *testing.T) {
	good := sdk.Point{Metric: s.metric("invalid"), Tags: s.tags("node-a", "slice-1"), Value: 1, Time: s.at(0)}
	bad := good
	bad.Metric = ""
	writes := []struct {
		name   string
		points []sdk.Point
	}{
		{"empty metric", []sdk.Point{good, bad}},
		{"empty tag key", []sdk.Point{{Metric: good.Metric, Tags: map[string]string{"": "x"}, Value: 1, Time: good.Time}}},
	}
	for _, w := range writes {
		err := s.m.Write(ctx(t), sdk.WriteRequest{Points: w.points})
		if code := sdk.CodeOf(err); code != sdk.CodeInvalidArgument {
			t.Errorf("Write with %s: got %v (code %v), want %v", w.name, err, code, sdk.CodeInvalidArgument)
		}
	}
	queries := []struct {
		name string
		q    sdk.Query
	}{
		{"empty metric", sdk.Query{}},
		{"empty metric with tags", sdk.Query{Tags: good.Tags, Last: 1}},
		{"negative Last", sdk.Query{Metric: good.Metric, Last: -1}},
		{"End before Start", sdk.Query{Metric: good.Metric, Start: s.at(5), End: s.at(1)}},
	}
	for _, c := range queries {
		_, err := s.m.Query(ctx(t), c.q)
		if code := sdk.CodeOf(err); code != sdk.CodeInvalidArgument {
			t.Errorf("Query with %s: got %v (code %v), want %v", c.name, err, code, sdk.CodeInvalidArgument)
		}
	}
	// A refused call queued nothing and broke nothing: the good point of the refused
	// batch is absent, and a later good write goes through.
	s.flush(t)
	if got := s.query(t, sdk.Query{Metric: good.Metric}); len(got) != 0 {
		t.Errorf("after refused writes: %d points stored, want none", len(got))
	}
	s.write(t, []sdk.Point{good})
	s.flush(t)
	s.samePoints(t, "after refused calls", s.query(t, sdk.Query{Metric: good.Metric}), []sdk.Point{good})
}

// samePoints compares got and want as sets of points, times truncated to the backend's
// precision.
func (s *monitorSuite) samePoints(t *testing.T, what string, got, want []sdk.Point) {
	t.Helper()
	norm := func(ps []sdk.Point) []string {
		out := make([]string, 0, len(ps))
		for _, p := range ps {
			out = append(out, fmt.Sprintf("%s{%s} %s = %v", p.Metric, monitorTagString(p.Tags),
				p.Time.Truncate(s.opts.Precision).UTC().Format(time.RFC3339Nano), p.Value))
		}
		sort.Strings(out)
		return out
	}
	g, w := norm(got), norm(want)
	if strings.Join(g, "\n") == strings.Join(w, "\n") {
		return
	}
	missing, extra := monitorMissing(w, g), monitorMissing(g, w)
	t.Errorf("%s: got %d points, want %d\nmissing (%d): %s\nunexpected (%d): %s", what, len(got), len(want),
		len(missing), monitorHead(missing), len(extra), monitorHead(extra))
}

// monitorCheckOldestFirst checks that the points of every series come oldest first.
func monitorCheckOldestFirst(t *testing.T, q sdk.Query, got []sdk.Point) {
	t.Helper()
	last := map[string]time.Time{}
	for i, p := range got {
		key := monitorTagString(p.Tags)
		if prev, ok := last[key]; ok && !p.Time.After(prev) {
			t.Errorf("Query(%s): point %d of series {%s} at %s is not after the previous one at %s (want oldest first)",
				monitorDescribeQuery(q), i, key, p.Time.Format(time.RFC3339Nano), prev.Format(time.RFC3339Nano))
			return
		}
		last[key] = p.Time
		if p.Metric != q.Metric {
			t.Errorf("Query(%s): point %d has metric %q", monitorDescribeQuery(q), i, p.Metric)
			return
		}
	}
}

func monitorTagsMatch(tags, filter map[string]string) bool {
	for k, v := range filter {
		if tags[k] != v {
			return false
		}
	}
	return true
}

func monitorTagString(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%q=%q", k, tags[k]))
	}
	return strings.Join(parts, ",")
}

func monitorDescribeQuery(q sdk.Query) string {
	var b strings.Builder
	fmt.Fprintf(&b, "metric=%q", q.Metric)
	if len(q.Tags) > 0 {
		fmt.Fprintf(&b, " tags={%s}", monitorTagString(q.Tags))
	}
	if q.Last != 0 {
		fmt.Fprintf(&b, " last=%d", q.Last)
	}
	if !q.Start.IsZero() {
		fmt.Fprintf(&b, " start=%s", q.Start.UTC().Format(time.RFC3339Nano))
	}
	if !q.End.IsZero() {
		fmt.Fprintf(&b, " end=%s", q.End.UTC().Format(time.RFC3339Nano))
	}
	return b.String()
}

// monitorMissing returns the lines of a missing from b (both sorted).
func monitorMissing(a, b []string) []string {
	var out []string
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			j++
			continue
		}
		out = append(out, x)
	}
	return out
}

func monitorHead(lines []string) string {
	const max = 5
	if len(lines) == 0 {
		return "none"
	}
	more := ""
	if len(lines) > max {
		more = fmt.Sprintf("\n  ... and %d more", len(lines)-max)
		lines = lines[:max]
	}
	return "\n  " + strings.Join(lines, "\n  ") + more
}
