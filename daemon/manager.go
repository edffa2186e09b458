package daemon

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// manager runs components. Unlike an errgroup it stops them one by one in the reverse
// of their start order, so that the API stops taking requests before the engine that
// answers them stops; like one, the first failure stops them all and is reported.
type manager struct {
	log    hclog.Logger
	failed chan error // the first failure; buffered, never closed

	mu      sync.Mutex
	running []*running
	stopped bool

	stopOnce sync.Once
}

type running struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
}

func newManager(log hclog.Logger) *manager {
	return &manager{log: log, failed: make(chan error, 1)}
}

// start runs a component until stop; an error it returns before then stops every
// component. A component that returns nil early (a start-up task) just ends.
func (m *manager) start(base context.Context, name string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(base)
	r := &running{name: name, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		cancel()
		return
	}
	m.running = append(m.running, r)
	m.mu.Unlock()
	go func() {
		defer close(r.done)
		err := run(ctx)
		if err != nil && ctx.Err() == nil {
			m.fail(fmt.Errorf("%s: %w", name, err))
		}
	}()
}

func (m *manager) fail(err error) {
	m.log.Error("component failed: stopping every component", "error", err)
	go func() {
		m.stop()
		select {
		case m.failed <- err:
		default: // a failure is already reported
		}
	}()
}

// stop stops the components, the last started first, each before the next; it returns
// when all have returned. Concurrent calls wait for the first.
func (m *manager) stop() {
	m.stopOnce.Do(func() {
		m.mu.Lock()
		m.stopped = true
		rs := m.running
		m.mu.Unlock()
		for i := len(rs) - 1; i >= 0; i-- {
			rs[i].cancel()
			<-rs[i].done
			m.log.Debug("component stopped", "component", rs[i].name)
		}
	})
}
