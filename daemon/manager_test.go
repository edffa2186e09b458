package daemon

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// One component failing stops all the others, the last started first, and its error is
// reported once every component has returned.
func TestManagerFailureStopsAllInReverse(t *testing.T) {
	m := newManager(hclog.NewNullLogger())
	var mu sync.Mutex
	var order []string
	block := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			<-ctx.Done()
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return errors.New("an error after stop is no failure")
		}
	}
	fail := make(chan struct{})
	boom := errors.New("boom")
	m.start(context.Background(), "first", block("first"))
	m.start(context.Background(), "done-early", func(context.Context) error { return nil })
	m.start(context.Background(), "failing", func(ctx context.Context) error {
		select {
		case <-fail:
			return boom
		case <-ctx.Done():
			return nil
		}
	})
	m.start(context.Background(), "last", block("last"))
	select {
	case err := <-m.failed:
		t.Fatalf("failure before any: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(fail)
	var err error
	select {
	case err = <-m.failed:
	case <-time.After(10 * time.Second):
		t.Fatal("no failure reported")
	}
	if !errors.Is(err, boom) || err.Error() != "failing: boom" {
		t.Errorf("failure %q, want it named and wrapped", err)
	}
	mu.Lock()
	got := append([]string(nil), order...)
	mu.Unlock()
	if len(got) != 2 || got[0] != "last" || got[1] != "first" {
		t.Errorf("stop order %v, want [last first], all stopped before the report", got)
	}
	m.stop() // after a failure: returns at once
	m.start(context.Background(), "too-late", func(ctx context.Context) error {
		t.Error("a component started after stop runs")
		return nil
	})
	select {
	case err := <-m.failed:
		t.Errorf("a second failure reported: %v", err)
	default:
	}
}

// Stopping without a failure reports none.
func TestManagerStopReportsNothing(t *testing.T) {
	m := newManager(hclog.NewNullLogger())
	for _, n := range []string{"a", "b"} {
		m.start(context.Background(), n, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	}
	m.stop()
	select {
	case err := <-m.failed:
		t.Errorf("failure after a clean stop: %v", err)
	default:
	}
}
