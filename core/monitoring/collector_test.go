package monitoring_test

import (
	"context"
	"errors"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/monitoring"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/providers"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type env struct {
	engine *sro.Engine
	store  *store.Store
	col    *monitoring.Collector
}

// start runs an engine over libvirt providers (in-process test driver) and a real
// influxd, with a collector listening to it.
func start(t *testing.T) *env {
	t.Helper()
	influx := testenv.StartInflux(t)
	cat, err := providers.Parse([]byte(`
providers:
  - name: BR
    location: AMERICA.BRAZIL
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 16, memory_mb: 32768, storage_gb: 500}, price_per_node_day: 1}}
  - name: GR
    location: EUROPE.GREECE
    dc: {vim: xen-vim, plugin: vim-xen, config: {uri: "test:///default", capacity: {cpus: 16, memory_mb: 32768, storage_gb: 500}, price_per_node_day: 1}}
` + influx.MonitorCatalogue()))
	if err != nil {
		t.Fatal(err)
	}
	off := daemon.EngineOnly()
	off.Monitoring = false
	d, err := daemon.Start(context.Background(), daemon.Config{
		Logger:    hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
		Catalogue: cat,
		Store:     store.Options{Dir: t.TempDir()},
		Plugins:   pluginhost.Options{Dir: testenv.PluginDir(t, "vim-xen", "monitor-influx")},
		Engine:    sro.Options{CallTimeout: time.Minute},
		Off:       off,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &env{engine: d.Engine(), store: d.Store(), col: d.Collector()}
}

const sliceDoc = `slices:
  sliced:
    id: %s
    slice-requirements: {elasticity: true, links-optional: true} # no WAN provider here
    slice-parts:
      - dc-slice-part:
          name: core
          type: DC
          location: AMERICA.BRAZIL
          monitoring-parameters:
            tool: influxdb
            granularity-secs: 1
            metrics:
              - metric: {name: PERCENT_CPU_UTILIZATION}
              - metric: {name: MEMORY_USED_MB}
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: k8s-master, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 1024}}}
              - vdu: {name: k8s-node, instance-count: 2, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 2048}}}
`

func ready(t *testing.T, e *env, tenant, id string) string {
	t.Helper()
	ctx := context.Background()
	sl, err := e.engine.Submit(ctx, tenant, []byte(strings.Replace(sliceDoc, "%s", id, 1)))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	got, err := e.engine.Wait(wctx, sl.ID)
	if err != nil || got.State != store.SliceReady {
		t.Fatalf("slice %s: %v %+v", id, err, got)
	}
	return sl.ID
}

// eventually polls f until it returns nil, failing with its last error after a minute.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lastByNode reads the last point of each node of a slice for one metric.
func lastByNode(ctx context.Context, e *env, sliceID, metric string, tags map[string]string) (map[string]sdk.Point, error) {
	pts, err := e.col.Query(ctx, sliceID, sdk.Query{Metric: metric, Tags: tags, Last: 1})
	if err != nil {
		return nil, err
	}
	out := map[string]sdk.Point{}
	for _, p := range pts {
		out[p.Tags[sdk.TagResourceID]] = p
	}
	return out, nil
}

func TestMonitoring(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	id := ready(t, e, "alice", "iot")

	t.Run("collector writes VIM metrics with their tags", func(t *testing.T) {
		var got map[string]sdk.Point
		eventually(t, "memory of every node", func() error {
			var err error
			got, err = lastByNode(ctx, e, id, sdk.MetricMemoryUsedMB, nil)
			if err == nil && len(got) != 3 {
				err = errors.New("not every node yet: " + strings.Join(keys(got), ", "))
			}
			return err
		})
		wantType := map[string]string{"k8s-master-1": sdk.NodeMaster, "k8s-node-1": sdk.NodeWorker, "k8s-node-2": sdk.NodeWorker}
		for node, p := range got {
			if p.Tags[sdk.TagSlice] != id || p.Tags[sdk.TagPart] != "core" || p.Tags[sdk.TagNodeType] != wantType[node] || len(p.Tags) != 4 {
				t.Errorf("%s: tags %v", node, p.Tags)
			}
			if p.Value <= 0 || time.Since(p.Time) > time.Minute {
				t.Errorf("%s: %v at %s", node, p.Value, p.Time)
			}
		}
		eventually(t, "CPU of the workers", func() error {
			cpu, err := lastByNode(ctx, e, id, sdk.MetricCPUPercent, map[string]string{sdk.TagNodeType: sdk.NodeWorker})
			if err == nil && len(cpu) != 2 {
				err = errors.New("workers: " + strings.Join(keys(cpu), ", "))
			}
			return err
		})
		// A metric the part does not ask for is not measured.
		if pts, err := e.col.Query(ctx, id, sdk.Query{Metric: sdk.MetricMemoryPct}); err != nil || len(pts) != 0 {
			t.Errorf("unasked metric: %d points, %v", len(pts), err)
		}
		// The granularity is the part's (1 s), not the default (10 s).
		eventually(t, "several points per node", func() error {
			pts, err := e.col.Query(ctx, id, sdk.Query{Metric: sdk.MetricMemoryUsedMB, Tags: map[string]string{sdk.TagResourceID: "k8s-master-1"}})
			if err == nil && len(pts) < 3 {
				err = errors.New("only " + itoa(len(pts)))
			}
			return err
		})
		if loops := e.col.Monitored()[id]; len(loops) != 1 || loops[0] != "core@1s" {
			t.Errorf("loops %v", loops)
		}
		// The first stored measurements are an event, once per loop (the timings' end
		// of the monitoring start).
		evs, err := e.store.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		started := 0
		for _, ev := range evs {
			if ev.Type == monitoring.EvStarted {
				started++
				if ev.Part != "core" || ev.Data["every"] != "1s" {
					t.Errorf("event %+v", ev)
				}
			}
		}
		if started != 1 {
			t.Errorf("%d %s events, want 1", started, monitoring.EvStarted)
		}
	})

	t.Run("elastic part is picked up", func(t *testing.T) {
		np, err := e.engine.AddPart(ctx, id, "core", sro.AddPartOptions{Location: "EUROPE"})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "metrics of the added part", func() error {
			got, err := lastByNode(ctx, e, id, sdk.MetricMemoryUsedMB, map[string]string{sdk.TagPart: np.Name})
			if err == nil && len(got) != 3 {
				err = errors.New("nodes: " + strings.Join(keys(got), ", "))
			}
			return err
		})
		if loops := e.col.Monitored()[id]; len(loops) != 2 || loops[0] != "core-h1@1s" {
			t.Errorf("loops %v", loops)
		}
		if err := e.engine.RemovePart(ctx, id, np.Name); err != nil {
			t.Fatal(err)
		}
		eventually(t, "removed part's loop stops", func() error {
			if loops := e.col.Monitored()[id]; len(loops) != 1 {
				return errors.New(strings.Join(loops, ", "))
			}
			return nil
		})
	})

	t.Run("push to one's own slice", func(t *testing.T) {
		at := time.Now().Add(-time.Second).Truncate(time.Millisecond)
		pts, err := monitoring.ParsePoints("text/plain", "ms",
			[]byte("PERCENT_CPU_UTILIZATION,ResourceID=k8s-node-1 value=97.5 "+itoa(int(at.UnixMilli()))+"\n"+
				"LOAD_TEST_RPS,part=core value=1200\n"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		n, err := e.col.Push(ctx, id, pts)
		if err != nil || n != 2 {
			t.Fatalf("push: %d, %v", n, err)
		}
		got, err := e.col.Query(ctx, id, sdk.Query{Metric: sdk.MetricCPUPercent, Tags: map[string]string{monitoring.TagSource: monitoring.SourcePush}})
		if err != nil || len(got) != 1 {
			t.Fatalf("pushed CPU reads back as %+v, %v", got, err)
		}
		p := got[0]
		if p.Value != 97.5 || !p.Time.Equal(at) || p.Tags[sdk.TagSlice] != id || p.Tags[sdk.TagPart] != "core" ||
			p.Tags[sdk.TagNodeType] != sdk.NodeWorker || p.Tags[sdk.TagResourceID] != "k8s-node-1" {
			t.Errorf("pushed point reads back as %+v", p)
		}
		if got, err := e.col.Query(ctx, id, sdk.Query{Metric: "LOAD_TEST_RPS"}); err != nil || len(got) != 1 || got[0].Value != 1200 {
			t.Errorf("custom metric: %+v, %v", got, err)
		}

		// Another tenant's slice, points of it, unknown parts and nodes: refused, all at once.
		other := ready(t, e, "bob", "other")
		_, err = e.col.Push(ctx, id, []sdk.Point{
			{Metric: "m", Value: 1, Tags: map[string]string{sdk.TagSlice: other}},
			{Metric: "m", Value: 1, Tags: map[string]string{sdk.TagPart: "edge"}},
			{Metric: "m", Value: 1, Tags: map[string]string{sdk.TagResourceID: "vm-1"}},
			{Metric: "m", Value: 1, Tags: map[string]string{sdk.TagResourceID: "k8s-node-1", sdk.TagNodeType: sdk.NodeMaster}},
			{Value: 1},
		})
		var se *spec.Error
		if !errors.As(err, &se) || len(se.Problems) != 5 {
			t.Fatalf("bad points: %v", err)
		}
		for i, want := range []string{"points[0].tags.slice: points go to their own slice", "points[1].tags.part: slice " + id + " has no part \"edge\"",
			"points[2].tags.ResourceID: slice " + id + " has no node \"vm-1\"", "points[3].tags.node-type: node k8s-node-1 is a worker", "points[4].metric: required"} {
			if got := se.Problems[i].String(); !strings.HasPrefix(got, want) {
				t.Errorf("problem %d: %q, want prefix %q", i, got, want)
			}
		}
		// Nothing of a refused push was stored, and a query never crosses slices.
		if got, _ := e.col.Query(ctx, other, sdk.Query{Metric: "m"}); len(got) != 0 {
			t.Errorf("other slice has %+v", got)
		}
		if got, _ := e.col.Query(ctx, other, sdk.Query{Metric: "LOAD_TEST_RPS", Tags: map[string]string{sdk.TagSlice: id}}); len(got) != 0 {
			t.Errorf("query of one slice read another's: %+v", got)
		}
	})

	t.Run("decommission stops monitoring", func(t *testing.T) {
		if _, err := e.engine.Decommission(ctx, "alice", id); err != nil {
			t.Fatal(err)
		}
		eventually(t, "monitoring stops", func() error {
			if loops, ok := e.col.Monitored()[id]; ok {
				return errors.New("still monitored: " + strings.Join(loops, ", "))
			}
			return nil
		})
		// No point written after the slice went.
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := e.engine.WaitGone(wctx, id); err != nil {
			t.Fatal(err)
		}
		gone := time.Now().Add(time.Second)
		time.Sleep(2 * time.Second)
		if pts, err := e.col.Query(ctx, id, sdk.Query{Metric: sdk.MetricMemoryUsedMB, Start: gone}); err != nil || len(pts) != 0 {
			t.Errorf("points after decommission: %d, %v", len(pts), err)
		}
	})
}

func keys(m map[string]sdk.Point) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }
