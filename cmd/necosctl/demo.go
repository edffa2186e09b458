package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/necos/necos/api/client"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/spf13/cobra"
)

// Outcomes of a demo phase.
const (
	demoDone    = "done"
	demoFailed  = "FAILED"
	demoNotDone = "not done"
)

// demoPhase is one step of the demo's story, as the demo saw it.
type demoPhase struct {
	Tenant  string        `json:"tenant"`
	Name    string        `json:"name"`
	Took    time.Duration `json:"-"`
	Seconds float64       `json:"seconds"`
	Outcome string        `json:"outcome"`
	Note    string        `json:"note,omitempty"`
}

// demoOptions are the flags of `necosctl demo`.
type demoOptions struct {
	keep                         bool
	cdnToken, iotToken           string
	cdnSlice, cdnService         string
	iotSlice, iotService         string
	iotPart, iotSelector         string
	splitFor                     time.Duration
	tenants                      string
	webPort                      int
	elasticFor                   time.Duration
	loadRate, loadMax            float64
	loadDevices                  int
	sshWithin                    time.Duration
	virshURI                     string
	cdnTokenFile, iotTokenFile   string
	cdnTenantName, iotTenantName string
	tuning                       policyTuning
}

// demo runs the story and keeps what each phase did.
type demo struct {
	a      *app
	o      demoOptions
	out    io.Writer
	start  time.Time
	mu     sync.Mutex
	phases []demoPhase
	// timings are each slice's phases as the engine recorded them, read before deletion.
	timings map[string]*v1.Timings
	order   []string
	// cleanup holds what the demo opened (forwarders, loads) until it ends.
	closers []func()
	// iotRate is the rate (messages/s) the IoT load's ramp had reached when it stopped.
	iotRate float64
}

// phase runs f as a named phase of tenant and records how it went. f returns a note to
// show, or an error; errNotDone marks a phase the platform cannot do (the note says why).
func (d *demo) phase(tenant, name string, f func() (string, error)) error {
	fmt.Fprintf(d.out, "[%6.1fs] %-4s %s ...\n", time.Since(d.start).Seconds(), tenant, name)
	t0 := time.Now()
	note, err := f()
	p := demoPhase{Tenant: tenant, Name: name, Took: time.Since(t0), Outcome: demoDone, Note: note}
	p.Seconds = p.Took.Seconds()
	var nd *notDone
	switch {
	case errors.As(err, &nd):
		p.Outcome, p.Note = demoNotDone, nd.reason
	case err != nil:
		p.Outcome, p.Note = demoFailed, err.Error()
	}
	d.mu.Lock()
	d.phases = append(d.phases, p)
	d.mu.Unlock()
	mark := "ok"
	if p.Outcome != demoDone {
		mark = p.Outcome
	}
	fmt.Fprintf(d.out, "[%6.1fs] %-4s %s: %s in %.1fs", time.Since(d.start).Seconds(), tenant, name, mark, p.Seconds)
	if p.Note != "" {
		fmt.Fprintf(d.out, " (%s)", p.Note)
	}
	fmt.Fprintln(d.out)
	return err
}

// skip records a phase that was not run because an earlier one could not be done.
func (d *demo) skip(tenant, name, reason string) {
	d.mu.Lock()
	d.phases = append(d.phases, demoPhase{Tenant: tenant, Name: name, Outcome: demoNotDone, Note: reason})
	d.mu.Unlock()
	fmt.Fprintf(d.out, "[%6.1fs] %-4s %s: not done (%s)\n", time.Since(d.start).Seconds(), tenant, name, reason)
}

// notDone is a phase the platform (or this machine) cannot do: reported, never faked.
type notDone struct{ reason string }

func (e *notDone) Error() string { return "not done: " + e.reason }

func newDemoCommand(a *app) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the NECOS MUSTS demo against a running necosd: two tenants, services, load, elasticity, decommission",
		Long: `Run the story of the NECOS "MUSTS" demo against a running necosd, phase by phase, with
progress and, at the end, a table of the phases with their measured durations (the
engine's, from each slice's timings, and the demo's own):

1. The Touristic CDN tenant creates the 4-part CDN slice on real guests (core at UNICAMP,
   edges at SPAIN, GREECE and UFSCAR), waits for its guests, deploys the CDN service,
   checks that a visitor at each edge's place is served local content by that edge and
   the rest by the core, and forwards 127.0.0.1:--web-port to the core's web page.
2. The IoT tenant creates the IoT slice (Kubernetes parts) and deploys the IoT service.
3. Load and elasticity: the CDN's Spain edge is loaded with visitors until its policy
   acts (more CPU, then a copy of the edge at Madrid), and the IoT edge's broker with
   simulated devices (necosctl load mqtt); each elastic action is followed through the
   timings route (threshold crossed -> decision -> action done -> effective).
4. Both slices are deleted and the demo checks that nothing is left: no slice, nothing
   reserved at any provider beyond what was there before, no domain or volume of the
   slices in libvirt, no namespace, bridge or VXLAN device of their parts and links.

A phase the platform cannot do here (e.g. Kubernetes parts when the catalogue has no
Kubernetes provider) is reported as not done, with the reason, and the story goes on.
--keep stops before the decommission and waits for Ctrl-C, with the forwarder open, so a
person can look around (the dashboard, necosctl, the web page); the slices are then
left running.

Each tenant uses its own token: --cdn-token/--iot-token, else the files
data/<tenant>-token of necosd's data directory (--cdn-tenant, --iot-tenant; start necosd
with --tenants demo,cdn,iot), else the global token. Run as root on the machine of the
providers: the demo enters the parts' network namespaces to reach the guests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.tuning.threshold < 0 || o.tuning.threshold >= 100 {
				return fmt.Errorf("--cpu-threshold: want a percent from 0 (the service file's) to below 100, got %g", o.tuning.threshold)
			}
			if o.tuning.cooldown < 0 {
				return fmt.Errorf("--cooldown: want a duration >= 0 (0: the service file's), got %s", o.tuning.cooldown)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			d := &demo{a: a, o: o, out: cmd.OutOrStdout(), start: time.Now(), timings: map[string]*v1.Timings{}}
			return d.run(ctx)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.keep, "keep", false, "stop before the decommission and wait for Ctrl-C (the slices stay)")
	f.StringVar(&o.cdnTenantName, "cdn-tenant", "cdn", "the Touristic CDN tenant (its token file: data/<tenant>-token)")
	f.StringVar(&o.iotTenantName, "iot-tenant", "iot", "the IoT tenant")
	f.StringVar(&o.cdnToken, "cdn-token", "", "the CDN tenant's token")
	f.StringVar(&o.iotToken, "iot-token", "", "the IoT tenant's token")
	f.StringVar(&o.cdnSlice, "cdn-slice", "examples/slices/touristic-cdn-xen.yaml", "the CDN slice")
	f.StringVar(&o.cdnService, "cdn-service", "examples/services/touristic-cdn-xen.yaml", "the CDN service")
	f.StringVar(&o.iotSlice, "iot-slice", "examples/slices/iot-dojot.yaml", "the IoT slice")
	f.StringVar(&o.iotService, "iot-service", "examples/services/iot-dojot.yaml", "the IoT service")
	f.StringVar(&o.iotPart, "iot-part", "dc-slice2", "the IoT part running the MQTT broker")
	f.StringVar(&o.iotSelector, "iot-pods", "app=iotagent-mqtt", "label selector of the IoT pods (broker on 1883, agent on 8080) of a Kubernetes part")
	f.DurationVar(&o.splitFor, "split-for", 20*time.Second, "how long the devices publish to both IoT edges after the horizontal action")
	f.StringVar(&o.tenants, "tenants", "cdn,iot", "the tenants whose story runs (cdn, iot or both)")
	f.IntVar(&o.webPort, "web-port", 60080, "loopback port of the CDN's page (0: any free port)")
	f.DurationVar(&o.elasticFor, "elastic-timeout", 4*time.Minute, "how long the load runs waiting for the elastic actions (0: no load)")
	f.Float64Var(&o.loadRate, "mqtt-rate", 50, "MQTT load: messages/s at the start")
	f.Float64Var(&o.loadMax, "mqtt-max-rate", 2000, "MQTT load: messages/s the ramp reaches")
	f.IntVar(&o.loadDevices, "mqtt-devices", 20, "MQTT load: simulated devices")
	f.Float64Var(&o.tuning.threshold, "cpu-threshold", 0, "set the loaded parts' CPU policies to fire above this percent (0: the service file's; make demo gives 15, which this 2-core machine without KVM reaches)")
	f.DurationVar(&o.tuning.cooldown, "cooldown", 0, "set those policies' cooldown between actions (0: the service file's)")
	f.DurationVar(&o.sshWithin, "boot-timeout", 3*time.Minute, "how long the guests may take to answer SSH")
	f.StringVar(&o.virshURI, "libvirt-uri", envOr("NECOS_QEMU_URI", "qemu:///system"), "libvirt URI checked for left-over domains and volumes (virsh)")
	return cmd
}

// tenantClient returns the API client of a tenant: its token flag, else its token file
// next to the global one, else the global token.
func (d *demo) tenantClient(name, token string) (*client.Client, string, error) {
	b := *d.a
	note := "tenant " + name
	switch {
	case token != "":
		b.token = token
	default:
		file := filepath.Join(filepath.Dir(d.a.tokenFile), name+"-token")
		if tok, err := os.ReadFile(file); err == nil && d.a.token == "" {
			b.token = strings.TrimSpace(string(tok))
		} else {
			note = "the global token (no " + file + ")"
		}
	}
	c, err := b.client()
	return c, note, err
}

func (d *demo) run(ctx context.Context) error {
	defer func() {
		for i := len(d.closers) - 1; i >= 0; i-- {
			d.closers[i]()
		}
	}()
	runs := map[string]bool{}
	for _, t := range strings.Split(d.o.tenants, ",") {
		switch t = strings.TrimSpace(t); t {
		case "cdn", "iot":
			runs[t] = true
		default:
			return fmt.Errorf("--tenants: expected cdn, iot or cdn,iot, got %q", d.o.tenants)
		}
	}
	cdn, cdnWho, err := d.tenantClient(d.o.cdnTenantName, d.o.cdnToken)
	if err != nil {
		return err
	}
	iot, iotWho, err := d.tenantClient(d.o.iotTenantName, d.o.iotToken)
	if err != nil {
		return err
	}
	if err := cdn.Healthy(ctx); err != nil {
		return fmt.Errorf("necosd at %s: %w", d.a.server, err)
	}
	fmt.Fprintf(d.out, "necos MUSTS demo against %s: CDN as %s, IoT as %s\n", d.a.server, cdnWho, iotWho)
	before, err := cdn.Marketplace(ctx)
	if err != nil {
		return fmt.Errorf("marketplace: %w", err)
	}
	host := newHostState()

	var cdnSlice, iotSlice *v1.Slice
	if runs["cdn"] {
		cdnSlice = d.cdnStory(ctx, cdn, host)
	}
	if runs["iot"] {
		iotSlice = d.iotStory(ctx, iot, host)
	}
	d.elasticity(ctx, runs, cdn, cdnSlice, iot, iotSlice)

	for _, s := range []struct {
		c  *client.Client
		s  *v1.Slice
		by string
	}{{cdn, cdnSlice, "cdn"}, {iot, iotSlice, "iot"}} {
		if s.s == nil {
			continue
		}
		if t, err := s.c.Timings(ctx, s.s.ID); err == nil {
			d.timings[s.s.ID] = t
			d.order = append(d.order, s.s.ID)
		}
		// The slice as it is now: elasticity may have added parts and links.
		if cur, err := s.c.GetSlice(ctx, s.s.ID); err == nil {
			host.remember(cur)
		}
	}
	if d.o.keep {
		fmt.Fprintf(d.out, "\n--keep: the slices stay; Ctrl-C ends the demo (and the forwarder).\n")
		d.report()
		<-ctx.Done()
		return nil
	}
	dctx := context.WithoutCancel(ctx)
	for _, s := range []struct {
		c      *client.Client
		s      *v1.Slice
		tenant string
	}{{cdn, cdnSlice, "cdn"}, {iot, iotSlice, "iot"}} {
		if s.s == nil {
			continue
		}
		_ = d.phase(s.tenant, "decommission "+s.s.ID, func() (string, error) {
			_, err := s.c.DeleteSlice(dctx, s.s.ID, true)
			if err != nil && !client.IsNotFound(err) {
				return "", err
			}
			return "", nil
		})
	}
	_ = d.phase("all", "check nothing is left", func() (string, error) {
		var ids []string
		var leftover []string
		for _, s := range []struct {
			c *client.Client
			s *v1.Slice
		}{{cdn, cdnSlice}, {iot, iotSlice}} {
			if s.s == nil {
				continue
			}
			ids = append(ids, s.s.ID)
			if _, err := s.c.GetSlice(dctx, s.s.ID); !client.IsNotFound(err) {
				leftover = append(leftover, "slice "+s.s.ID+" still answers")
			}
		}
		after, err := cdn.Marketplace(dctx)
		if err != nil {
			return "", fmt.Errorf("marketplace: %w", err)
		}
		leftover = append(leftover, marketDiff(before, after)...)
		checked, left := host.check(ids, d.o.virshURI)
		leftover = append(leftover, left...)
		if len(leftover) > 0 {
			return "", fmt.Errorf("left behind: %s", strings.Join(leftover, "; "))
		}
		return "nothing left: " + strings.Join(checked, ", "), nil
	})
	d.report()
	for _, p := range d.phases {
		if p.Outcome == demoFailed {
			return errors.New("the demo failed: see the phases above")
		}
	}
	return nil
}

// marketDiff lists providers holding more after the demo than before it.
func marketDiff(before, after *v1.Marketplace) []string {
	was := map[string]v1.MarketEntry{}
	for _, e := range before.Providers {
		was[e.Provider] = e
	}
	var out []string
	for _, e := range after.Providers {
		b := was[e.Provider]
		if e.Holders > b.Holders || e.Reserved.Nodes > b.Reserved.Nodes || e.Reserved.CPUs > b.Reserved.CPUs ||
			e.ReservedBps > b.ReservedBps {
			out = append(out, fmt.Sprintf("provider %s holds %d slices, %d nodes, %d CPUs, %d bit/s (before: %d, %d, %d, %d)",
				e.Provider, e.Holders, e.Reserved.Nodes, e.Reserved.CPUs, e.ReservedBps, b.Holders, b.Reserved.Nodes,
				b.Reserved.CPUs, b.ReservedBps))
		}
	}
	return out
}

// report prints the demo's phases, then each slice's phases as the engine timed them.
func (d *demo) report() {
	w := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\nThe demo, %.1fs in all:\n", time.Since(d.start).Seconds())
	row(w, "TENANT", "PHASE", "DURATION", "OUTCOME", "NOTE")
	for _, p := range d.phases {
		row(w, p.Tenant, p.Name, fmt.Sprintf("%.1fs", p.Seconds), p.Outcome, p.Note)
	}
	_ = w.Flush()
	for _, id := range d.order {
		fmt.Fprintf(d.out, "\nSlice %s, as the engine timed it (GET /v1/slices/%s/timings):\n", id, id)
		tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
		timingsTable(tw, d.timings[id])
		_ = tw.Flush()
		for i, act := range d.timings[id].Actions {
			fmt.Fprintf(d.out, "  action %d (%s): %s\n", i+1, act.Action, chain(act))
		}
	}
}

// chain writes an elastic action as threshold crossed -> decision -> done -> effective,
// each with the time since the crossing.
func chain(act v1.ElasticAction) string {
	from := act.Fired
	if act.Crossed != nil {
		from = *act.Crossed
	}
	at := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return fmt.Sprintf("+%.1fs", t.Sub(from).Seconds())
	}
	fired := act.Fired
	s := fmt.Sprintf("crossed %s, decision %s, action started %s, done %s, redeployed %s, effective %s (%s)",
		from.Local().Format("15:04:05"), at(&fired), at(act.Started), at(act.Done), at(act.PostDeployed), at(act.Effective), act.Outcome)
	if act.Message != "" && act.Outcome != v1.PhaseDone {
		s += ": " + act.Message
	}
	return s
}

// createSlice creates a slice and waits for it; one that was created and then failed is
// rolled back by the engine, and its record deleted here, so that nothing stays.
func createSlice(ctx context.Context, c *client.Client, doc []byte) (*v1.Slice, error) {
	s, err := c.CreateSlice(ctx, doc, "application/yaml", true)
	var ae *client.Error
	if err != nil && errors.As(err, &ae) && ae.SliceID != "" {
		if _, derr := c.DeleteSlice(context.WithoutCancel(ctx), ae.SliceID, true); derr != nil && !client.IsNotFound(derr) {
			err = fmt.Errorf("%w (and deleting slice %s: %v)", err, ae.SliceID, derr)
		}
	}
	return s, err
}

func readDoc(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &notDone{reason: fmt.Sprintf("read %s: %v (run the demo from the repository's root, or give the file)", path, err)}
	}
	return b, nil
}

// partByName returns a slice's part.
func partByName(s *v1.Slice, name string) (v1.Part, bool) {
	for _, p := range s.Parts {
		if p.Name == name {
			return p, true
		}
	}
	return v1.Part{}, false
}

// waitGuests waits until every node of the slice's parts that are reached from a
// namespace accepts TCP on port 22 and greets as SSH, so that the guests' boot is a
// phase of its own, measured apart from the deployment.
func waitGuests(ctx context.Context, s *v1.Slice, within time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		silent []string
	)
	n := 0
	for _, p := range s.Parts {
		ns := p.Attributes[attrNetns]
		if ns == "" {
			continue
		}
		for _, node := range p.Nodes {
			if len(node.IPs) == 0 {
				continue
			}
			n++
			addr := net.JoinHostPort(node.IPs[0], "22")
			// Every guest at once, so that a silent one is named with all the others
			// that are silent too, and what dialling it last said.
			wg.Add(1)
			go func() {
				defer wg.Done()
				var last error
				for {
					if last = sshGreets(ctx, nsnet.Endpoint{Netns: ns, Addr: addr}); last == nil {
						return
					}
					select {
					case <-ctx.Done():
						mu.Lock()
						silent = append(silent, fmt.Sprintf("%s/%s (%s: %v)", p.Name, node.Name, addr, last))
						mu.Unlock()
						return
					case <-time.After(500 * time.Millisecond):
					}
				}
			}()
		}
	}
	wg.Wait()
	if len(silent) > 0 {
		sort.Strings(silent)
		return n, fmt.Errorf("%d of %d guests do not answer SSH after %s: %s", len(silent), n, within, strings.Join(silent, "; "))
	}
	return n, nil
}

// sshGreets returns nil once ep accepts TCP and greets as SSH, else what it did instead.
func sshGreets(ctx context.Context, ep nsnet.Endpoint) error {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := nsnet.Dial(dctx, "tcp", ep)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, 4)
	if _, err = io.ReadFull(c, b); err != nil {
		return fmt.Errorf("no greeting: %w", err)
	}
	if string(b) != "SSH-" {
		return fmt.Errorf("greeted with %q, not SSH", b)
	}
	return nil
}

// deploy deploys a service document and fails unless it ends Deployed.
func deploy(ctx context.Context, c *client.Client, sliceID string, doc []byte) (string, error) {
	svc, err := c.DeployService(ctx, sliceID, doc, "application/yaml", "", true)
	if err != nil {
		return "", err
	}
	if svc.State != "Deployed" {
		return "", fmt.Errorf("service %s is %s: %s", svc.ID, svc.State, svc.Message)
	}
	return fmt.Sprintf("service %s, %d steps", svc.ID, svc.Counts.Total), nil
}

// cdnLoadedEdge is the CDN part the demo loads with visitors.
const cdnLoadedEdge = "edge-dc-slice-spain"

// deployTuned deploys a service document with the CPU policies of the part the demo
// loads set as --cpu-threshold and --cooldown say, and notes what it changed.
func (d *demo) deployTuned(ctx context.Context, c *client.Client, sliceID string, doc []byte, loaded string) (string, error) {
	doc, changed, err := tunePolicies(doc, d.o.tuning, loaded)
	if err != nil {
		return "", err
	}
	note, err := deploy(ctx, c, sliceID, doc)
	if err == nil && changed != "" {
		note += "; policy " + changed
	}
	return note, err
}

func (d *demo) cdnStory(ctx context.Context, c *client.Client, host *hostState) *v1.Slice {
	const who = "cdn"
	var s *v1.Slice
	err := d.phase(who, "create the Touristic CDN slice (4 parts, 3 links)", func() (string, error) {
		doc, err := readDoc(d.o.cdnSlice)
		if err != nil {
			return "", err
		}
		s, err = createSlice(ctx, c, doc)
		if err != nil {
			return "", err
		}
		if s.State != "Ready" {
			return "", fmt.Errorf("slice %s is %s: %s", s.ID, s.State, s.Message)
		}
		if s, err = c.GetSlice(ctx, s.ID); err != nil {
			return "", err
		}
		host.remember(s)
		var at []string
		for _, p := range s.Parts {
			at = append(at, p.Name+"@"+p.Provider)
		}
		return s.ID + ": " + strings.Join(at, ", "), nil
	})
	if err != nil {
		for _, n := range []string{"guests boot", "deploy the CDN service", "visitors", "web page"} {
			d.skip(who, n, "no CDN slice")
		}
		return s
	}
	if err := d.phase(who, "guests boot (SSH answers)", func() (string, error) {
		n, err := waitGuests(ctx, s, d.o.sshWithin)
		if err != nil {
			return "", err
		}
		if n == 0 {
			return "", &notDone{reason: "no part's nodes are reached from a network namespace of this machine"}
		}
		return fmt.Sprintf("%d guests", n), nil
	}); err != nil {
		d.skip(who, "deploy the CDN service", "the guests are not reachable")
		return s
	}
	if err := d.phase(who, "deploy the CDN service", func() (string, error) {
		doc, err := readDoc(d.o.cdnService)
		if err != nil {
			return "", err
		}
		return d.deployTuned(ctx, c, s.ID, doc, cdnLoadedEdge)
	}); err != nil {
		return s
	}
	_ = d.phase(who, "visitors: local content from their edge, the rest from the core", func() (string, error) {
		return cdnVisits(ctx, s)
	})
	_ = d.phase(who, "the CDN's page on the host", func() (string, error) {
		core, ok := partByName(s, "core-dc")
		if !ok || len(core.Nodes) == 0 || len(core.Nodes[0].IPs) == 0 {
			return "", errors.New("no core-dc node with an address")
		}
		f, err := nsnet.Forward(context.WithoutCancel(ctx), nsnet.Endpoint{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(d.o.webPort))},
			nsnet.Endpoint{Netns: core.Attributes[attrNetns], Addr: net.JoinHostPort(core.Nodes[0].IPs[0], "80")}, nil)
		if err != nil {
			return "", err
		}
		d.closers = append(d.closers, func() { _ = f.Close() })
		url := "http://" + f.Addr().String() + "/"
		server, body, err := httpGet(ctx, http.DefaultClient, url)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(server, "core-dc/") || !strings.Contains(body, "Touristic CDN") {
			return "", fmt.Errorf("%s answered by %q: %.80q", url, server, body)
		}
		return url + " (served by " + server + ")", nil
	})
	return s
}

// cdnPlaces are the CDN's places and the parts of their edges.
var cdnPlaces = []struct{ place, part string }{
	{"spain", "edge-dc-slice-spain"}, {"greece", "edge-dc-slice-greece"}, {"brazil", "edge-dc-slice-brazil"}}

// cdnVisitor returns an HTTP client that dials from a part's namespace and looks names up
// at the CDN's DNS (the core guest), as a visitor at that part's place would.
func cdnVisitor(netnsName, coreIP string) *http.Client {
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return nsnet.Dial(ctx, "udp", nsnet.Endpoint{Netns: netnsName, Addr: net.JoinHostPort(coreIP, "53")})
	}}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		ips, err := res.LookupHost(ctx, host)
		if err != nil {
			return nil, err
		}
		return nsnet.Dial(ctx, network, nsnet.Endpoint{Netns: netnsName, Addr: net.JoinHostPort(ips[0], port)})
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 64}}
}

// httpGet fetches url and returns who served it (X-CDN-Server) and the body.
func httpGet(ctx context.Context, c *http.Client, url string) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	server := resp.Header.Get("X-CDN-Server")
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: HTTP %d from %q", url, resp.StatusCode, server)
	}
	return server, string(b), err
}

// cdnVisits checks, for a visitor at each edge's place, that the place's content comes
// from that edge and the general page from the core.
func cdnVisits(ctx context.Context, s *v1.Slice) (string, error) {
	core, ok := partByName(s, "core-dc")
	if !ok || len(core.Nodes) == 0 || len(core.Nodes[0].IPs) == 0 {
		return "", errors.New("no core-dc node with an address")
	}
	coreIP := core.Nodes[0].IPs[0]
	var seen []string
	for _, pl := range cdnPlaces {
		edge, ok := partByName(s, pl.part)
		if !ok {
			return "", fmt.Errorf("no part %s", pl.part)
		}
		v := cdnVisitor(edge.Attributes[attrNetns], coreIP)
		server, _, err := httpGet(ctx, v, "http://"+pl.place+".cdn.touristic.example/")
		if err != nil {
			return "", fmt.Errorf("a visitor in %s: %w", pl.place, err)
		}
		if !strings.HasPrefix(server, pl.part+"/") {
			return "", fmt.Errorf("a visitor in %s asking for %s content was served by %q, not the %s edge", pl.place, pl.place, server, pl.part)
		}
		general, _, err := httpGet(ctx, v, "http://www.cdn.touristic.example/")
		if err != nil {
			return "", fmt.Errorf("a visitor in %s: %w", pl.place, err)
		}
		if !strings.HasPrefix(general, "core-dc/") {
			return "", fmt.Errorf("a visitor in %s asking for the general page was served by %q, not the core", pl.place, general)
		}
		seen = append(seen, pl.place+": "+server)
	}
	return strings.Join(seen, ", ") + "; general pages: core-dc", nil
}

func (d *demo) iotStory(ctx context.Context, c *client.Client, host *hostState) *v1.Slice {
	const who = "iot"
	var s *v1.Slice
	err := d.phase(who, "create the IoT slice (Kubernetes: core 1+2 nodes, edge 1+1)", func() (string, error) {
		doc, err := readDoc(d.o.iotSlice)
		if err != nil {
			return "", err
		}
		s, err = createSlice(ctx, c, doc)
		if err != nil {
			var ae *client.Error
			if errors.As(err, &ae) && (ae.Status >= 400 && ae.Status < 500 || ae.Status == http.StatusServiceUnavailable) {
				return "", &notDone{reason: "the platform refused it here: " + err.Error()}
			}
			return "", err
		}
		if s.State != "Ready" {
			id, state, msg := s.ID, s.State, s.Message
			// A slice that could not be placed is rolled back: nothing to decommission.
			if _, derr := c.DeleteSlice(context.WithoutCancel(ctx), id, true); derr == nil || client.IsNotFound(derr) {
				s = nil
			}
			return "", &notDone{reason: fmt.Sprintf("slice %s ended %s: %s", id, state, msg)}
		}
		if s, err = c.GetSlice(ctx, s.ID); err != nil {
			return "", err
		}
		host.remember(s)
		var at []string
		for _, p := range s.Parts {
			at = append(at, p.Name+"@"+p.Provider)
		}
		return s.ID + ": " + strings.Join(at, ", "), nil
	})
	if err != nil || s == nil {
		d.skip(who, "deploy the IoT service", "no IoT slice")
		return s
	}
	_ = d.phase(who, "deploy the IoT service", func() (string, error) {
		doc, err := readDoc(d.o.iotService)
		if err != nil {
			return "", err
		}
		return d.deployTuned(ctx, c, s.ID, doc, d.o.iotPart)
	})
	return s
}

// elasticity loads both slices' elastic parts and follows their actions until the
// horizontal ones are done or --elastic-timeout passes.
func (d *demo) elasticity(ctx context.Context, runs map[string]bool, cdn *client.Client, cdnSlice *v1.Slice, iot *client.Client, iotSlice *v1.Slice) {
	if d.o.elasticFor <= 0 {
		d.skip("all", "load and elasticity", "--elastic-timeout 0")
		return
	}
	var wg sync.WaitGroup
	if cdnSlice != nil && d.deployedOK("cdn") {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = d.phase("cdn", "load the Spain edge until its policy acts (vertical, then horizontal)", func() (string, error) {
				return d.cdnElastic(ctx, cdn, cdnSlice)
			})
			d.cdnHorizontal(ctx, cdn, cdnSlice)
		}()
	} else if runs["cdn"] {
		d.skip("cdn", "load and elasticity", "the CDN service is not deployed")
	}
	if iotSlice != nil && d.deployedOK("iot") {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = d.phase("iot", "MQTT load on the edge until its policy acts (vertical, then horizontal)", func() (string, error) {
				return d.iotElastic(ctx, iot, iotSlice)
			})
			d.iotHorizontal(ctx, iot, iotSlice)
		}()
	} else if runs["iot"] {
		d.skip("iot", "load and elasticity", "the IoT service is not deployed")
	}
	wg.Wait()
}

// deployedOK reports whether tenant's service deployment phase was done.
func (d *demo) deployedOK(tenant string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.phases {
		if p.Tenant == tenant && strings.HasPrefix(p.Name, "deploy the ") {
			return p.Outcome == demoDone
		}
	}
	return false
}

// followActions polls a slice's timings until done says so or ctx ends, printing each
// elastic action as it progresses.
func (d *demo) followActions(ctx context.Context, c *client.Client, id, who string, done func([]v1.ElasticAction) bool) ([]v1.ElasticAction, error) {
	shown := map[string]bool{}
	for {
		t, err := c.Timings(ctx, id)
		if err == nil {
			for i, act := range t.Actions {
				line := fmt.Sprintf("%s %s on %s: %s", act.Policy, act.Action, act.Part, chain(act))
				if !shown[strconv.Itoa(i)+line] {
					shown[strconv.Itoa(i)+line] = true
					fmt.Fprintf(d.out, "[%6.1fs] %-4s   elastic action %d: %s\n", time.Since(d.start).Seconds(), who, i+1, line)
				}
			}
			if done(t.Actions) {
				return t.Actions, nil
			}
		}
		select {
		case <-ctx.Done():
			if t != nil {
				return t.Actions, ctx.Err()
			}
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// showCPU prints the part's CPU readings (what its policy watches) every 10 s until ctx
// ends, so that a person sees the load take hold.
func (d *demo) showCPU(ctx context.Context, c *client.Client, id, who, part string) {
	q := url.Values{"metric": {"PERCENT_CPU_UTILIZATION"}, "part": {part}, "last": {"1"}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
		series, err := c.Metrics(ctx, id, q)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(d.out, "[%6.1fs] %-4s   %s CPU: %v\n", time.Since(d.start).Seconds(), who, part, err)
			}
			continue
		}
		var vals []string
		for _, se := range series {
			for _, p := range se.Points {
				vals = append(vals, fmt.Sprintf("%s %.0f %%", se.Tags[sdk.TagResourceID], p.Value))
			}
		}
		sort.Strings(vals)
		fmt.Fprintf(d.out, "[%6.1fs] %-4s   %s CPU: %s\n", time.Since(d.start).Seconds(), who, part, strings.Join(vals, ", "))
	}
}

// summary describes the actions seen and whether a vertical and a horizontal one were done.
func actionsSummary(acts []v1.ElasticAction) (vertical, horizontal bool, text string) {
	var parts []string
	for _, a := range acts {
		parts = append(parts, a.Action+" "+a.Outcome)
		if a.Outcome == v1.PhaseDone {
			if a.Action == "add-part" {
				horizontal = true
			} else {
				vertical = true
			}
		}
	}
	if len(parts) == 0 {
		return false, false, "no elastic action"
	}
	return vertical, horizontal, strings.Join(parts, ", ")
}

// nodeSize is a node's size in a part as it was described before.
func nodeSize(p v1.Part, node string) string {
	for _, n := range p.Nodes {
		if n.Name == node {
			return fmt.Sprintf("%d vCPUs, %d MB", n.CPUs, n.MemoryMB)
		}
	}
	return "absent"
}

func horizontalEnded(acts []v1.ElasticAction) bool {
	for _, a := range acts {
		if a.Action == "add-part" && a.Outcome != v1.PhaseRunning {
			return true
		}
		if a.Outcome == "exhausted" {
			return true
		}
	}
	return false
}

func (d *demo) cdnElastic(ctx context.Context, c *client.Client, s *v1.Slice) (string, error) {
	edge, ok := partByName(s, cdnLoadedEdge)
	core, ok2 := partByName(s, "core-dc")
	if !ok || !ok2 || len(edge.Nodes) == 0 || len(core.Nodes) == 0 {
		return "", errors.New("no Spain edge or core")
	}
	lctx, stop := context.WithTimeout(ctx, d.o.elasticFor)
	defer stop()
	// Visitors in Spain fetch the place's video from their edge, as fast as it serves.
	v := cdnVisitor(edge.Attributes[attrNetns], core.Nodes[0].IPs[0])
	url := "http://" + net.JoinHostPort(edge.Nodes[0].IPs[0], "80") + "/spain/videos/spain.ts"
	var served, failed int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				_, _, err := httpGet(lctx, v, url)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					served++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.showCPU(lctx, c, s.ID, "cdn", edge.Name)
	}()
	acts, err := d.followActions(lctx, c, s.ID, "cdn", horizontalEnded)
	stop()
	wg.Wait()
	vert, hor, text := actionsSummary(acts)
	text = fmt.Sprintf("%s; %d videos served, %d failed", text, served, failed)
	// What the actions changed, as the platform describes the slice now.
	if cur, err := c.GetSlice(ctx, s.ID); err == nil {
		for _, p := range cur.Parts {
			if p.Name == edge.Name {
				for _, n := range p.Nodes {
					text += fmt.Sprintf("; %s/%s now %d vCPUs, %d MB (was %s)", p.Name, n.Name, n.CPUs, n.MemoryMB, nodeSize(edge, n.Name))
				}
			}
			if p.Elastic {
				text += fmt.Sprintf("; new part %s at %s", p.Name, p.Provider)
			}
		}
	}
	switch {
	case vert && hor:
		return text, nil
	case err != nil && len(acts) == 0:
		return "", &notDone{reason: fmt.Sprintf("no elastic action within %s (%s)", d.o.elasticFor, text)}
	case err != nil:
		return "", &notDone{reason: fmt.Sprintf("within %s: %s", d.o.elasticFor, text)}
	}
	return "", &notDone{reason: text}
}

func (d *demo) iotElastic(ctx context.Context, c *client.Client, s *v1.Slice) (string, error) {
	part, ok := partByName(s, d.o.iotPart)
	if !ok || len(part.Nodes) == 0 {
		return "", fmt.Errorf("no part %s with nodes", d.o.iotPart)
	}
	broker, how, closeBroker, err := d.iotBroker(ctx, part)
	if err != nil {
		return "", err
	}
	defer closeBroker()
	fmt.Fprintf(d.out, "[%6.1fs] iot    devices publish to the broker of %s (%s)\n", time.Since(d.start).Seconds(), part.Name, how)
	lctx, stop := context.WithTimeout(ctx, d.o.elasticFor)
	defer stop()
	l := mqttLoad{Broker: broker,
		Devices: d.o.loadDevices, Rate: d.o.loadRate, MaxRate: d.o.loadMax, Ramp: d.o.elasticFor / 2, Duration: d.o.elasticFor,
		QoS: 1, Report: 15 * time.Second, Prefix: "demo-device"}
	var res loadResult
	var lerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, lerr = l.run(lctx, d.out)
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.showCPU(lctx, c, s.ID, "iot", part.Name)
	}()
	acts, ferr := d.followActions(lctx, c, s.ID, "iot", horizontalEnded)
	stop()
	<-done
	wg.Wait()
	d.mu.Lock()
	d.iotRate = l.rateAt(res.Elapsed)
	d.mu.Unlock()
	if lerr != nil {
		return "", fmt.Errorf("MQTT load: %w", lerr)
	}
	vert, hor, text := actionsSummary(acts)
	text = fmt.Sprintf("%s; MQTT %.0f msg/s sent, %.0f acknowledged (%d devices, the ramp reached %.0f msg/s)",
		text, res.SentRate, res.AckedRate, l.Devices, d.iotRate)
	// What the actions changed, as the platform describes the slice now.
	if cur, err := c.GetSlice(ctx, s.ID); err == nil {
		for _, p := range cur.Parts {
			if p.Name == part.Name {
				for _, n := range p.Nodes {
					text += fmt.Sprintf("; %s/%s now %d CPUs, %d MB (was %s)", p.Name, n.Name, n.CPUs, n.MemoryMB, nodeSize(part, n.Name))
				}
			}
			if p.Elastic {
				text += fmt.Sprintf("; new part %s at %s", p.Name, p.Provider)
			}
		}
	}
	switch {
	case vert && hor:
		return text, nil
	case ferr != nil && len(acts) == 0:
		return "", &notDone{reason: fmt.Sprintf("no elastic action within %s (%s)", d.o.elasticFor, text)}
	case ferr != nil:
		return "", &notDone{reason: fmt.Sprintf("within %s: %s", d.o.elasticFor, text)}
	}
	return "", &notDone{reason: text}
}

// iotBroker returns where the MQTT broker of an IoT part is reached: a node's address in
// the part's namespace (guests), else, for a Kubernetes part, a loopback port relayed to
// the broker's pod through the cluster's API with the part's own kubeconfig. close ends
// the relay.
func (d *demo) iotBroker(ctx context.Context, p v1.Part) (ep nsnet.Endpoint, how string, close func(), err error) {
	if ns := p.Attributes[attrNetns]; ns != "" && len(p.Nodes) > 0 && len(p.Nodes[0].IPs) > 0 {
		ep = nsnet.Endpoint{Netns: ns, Addr: net.JoinHostPort(p.Nodes[0].IPs[0], strconv.Itoa(defaultMQTTPort))}
		return ep, "at " + ep.String(), func() {}, nil
	}
	if p.Credential == nil || p.Credential.Kind != "kubeconfig" {
		return ep, "", nil, &notDone{reason: fmt.Sprintf("part %s is reached neither from a namespace of this machine (no netns attribute) nor through a kubeconfig", p.Name)}
	}
	f, err := forwardPod(ctx, p, d.o.iotSelector, "127.0.0.1", 0, 1883, d.o.sshWithin)
	if err != nil {
		return ep, "", nil, err
	}
	return nsnet.Endpoint{Addr: f.Addr}, fmt.Sprintf("pod %s through the Kubernetes API, at %s", f.Pod, f.Addr), f.Close, nil
}

// iotHorizontal shows what the IoT slice's horizontal action made (see horizontal), then
// splits the devices between the two edges: half publish to the first edge's broker,
// half to the new one's, at once, and each edge's agent must receive its devices'
// telemetry (its /stats, read through the same kind of relay).
func (d *demo) iotHorizontal(ctx context.Context, c *client.Client, before *v1.Slice) {
	const who = "iot"
	np, cur, act, ok := d.horizontal(ctx, c, before, who, "IoT", hDevices)
	if !ok {
		return
	}
	_ = d.phase(who, hDevices, func() (string, error) {
		first, ok := partByName(cur, act.Part)
		if !ok {
			return "", fmt.Errorf("no part %s", act.Part)
		}
		d.mu.Lock()
		rate := max(d.iotRate, d.o.loadRate)
		d.mu.Unlock()
		devices := max(d.o.loadDevices/2, 1)
		type edge struct {
			part          v1.Part
			broker, agent nsnet.Endpoint
			before, after int64
			res           loadResult
			err           error
		}
		edges := []*edge{{part: first}, {part: np}}
		for _, e := range edges {
			b, _, closeB, err := d.iotBroker(ctx, e.part)
			if err != nil {
				return "", err
			}
			defer closeB()
			a, closeA, err := d.iotAgent(ctx, e.part)
			if err != nil {
				return "", err
			}
			defer closeA()
			e.broker, e.agent = b, a
			// An agent just deployed (the copy's) answers HTTP before it holds its
			// subscription at the broker, and a broker keeps nothing for a topic nobody
			// subscribes to: the devices start once every agent is subscribed.
			var sub bool
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
				if e.before, sub, err = agentStats(ctx, e.agent); err != nil {
					return "", fmt.Errorf("the agent of %s: %w", e.part.Name, err)
				}
				if sub {
					break
				}
				if time.Now().After(deadline) {
					return "", fmt.Errorf("the agent of %s is not subscribed at its broker after a minute", e.part.Name)
				}
			}
		}
		var wg sync.WaitGroup
		for i, e := range edges {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := mqttLoad{Broker: e.broker, Devices: devices, Rate: rate / 2, MaxRate: rate / 2, Duration: d.o.splitFor,
					QoS: 1, Prefix: fmt.Sprintf("demo-device-edge%d", i+1)}
				e.res, e.err = l.run(ctx, io.Discard)
			}()
		}
		wg.Wait()
		var notes []string
		for _, e := range edges {
			if e.err != nil {
				return "", fmt.Errorf("devices of %s: %w", e.part.Name, e.err)
			}
			// The broker acknowledges a publish before it hands it on, and queues what a
			// busy agent has not taken yet: wait while the agent still catches up (its
			// count moved in the last 10 s), up to a minute.
			var got int64
			for deadline, moved := time.Now().Add(time.Minute), time.Now(); ; {
				var err error
				if e.after, _, err = agentStats(ctx, e.agent); err != nil {
					return "", fmt.Errorf("the agent of %s: %w", e.part.Name, err)
				}
				if n := e.after - e.before; n > got {
					got, moved = n, time.Now()
				}
				if got >= e.res.Acked || time.Now().After(deadline) || time.Since(moved) > 10*time.Second {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if e.res.Acked == 0 || got < e.res.Acked {
				return "", fmt.Errorf("%s's agent received %d messages of the %d its %d devices' broker acknowledged", e.part.Name, got, e.res.Acked, devices)
			}
			notes = append(notes, fmt.Sprintf("%d devices -> %s at %s: %.0f msg/s acknowledged, its agent received %d",
				devices, e.part.Name, e.part.Provider, e.res.AckedRate, got))
		}
		return strings.Join(notes, "; "), nil
	})
}

// iotAgent returns where the IoT agent's HTTP interface (8080) of a part is reached, as
// iotBroker does for its broker.
func (d *demo) iotAgent(ctx context.Context, p v1.Part) (nsnet.Endpoint, func(), error) {
	if ns := p.Attributes[attrNetns]; ns != "" && len(p.Nodes) > 0 && len(p.Nodes[0].IPs) > 0 {
		return nsnet.Endpoint{Netns: ns, Addr: net.JoinHostPort(p.Nodes[0].IPs[0], strconv.Itoa(iotAgentNodePort))}, func() {}, nil
	}
	f, err := forwardPod(ctx, p, d.o.iotSelector, "127.0.0.1", 0, iotAgentPort, d.o.sshWithin)
	if err != nil {
		return nsnet.Endpoint{}, nil, err
	}
	return nsnet.Endpoint{Addr: f.Addr}, f.Close, nil
}

// The IoT agent's HTTP port in its pod, and at a node reached from a part's namespace.
const (
	iotAgentPort     = 8080
	iotAgentNodePort = 31880
)

// agentStats reads how many messages an IoT agent has received, and whether it holds
// its subscription at its broker now (GET /stats).
func agentStats(ctx context.Context, ep nsnet.Endpoint) (received int64, subscribed bool, err error) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return nsnet.Dial(ctx, network, ep)
		}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ep.Addr+"/stats", nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var st struct {
		Received   int64 `json:"received"`
		Subscribed bool  `json:"subscribed"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("GET /stats: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, false, fmt.Errorf("GET /stats: %w", err)
	}
	return st.Received, st.Subscribed, nil
}

// hostState remembers where the slices' parts and links live on this machine, to check
// after the decommission that nothing of them is left.
type hostState struct {
	mu      sync.Mutex
	netns   map[string]bool            // parts' endpoint namespaces
	bridges map[string]map[string]bool // site namespace -> bridges of links' ends
}

func newHostState() *hostState {
	return &hostState{netns: map[string]bool{}, bridges: map[string]map[string]bool{}}
}

func (h *hostState) remember(s *v1.Slice) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range s.Parts {
		if ns := p.Attributes[attrNetns]; ns != "" {
			h.netns[ns] = true
		}
	}
	for _, l := range s.Links {
		for _, e := range l.Ends {
			if e.Site != "" && e.Bridge != "" {
				if h.bridges[e.Site] == nil {
					h.bridges[e.Site] = map[string]bool{}
				}
				h.bridges[e.Site][e.Bridge] = true
			}
		}
	}
}

// check lists what was checked and what is left: the parts' namespaces, the links'
// bridges (and the VXLAN devices on them) in their sites' namespaces, and libvirt's
// domains and volumes named for the slices.
func (h *hostState) check(sliceIDs []string, virshURI string) (checked, left []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var names []string
	for ns := range h.netns {
		names = append(names, ns)
	}
	sort.Strings(names)
	for _, ns := range names {
		if _, err := os.Stat(nsnet.Path(ns)); err == nil {
			left = append(left, "network namespace "+ns)
		}
	}
	checked = append(checked, fmt.Sprintf("%d part namespaces", len(names)))
	nb := 0
	for site, bridges := range h.bridges {
		devs, err := linksIn(site)
		if err != nil {
			// A site namespace that is gone holds nothing.
			nb += len(bridges)
			continue
		}
		for _, dev := range devs {
			if bridges[dev.name] || bridges[dev.master] {
				left = append(left, fmt.Sprintf("%s %s in %s", dev.kind, dev.name, site))
			}
		}
		nb += len(bridges)
	}
	checked = append(checked, fmt.Sprintf("%d link bridges and their VXLAN devices", nb))
	doms, vols, err := libvirtLeftovers(virshURI, sliceIDs)
	if err != nil {
		checked = append(checked, "libvirt not checked ("+err.Error()+")")
	} else {
		checked = append(checked, "libvirt domains and volumes at "+virshURI)
		for _, x := range doms {
			left = append(left, "domain "+x)
		}
		for _, x := range vols {
			left = append(left, "volume "+x)
		}
	}
	return checked, left
}

// Phases that show what a horizontal action made.
const (
	hPart    = "horizontal: a new edge part Ready at another site"
	hLink    = "horizontal: its link to the core built"
	hVisitor = "horizontal: the core's DNS sends its site's visitors to it"
	hDevices = "horizontal: the devices split between the edges"
)

// hService names the phase of a service deployed onto the new part.
func hService(service string) string {
	return "horizontal: the " + service + " service deployed onto it"
}

// cdnHorizontal shows, phase by phase, what the CDN's horizontal action made (see
// horizontal), then that the core's DNS sends the visitors of the new part's site to it.
// before is the slice as it was created.
func (d *demo) cdnHorizontal(ctx context.Context, c *client.Client, before *v1.Slice) {
	const who = "cdn"
	np, cur, act, ok := d.horizontal(ctx, c, before, who, "CDN", hVisitor)
	if !ok {
		return
	}
	_ = d.phase(who, hVisitor, func() (string, error) {
		return cdnVisitorsOfCopy(ctx, cur, np, act)
	})
}

// horizontal shows, phase by phase, what a slice's first horizontal action made: the new
// part Ready at another provider, its link to the core built, and the service deployed
// onto it by the engine's post-deployment. It returns the new part, the slice as it is
// now and the action, or ok false after recording the phases not done (last included:
// the tenant's own phase that follows).
func (d *demo) horizontal(ctx context.Context, c *client.Client, before *v1.Slice, who, service, last string) (np v1.Part, cur *v1.Slice, act v1.ElasticAction, ok bool) {
	skipAll := func(from int, why string) {
		for _, name := range []string{hPart, hLink, hService(service), last}[from:] {
			d.skip(who, name, why)
		}
	}
	t, err := c.Timings(ctx, before.ID)
	if err != nil {
		skipAll(0, "timings: "+err.Error())
		return np, cur, act, false
	}
	idx := -1
	for i, a := range t.Actions {
		if a.Action == "add-part" && a.Outcome == v1.PhaseDone {
			idx = i
			break
		}
	}
	if idx < 0 {
		skipAll(0, "no horizontal action was done")
		return np, cur, act, false
	}
	act = t.Actions[idx]
	err = d.phase(who, hPart, func() (string, error) {
		var err error
		if cur, err = c.GetSlice(ctx, before.ID); err != nil {
			return "", err
		}
		var added []v1.Part
		for _, p := range cur.Parts {
			if _, had := partByName(before, p.Name); !had {
				added = append(added, p)
			}
		}
		if len(added) != 1 || len(cur.Parts) != len(before.Parts)+1 {
			return "", fmt.Errorf("%d parts before, %d now (%d new)", len(before.Parts), len(cur.Parts), len(added))
		}
		np = added[0]
		tp, _ := partByName(before, act.Part)
		switch {
		case !np.Elastic:
			return "", fmt.Errorf("part %s is not marked elastic", np.Name)
		case np.State != "Ready":
			return "", fmt.Errorf("part %s is %s: %s", np.Name, np.State, np.Message)
		case np.Provider == tp.Provider:
			return "", fmt.Errorf("part %s is at %s, the site of the part it copies", np.Name, np.Provider)
		case len(np.Nodes) == 0:
			return "", fmt.Errorf("part %s has no node", np.Name)
		case np.Attributes[attrNetns] != "" && len(np.Nodes[0].IPs) == 0:
			// Guests are reached at their addresses; Kubernetes parts through the API.
			return "", fmt.Errorf("part %s has no node with an address", np.Name)
		}
		return fmt.Sprintf("%s at %s (%s), a copy of %s at %s; %d -> %d parts; the engine added it in %s",
			np.Name, np.Provider, np.Location, tp.Name, tp.Provider, len(before.Parts), len(cur.Parts),
			phaseTook(t, "part-add", np.Name)), nil
	})
	if err != nil {
		skipAll(1, "no new part")
		return np, cur, act, false
	}
	_ = d.phase(who, hLink, func() (string, error) {
		for _, l := range cur.Links {
			if l.Ends[0].Part != np.Name && l.Ends[1].Part != np.Name {
				continue
			}
			other := l.Ends[0].Part
			if other == np.Name {
				other = l.Ends[1].Part
			}
			if l.State != "Ready" {
				return "", fmt.Errorf("link %s to %s is %s: %s", l.Name, other, l.State, l.Message)
			}
			return fmt.Sprintf("%s: %s <-> %s by %s, VNI %d, %s; built in %s", l.Name, np.Name, other, l.Provider, l.VNI,
				bandwidth(l.BandwidthBps), phaseTook(t, "link", l.Name)), nil
		}
		return "", fmt.Errorf("no link of part %s", np.Name)
	})
	err = d.phase(who, hService(service), func() (string, error) {
		// The engine deploys the service onto the new part once the part is made; its
		// guest boots meanwhile, so this waits as long as a boot may take.
		wctx, cancel := context.WithTimeout(ctx, d.o.sshWithin)
		defer cancel()
		for {
			t, err := c.Timings(wctx, before.ID)
			if err == nil && len(t.Actions) > idx {
				a := t.Actions[idx]
				if a.PostDeployed != nil && a.Done != nil {
					return fmt.Sprintf("redeployed onto %s %.1fs after the part was added (%.1fs after the threshold was crossed)",
						np.Name, a.PostDeployed.Sub(*a.Done).Seconds(), a.PostDeployed.Sub(crossedAt(a)).Seconds()), nil
				}
				for _, ph := range a.Phases {
					if ph.Name == "post-deployment" && ph.Outcome != v1.PhaseDone {
						return "", fmt.Errorf("post-deployment %s: %s", ph.Outcome, ph.Message)
					}
				}
			}
			select {
			case <-wctx.Done():
				return "", fmt.Errorf("not deployed onto %s within %s", np.Name, d.o.sshWithin)
			case <-time.After(time.Second):
			}
		}
	})
	if err != nil {
		d.skip(who, last, "the service is not on the new part")
		return np, cur, act, false
	}
	return np, cur, act, true
}

// cdnVisitorsOfCopy checks that the core's DNS sends the visitors of the new part np's
// site to it, and those of the site of the part it copies still to that part.
func cdnVisitorsOfCopy(ctx context.Context, cur *v1.Slice, np v1.Part, act v1.ElasticAction) (string, error) {
	core, ok := partByName(cur, "core-dc")
	if !ok || len(core.Nodes) == 0 || len(core.Nodes[0].IPs) == 0 {
		return "", errors.New("no core-dc node with an address")
	}
	place := ""
	for _, pl := range cdnPlaces {
		if pl.part == act.Part {
			place = pl.place
		}
	}
	if place == "" {
		return "", fmt.Errorf("part %s is no edge of the CDN's places", act.Part)
	}
	// A visitor at the new part's site looks the place up at the core's DNS: the copy
	// announced itself, so the core sends that site's visitors to it; a visitor at
	// the original edge's site is still sent there. The general page comes from the
	// core, across the new link.
	tp, ok := partByName(cur, act.Part)
	if !ok {
		return "", fmt.Errorf("no part %s", act.Part)
	}
	coreIP := core.Nodes[0].IPs[0]
	at := cdnVisitor(np.Attributes[attrNetns], coreIP)
	home := cdnVisitor(tp.Attributes[attrNetns], coreIP)
	// Each try looks the name up again: no connection kept to an earlier answer.
	at.Transport.(*http.Transport).DisableKeepAlives = true
	url := "http://" + place + ".cdn.touristic.example/"
	// The copy announces itself once its server runs, every 10 s: give it a few.
	var server, body string
	var err error
	deadline := time.Now().Add(40 * time.Second)
	for {
		server, body, err = httpGet(ctx, at, url)
		if err == nil && strings.HasPrefix(server, np.Name+"/") && strings.Contains(body, "Visit "+place) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return "", fmt.Errorf("a visitor at %s asking %s: %w", np.Provider, url, err)
			}
			return "", fmt.Errorf("a visitor at %s asking %s was served by %q, not part %s: %.80q", np.Provider, url, server, np.Name, body)
		}
		time.Sleep(time.Second)
	}
	homeServer, _, err := httpGet(ctx, home, url)
	if err != nil {
		return "", fmt.Errorf("a visitor at %s: %w", tp.Provider, err)
	}
	if !strings.HasPrefix(homeServer, tp.Name+"/") {
		return "", fmt.Errorf("a visitor at %s asking %s was served by %q, not part %s", tp.Provider, url, homeServer, tp.Name)
	}
	general, _, err := httpGet(ctx, at, "http://www.cdn.touristic.example/")
	if err != nil {
		return "", fmt.Errorf("a visitor at %s, the general page: %w", np.Provider, err)
	}
	if !strings.HasPrefix(general, "core-dc/") {
		return "", fmt.Errorf("a visitor at %s asking for the general page was served by %q, not the core", np.Provider, general)
	}
	return fmt.Sprintf("the core's DNS sends %s: at %s to %s, at %s still to %s; the general page by %s",
		url, np.Provider, server, tp.Provider, homeServer, general), nil
}

// phaseTook returns how long the engine's phase name of subject took, as its timings say.
func phaseTook(t *v1.Timings, name, subject string) string {
	for _, p := range t.Phases {
		if p.Name == name && p.Subject == subject {
			return fmt.Sprintf("%.1fs", p.Seconds)
		}
	}
	return "(not in the timings)"
}

// crossedAt is when an action's threshold was crossed, else when it fired.
func crossedAt(a v1.ElasticAction) time.Time {
	if a.Crossed != nil {
		return *a.Crossed
	}
	return a.Fired
}

// bandwidth writes a rate in bits per second for people.
func bandwidth(bps uint64) string {
	switch {
	case bps == 0:
		return "no rate limit"
	case bps >= 1e9:
		return fmt.Sprintf("%.1f Gbit/s", float64(bps)/1e9)
	default:
		return fmt.Sprintf("%.0f Mbit/s", float64(bps)/1e6)
	}
}
