package elastic_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/elastic"
	"github.com/necos/necos/core/monitoring"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a necos core on real backends: vim-xen plugin processes on the libvirt daemon
// (so that the test sees the domains from outside), monitor-influx on a real influxd,
// the collector and the elasticity engine.
type env struct {
	engine *sro.Engine
	store  *store.Store
	reg    *providers.Registry
	col    *monitoring.Collector
	el     *elastic.Engine
	uri    string
	id     string // suffix of this run's provider names
}

// provider returns this run's name of a provider: V (EUROPE.SPAIN.MADRID, 8 vCPUs),
// F (EUROPE.GREECE.ATHENS, 2 vCPUs: full with one 2-vCPU node), H (EUROPE.GREECE.PATRAS,
// 8 vCPUs), C (AMERICA.BRAZIL, 16 vCPUs).
func (e *env) provider(short string) string { return short + "-" + e.id }

// envOptions tune start.
type envOptions struct {
	// extra is appended to the catalogue's providers.
	extra string
	// sites gives providers WAN sites: short name -> "underlay netns".
	sites map[string][2]string
	// plugins besides vim-xen and monitor-influx.
	plugins []string
	// post runs post-deployments.
	post elastic.PostDeployer
}

func randomID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func start(t testing.TB, o envOptions) *env {
	t.Helper()
	uri := os.Getenv("NECOS_LIBVIRT_URI")
	if uri == "" {
		plugintest.NeedBackend(t, "NECOS_LIBVIRT_URI: a libvirt daemon serving the test driver, see scripts/libvirtd.sh")
	}
	influx := testenv.StartInflux(t)
	e := &env{uri: uri, id: randomID()}
	var b strings.Builder
	b.WriteString("providers:\n")
	for _, p := range []struct {
		short, location string
		cpus            int
	}{{"V", "EUROPE.SPAIN.MADRID", 8}, {"F", "EUROPE.GREECE.ATHENS", 2}, {"H", "EUROPE.GREECE.PATRAS", 8}, {"C", "AMERICA.BRAZIL", 16}} {
		fmt.Fprintf(&b, "  - name: %s\n    location: %s\n", e.provider(p.short), p.location)
		fmt.Fprintf(&b, "    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: %q, capacity: {cpus: %d, memory_mb: 32768, storage_gb: 500}, price_per_node_day: 1}}\n", uri, p.cpus)
		if s, ok := o.sites[p.short]; ok {
			fmt.Fprintf(&b, "    site: {underlay: %s, netns: %s}\n", s[0], s[1])
		}
	}
	b.WriteString(o.extra)
	b.WriteString(influx.MonitorCatalogue())
	cat, err := providers.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("catalogue: %v\n%s", err, b.String())
	}
	off := daemon.EngineOnly()
	off.Monitoring, off.Elasticity = false, false
	d, err := daemon.Start(context.Background(), daemon.Config{
		Logger:     hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
		Catalogue:  cat,
		Store:      store.Options{Dir: t.TempDir()},
		Plugins:    pluginhost.Options{Dir: testenv.PluginDir(t, append([]string{"vim-xen", "monitor-influx"}, o.plugins...)...)},
		Engine:     sro.Options{CallTimeout: time.Minute},
		Elasticity: elastic.Options{PostDeployer: o.post, Resync: 100 * time.Millisecond, DefaultCooldown: time.Minute},
		Off:        off,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.engine, e.col, e.el, e.store, e.reg = d.Engine(), d.Collector(), d.Elasticity(), d.Store(), d.Registry()
	t.Cleanup(func() {
		// Slices left over are decommissioned, so that no domain outlives the test on
		// the shared libvirt daemon.
		slices, _ := e.store.ListSlices(context.Background(), "")
		for _, sl := range slices {
			_, _ = e.engine.Decommission(context.Background(), "", sl.ID)
		}
		for _, sl := range slices {
			wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
			_ = e.engine.WaitGone(wctx, sl.ID)
			wcancel()
		}
		d.Close()
	})
	return e
}

// partDoc is a dc-slice-part measured every second. Only memory is collected from the
// VIM: the test driver's CPU time runs with the wall clock (every domain reads 100 %), so
// the CPU points the policies see are the ones the tests push.
func partDoc(name, typ, location, vdu string, instances, cpus int) string {
	return fmt.Sprintf(`      - dc-slice-part:
          name: %s
          type: %s
          location: %s
          monitoring-parameters: {tool: influxdb, granularity-secs: 1, metrics: [MEMORY_USED_MB]}
          VIM:
            name: xen-vim
            vdus:
              - vdu:
                  name: %s
                  instance-count: %d
                  epa-attributes:
                    host-epa: {cpu-number: %d, memory-mb: 512, storage-gb: 1}
`, name, typ, location, vdu, instances, cpus)
}

// ready creates a slice of parts and waits until it is Ready.
func (e *env) ready(t testing.TB, name string, parts ...string) *sro.View {
	t.Helper()
	// No WAN provider here: links to added parts are recorded, not built.
	doc := fmt.Sprintf("slices:\n  sliced:\n    id: %s\n    slice-requirements: {elasticity: true, links-optional: true}\n    cost:\n      dc-model: {model: COST_PER_PHYSICAL_MACHINE_PER_DAY, value-euros: \"<=5\"}\n    slice-parts:\n%s",
		name, strings.Join(parts, ""))
	ctx := context.Background()
	sl, err := e.engine.Submit(ctx, "alice", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	got, err := e.engine.Wait(wctx, sl.ID)
	if err != nil || got.State != store.SliceReady {
		t.Fatalf("slice %s: %v %+v", name, err, got)
	}
	v, err := e.engine.Get(ctx, "alice", sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// install registers a policy (YAML) on a slice and waits until it is evaluated.
func (e *env) install(t testing.TB, v *sro.View, doc string) *spec.Policy {
	t.Helper()
	p, err := spec.ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := elastic.Install(ctx, e.store, v, p, elastic.SourceAPI); err != nil {
		t.Fatal(err)
	}
	e.waitEvent(t, v.Slice.ID, p.Name, elastic.EvArmed, time.Time{})
	return p
}

// push sends values for a node as a probe would (through the collector's Push, which
// the API's POST /v1/slices/{id}/metrics calls), spaced by step and ending now.
func (e *env) push(t testing.TB, sliceID, node string, step time.Duration, values ...float64) time.Time {
	t.Helper()
	now := time.Now()
	pts := make([]sdk.Point, len(values))
	for i, v := range values {
		pts[i] = sdk.Point{Metric: sdk.MetricCPUPercent, Tags: map[string]string{sdk.TagResourceID: node}, Value: v,
			Time: now.Add(-time.Duration(len(values)-1-i) * step)}
	}
	if _, err := e.col.Push(context.Background(), sliceID, pts); err != nil {
		t.Fatalf("push: %v", err)
	}
	return now
}

// events lists the events of a policy of one type recorded at or after since.
func (e *env) events(t testing.TB, sliceID, policy, typ string, since time.Time) []store.Event {
	t.Helper()
	evs, err := e.store.Events(context.Background(), sliceID)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Event
	for _, ev := range evs {
		if ev.Type == typ && (policy == "" || ev.Data["policy"] == policy) && !ev.Time.Before(since) {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent waits (at most a minute) for an event of a policy and returns it.
func (e *env) waitEvent(t testing.TB, sliceID, policy, typ string, since time.Time) store.Event {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if evs := e.events(t, sliceID, policy, typ, since); len(evs) > 0 {
			return evs[0]
		}
		if time.Now().After(deadline) {
			all, _ := e.store.Events(context.Background(), sliceID)
			var b strings.Builder
			for _, ev := range all {
				fmt.Fprintf(&b, "\n  %s %s %s: %s", ev.Time.Format("15:04:05.000"), ev.Type, ev.Part, ev.Message)
			}
			t.Fatalf("no %s event of policy %s; events:%s", typ, policy, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
