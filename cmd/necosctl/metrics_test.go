package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/api/apitest"
	"github.com/necos/necos/daemon"
	"github.com/necos/necos/internal/testenv"
)

// startMetricsEnv is necosd's API with the metrics routes over a real engine (vim-xen
// on libvirt's test driver) and the monitoring collector writing to a real InfluxDB
// through the monitor-influx plugin.
func startMetricsEnv(t *testing.T) (url, token string) {
	t.Helper()
	influx := testenv.StartInflux(t)
	env := apitest.Start(t, apitest.Options{
		Catalogue: apitest.Catalogue + influx.MonitorCatalogue(),
		Plugins:   []string{"vim-xen", "monitor-influx"},
		Configure: func(c *daemon.Config) { c.Off.Monitoring = false },
	})
	return env.URL, env.Token("alice")
}

func TestSliceMetrics(t *testing.T) {
	url, token := startMetricsEnv(t)
	ctl := func(t *testing.T, _ any, args ...string) (string, string) {
		t.Helper()
		return ctlAt(t, url, token, args...)
	}
	mustCtl := func(t *testing.T, env any, args ...string) string {
		t.Helper()
		out, errOut := ctl(t, env, args...)
		if errOut != "" {
			t.Fatalf("necosctl %s: %s", strings.Join(args, " "), errOut)
		}
		return out
	}
	var env any
	id := sliceID(t, mustCtl(t, env, "slice", "create", "--wait", "-o", "json", "-f", writeFile(t, "s.yaml", apitest.SmallSlice("met"))))

	// The monitoring samples every node: wait for two points of each node's memory.
	var ans struct {
		Series []struct {
			Metric string            `json:"metric"`
			Tags   map[string]string `json:"tags"`
			Points []struct {
				Value float64 `json:"value"`
			} `json:"points"`
		} `json:"series"`
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out := mustCtl(t, env, "slice", "metrics", id, "--metric", "MEMORY_USED_MB", "--last", "2", "--since", "5m", "-o", "json")
		if err := json.Unmarshal([]byte(out), &ans); err != nil {
			t.Fatalf("metrics -o json: %v\n%s", err, out)
		}
		if len(ans.Series) == 2 && len(ans.Series[0].Points) == 2 && len(ans.Series[1].Points) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no two points of both nodes' memory within a minute:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, s := range ans.Series {
		if s.Metric != "MEMORY_USED_MB" || s.Tags["slice"] != id || s.Tags["part"] == "" || s.Points[1].Value <= 0 {
			t.Errorf("series %+v", s)
		}
	}

	// The table: one row per series; --points one row per point; filters reach the API.
	out := mustCtl(t, env, "slice", "metrics", id, "--metric", "MEMORY_USED_MB", "--last", "2", "--part", "core-dc")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "METRIC") || !strings.Contains(lines[1], "core-dc") ||
		!strings.Contains(lines[1], "core_vm-1") || !strings.Contains(lines[1], " 2 ") {
		t.Errorf("metrics table of core-dc:\n%s", out)
	}
	out = mustCtl(t, env, "slice", "metrics", id, "--metric", "MEMORY_USED_MB", "--last", "2", "--points")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 5 || !strings.Contains(lines[0], "TIME") {
		t.Errorf("metrics --points, want a header and 4 points:\n%s", out)
	}
	// A bad query names its parameter.
	if _, errOut := ctl(t, env, "slice", "metrics", id, "--since", "yesterday"); !strings.Contains(errOut, "HTTP 400") || !strings.Contains(errOut, "since") {
		t.Errorf("bad --since: %s", errOut)
	}
}

func sliceID(t *testing.T, createJSON string) string {
	t.Helper()
	var s struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(createJSON), &s); err != nil || s.ID == "" {
		t.Fatalf("created slice: %v %s", err, createJSON)
	}
	return s.ID
}
