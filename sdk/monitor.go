package sdk

import (
	"context"
	"time"
)

// Monitor stores and reads metric points. A point is identified by its metric, tags and
// time: writing it again replaces its value, so a retried Write never duplicates.
//
// Write and Query take a request struct ([WriteRequest], [Query]), which the SDK
// validates (its Validate method) before the plugin sees it. Errors carry a [Code], one
// per kind of failure, the same in every Monitor:
//   - CodeInvalidArgument: a malformed request (a point or query without a metric, an
//     empty tag key, a window ending before it starts) or a point the backend cannot
//     store at all (a character its format cannot carry);
//   - CodeResourceExhausted: the write queue is full;
//   - CodeUnavailable: the backend does not answer.
type Monitor interface {
	// Write queues req.Points and returns without waiting for the backend. An error of an
	// earlier background write is returned once, by the next Write or Flush. A Write that
	// returns an error queued none of its points. Callers send at most MaxWritePoints
	// points per call (gRPC bounds a message's size).
	Write(ctx context.Context, req WriteRequest) error
	// Flush waits until every queued point is stored.
	Flush(ctx context.Context) error
	// Query reads points back, series by series, oldest first within each series.
	Query(ctx context.Context, q Query) ([]Point, error)
	// Health reports whether the backend answers.
	Health(ctx context.Context) error
}

// Tag keys the core writes on every point it takes from a VIM.
const (
	TagSlice = "slice"
	TagPart  = "part"
	// TagResourceID is the node's name, as the original NECOS monitoring tagged it.
	TagResourceID = "ResourceID"
	TagNodeType   = "node-type"
)

// Point is one value of one metric at one time.
type Point struct {
	Metric string
	Tags   map[string]string
	Value  float64
	Time   time.Time
}

// Query selects points of one metric. It is [Monitor.Query]'s request struct (it is kept
// under its own name, which predates the other requests, rather than wrapped in a
// QueryRequest that would hold nothing else).
type Query struct {
	// Metric is the metric to read.
	Metric string
	// Tags keeps only series whose tags hold these values.
	Tags map[string]string
	// Last keeps the last N points of each series; zero means all.
	Last int
	// Start (inclusive) and End (exclusive) bound the time window; zero values mean
	// unbounded.
	Start time.Time
	End   time.Time
}

// MaxWritePoints is the most points a caller sends in one Monitor.Write.
const MaxWritePoints = 5000
