package sro

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus collectors.
type Metrics struct {
	phase  *prometheus.HistogramVec
	plugin *prometheus.HistogramVec
}

// NewMetrics registers the engine's collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "necos", Name: "slice_phase_seconds",
			Help:    "Time spent per phase of a slice's life: plan, parts, links, create (accepted to ready), rollback, decommission.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}, []string{"phase"}),
		plugin: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "necos", Name: "plugin_call_seconds",
			Help:    "Latency of plugin calls made by the engine.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20),
		}, []string{"kind", "call"}),
	}
	reg.MustRegister(m.phase, m.plugin)
	return m
}

func (m *Metrics) observe(phase string, start time.Time) {
	if m != nil {
		m.phase.WithLabelValues(phase).Observe(time.Since(start).Seconds())
	}
}

func (m *Metrics) observePlugin(kind, call string, start time.Time) {
	if m != nil {
		m.plugin.WithLabelValues(kind, call).Observe(time.Since(start).Seconds())
	}
}
