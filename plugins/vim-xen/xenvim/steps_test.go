package xenvim

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
)

// concurrently runs every job, even after one fails, and joins their errors.
func TestConcurrently(t *testing.T) {
	var ran atomic.Int32
	errA, errB := errors.New("a"), errors.New("b")
	release := make(chan struct{})
	jobs := []func() error{
		func() error { ran.Add(1); <-release; return errA },
		func() error { ran.Add(1); close(release); return nil },
		func() error { ran.Add(1); return errB },
	}
	err := concurrently(jobs)
	if ran.Load() != 3 || !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Errorf("ran %d jobs, error %v", ran.Load(), err)
	}
	if err := concurrently([]func() error{func() error { return nil }, func() error { return nil }}); err != nil {
		t.Errorf("all succeed: %v", err)
	}
}

// Each step is reported to the hook with its duration.
func TestStepClockReports(t *testing.T) {
	var got []string
	testHookStep = func(step string, took time.Duration) {
		if took < 0 {
			t.Errorf("step %s took %v", step, took)
		}
		got = append(got, step)
	}
	defer func() { testHookStep = nil }()
	p := New(nil)
	done := p.clock(sdk.PartRef{SliceID: "s", PartID: "p"}).step("volumes")
	done()
	if len(got) != 1 || got[0] != "volumes" {
		t.Errorf("reported %v", got)
	}
}
