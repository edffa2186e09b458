package monitoring_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/monitoring"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk"
)

var errNotYet = errors.New("not yet")

// countingMonitor counts the points written per slice (a Monitor plugin of its own for
// each necosd, to tell whose collector wrote).
type countingMonitor struct {
	sdk.Monitor // only Write is called
	mu          sync.Mutex
	points      map[string]int
}

func (m *countingMonitor) Write(ctx context.Context, req sdk.WriteRequest) error {
	points := req.Points
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range points {
		m.points[p.Tags[sdk.TagSlice]]++
	}
	return nil
}

func (m *countingMonitor) of(slice string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.points[slice]
}

// withMonitor hands out the registry's VIMs and a monitor of its own.
type withMonitor struct {
	*providers.Registry
	mon sdk.Monitor
}

func (p withMonitor) Monitor(context.Context) (sdk.Monitor, error) { return p.mon, nil }

// Only the leading necosd's collector measures: when its engine stops leading, its
// collector stops measuring, and the collector of the engine that leads next (on the
// same store) starts.
func TestCollectorFollowsTheLead(t *testing.T) {
	cat, err := providers.Parse([]byte(`
providers:
  - name: BR
    location: AMERICA.BRAZIL
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 16, memory_mb: 32768, storage_gb: 500}, price_per_node_day: 1}}
`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr})
	host := pluginhost.New(pluginhost.Options{Dir: testenv.PluginDir(t, "vim-xen"), Logger: log})
	t.Cleanup(func() { host.Close() })
	reg := providers.NewRegistry(cat, host, log)
	type necosd struct {
		engine *sro.Engine
		col    *monitoring.Collector
		mon    *countingMonitor
		stop   func()
	}
	run := func(identity string) necosd {
		ctx, cancel := context.WithCancel(context.Background())
		e := sro.New(sro.Options{Store: st, Catalogue: cat, Plugins: reg, Logger: log, CallTimeout: time.Minute, Identity: identity})
		mon := &countingMonitor{points: map[string]int{}}
		col := monitoring.New(monitoring.Options{Store: st, Plugins: withMonitor{reg, mon}, Logger: log})
		e.AddListener(col)
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ctx) }()
		return necosd{engine: e, col: col, mon: mon, stop: func() { cancel(); <-done; col.Close() }}
	}
	a := run("a")
	sl, err := a.engine.Submit(context.Background(), "alice", []byte(strings.Replace(sliceDoc, "%s", "lead", 1)))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if got, err := a.engine.Wait(wctx, sl.ID); err != nil || got.State != store.SliceReady {
		t.Fatalf("slice: %v %+v", err, got)
	}
	eventually(t, "a measures", func() error {
		if a.mon.of(sl.ID) == 0 {
			return errNotYet
		}
		return nil
	})

	b := run("b")
	defer b.stop()
	a.stop()
	if m := a.col.Monitored(); len(m) != 0 {
		t.Errorf("a's collector after a stopped leading: %v", m)
	}
	eventually(t, "b measures once it leads", func() error {
		if b.mon.of(sl.ID) == 0 {
			return errNotYet
		}
		return nil
	})
	fromA := a.mon.of(sl.ID)
	// Three of b's periods (1 s, the slice's granularity) later, a has written nothing more.
	seen := b.mon.of(sl.ID)
	eventually(t, "b measures three more periods", func() error {
		if b.mon.of(sl.ID) < seen+3*6 { // 3 nodes, 2 metrics
			return errNotYet
		}
		return nil
	})
	if got := a.mon.of(sl.ID); got != fromA {
		t.Errorf("a wrote %d points after it stopped leading", got-fromA)
	}
	if m := b.col.Monitored()[sl.ID]; len(m) != 1 || m[0] != "core@1s" {
		t.Errorf("b monitors %v", m)
	}
}
