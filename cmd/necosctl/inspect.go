package main

import (
	"fmt"
	"io"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/necos/necos/api/client"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/sdk"
	"github.com/spf13/cobra"
)

// The commands that read what the API keeps about a slice besides its state: its
// events, its elasticity policies and its metrics.

func newSliceEvents(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "events ID",
		Short: "List a slice's events so far, oldest first",
		Long: `List a slice's events so far, oldest first: time (to the millisecond), event, part
or link, message. "necosctl slice watch ID" follows them live.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			evs, err := c.Events(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.print(v1.EventList{Events: evs}, func(w io.Writer) {
				row(w, "SEQ", "TIME", "EVENT", "PART/LINK", "MESSAGE")
				for _, e := range evs {
					row(w, e.Seq, clock(e.Time), e.Type, eventSubject(&e), e.Message)
				}
			})
		},
	}
}

func eventSubject(e *v1.Event) string {
	if e.Part != "" {
		return e.Part
	}
	return e.Link
}

func newSlicePolicies(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "policies ID",
		Short: "List a slice's elasticity policies (see also: necosctl policy)",
		Long: `List a slice's elasticity policies: those registered through the API (necosctl
policy create) and those its services' documents carry.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.listPolicies(cmd, args[0])
		},
	}
}

func (a *app) listPolicies(cmd *cobra.Command, sliceID string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	l, err := c.ListPolicies(cmd.Context(), sliceID)
	if err != nil {
		return err
	}
	if l == nil {
		l = []client.Policy{}
	}
	return a.print(map[string]any{"policies": l}, func(w io.Writer) {
		row(w, "NAME", "PART", "SOURCE", "CREATED", "CONDITION")
		for _, p := range l {
			row(w, p.Name, p.Part, p.Source, when(&p.CreatedAt), p.Condition)
		}
	})
}

// newPolicyCommand is the policy verbs of the API's policy routes.
func newPolicyCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "policy",
		Aliases: []string{"policies"},
		Short:   "List, read, register and remove a slice's elasticity policies",
		Long: `A slice's elasticity policies (docs/elasticity.md): a policy posted alone names its
part with "part:". A policy a service's document registered is changed there.`,
	}
	list := &cobra.Command{
		Use:     "list SLICE",
		Aliases: []string{"ls"},
		Short:   "List a slice's policies",
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return a.listPolicies(cmd, args[0]) },
	}
	get := &cobra.Command{
		Use:   "get SLICE NAME",
		Short: "Show one policy as registered",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.GetPolicy(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.print(p, func(w io.Writer) { policyTable(w, p) })
		},
	}
	var file string
	create := &cobra.Command{
		Use:   "create SLICE -f FILE",
		Short: "Register a policy (YAML or JSON; -f - reads standard input); replaces the API's policy of that name",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := readInput(file, cmd.InOrStdin(), "policy")
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, replaced, err := c.CreatePolicy(cmd.Context(), args[0], doc, specType(file, doc))
			if err != nil {
				return err
			}
			return a.print(p, func(w io.Writer) {
				verb := "registered"
				if replaced {
					verb = "replaced"
				}
				fmt.Fprintf(w, "policy %s %s on part %s of slice %s\n", p.Name, verb, p.Part, args[0])
				policyTable(w, p)
			})
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "policy file, - for standard input")
	_ = create.MarkFlagRequired("file")
	del := &cobra.Command{
		Use:     "delete SLICE NAME",
		Aliases: []string{"rm"},
		Short:   "Remove a policy: it stops being evaluated",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeletePolicy(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "policy %s of slice %s deleted\n", args[1], args[0])
			return nil
		},
	}
	cmd.AddCommand(list, get, create, del)
	return cmd
}

func policyTable(w io.Writer, p *client.Policy) {
	row(w, "Name:", p.Name)
	row(w, "Part:", p.Part)
	row(w, "Source:", p.Source)
	row(w, "Created:", when(&p.CreatedAt))
	row(w, "Condition:", p.Condition)
}

func newSliceMetrics(a *app) *cobra.Command {
	var metric, part, node, nodeType, source, since, until string
	var last int
	var points bool
	cmd := &cobra.Command{
		Use:   "metrics ID",
		Short: "Show a slice's stored metrics, series by series",
		Long: `Show the metrics the monitoring stored for a slice (and those pushed to it): one row
per series (metric, part, node) with its number of points, the latest value and when,
and the lowest and highest; --points lists every point instead. --since and --until take
a duration back from now (5m, 1h) or a time (RFC 3339). Without --last or --since the
server answers the last 100 points of each series.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"metric": metric, "part": part, "node": node, "node-type": nodeType,
				"source": source, "since": since, "until": until} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if last != 0 {
				q.Set("last", strconv.Itoa(last))
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			series, err := c.Metrics(cmd.Context(), args[0], q)
			if err != nil {
				return err
			}
			if series == nil {
				series = []client.MetricSeries{}
			}
			return a.print(map[string]any{"slice": args[0], "series": series}, func(w io.Writer) {
				if points {
					metricPoints(w, series)
				} else {
					metricSummary(w, series)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&metric, "metric", "", "only this metric (e.g. PERCENT_CPU_UTILIZATION)")
	f.StringVar(&part, "part", "", "only this part")
	f.StringVar(&node, "node", "", "only this node (its ResourceID)")
	f.StringVar(&nodeType, "node-type", "", "only nodes of this type (master, worker)")
	f.StringVar(&source, "source", "", "only points from this source (push: pushed to the API)")
	f.StringVar(&since, "since", "", "points since this duration ago (5m) or time (RFC 3339)")
	f.StringVar(&until, "until", "", "points until this duration ago or time")
	f.IntVar(&last, "last", 0, "the last N points of each series")
	f.BoolVar(&points, "points", false, "list every point, not one row per series")
	return cmd
}

func metricSummary(w io.Writer, series []client.MetricSeries) {
	row(w, "METRIC", "PART", "NODE", "POINTS", "LATEST", "AT", "MIN", "MAX", "TAGS")
	for _, s := range series {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, p := range s.Points {
			lo, hi = math.Min(lo, p.Value), math.Max(hi, p.Value)
		}
		latest, at, min, max := "", "", "", ""
		if n := len(s.Points); n > 0 {
			latest, at, min, max = value(s.Points[n-1].Value), clock(s.Points[n-1].Time), value(lo), value(hi)
		}
		row(w, s.Metric, s.Tags[sdk.TagPart], s.Tags[sdk.TagResourceID], len(s.Points), latest, at, min, max, otherTags(s.Tags))
	}
}

func metricPoints(w io.Writer, series []client.MetricSeries) {
	row(w, "METRIC", "PART", "NODE", "TIME", "VALUE", "TAGS")
	for _, s := range series {
		for _, p := range s.Points {
			row(w, s.Metric, s.Tags[sdk.TagPart], s.Tags[sdk.TagResourceID], p.Time.Local().Format("2006-01-02 15:04:05.000"),
				value(p.Value), otherTags(s.Tags))
		}
	}
}

// value is a metric value as the tables show it: at most two decimals (a CPU reading of
// 43.45374116235084 reads 43.45); -o json and -o yaml keep every digit.
func value(f float64) string { return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64) }

// otherTags shows the tags the columns do not, sorted.
func otherTags(tags map[string]string) string {
	var out []string
	for k, v := range tags {
		switch k {
		case sdk.TagSlice, sdk.TagPart, sdk.TagResourceID:
			continue
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// clock shows a time of day to the millisecond: events of one step are often
// milliseconds apart.
func clock(t time.Time) string { return t.Local().Format("15:04:05.000") }
