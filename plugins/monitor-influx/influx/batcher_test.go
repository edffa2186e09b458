package influx

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/necos/necos/sdk"
)

// recorder is the batcher's send function in these tests of its queueing logic (the
// real sender is covered against InfluxDB in influx_test.go). Each call pops the next
// scripted error, nil when the script is done.
type recorder struct {
	mu      sync.Mutex
	script  []error
	batches [][]string
}

func (r *recorder) send(_ context.Context, lines []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.script) > 0 {
		err := r.script[0]
		r.script = r.script[1:]
		if err != nil {
			return err
		}
	}
	r.batches = append(r.batches, append([]string(nil), lines...))
	return nil
}

func (r *recorder) sent() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.batches...)
}

var (
	errRefused = &http2.Error{Err: errors.New("connection refused")}
	errBadLine = &http2.Error{StatusCode: 400, Code: "invalid", Message: "unable to parse"}
)

func testBatcher(t *testing.T, r *recorder, edit func(*Config)) *batcher {
	t.Helper()
	cfg, err := ParseConfig([]byte(`{"url": "http://127.0.0.1:1", "batch_size": 3, "flush_interval_ms": 3600000}`))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&cfg)
	}
	b := newBatcher(r.send, hclog.NewNullLogger(), cfg)
	t.Cleanup(func() { _ = b.close(context.Background()) })
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func joined(batches [][]string) string {
	var parts []string
	for _, b := range batches {
		parts = append(parts, strings.Join(b, ","))
	}
	return strings.Join(parts, " | ")
}

func TestBatcherSendsFullBatchesInOrder(t *testing.T) {
	r := &recorder{}
	b := testBatcher(t, r, nil)
	if err := b.add([]string{"1", "2", "3", "4"}); err != nil {
		t.Fatal(err)
	}
	if err := b.add([]string{"5", "6", "7"}); err != nil {
		t.Fatal(err)
	}
	if err := b.flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got, want := joined(r.sent()), "1,2,3 | 4,5,6 | 7"; got != want {
		t.Fatalf("batches %q, want %q", got, want)
	}
}

func TestBatcherSendsPartialBatchAfterInterval(t *testing.T) {
	r := &recorder{}
	b := testBatcher(t, r, func(c *Config) { c.FlushIntervalMS = 20 })
	if err := b.add([]string{"1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.sent()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a lone point was not sent without Flush")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBatcherRetriesTransientFailure(t *testing.T) {
	r := &recorder{script: []error{errRefused, errRefused}}
	b := testBatcher(t, r, nil)
	if err := b.add([]string{"1", "2"}); err != nil {
		t.Fatal(err)
	}
	err := b.flush(testCtx(t))
	if sdk.CodeOf(err) != sdk.CodeUnavailable || !strings.Contains(err.Error(), "kept queued") {
		t.Fatalf("flush: %v (code %v), want Unavailable, kept queued", err, sdk.CodeOf(err))
	}
	// The batch is retried in the background; a later flush sees it through.
	for {
		err := b.flush(testCtx(t))
		if err == nil {
			break
		}
		if sdk.CodeOf(err) != sdk.CodeUnavailable {
			t.Fatalf("flush: %v", err)
		}
	}
	if got := joined(r.sent()); got != "1,2" {
		t.Fatalf("batches %q, want the batch once", got)
	}
	// Delivered after all: nothing is left to report.
	if err := b.add([]string{"3"}); err != nil {
		t.Fatalf("add after the retry succeeded: %v", err)
	}
}

func TestBatcherDropsOnPermanentFailure(t *testing.T) {
	r := &recorder{script: []error{errBadLine}}
	b := testBatcher(t, r, nil)
	if err := b.add([]string{"1", "2"}); err != nil {
		t.Fatal(err)
	}
	// Wait for the failure without flushing: the next add must report it.
	b.mu.Lock()
	b.flushTo = b.queued
	b.kick()
	b.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		b.mu.Lock()
		err = b.err
		b.mu.Unlock()
	}
	err = b.add([]string{"3"})
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument || !strings.Contains(err.Error(), "dropped") ||
		!strings.Contains(err.Error(), "not queued") {
		t.Fatalf("add after a refused batch: %v (code %v)", err, sdk.CodeOf(err))
	}
	// Reported once; the refused add queued nothing, so "3" comes only from this one.
	if err := b.add([]string{"3"}); err != nil {
		t.Fatal(err)
	}
	if err := b.flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := joined(r.sent()); got != "3" {
		t.Fatalf("batches %q, want only the later point", got)
	}
}

func TestBatcherDropsAfterMaxRetryTime(t *testing.T) {
	r := &recorder{script: []error{errRefused, errRefused, errRefused, errRefused}}
	b := testBatcher(t, r, func(c *Config) { c.MaxRetryTimeMS = 1 })
	if err := b.add([]string{"1", "2", "3", "4", "5", "6"}); err != nil {
		t.Fatal(err)
	}
	// Each flush returns at the first failure it sees; repeat until both batches are
	// settled. Past the retry time they are dropped, each after a single attempt.
	var errs []string
	for range 10 {
		err := b.flush(testCtx(t))
		if err == nil {
			break
		}
		errs = append(errs, err.Error())
	}
	if len(r.sent()) != 0 {
		t.Fatalf("sent %q, want nothing (every attempt failed)", joined(r.sent()))
	}
	if last := errs[len(errs)-1]; !strings.Contains(last, "dropped") {
		t.Fatalf("errors %q: want the last to say the points were dropped", errs)
	}
	b.mu.Lock()
	left := len(b.queue)
	b.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d lines still queued", left)
	}
}

func TestBatcherQueueFull(t *testing.T) {
	r := &recorder{}
	b := testBatcher(t, r, func(c *Config) { c.QueueSize = 5; c.BatchSize = 100 })
	if err := b.add([]string{"1", "2", "3"}); err != nil {
		t.Fatal(err)
	}
	if err := b.add([]string{"4", "5", "6"}); sdk.CodeOf(err) != sdk.CodeResourceExhausted {
		t.Fatalf("add beyond queue_size: %v, want ResourceExhausted", err)
	}
	if err := b.flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := joined(r.sent()); got != "1,2,3" {
		t.Fatalf("batches %q: the refused add must queue nothing", got)
	}
}

func TestBatcherCloseSendsQueued(t *testing.T) {
	r := &recorder{}
	b := testBatcher(t, r, nil)
	if err := b.add([]string{"1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := joined(r.sent()); got != "1" {
		t.Fatalf("batches %q, want the queued point sent at close", got)
	}
	if err := b.add([]string{"2"}); sdk.CodeOf(err) != sdk.CodeFailedPrecondition {
		t.Fatalf("add after close: %v, want FailedPrecondition", err)
	}
	if err := b.flush(testCtx(t)); sdk.CodeOf(err) != sdk.CodeFailedPrecondition {
		t.Fatalf("flush after close: %v, want FailedPrecondition", err)
	}
}

func TestBatcherFlushHonoursContext(t *testing.T) {
	block := make(chan struct{})
	b := newBatcher(func(ctx context.Context, _ []string) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	}, hclog.NewNullLogger(), Config{BatchSize: 10, FlushIntervalMS: 3600000, QueueSize: 100, MaxRetryTimeMS: 1000, TimeoutMS: 60000})
	defer func() { close(block); _ = b.close(context.Background()) }()
	if err := b.add([]string{"1"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.flush(ctx); sdk.CodeOf(err) != sdk.CodeDeadlineExceeded {
		t.Fatalf("flush with a stuck send: %v, want DeadlineExceeded", err)
	}
}
