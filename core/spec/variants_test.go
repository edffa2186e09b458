package spec

import (
	"reflect"
	"strings"
	"testing"
)

// TestFieldVariants: every shape the original's documents could give a field (its
// readers were Python over YAML 1.1, its templates wrote "undefined" for none) is
// accepted, read for what it means, and rendered back as written where the platform
// does not interpret it; only what means nothing is refused.
func TestFieldVariants(t *testing.T) {
	top := func(extra string) func(*testing.T) string {
		return func(t *testing.T) string { return replace(t, minimal, "    id: s1\n", "    id: s1\n"+extra) }
	}
	in := func(old, new string) func(*testing.T) string {
		return func(t *testing.T) string { return replace(t, minimal, old, new) }
	}
	cases := []struct {
		name     string
		doc      func(*testing.T) string
		check    func(*Slice) any // what the model read
		want     any
		rendered []string // text the rendered slice holds, as written
	}{
		// slice-timeframe: strings, dates YAML reads as timestamps, numbers, mappings of
		// date parts, empty; service-duration a number or a string.
		{"timeframe strings", top("    slice-timeframe: {service-start-time: '2019-06-01 08:00', service-stop-time: \"tomorrow\"}\n"),
			func(s *Slice) any { return []any{s.Timeframe.Start, s.Timeframe.Stop} }, []any{"2019-06-01 08:00", "tomorrow"},
			[]string{"2019-06-01 08:00", "service-stop-time: tomorrow"}},
		{"timeframe timestamps", top("    slice-timeframe:\n      service-start-time: 2019-06-01T08:00:00Z\n      service-stop-time: 2019-06-02\n"),
			func(s *Slice) any { return []any{s.Timeframe.Start, s.Timeframe.Stop} }, []any{Timestamp("2019-06-01T08:00:00Z"), Timestamp("2019-06-02")},
			[]string{"service-start-time: 2019-06-01T08:00:00Z", "service-stop-time: 2019-06-02\n"}},
		{"timeframe date parts", top("    slice-timeframe:\n      service-start-time: {year: 2019, month: 6, day: 1, hour: 8}\n      service-stop-time: {year: 2019, month: 6, day: 30}\n"),
			func(s *Slice) any { return s.Timeframe.Start },
			map[string]any{"year": int64(2019), "month": int64(6), "day": int64(1), "hour": int64(8)},
			[]string{"year: 2019", "month: 6", "day: 30", "hour: 8"}},
		{"timeframe empty", top("    slice-timeframe: {service-start-time: , service-stop-time: ''}\n"),
			func(s *Slice) any { return []any{s.Timeframe.Start, s.Timeframe.Stop} }, []any{nil, ""},
			[]string{"service-stop-time: \"\""}},
		{"timeframe epoch and duration string", top("    slice-timeframe: {service-start-time: 1559376000, service-duration: 8h}\n"),
			func(s *Slice) any { return []any{s.Timeframe.Start, s.Timeframe.Duration} }, []any{int64(1559376000), "8h"},
			[]string{"service-start-time: 1559376000", "service-duration: 8h"}},
		{"timeframe undefined", top("    slice-timeframe: undefined\n"),
			func(s *Slice) any { return s.Timeframe == nil }, true, nil},
		// Flags: YAML 1.1 words, quoted, and "undefined".
		{"flags yes/no", top("    created-slice: no\n    slice-requirements: {elasticity: yes, reliability: {enabled: 'True', value: none}}\n"),
			func(s *Slice) any {
				return []bool{s.Update, s.Requirements.Elasticity, s.Requirements.Reliability.Enabled}
			}, []bool{false, true, true},
			[]string{"elasticity: true"}},
		{"flags on/off and undefined", in("name: xen-vim\n", "name: xen-vim\n            vim-shared: on\n            vim-federated: undefined\n"),
			func(s *Slice) any { return []bool{s.Parts[1].VIM.Shared, s.Parts[1].VIM.Federated} }, []bool{true, false}, nil},
		// Numbers quoted or written "undefined".
		{"quoted numbers", in("host-epa: {cpu-number: 1, memory-mb: 512}", "host-epa: {cpu-number: '2', memory-mb: \"4096\", storage-gb: ' 20 '}"),
			func(s *Slice) any {
				v := s.Parts[1].VIM.VDUs[0]
				return []int64{int64(v.CPUs), v.MemoryMB, v.StorageGB}
			}, []int64{2, 4096, 20},
			[]string{"cpu-number: 2", "memory-mb: 4096"}},
		{"quoted memory at least", in("memory-mb: {greater_or_equal: 1024}", "memory-mb: {greater_or_equal: '1024'}"),
			func(s *Slice) any { return s.Parts[0].VIM.VDUs[1].MemoryMB }, int64(1024), nil},
		{"undefined counts", in("name: xen-vim\n", "name: xen-vim\n            host-count: undefined\n            version: undefined\n"),
			func(s *Slice) any { return s.Parts[1].VIM.HostCount }, 0, nil},
		{"instance-count undefined", in("instance-count: 2", "instance-count: undefined"),
			func(s *Slice) any { return s.Parts[0].VIM.VDUs[1].Instances }, 1, nil},
		{"quoted instance-count", in("instance-count: 2", "instance-count: '3'"),
			func(s *Slice) any { return s.Parts[0].VIM.VDUs[1].Instances }, 3, nil},
		{"quoted bandwidth", in("bandwidth-GB: 1}", "bandwidth-GB: '2.5'}"),
			func(s *Slice) any { return s.Links[0].BandwidthGB }, 2.5, []string{"bandwidth-GB: 2.5"}},
		{"slice-constraints quoted", top("    slice-constraints: {geographic: EUROPE, dc-slice-parts: '2', net-slice-parts: undefined}\n"),
			func(s *Slice) any {
				return []any{s.Constraints.Geographic, s.Constraints.DCParts, s.Constraints.NetParts}
			},
			[]any{[]string{"EUROPE"}, 2, 0}, nil},
		// Words for none in strings the platform interprets.
		{"type and location undefined", in("type: EDGE\n          location: EUROPE.SPAIN", "type: 'null'\n          location: undefined"),
			func(s *Slice) any { return []string{s.Parts[1].Type, s.Parts[1].Location} }, []string{"", ""}, nil},
		{"vdu type null", in("name: vm\n", "name: vm\n                  type: 'null'\n"),
			func(s *Slice) any { return s.Parts[1].VIM.VDUs[0].Type }, "", nil},
		{"lower-case part type", in("type: EDGE", "type: edge"),
			func(s *Slice) any { return s.Parts[1].Type }, PartEdge, nil},
		// Monitoring: granularity "default", quoted; port "undefined"; metrics as names.
		{"monitoring variants", in("          location: EUROPE.SPAIN\n", "          location: EUROPE.SPAIN\n          monitoring-parameters: {tool: influxdb, measurements-db-port: undefined, granularity-secs: default, metrics: [PERCENT_CPU_UTILIZATION, {metric: {name: MEM, granularity-secs: '10'}}]}\n"),
			func(s *Slice) any { m := s.Parts[1].Monitoring; return []any{m.DBPort, m.GranularitySecs, m.Metrics} },
			[]any{0, 0, []Metric{{Name: "PERCENT_CPU_UTILIZATION"}, {Name: "MEM", GranularitySecs: 10}}}, nil},
		// Cost: a number, an expression, with a currency, a decimal comma; kept as written.
		{"cost with currency", in(`value-euros: "<=10"`, `value-euros: "<= 10 €"`),
			func(s *Slice) any { return *s.Cost.DC }, CostModel{Model: CostPerMachinePerDay, Op: "<=", Euros: 10, Written: "<= 10 €"},
			[]string{"value-euros: <= 10 €"}},
		{"cost in EUR with a comma", in(`value-euros: "<=10"`, `value-euros: "12,5 EUR"`),
			func(s *Slice) any { return s.Cost.DC.Euros }, 12.5, []string{"value-euros: 12,5 EUR"}},
		{"cost as a number", in(`value-euros: "<=10"`, `value-euros: 10`),
			func(s *Slice) any { return *s.Cost.DC }, CostModel{Model: CostPerMachinePerDay, Euros: 10}, []string{"value-euros: 10"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSlice([]byte(c.doc(t)))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if got := c.check(s); !reflect.DeepEqual(got, c.want) {
				t.Errorf("read %#v, want %#v", got, c.want)
			}
			out, err := Render(s, Status{})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.rendered {
				if !strings.Contains(string(out), w) {
					t.Errorf("rendered slice lacks %q:\n%s", w, out)
				}
			}
			// What is rendered reads back to the same model.
			back, err := ParseSlice(out)
			if err != nil {
				t.Fatalf("rendered slice refused: %v\n%s", err, out)
			}
			if got := c.check(back); !reflect.DeepEqual(got, c.want) {
				t.Errorf("read back %#v, want %#v", got, c.want)
			}
		})
	}

	// What means nothing is still refused, naming the field.
	bad := []struct{ name, doc, path, msg string }{
		{"flag", replace(t, minimal, "    id: s1\n", "    id: s1\n    created-slice: maybe\n"), "slices.sliced.created-slice", "must be true or false"},
		{"count", replace(t, minimal, "instance-count: 2", "instance-count: two"), "instance-count", "must be an integer"},
		{"hex count", replace(t, minimal, "instance-count: 2", "instance-count: '0x2'"), "instance-count", "must be an integer"},
		{"cpu as a list", replace(t, minimal, "cpu-number: 2,", "cpu-number: [2],"), "cpu-number", "must be an integer"},
		{"bandwidth", replace(t, minimal, "bandwidth-GB: 1}", "bandwidth-GB: lots}"), "bandwidth-GB", "must be a number"},
		{"bandwidth NaN", replace(t, minimal, "bandwidth-GB: 1}", "bandwidth-GB: 'NaN'}"), "bandwidth-GB", "must be a number"},
		{"cost", replace(t, minimal, `value-euros: "<=10"`, `value-euros: "cheap"`), "value-euros", "must be a number of euros"},
		{"timeframe a list", replace(t, minimal, "    id: s1\n", "    id: s1\n    slice-timeframe: [1, 2]\n"), "slices.sliced.slice-timeframe", "must be a mapping"},
	}
	for _, b := range bad {
		_, err := ParseSlice([]byte(b.doc))
		if err == nil || !strings.Contains(err.Error(), b.path) || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("%s: got %v, want %s: %s", b.name, err, b.path, b.msg)
		}
	}
}

// TestPolicyVariants: a policy written as the original's tenants could write it
// (quoted numbers, granularity quoted or "undefined", a single command) reads as the
// plain form does.
func TestPolicyVariants(t *testing.T) {
	for _, c := range []struct{ old, new string }{
		{"value: 80", "value: '80'"},
		{"trigger: {points: 3}", "trigger: {points: \"3\"}"},
		{"granularity: default", "granularity: '15'"},
		{"granularity: default", "granularity: undefined"},
		{"reactivate-elasticity: 120", "reactivate-elasticity: '120'"},
	} {
		svc, err := ParseService([]byte(replace(t, serviceDoc, c.old, c.new)))
		if err != nil {
			t.Errorf("%s: %v", c.new, err)
			continue
		}
		p := svc.Parts[0].Policies[0]
		if p.Value != 80 || p.Trigger.Points != 3 || p.PostDeployment.Timers.ReactivateSecs != 120 {
			t.Errorf("%s: %+v", c.new, p)
		}
		if want := map[bool]int{true: 15, false: 0}[strings.Contains(c.new, "15")]; p.Collector.GranularitySecs != want {
			t.Errorf("%s: granularity %d, want %d", c.new, p.Collector.GranularitySecs, want)
		}
	}
}
