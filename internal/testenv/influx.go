package testenv

import (
	"fmt"
	"testing"

	"github.com/necos/necos/sdk/plugintest/influxtest"
)

// Influx is a real InfluxDB for the core's tests (see influxtest).
type Influx struct{ *influxtest.Server }

// StartInflux starts InfluxDB on 127.0.0.1 for the test (influxtest.Start).
func StartInflux(t testing.TB) *Influx { return &Influx{influxtest.Start(t)} }

// MonitorCatalogue returns the catalogue entry (YAML, for providers.Parse) that makes the
// monitor-influx plugin store into database E2E_SLICE of s, created at configuration,
// sending queued points every 100 ms so that tests see them quickly.
func (s *Influx) MonitorCatalogue() string {
	return fmt.Sprintf("monitor: {plugin: monitor-influx, config: {url: %q, create_database: true, flush_interval_ms: 100}}\n", s.URL)
}
