package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"text/tabwriter"
	"time"

	"github.com/necos/necos/api/client"
	"github.com/spf13/cobra"
)

func newBenchRoutesCommand(a *app) *cobra.Command {
	var n int
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "Time the API's read routes against the slices necosd holds",
		Long: `bench routes calls each read route of the API N times, one call at a time, on the
tenant's slices as they are (make many first with bench --keep), and prints p50, p99 and
max per route: a page of the slice list, a slice, its NECOS document, its events, the
marketplace, readiness.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n <= 0 {
				return errors.New("-n must be positive")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := benchRoutes(cmd.Context(), c, n)
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) { res.table(w) })
		},
	}
	cmd.Flags().IntVarP(&n, "count", "n", 200, "calls per route")
	return cmd
}

// routeTimes is what bench routes prints.
type routeTimes struct {
	Slices int         `json:"slices_seen"`
	Calls  int         `json:"calls_per_route"`
	Routes []routeTime `json:"routes"`
}

type routeTime struct {
	Route string  `json:"route"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func (r *routeTimes) table(w io.Writer) {
	fmt.Fprintf(w, "%d calls per route; %d slices in the first page\n", r.Calls, r.Slices)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tp50\tp99\tMAX")
	for _, rt := range r.Routes {
		fmt.Fprintf(tw, "%s\t%.1f ms\t%.1f ms\t%.1f ms\n", rt.Route, rt.P50, rt.P99, rt.Max)
	}
	tw.Flush()
}

func benchRoutes(ctx context.Context, c *client.Client, n int) (*routeTimes, error) {
	first, err := c.ListSlicePage(ctx, 100, "")
	if err != nil {
		return nil, err
	}
	if len(first.Slices) == 0 {
		return nil, errors.New("the tenant has no slice: make some first (necosctl bench --keep)")
	}
	ids := make([]string, len(first.Slices))
	for i, s := range first.Slices {
		ids[i] = s.ID
	}
	some := func() string { return ids[rand.IntN(len(ids))] }
	routes := []struct {
		name string
		call func() error
	}{
		{"GET /v1/slices?limit=100", func() error { _, err := c.ListSlicePage(ctx, 100, ""); return err }},
		{"GET /v1/slices?limit=100&continue=", func() error { _, err := c.ListSlicePage(ctx, 100, first.Continue); return err }},
		{"GET /v1/slices/{id}", func() error { _, err := c.GetSlice(ctx, some()); return err }},
		{"GET /v1/slices/{id}?format=necos", func() error { _, err := c.GetSliceNECOS(ctx, some()); return err }},
		{"GET /v1/slices/{id}/events", func() error { _, err := c.Events(ctx, some()); return err }},
		{"GET /v1/slices/{id}/timings", func() error { _, err := c.Timings(ctx, some()); return err }},
		{"GET /v1/marketplace", func() error { _, err := c.Marketplace(ctx); return err }},
		{"GET /readyz", func() error { return c.Healthy(ctx) }},
	}
	out := &routeTimes{Slices: len(ids), Calls: n}
	for _, r := range routes {
		durs := make([]float64, 0, n)
		for range n {
			t0 := time.Now()
			if err := r.call(); err != nil {
				return nil, fmt.Errorf("%s: %w", r.name, err)
			}
			durs = append(durs, ms(time.Since(t0)))
		}
		out.Routes = append(out.Routes, routeTime{Route: r.name, P50: pct(durs, 50), P99: pct(durs, 99), Max: pct(durs, 100)})
	}
	return out, nil
}
