package influx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/sdk"
)

// batcher queues encoded points and sends them in batches from one goroutine, so that
// Write never waits for InfluxDB. It is hand-written on a blocking send rather than the
// client's non-blocking WriteAPI because that one blocks the caller while a batch is in
// flight, retries only when new points arrive, reports errors on a channel that races
// with Flush, and logs (instead of returning) what its final flush fails to send.
//
// Points leave the queue in order. A batch failing for a transient reason (network,
// 429, 5xx) stays at the head and is retried with backoff, until sends have failed for
// maxRetry; any other failure drops it. Either way the error is kept until the next
// Write or Flush reports it (or, for a retried batch, until the retry succeeds).
type batcher struct {
	send      func(ctx context.Context, lines []string) error
	log       hclog.Logger
	batchSize int
	interval  time.Duration
	maxQueue  int
	maxRetry  time.Duration
	timeout   time.Duration

	mu        sync.Mutex
	queue     []string // lines waiting, oldest first; the head batch may be in flight
	queued    uint64   // lines ever queued
	finished  uint64   // lines stored or dropped; the queue holds queued-finished lines
	flushTo   uint64   // send partial batches until finished reaches it
	err       error    // first background error not yet reported
	errRetry  bool     // err is of a batch still queued for retry: its success clears err
	errs      uint64   // background errors so far, to tell a Flush a new one happened
	changed   chan struct{}
	closed    bool
	failingAt time.Time // first of the transient failures since the last success; zero when none

	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

// Backoff between attempts at a batch failing for a transient reason.
const (
	retryFirst = 250 * time.Millisecond
	retryMax   = 5 * time.Second
)

func newBatcher(send func(context.Context, []string) error, log hclog.Logger, cfg Config) *batcher {
	b := &batcher{
		send:      send,
		log:       log,
		batchSize: cfg.BatchSize,
		interval:  cfg.flushInterval(),
		maxQueue:  cfg.QueueSize,
		maxRetry:  cfg.maxRetryTime(),
		timeout:   cfg.timeout(),
		changed:   make(chan struct{}),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
	go b.run()
	return b
}

// add queues lines. It returns, and clears, an earlier background error instead of
// queueing; and refuses lines beyond the queue's capacity. Either way nothing of this
// call is queued, so the caller may simply retry it.
func (b *batcher) add(lines []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "write: plugin is shutting down")
	}
	if err := b.takeErr(); err != nil {
		return fmt.Errorf("%w (this write's points were not queued)", err)
	}
	if len(b.queue)+len(lines) > b.maxQueue {
		return sdk.Errorf(sdk.CodeResourceExhausted,
			"write: queue full: %d points waiting for InfluxDB, %d more would exceed queue_size %d",
			len(b.queue), len(lines), b.maxQueue)
	}
	b.queue = append(b.queue, lines...)
	b.queued += uint64(len(lines))
	if len(b.queue) >= b.batchSize {
		b.kick()
	}
	return nil
}

// flush waits until every line queued before the call is stored or dropped. It returns
// an earlier unreported error at once, or the first error of a send made while it waits.
func (b *batcher) flush(ctx context.Context) error {
	b.mu.Lock()
	if err := b.takeErr(); err != nil {
		b.mu.Unlock()
		return err
	}
	if b.closed {
		b.mu.Unlock()
		return sdk.Errorf(sdk.CodeFailedPrecondition, "flush: plugin is shutting down")
	}
	target, errs := b.queued, b.errs
	if target > b.flushTo {
		b.flushTo = target
	}
	b.kick()
	for b.finished < target && b.errs == errs {
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("flush: %d points still queued: %w", b.pending(), ctx.Err())
		}
		b.mu.Lock()
	}
	err := b.takeErr()
	b.mu.Unlock()
	return err
}

func (b *batcher) pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// takeErr returns and clears the unreported error. b.mu is held.
func (b *batcher) takeErr() error {
	err := b.err
	b.err, b.errRetry = nil, false
	return err
}

// kick wakes the sender. b.mu is held.
func (b *batcher) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// broadcast wakes every waiting flush. b.mu is held.
func (b *batcher) broadcast() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// close sends what is queued, waiting at most until ctx ends, then stops the sender.
func (b *batcher) close(ctx context.Context) error {
	err := b.flush(ctx)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	left := len(b.queue)
	b.mu.Unlock()
	close(b.stop)
	<-b.stopped
	if err != nil || left > 0 {
		return fmt.Errorf("close: %d points not stored: %w", left, errors.Join(err, ctx.Err()))
	}
	return nil
}

func (b *batcher) run() {
	defer close(b.stopped)
	ticker := time.NewTicker(b.interval)
	defer ticker.Stop()
	retry := retryFirst
	for {
		select {
		case <-b.stop:
			return
		case <-b.wake:
		case <-ticker.C:
			// Points waited long enough: send all of them, in as many batches as needed.
			b.mu.Lock()
			b.flushTo = max(b.flushTo, b.queued)
			b.mu.Unlock()
		}
		for {
			batch := b.next()
			if batch == nil {
				break
			}
			if b.sendOne(batch) {
				retry = retryFirst
				continue
			}
			// Transient failure: wait, then try the same batch again.
			select {
			case <-b.stop:
				return
			case <-time.After(retry):
			}
			retry = min(2*retry, retryMax)
		}
	}
}

// next returns the head batch when it is due: full, or asked for by a flush or the
// interval. The lines stay queued until sent.
func (b *batcher) next() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.queue), b.batchSize)
	if n == 0 || (n < b.batchSize && b.finished >= b.flushTo) {
		return nil
	}
	return b.queue[:n:n]
}

// sendOne sends batch, the head of the queue, and settles it. It returns false when the
// batch stays queued for another attempt.
func (b *batcher) sendOne(batch []string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	begin := time.Now()
	err := b.send(ctx, batch)
	cancel()

	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.broadcast()
	if err == nil {
		b.settle(len(batch))
		if b.errRetry {
			// Nothing was lost after all: the failure no longer needs reporting.
			b.err, b.errRetry = nil, false
		}
		if !b.failingAt.IsZero() {
			b.log.Info("write recovered", "points", len(batch), "failing_for", time.Since(b.failingAt).Round(time.Millisecond))
			b.failingAt = time.Time{}
		}
		b.log.Trace("batch written", "points", len(batch), "took", time.Since(begin))
		return true
	}
	code, transient := classify(err)
	if transient && b.failingAt.IsZero() {
		b.failingAt = begin
	}
	// failingAt stays set when a batch is dropped: while InfluxDB has been away longer
	// than maxRetry, each batch gets one attempt, so the queue drains instead of every
	// batch waiting maxRetry of its own.
	if transient && time.Since(b.failingAt) < b.maxRetry {
		b.log.Warn("write failed, will retry", "points", len(batch), "queued", len(b.queue), "error", err)
		b.record(sdk.Errorf(code, "write %d points to InfluxDB: %v (kept queued, retrying for up to %s)",
			len(batch), err, b.maxRetry), true)
		return false
	}
	b.log.Error("write failed, points dropped", "points", len(batch), "error", err)
	b.record(sdk.Errorf(code, "write %d points to InfluxDB: %v (points dropped)", len(batch), err), false)
	b.settle(len(batch))
	return true
}

// settle removes n lines from the head of the queue. b.mu is held.
func (b *batcher) settle(n int) {
	clear(b.queue[:n]) // let the sent lines be collected
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // and the array behind them
	}
	b.finished += uint64(n)
}

// record keeps err for the next Write or Flush, unless an unreported one is already
// kept: the first error says most, but a loss outranks a retry. b.mu is held.
func (b *batcher) record(err error, retrying bool) {
	if b.err == nil || (b.errRetry && !retrying) {
		b.err, b.errRetry = err, retrying
	}
	b.errs++
}
