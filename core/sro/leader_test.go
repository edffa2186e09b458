package sro_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/internal/testenv"
)

// listener records what an engine announces.
type listener struct {
	mu    sync.Mutex
	ready map[string]bool
}

func (l *listener) SliceReady(v *sro.View) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ready[v.Slice.ID] = true
}

func (l *listener) SliceGone(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.ready, id)
}

func (l *listener) has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ready[id]
}

// The listeners (the collector) follow the lead: when an engine stops leading, the
// slices it announced are gone from its listeners; the engine that leads next (here on
// the same store) announces them to its own.
func TestListenersFollowTheLead(t *testing.T) {
	cat := catalogue(t, "")
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr})
	host := pluginhost.New(pluginhost.Options{Dir: testenv.PluginDir(t, "vim-xen"), Logger: log})
	t.Cleanup(func() { host.Close() })
	reg := providers.NewRegistry(cat, host, log)
	run := func(identity string) (*sro.Engine, *listener, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		e := sro.New(sro.Options{Store: st, Catalogue: cat, Plugins: reg, Logger: log, CallTimeout: time.Minute, Identity: identity})
		l := &listener{ready: map[string]bool{}}
		e.AddListener(l)
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ctx) }()
		return e, l, func() { cancel(); <-done }
	}
	a, la, stopA := run("a")
	sl, err := a.Submit(context.Background(), "alice", slice("lead", part("core", "AMERICA.BRAZIL", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, a, sl.ID); got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	eventually(t, "a announces the slice", func() bool { return la.has(sl.ID) })
	_, lb, stopB := run("b")
	defer stopB()
	stopA()
	if la.has(sl.ID) {
		t.Fatal("a's listener still has the slice after a stopped leading")
	}
	eventually(t, "b announces the slice once it leads", func() bool { return lb.has(sl.ID) })
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
