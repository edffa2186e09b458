package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/necos/necos/api/v1"
)

// print writes v as -o asks: JSON, YAML (the same keys), or the table table writes.
func (a *app) print(v any, table func(w io.Writer)) error {
	switch a.output {
	case "json":
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := v1.JSONToYAML(b)
		if err != nil {
			return err
		}
		_, err = a.out.Write(y)
		return err
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// row writes one tab-separated table row.
func row(w io.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
		if s[i] == "" {
			s[i] = "-"
		}
	}
	fmt.Fprintln(w, strings.Join(s, "\t"))
}

// clip keeps a table's cell to one line of at most n characters, ending in "..." when
// cut (-o yaml|json and slice get show it whole).
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-3]) + "..."
	}
	return s
}

func euros(f float64) string { return fmt.Sprintf("%.2f", f) }

func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

func state(s string, deleting bool) string {
	if deleting && s != "Deleting" {
		s += " (deleting)"
	}
	return s
}

func addr(a *v1.Address) string {
	if a == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d", a.IP, a.Port)
}

// sliceTable shows a slice: a summary, then its parts, nodes and links.
func sliceTable(w io.Writer, s *v1.Slice) {
	row(w, "ID:", s.ID)
	row(w, "Name:", s.Name)
	row(w, "State:", state(s.State, s.Deleting))
	if s.Message != "" {
		row(w, "Message:", s.Message)
	}
	row(w, "Cost/day:", euros(s.CostPerDay)+" EUR")
	row(w, "Created:", when(&s.CreatedAt))
	if s.ReadyAt != nil {
		row(w, "Ready:", when(s.ReadyAt))
	}
	row(w, "Events:", s.Events)
	if len(s.Parts) > 0 {
		fmt.Fprintln(w)
		row(w, "PART", "TYPE", "LOCATION", "PROVIDER", "STATE", "NODES", "COST/DAY", "SSH", "API", "BRIDGE")
		for _, p := range s.Parts {
			var ssh, api string
			if p.VIMRef != nil {
				ssh, api = addr(p.VIMRef.SSH), addr(p.VIMRef.API)
			}
			row(w, p.Name, p.Type, p.Location, p.Provider, p.State, len(p.Nodes), euros(p.CostPerDay), ssh, api, p.Bridge)
		}
		fmt.Fprintln(w)
		row(w, "NODE", "PART", "TYPE", "IPS", "CPUS", "MEMORY_MB", "STATE")
		for _, p := range s.Parts {
			for _, n := range p.Nodes {
				row(w, n.Name, p.Name, n.Type, strings.Join(n.IPs, ","), n.CPUs, n.MemoryMB, n.State)
			}
		}
	}
	if len(s.Links) > 0 {
		fmt.Fprintln(w)
		row(w, "LINK", "PROVIDER", "STATE", "VNI", "END1", "END2", "COST/DAY")
		for _, l := range s.Links {
			vni := ""
			if l.VNI != 0 {
				vni = fmt.Sprint(l.VNI)
			}
			row(w, l.Name, l.Provider, l.State, vni, linkEnd(l.Ends[0]), linkEnd(l.Ends[1]), euros(l.CostPerDay))
		}
	}
}

func linkEnd(e v1.LinkEnd) string {
	if e.Underlay == "" {
		return e.Part
	}
	return e.Part + "@" + e.Underlay
}
