package monitoring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"sort"
	"strings"
	"time"

	protocol "github.com/influxdata/line-protocol"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/sdk"
)

// Pushed points carry TagSource = SourcePush unless they name a source themselves: the
// series a probe pushes for a node then stays apart from the one the collector measures
// for it, and the elasticity engine judges each series on its own.
const (
	TagSource  = "source"
	SourcePush = "push"
)

// MaxPushPoints bounds the points of one Push.
const MaxPushPoints = 10 * sdk.MaxWritePoints

// maxProblems bounds the problems reported for one document.
const maxProblems = 20

// problems collects what is wrong with pushed points, reported together as a
// *spec.Error (the API answers it with 400 and every problem).
type problems struct{ list []spec.FieldError }

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, spec.FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	e := &spec.Error{Problems: p.list}
	if len(e.Problems) > maxProblems {
		e.Omitted = len(e.Problems) - maxProblems
		e.Problems = e.Problems[:maxProblems]
	}
	return e
}

// Push stores points a tenant or a probe inside a slice sends, and returns once they
// are stored (so that the next evaluation of a policy sees them). Every point goes to
// sliceID: a point naming another slice is refused, as is one naming a part the slice
// does not have, or a ResourceID that is not one of its nodes (of that part, when a
// part is named). A point naming only its node gets the node's part and node-type; a
// point without time is stamped now; points carry source=push unless they say
// otherwise. Problems are reported all at once in a *spec.Error, each naming the point
// and field ("points[2].tags.part"), and nothing is stored then.
func (c *Collector) Push(ctx context.Context, sliceID string, points []sdk.Point) (int, error) {
	mon, err := c.monitor(ctx)
	if err != nil {
		return 0, fmt.Errorf("push metrics to %s: %w", sliceID, err)
	}
	if mon == nil {
		return 0, providers.ErrNoMonitor
	}
	var pr problems
	switch {
	case len(points) == 0:
		pr.add("points", "no points")
	case len(points) > MaxPushPoints:
		pr.add("points", "at most %d points per request, got %d", MaxPushPoints, len(points))
	}
	if err := pr.err(); err != nil {
		return 0, err
	}
	parts, err := c.opts.Store.ListParts(ctx, sliceID)
	if err != nil {
		return 0, fmt.Errorf("push metrics to %s: %w", sliceID, err)
	}
	partNames, nodes := sliceNodes(parts)
	now := time.Now()
	out := make([]sdk.Point, len(points))
	for i, p := range points {
		at := fmt.Sprintf("points[%d]", i)
		tags := make(map[string]string, len(p.Tags)+4)
		for k, v := range p.Tags {
			tags[k] = v
		}
		if p.Metric == "" {
			pr.add(at+".metric", "required: the metric's name, e.g. PERCENT_CPU_UTILIZATION")
		}
		if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
			pr.add(at+".value", "must be a finite number, got %v", p.Value)
		}
		for k, v := range tags {
			if k == "" {
				pr.add(at+".tags", "empty tag key")
			} else if v == "" {
				pr.add(at+".tags."+k, "empty value")
			}
		}
		if s, ok := tags[sdk.TagSlice]; ok && s != sliceID {
			pr.add(at+".tags."+sdk.TagSlice, "points go to their own slice %s only, got %q", sliceID, s)
		}
		tags[sdk.TagSlice] = sliceID
		part, hasPart := tags[sdk.TagPart]
		if hasPart && part != "" && !partNames[part] {
			pr.add(at+".tags."+sdk.TagPart, "slice %s has no part %q (has %s)", sliceID, part, joinNames(partNames))
		}
		if node, ok := tags[sdk.TagResourceID]; ok && node != "" {
			var found []nodeInfo
			for _, n := range nodes[node] {
				if !hasPart || n.part == part {
					found = append(found, n)
				}
			}
			switch {
			case len(found) == 0 && hasPart:
				pr.add(at+".tags."+sdk.TagResourceID, "part %s has no node %q", part, node)
			case len(found) == 0:
				pr.add(at+".tags."+sdk.TagResourceID, "slice %s has no node %q", sliceID, node)
			case len(found) > 1:
				inParts := map[string]bool{}
				for _, n := range found {
					inParts[n.part] = true
				}
				pr.add(at+".tags."+sdk.TagPart, "required: node %s is in parts %s", node, joinNames(inParts))
			default:
				n := found[0]
				tags[sdk.TagPart] = n.part
				if t, ok := tags[sdk.TagNodeType]; ok && n.nodeType != "" && t != n.nodeType {
					pr.add(at+".tags."+sdk.TagNodeType, "node %s is a %s, got %q", node, n.nodeType, t)
				}
				if n.nodeType != "" {
					tags[sdk.TagNodeType] = n.nodeType
				}
			}
		}
		if _, ok := tags[TagSource]; !ok {
			tags[TagSource] = SourcePush
		}
		t := p.Time
		if t.IsZero() {
			t = now
		}
		out[i] = sdk.Point{Metric: p.Metric, Tags: tags, Value: p.Value, Time: t}
	}
	if err := pr.err(); err != nil {
		return 0, err
	}
	for rest := out; len(rest) > 0; {
		n := min(len(rest), sdk.MaxWritePoints)
		if err := mon.Write(ctx, sdk.WriteRequest{Points: rest[:n]}); err != nil {
			if sdk.CodeOf(err) == sdk.CodeInvalidArgument {
				// The monitor's own rules (reserved tag keys, characters it cannot store).
				return 0, &spec.Error{Problems: []spec.FieldError{{Path: "points", Message: err.Error()}}}
			}
			return 0, fmt.Errorf("push metrics to %s: %w", sliceID, err)
		}
		rest = rest[n:]
	}
	if err := mon.Flush(ctx); err != nil {
		return 0, fmt.Errorf("push metrics to %s: flush: %w", sliceID, err)
	}
	if c.opts.OnStored != nil {
		c.opts.OnStored(sliceID)
	}
	return len(out), nil
}

// Body formats ParsePoints reads.
const (
	ContentLineProtocol = "text/plain"
	ContentJSON         = "application/json"
)

// ParsePoints reads a pushed body by its content type: InfluxDB line protocol for
// text/plain (or an empty type), JSON for application/json. precision is the unit of
// line protocol timestamps ("ns", "us", "ms", "s"; empty is ns). Points without time get
// now.
func ParsePoints(contentType, precision string, body []byte, now time.Time) ([]sdk.Point, error) {
	mt := ""
	if contentType != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return nil, &spec.Error{Problems: []spec.FieldError{{Path: "Content-Type", Message: err.Error()}}}
		}
	}
	switch mt {
	case "", ContentLineProtocol:
		unit, ok := precisions[precision]
		if !ok {
			return nil, &spec.Error{Problems: []spec.FieldError{{Path: "precision", Message: fmt.Sprintf("must be ns, us, ms or s, got %q", precision)}}}
		}
		return ParseLineProtocol(body, unit, now)
	case ContentJSON:
		return ParseJSON(body, now)
	}
	return nil, &spec.Error{Problems: []spec.FieldError{{Path: "Content-Type",
		Message: fmt.Sprintf("must be %s (line protocol) or %s, got %q", ContentLineProtocol, ContentJSON, mt)}}}
}

var precisions = map[string]time.Duration{"": time.Nanosecond, "ns": time.Nanosecond, "us": time.Microsecond,
	"ms": time.Millisecond, "s": time.Second}

// ParseLineProtocol reads points in InfluxDB line protocol, one per line:
//
//	PERCENT_CPU_UTILIZATION,ResourceID=k8s-node-1 value=93.5 1700000000000000000
//
// The measurement is the metric and the tags are the point's tags. The value is the
// field "value", or the only field of the line; integers and floats are read, other
// field types refused. Timestamps are in units of precision; a line without one gets
// now. Blank lines and # comments are skipped. Every bad line is reported, by number.
func ParseLineProtocol(data []byte, precision time.Duration, now time.Time) ([]sdk.Point, error) {
	h := protocol.NewMetricHandler()
	h.SetTimePrecision(precision)
	h.SetTimeFunc(func() time.Time { return now })
	parser := protocol.NewParser(h)
	var pr problems
	var out []sdk.Point
	for i, line := range bytes.Split(data, []byte("\n")) {
		at := fmt.Sprintf("line %d", i+1)
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		ms, err := parser.Parse(line)
		if err != nil {
			msg := err.Error()
			if pe, ok := err.(*protocol.ParseError); ok {
				msg = fmt.Sprintf("column %d: %s", pe.Column, strings.TrimPrefix(strings.SplitN(pe.Error(), " at ", 2)[0], "metric parse error: "))
			}
			pr.add(at, "%s", msg)
			continue
		}
		for _, m := range ms {
			fields := map[string]any{}
			for _, f := range m.FieldList() {
				fields[f.Key] = f.Value
			}
			v, why := lineValue(fields)
			if why != "" {
				pr.add(at, "%s", why)
				continue
			}
			tags := map[string]string{}
			for _, t := range m.TagList() {
				tags[t.Key] = t.Value
			}
			out = append(out, sdk.Point{Metric: m.Name(), Tags: tags, Value: v, Time: m.Time()})
		}
		if len(pr.list) > maxProblems {
			break
		}
	}
	if err := pr.err(); err != nil {
		return nil, err
	}
	return out, nil
}

func lineValue(fields map[string]any) (float64, string) {
	raw, ok := fields["value"]
	if !ok {
		if len(fields) != 1 {
			names := make([]string, 0, len(fields))
			for k := range fields {
				names = append(names, k)
			}
			sort.Strings(names)
			return 0, fmt.Sprintf("needs a field \"value\" or a single field, got %s", strings.Join(names, ", "))
		}
		for _, f := range fields {
			raw = f
		}
	}
	switch v := raw.(type) {
	case float64:
		return v, ""
	case int64:
		return float64(v), ""
	case uint64:
		return float64(v), ""
	}
	return 0, fmt.Sprintf("value must be a number, got %T", raw)
}

// jsonPoint is one point of a JSON push. part, node and node-type are shorthands for
// the tags part, ResourceID and node-type.
type jsonPoint struct {
	Metric   string            `json:"metric"`
	Tags     map[string]string `json:"tags"`
	Part     string            `json:"part"`
	Node     string            `json:"node"`
	NodeType string            `json:"node-type"`
	Value    *float64          `json:"value"`
	Time     *time.Time        `json:"time"`
}

// ParseJSON reads pushed points as JSON: {"points": [...]}, a list of points, or one
// point, each
//
//	{"metric": "PERCENT_CPU_UTILIZATION", "node": "k8s-node-1", "value": 93.5,
//	 "time": "2026-01-02T15:04:05Z", "tags": {"part": "dc-slice2"}}
//
// where node, part and node-type are shorthands for the tags ResourceID, part and
// node-type, and a point without time gets now. Unknown keys are refused.
func ParseJSON(data []byte, now time.Time) ([]sdk.Point, error) {
	data = bytes.TrimSpace(data)
	var raw []json.RawMessage
	prefix := "points"
	switch {
	case len(data) > 0 && data[0] == '[':
		if err := json.Unmarshal(data, &raw); err != nil {
			return nil, &spec.Error{Problems: []spec.FieldError{{Message: "not a JSON list of points: " + err.Error()}}}
		}
	default:
		var doc struct {
			Points []json.RawMessage `json:"points"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, &spec.Error{Problems: []spec.FieldError{{Message: "not JSON: " + err.Error()}}}
		}
		if doc.Points != nil {
			raw = doc.Points
		} else {
			raw, prefix = []json.RawMessage{data}, ""
		}
	}
	var pr problems
	out := make([]sdk.Point, 0, len(raw))
	for i, r := range raw {
		at := fmt.Sprintf("%s[%d]", prefix, i)
		if prefix == "" {
			at = ""
		}
		field := func(f string) string {
			if at == "" {
				return f
			}
			return at + "." + f
		}
		var jp jsonPoint
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&jp); err != nil {
			pr.add(at, "%s", strings.TrimPrefix(err.Error(), "json: "))
			continue
		}
		if jp.Value == nil {
			pr.add(field("value"), "required: a number")
			continue
		}
		tags := make(map[string]string, len(jp.Tags)+3)
		for k, v := range jp.Tags {
			tags[k] = v
		}
		for _, sh := range []struct{ key, tag, v string }{{"part", sdk.TagPart, jp.Part}, {"node", sdk.TagResourceID, jp.Node}, {"node-type", sdk.TagNodeType, jp.NodeType}} {
			if sh.v == "" {
				continue
			}
			if t, ok := tags[sh.tag]; ok && t != sh.v {
				pr.add(field(sh.key), "%q contradicts tags.%s %q", sh.v, sh.tag, t)
			}
			tags[sh.tag] = sh.v
		}
		p := sdk.Point{Metric: jp.Metric, Tags: tags, Value: *jp.Value, Time: now}
		if jp.Time != nil {
			p.Time = *jp.Time
		}
		out = append(out, p)
		if len(pr.list) > maxProblems {
			break
		}
	}
	if err := pr.err(); err != nil {
		return nil, err
	}
	return out, nil
}
