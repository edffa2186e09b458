package sro_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild()) // a child of TestKill9DuringElasticity
	}
	testenv.Main(m)
}

// catalogue of libvirt providers (in-process test driver); domainType "bogus" makes a
// provider whose creates fail in libvirt.
func catalogue(t testing.TB, extra string) *providers.Catalogue {
	t.Helper()
	doc := `
providers:
  - name: BR
    location: AMERICA.BRAZIL
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 500}, price_per_node_day: 2, subnet: 10.10.1.0/24}}
  - name: ES
    location: EUROPE.SPAIN
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 500}, price_per_node_day: 3}}
  - name: GR
    location: EUROPE.GREECE
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 8, memory_mb: 16384, storage_gb: 500}, price_per_node_day: 2.5}}
` + extra
	c, err := providers.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type env struct {
	engine *sro.Engine
	store  *store.Store
	reg    *providers.Registry
}

func start(t *testing.T, cat *providers.Catalogue) *env {
	t.Helper()
	return startWith(t, cat, startOptions{})
}

type startOptions struct {
	// wrap, when set, stands between the engine and the providers' plugins.
	wrap func(sro.Plugins) sro.Plugins
	// plugins besides vim-xen.
	plugins []string
	// health is the engine's HealthInterval.
	health time.Duration
	// patience is the engine's OfferPatience.
	patience time.Duration
	// now is the engine's clock (default the real one).
	now func() time.Time
}

// startWith starts an engine on cat with the vim-xen plugin and o's.
func startWith(t testing.TB, cat *providers.Catalogue, o startOptions) *env {
	t.Helper()
	cfg := daemon.Config{
		Logger:    hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
		Catalogue: cat,
		Store:     store.Options{Dir: t.TempDir()},
		Plugins:   pluginhost.Options{Dir: testenv.PluginDir(t, append([]string{"vim-xen"}, o.plugins...)...)},
		Engine:    sro.Options{CallTimeout: time.Minute, HealthInterval: o.health, OfferPatience: o.patience, Now: o.now},
		Off:       daemon.EngineOnly(),
	}
	if o.wrap != nil {
		cfg.EnginePlugins = func(r *providers.Registry) sro.Plugins { return o.wrap(r) }
	}
	d, err := daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &env{engine: d.Engine(), store: d.Store(), reg: d.Registry()}
}

// slice is a slice document of parts whose tenant pays at most 10 € per machine a day.
func slice(id string, parts ...string) []byte {
	return budgetSlice(id, "COST_PER_PHYSICAL_MACHINE_PER_DAY", "<=10", parts...)
}

func part(name, location string, cpus, instances int) string {
	return fmt.Sprintf(`      - dc-slice-part:
          name: %s
          type: DC
          location: %s
          VIM:
            name: xen-vim
            vdus:
              - vdu:
                  name: vm
                  instance-count: %d
                  epa-attributes:
                    host-epa: {cpu-number: %d, memory-mb: 1024, storage-gb: 10}
`, name, location, instances, cpus)
}

func wait(t testing.TB, e *sro.Engine, id string) *store.Slice {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sl, err := e.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return sl
}

func TestCreateDescribeDecommission(t *testing.T) {
	env := start(t, catalogue(t, ""))
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("cdn", part("core", "AMERICA.BRAZIL", 2, 1), part("edge-es", "EUROPE.SPAIN", 1, 2), part("edge-gr", "EUROPE", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	got := wait(t, env.engine, sl.ID)
	if got.State != store.SliceReady {
		t.Fatalf("state %s: %s", got.State, got.Message)
	}
	v, err := env.engine.Get(ctx, "alice", sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantAt := map[string]string{"core": "BR", "edge-es": "ES", "edge-gr": "GR"}
	for _, p := range v.Parts {
		if p.Provider != wantAt[p.Name] {
			t.Errorf("part %s at %s, want %s", p.Name, p.Provider, wantAt[p.Name])
		}
		if p.State != store.PartReady || p.Observed == nil {
			t.Fatalf("part %s: %s %v", p.Name, p.State, p.Observed)
		}
	}
	es, _ := v.Part("edge-es")
	if n := len(es.Observed.Nodes); n != 2 {
		t.Fatalf("edge-es has %d nodes, want 2", n)
	}
	// The provider's VIM holds the domains: ask it, not the store.
	vim, _ := env.reg.VIM(ctx, "ES")
	live, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: es.Ref()})
	if err != nil || len(live.Nodes) != 2 || live.Nodes[0].CPUs != 1 || live.Nodes[0].MemoryMB != 1024 {
		t.Fatalf("ES describes %+v, %v", live, err)
	}
	if _, err := env.engine.Get(ctx, "bob", sl.ID); !errors.Is(err, sro.ErrNotFound) {
		t.Fatalf("another tenant reads the slice: %v", err)
	}
	yml, err := env.engine.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	created, err := spec.ParseCreatedSlice(yml)
	if err != nil {
		t.Fatalf("render does not parse back: %v\n%s", err, yml)
	}
	if st := created.Status().Parts["core"]; st.Controller.Provider != "BR" || len(st.Nodes) != 1 || st.Nodes[0].IP == "" {
		t.Fatalf("rendered core part: %+v", st)
	}
	// The tenant asked for construction; a Ready slice's document says it is active.
	if created.Lifecycle == nil || created.Lifecycle.Status != "active" {
		t.Fatalf("rendered lifecycle %+v, want status active\n%s", created.Lifecycle, yml)
	}

	if _, err := env.engine.Decommission(ctx, "alice", sl.ID); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := env.engine.WaitGone(wctx, sl.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: es.Ref()}); err == nil {
		t.Fatal("domains of a decommissioned part are still there")
	}
	for _, p := range []string{"BR", "ES", "GR"} {
		l, _ := env.store.GetLedger(ctx, p)
		if len(l.Holds) != 0 {
			t.Errorf("%s still holds %v", p, l.Holds)
		}
	}
}

func TestRefusalsNameEachPart(t *testing.T) {
	env := start(t, catalogue(t, ""))
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("big",
		part("core", "AMERICA.BRAZIL", 2, 1),
		part("far", "ASIA.JAPAN", 1, 1),
		part("huge", "EUROPE.SPAIN", 64, 1)))
	if err != nil {
		t.Fatal(err)
	}
	got := wait(t, env.engine, sl.ID)
	if got.State != store.SliceFailed {
		t.Fatalf("state %s", got.State)
	}
	for _, want := range []string{"part far: no provider at location ASIA.JAPAN", "part huge: ES:", "CPUs"} {
		if !strings.Contains(got.Message, want) {
			t.Errorf("message %q lacks %q", got.Message, want)
		}
	}
	if parts, _ := env.store.ListParts(ctx, sl.ID); len(parts) != 0 {
		t.Fatalf("a refused slice has %d parts", len(parts))
	}
	l, _ := env.store.GetLedger(ctx, "BR")
	if len(l.Holds) != 0 {
		t.Fatalf("a refused slice still holds %v", l.Holds)
	}
}

func TestBudget(t *testing.T) {
	env := start(t, catalogue(t, ""))
	doc := slice("cheap", part("es", "EUROPE.SPAIN", 1, 1))
	doc = []byte(strings.Replace(string(doc), `"<=10"`, `"<=2.5"`, 1))
	sl, err := env.engine.Submit(context.Background(), "alice", doc)
	if err != nil {
		t.Fatal(err)
	}
	got := wait(t, env.engine, sl.ID)
	if got.State != store.SliceFailed || !strings.Contains(got.Message, "over budget by €0.50") {
		t.Fatalf("state %s message %q", got.State, got.Message)
	}
}

// A part whose creation fails rolls back the parts that were made.
func TestFailedPartRollsBack(t *testing.T) {
	cat := catalogue(t, `
  - name: BAD
    location: ASIA.JAPAN
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", domain_type: bogus, capacity: {cpus: 8, memory_mb: 16384, storage_gb: 100}}}
`)
	env := start(t, cat)
	ctx := context.Background()
	sl, err := env.engine.Submit(ctx, "alice", slice("doomed", part("core", "AMERICA.BRAZIL", 2, 2), part("jp", "ASIA.JAPAN", 1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	got := wait(t, env.engine, sl.ID)
	if got.State != store.SliceFailed || !strings.Contains(got.Message, "part jp at BAD") {
		t.Fatalf("state %s message %q", got.State, got.Message)
	}
	vim, _ := env.reg.VIM(ctx, "BR")
	if p, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: sdk.PartRef{SliceID: sl.ID, PartID: "core"}}); err == nil {
		t.Fatalf("rolled back part still has domains: %+v", p)
	}
	evs, _ := env.store.Events(ctx, sl.ID)
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	joined := strings.Join(types, ",")
	for _, want := range []string{sro.EvPartFailed, sro.EvRollingBack, sro.EvPartDeleted, sro.EvFailed} {
		if !strings.Contains(joined, want) {
			t.Errorf("events %s lack %s", joined, want)
		}
	}
}
