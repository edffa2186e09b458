package xenvim

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// TestCPUMetricSeries measures a node's CPU use several times in a row, as monitoring
// does, and compares every sample, not only the first, with the use the domain's own
// CPU-time series shows (read from libvirt beside the plugin). The test driver's domains
// accumulate CPU time at one CPU-second per second, so a 2-vCPU node is 50 % busy. Both
// Metrics and MetricsBatch measure the same.
func TestCPUMetricSeries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		measure func(p *Plugin, ref sdk.PartRef) ([]sdk.Sample, error)
	}{
		{"Metrics", func(p *Plugin, ref sdk.PartRef) ([]sdk.Sample, error) {
			return p.Metrics(context.Background(), sdk.MetricsRequest{Ref: ref, Names: []string{sdk.MetricCPUPercent}})
		}},
		{"MetricsBatch", func(p *Plugin, ref sdk.PartRef) ([]sdk.Sample, error) {
			got, err := p.MetricsBatch(context.Background(), sdk.MetricsBatchRequest{Parts: []sdk.MetricsRequest{{Ref: ref, Names: []string{sdk.MetricCPUPercent}}}})
			if err != nil {
				return nil, err
			}
			return got[0].Samples, got[0].Err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newTestPlugin(t, Config{Subnet: "10.10.2.0/24"})
			ref := sdk.PartRef{SliceID: "cpu-" + suffix(), PartID: "core"}
			mustCreate(t, p, partSpec(ref, sdk.VDUSpec{Name: "vm", Instances: 1, CPUs: 2, MemoryMB: 512, Type: "master"}))

			want := domainCPUUse(t, "necos."+ref.SliceID+".")
			t.Logf("the domain's CPU-time series: %.2f %%", want)
			if want <= 0 {
				t.Fatalf("the domain's CPU time does not grow (%.2f %%): nothing to measure", want)
			}
			for i := range 4 {
				if i > 0 {
					time.Sleep(cpuPause) // a collector's period, shortened
				}
				s, err := tc.measure(p, ref)
				if err != nil {
					t.Fatal(err)
				}
				if len(s) != 1 || s[0].Metric != sdk.MetricCPUPercent {
					t.Fatalf("sample %d: %+v, want one CPU sample", i, s)
				}
				if math.Abs(s[0].Value-want) > 2 {
					t.Errorf("sample %d: CPU %.2f %%, want %.2f ± 2 (the domain's series)", i, s[0].Value, want)
				}
			}
		})
	}
}

// domainCPUUse reads the CPU time of the domain whose name starts with prefix twice and
// returns its use over that time, in percent of its vCPUs.
func domainCPUUse(t *testing.T, prefix string) float64 {
	t.Helper()
	conn, err := libvirt.NewConnect("test:///default")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		t.Fatal(err)
	}
	var dom *libvirt.Domain
	for i := range doms {
		if name, _ := doms[i].GetName(); dom == nil && strings.HasPrefix(name, prefix) {
			dom = &doms[i]
			continue
		}
		doms[i].Free()
	}
	if dom == nil {
		t.Fatalf("no domain named %s*", prefix)
	}
	defer dom.Free()
	info := func() (*libvirt.DomainInfo, time.Time) {
		i, err := dom.GetInfo()
		if err != nil {
			t.Fatal(err)
		}
		return i, time.Now()
	}
	a, ta := info()
	time.Sleep(300 * time.Millisecond)
	b, tb := info()
	return float64(b.CpuTime-a.CpuTime) / float64(tb.Sub(ta).Nanoseconds()) / float64(b.NrVirtCpu) * 100
}
