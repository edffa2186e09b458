package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/necos/necos/api/client"
	v1 "github.com/necos/necos/api/v1"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// Event types the engine records (core/sro); the bench reads phase times from them.
const (
	evAccepted   = "slice.accepted"
	evReady      = "slice.ready"
	evPartCreate = "part.creating"
	evPartReady  = "part.ready"
)

func newBenchCommand(a *app) *cobra.Command {
	var file string
	var n, concurrency int
	var keep bool
	cmd := &cobra.Command{
		Use:   "bench -f SLICE.yaml",
		Short: "Create and delete N copies of a slice and report latencies and throughput",
		Long: `bench creates N copies of a slice spec (each under its own id) against a running necosd,
CONCURRENCY at a time, waits for each to be Ready, then decommissions them all. It prints:

  create p50/p99   time from the request to the slice Ready, as the client sees it
  slices/s         slices made Ready per second of wall time
  overhead p50/p99 the engine's time from accepted to Ready divided by the slowest part's
                   time from its plugin Create call to its result, read from the slice's
                   events: 1.0 means the slice took exactly as long as its slowest part
  delete p50/p99   time from the delete request to the slice gone

With --keep the slices stay (to measure a platform that holds many: see bench routes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n <= 0 || concurrency <= 0 {
				return errors.New("-n and -c must be positive")
			}
			doc, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := runBench(cmd.Context(), c, doc, n, concurrency, keep)
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) { res.table(w) })
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "NECOS slice spec to copy")
	cmd.Flags().IntVarP(&n, "count", "n", 100, "slices to create")
	cmd.Flags().IntVarP(&concurrency, "concurrency", "c", 8, "slices in flight at once")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the slices made (failed ones are still deleted)")
	_ = cmd.MarkFlagRequired("file")
	cmd.AddCommand(newBenchRoutesCommand(a))
	return cmd
}

// benchResult is what bench prints.
type benchResult struct {
	Slices      int     `json:"slices"`
	Parts       int     `json:"parts_per_slice"`
	Concurrency int     `json:"concurrency"`
	Failed      int     `json:"failed"`
	CreateP50   float64 `json:"create_p50_ms"`
	CreateP99   float64 `json:"create_p99_ms"`
	PerSecond   float64 `json:"slices_per_second"`
	RatioP50    float64 `json:"overhead_ratio_p50"`
	RatioP99    float64 `json:"overhead_ratio_p99"`
	PartP50     float64 `json:"slowest_part_p50_ms"`
	DeleteP50   float64 `json:"delete_p50_ms"`
	DeleteP99   float64 `json:"delete_p99_ms"`
	// Failures counts the failed slices by reason (their error, the slice's id left out).
	Failures map[string]int `json:"failures_by_reason,omitempty"`
}

func (r *benchResult) table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLICES\tPARTS\tCONC\tFAILED\tCREATE p50\tCREATE p99\tSLICES/S\tSLOWEST PART p50\tOVERHEAD p50\tOVERHEAD p99\tDELETE p50\tDELETE p99")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.1f ms\t%.1f ms\t%.1f\t%.1f ms\t%.2f\t%.2f\t%.1f ms\t%.1f ms\n",
		r.Slices, r.Parts, r.Concurrency, r.Failed, r.CreateP50, r.CreateP99, r.PerSecond, r.PartP50,
		r.RatioP50, r.RatioP99, r.DeleteP50, r.DeleteP99)
	tw.Flush()
	reasons := make([]string, 0, len(r.Failures))
	for k := range r.Failures {
		reasons = append(reasons, k)
	}
	sort.Slice(reasons, func(i, j int) bool { return r.Failures[reasons[i]] > r.Failures[reasons[j]] })
	for _, k := range reasons {
		fmt.Fprintf(w, "failed %d: %s\n", r.Failures[k], k)
	}
}

// failureReason is err's message with the slice's id and copy name left out, so that
// failures of one cause count together.
func failureReason(err error, id, name string) string {
	msg := err.Error()
	for _, s := range []string{id, name} {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "<slice>")
		}
	}
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

func runBench(ctx context.Context, c *client.Client, doc []byte, n, concurrency int, keep bool) (*benchResult, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	idNode := findID(&root)
	if idNode == nil {
		return nil, errors.New("spec: no slices.sliced.id to vary")
	}
	base, run := idNode.Value, time.Now().UnixNano()%100000

	type one struct {
		id, name           string
		create, delete     time.Duration
		ratio, slowestPart float64
		parts              int
		err                error
	}
	results := make([]one, n)
	work := make(chan int)
	var mu sync.Mutex // guards idNode while a copy is encoded
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				mu.Lock()
				idNode.Value = fmt.Sprintf("%s-b%d-%d", base, run, i)
				results[i].name = idNode.Value
				body, err := yaml.Marshal(&root)
				mu.Unlock()
				if err != nil {
					results[i].err = err
					continue
				}
				t0 := time.Now()
				s, err := c.CreateSlice(ctx, body, client.YAML, true)
				results[i].create = time.Since(t0)
				if err != nil {
					results[i].err = err
					if s != nil {
						results[i].id = s.ID
					}
					continue
				}
				results[i].id, results[i].parts = s.ID, len(s.Parts)
				evs, err := c.Events(ctx, s.ID)
				if err != nil {
					results[i].err = err
					continue
				}
				results[i].ratio, results[i].slowestPart = overhead(evs)
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)

	// Decommission every slice made (also failed ones), concurrency at a time.
	dwork := make(chan int)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range dwork {
				t0 := time.Now()
				if _, err := c.DeleteSlice(ctx, results[i].id, true); err != nil && !client.IsNotFound(err) {
					results[i].err = errors.Join(results[i].err, err)
				}
				results[i].delete = time.Since(t0)
			}
		}()
	}
	for i := range results {
		if results[i].id != "" && (!keep || results[i].err != nil) {
			dwork <- i
		}
	}
	close(dwork)
	wg.Wait()
	// Slices whose create failed were not seen by id: find them by name.
	prefix := fmt.Sprintf("%s-b%d-", base, run)
	if left, err := c.ListSlices(ctx); err == nil {
		for _, s := range left {
			if strings.HasPrefix(s.Name, prefix) && (!keep || s.State != "Ready") {
				if _, err := c.DeleteSlice(ctx, s.ID, true); err != nil && !client.IsNotFound(err) {
					fmt.Fprintf(os.Stderr, "bench: delete %s: %v\n", s.ID, err)
				}
			}
		}
	}

	res := &benchResult{Slices: n, Concurrency: concurrency}
	var creates, deletes, ratios, parts []float64
	var firstErr error
	for _, r := range results {
		if r.err != nil {
			res.Failed++
			if firstErr == nil {
				firstErr = r.err
			}
			if res.Failures == nil {
				res.Failures = map[string]int{}
			}
			res.Failures[failureReason(r.err, r.id, r.name)]++
			continue
		}
		res.Parts = r.parts
		creates = append(creates, ms(r.create))
		deletes = append(deletes, ms(r.delete))
		if !math.IsNaN(r.ratio) {
			ratios = append(ratios, r.ratio)
			parts = append(parts, r.slowestPart)
		}
	}
	if len(creates) == 0 {
		return nil, fmt.Errorf("every slice failed; the first: %w", firstErr)
	}
	res.CreateP50, res.CreateP99 = pct(creates, 50), pct(creates, 99)
	res.DeleteP50, res.DeleteP99 = pct(deletes, 50), pct(deletes, 99)
	if len(ratios) > 0 {
		res.RatioP50, res.RatioP99 = pct(ratios, 50), pct(ratios, 99)
		res.PartP50 = pct(parts, 50)
	}
	res.PerSecond = float64(len(creates)) / elapsed.Seconds()
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "bench: %d slices failed; the first: %v\n", res.Failed, firstErr)
	}
	return res, nil
}

// overhead reads from a slice's events the engine's time from accepted to Ready and the
// slowest part's time from its Create call to its result; it returns their ratio and
// that part time in ms.
func overhead(evs []v1.Event) (float64, float64) {
	var accepted, ready time.Time
	creating := map[string]time.Time{}
	var slowest time.Duration
	for _, ev := range evs {
		switch ev.Type {
		case evAccepted:
			accepted = ev.Time
		case evReady:
			ready = ev.Time
		case evPartCreate:
			creating[ev.Part] = ev.Time
		case evPartReady:
			if t0, ok := creating[ev.Part]; ok && ev.Time.Sub(t0) > slowest {
				slowest = ev.Time.Sub(t0)
			}
		}
	}
	if accepted.IsZero() || ready.IsZero() || slowest <= 0 {
		return math.NaN(), 0
	}
	return float64(ready.Sub(accepted)) / float64(slowest), ms(slowest)
}

func findID(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return findID(n.Content[0])
	}
	sl := mapValue(n, "slices")
	s := mapValue(sl, "sliced")
	if s == nil {
		s = mapValue(sl, "slice")
	}
	return mapValue(s, "id")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct returns the p-th percentile (nearest rank) of v.
func pct(v []float64, p float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	if i < 0 {
		i = 0
	}
	return s[i]
}
