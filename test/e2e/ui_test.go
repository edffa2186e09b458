package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/internal/testenv"
	"github.com/necos/necos/sdk/plugintest"
	"libvirt.org/go/libvirt"
)

// chromiumPath finds Debian's chromium (scripts/setup.sh installs it), or
// NECOS_CHROMIUM.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NECOS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	plugintest.NeedBackend(t, "chromium, for the dashboard's browser tests (apt-get install chromium)")
	return ""
}

// browser starts a headless Chromium with a fresh profile that fails the test on any
// script error or Content-Security-Policy violation of the page.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Page errors are collected here (a listener must not block) and fail the test.
	var mu sync.Mutex
	var pageErrors []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range pageErrors {
			t.Errorf("page error: %s", e)
		}
	})
	if err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError {
				return
			}
			for _, a := range ev.Args {
				msg += " " + a.Description + string(a.Value)
			}
		default:
			return
		}
		// A fetch cut short by a navigation of the test is not the page's fault.
		if !strings.Contains(msg, "AbortError") {
			mu.Lock()
			pageErrors = append(pageErrors, msg)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// Every CSP violation is recorded where the test reads it at the end.
	const watch = `window.__csp = []; document.addEventListener("securitypolicyviolation",
		(e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));`
	if _, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (page.AddScriptToEvaluateOnNewDocumentResult, error) {
		return cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watch})
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// doIn runs actions in the page, bounded by a minute (a wait for an element that never
// comes would otherwise last as long as the test).
func doIn(ctx context.Context, actions ...chromedp.Action[chromedp.Void]) error {
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return chromedp.Do(c, actions...)
}

// clearInput empties an input by its id (as a person selecting its text and deleting it).
func clearInput(id string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](`(() => { const e = document.getElementById("`+id+`"); e.value = "";
			e.dispatchEvent(new Event("input")); return true; })()`)(ctx, tg)
		return chromedp.Void{}, err
	}
}

// waitJS polls a JavaScript condition in the page until it is true.
func waitJS(t *testing.T, ctx context.Context, what, js string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("main").innerText`))
			t.Fatalf("%s: not after %s (%v); page:\n%s", what, within, err, tail(body, 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func evalJS[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// screenshot saves the page as docs/screenshots/NAME.png when NECOS_UI_SCREENSHOTS
// names a directory (the README's screenshots are made so).
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("NECOS_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	// Let the last redraw settle.
	time.Sleep(300 * time.Millisecond)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

const otherSlice = `slices:
  sliced:
    id: secret-of-other
    name: secret-of-other
    slice-parts:
      - dc-slice-part:
          name: hidden-part
          type: EDGE
          location: EUROPE.GREECE
          VIM:
            name: xen-vim
            vdus:
              - vdu: {name: hidden_vm, instance-count: 1, epa-attributes: {host-epa: {cpu-number: 1, memory-mb: 512}}}
`

// TestDashboard drives the dashboard necosd serves at /ui/ in headless Chromium, as a
// tenant would: log in with the token, create the Touristic CDN slice from its file,
// watch every part become Ready in the topology, see the live metrics chart grow and an
// elastic action appear in the timings and on the chart, see the slice Degraded and a
// part Lost (badge, colour, reason) when a domain is destroyed behind necos's back and
// Ready again when it runs, find another tenant's slice nowhere, look at the marketplace, and delete the slice — all against necosd with its
// real plugins, libvirt, VXLAN links in network namespaces and InfluxDB.
func TestDashboard(t *testing.T) {
	needRoot(t)
	fed := newFederation(t)
	uri := libvirtURI(t)
	influx := testenv.StartInflux(t)
	// Parts are described every 500 ms, so that a domain destroyed behind necos's back
	// shows as a Lost part of a Degraded slice within the test.
	d := startDaemon(t, xenCatalogue(t, fed, influx.MonitorCatalogue()), "--health-interval", "500ms")
	ctx := browser(t)

	// Another tenant's slice, which the demo tenant must never see.
	r := d.do("other", "POST", "/v1/slices?wait=true", "text/x-yaml", []byte(otherSlice))
	d.expect(r, 201, "other tenant's slice")
	var hidden v1.Slice
	r.json(t, &hidden)
	// Slices left by a failure are decommissioned before necosd stops.
	var created string
	t.Cleanup(func() {
		d.do("other", "DELETE", "/v1/slices/"+hidden.ID+"?wait=true", "", nil)
		if created != "" {
			d.do("demo", "DELETE", "/v1/slices/"+created+"?wait=true", "", nil)
		}
	})

	// The CDN slice, measured every second so that the charts move within the test.
	doc := strings.ReplaceAll(string(example(t, "touristic-cdn-xen.yaml")), "granularity-secs: 10", "granularity-secs: 1")
	specFile := filepath.Join(t.TempDir(), "touristic-cdn-xen.yaml")
	if err := os.WriteFile(specFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	// Login: a wrong token is refused, the right one is kept in the tab only.
	start := time.Now()
	if err := doIn(ctx,
		chromedp.Navigate(d.url("/ui/")),
		chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", "not-a-token"),
		chromedp.Click("#login-submit"),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "wrong token refused", `document.getElementById("login-error").textContent.includes("Unknown token")`, 10*time.Second)
	screenshot(t, ctx, "login")
	if err := doIn(ctx,
		clearInput("token"),
		chromedp.SendKeys("#token", d.tokens["demo"]),
		chromedp.Click("#login-submit"),
		chromedp.WaitVisible("#slices"),
	); err != nil {
		t.Fatal(err)
	}
	t.Logf("login to slice list: %s", time.Since(start).Round(time.Millisecond))
	if evalJS[string](t, ctx, `location.href`) != d.url("/ui/") {
		t.Errorf("the URL changed at login: %s", evalJS[string](t, ctx, `location.href`))
	}
	if got := evalJS[string](t, ctx, `sessionStorage.getItem("necos.token")`); got != d.tokens["demo"] {
		t.Errorf("token in sessionStorage %q", got)
	}
	if got := evalJS[string](t, ctx, `JSON.stringify(localStorage) + document.cookie`); strings.Contains(got, d.tokens["demo"]) {
		t.Errorf("token kept beyond the tab: %s", got)
	}

	// First paint of the dashboard with the tenant logged in (a reload keeps the tab's
	// token): measured, not asserted (the bench target is 1 s; see the report).
	if err := doIn(ctx, chromedp.Reload(), chromedp.WaitVisible("#slices")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "paint entries", `performance.getEntriesByName("first-contentful-paint").length > 0`, 10*time.Second)
	t.Logf("first contentful paint %.0f ms, DOM content loaded %.0f ms",
		evalJS[float64](t, ctx, `performance.getEntriesByName("first-contentful-paint")[0].startTime`),
		evalJS[float64](t, ctx, `performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd`))

	// Create from a file: the page goes to the new slice and shows its parts turn Ready.
	if err := doIn(ctx,
		chromedp.SetUploadFiles("#spec-file", []string{specFile}),
		chromedp.Click("#create"),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "slice page", `location.hash.startsWith("#/slices/")`, 30*time.Second)
	id := strings.TrimPrefix(evalJS[string](t, ctx, `decodeURIComponent(location.hash)`), "#/slices/")
	created = id
	waitJS(t, ctx, "4 parts Ready and 3 links Ready in the topology",
		`document.querySelectorAll('#topology .part[data-state="Ready"]').length === 4 &&
		 document.querySelectorAll('#topology .link[data-state="Ready"]').length === 3`, 2*time.Minute)
	if s := getSlice(t, d, "demo", id); s.State != "Ready" {
		t.Fatalf("API says %s", s.State)
	}
	waitJS(t, ctx, "slice.ready in the event timeline", `!!document.querySelector('#events li[data-type="slice.ready"]')`, 30*time.Second)
	waitJS(t, ctx, "creation in the timings", `!!document.querySelector('#timings-box tr[data-phase="creation"]')`, 30*time.Second)

	// Live metrics: the CPU chart exists and grows as the collector measures.
	const cpu = `document.querySelector('.chart[data-metric="PERCENT_CPU_UTILIZATION"]')`
	waitJS(t, ctx, "CPU chart", "!!"+cpu+" && +"+cpu+".dataset.points > 0", time.Minute)
	before := evalJS[string](t, ctx, cpu+".dataset.points")
	waitJS(t, ctx, "CPU chart updated", "+"+cpu+".dataset.points > "+before, 30*time.Second)

	// An elasticity policy and a load pushed over it: the threshold is drawn and the
	// action shows in the timings.
	pol := `policy:
  name: cpu-high
  part: core-dc
  operator: '>'
  value: 80
  trigger: {points: 2}
  metric-collector: {metric-name: PERCENT_CPU_UTILIZATION, granularity: 1}
  post-deployment:
    timers: {reactivate-elasticity: 600}
    actions: {vertical: [{action: {type: add-cpu, max: 4}}]}
`
	d.expect(d.do("demo", "POST", "/v1/slices/"+id+"/policies", "text/x-yaml", []byte(pol)), 201, "register policy")
	now := time.Now()
	lines := fmt.Sprintf("PERCENT_CPU_UTILIZATION,part=core-dc,ResourceID=core_vm-1 value=95 %d\nPERCENT_CPU_UTILIZATION,part=core-dc,ResourceID=core_vm-1 value=97 %d\n",
		now.Add(-500*time.Millisecond).UnixMilli(), now.UnixMilli())
	d.expect(d.do("demo", "POST", "/v1/slices/"+id+"/metrics?precision=ms", "text/plain", []byte(lines)), 200, "push load")
	waitJS(t, ctx, "policy listed", `!!document.querySelector('#policies-card li[data-policy="cpu-high"]')`, 30*time.Second)
	waitJS(t, ctx, "elastic action done in the timings",
		`!!document.querySelector('#timings-box .action[data-policy="cpu-high"] .badge[data-state="done"]')`, time.Minute)
	waitJS(t, ctx, "elastic events", `!!document.querySelector('#events li[data-type="elastic.action-finished"]')`, 30*time.Second)
	waitJS(t, ctx, "the resized node in the topology", `document.querySelector('#topology .part[data-part="core-dc"]').textContent.includes("3 vCPU")`, 30*time.Second)
	waitJS(t, ctx, "pushed series on the chart", cpu+".textContent.includes(\"(push)\")", 30*time.Second)

	// The event filter narrows the timeline.
	if err := doIn(ctx, chromedp.SendKeys("#event-filter", "elastic.fired")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "filtered events", `[...document.querySelectorAll("#events li")].every(li => li.dataset.type === "elastic.fired") &&
		document.querySelectorAll("#events li").length >= 1`, 10*time.Second)
	if err := doIn(ctx, clearInput("event-filter"),
		chromedp.SendKeys("#event-filter", " ")); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "slice")

	// The other tenant's slice is nowhere: not listed, not readable by its id.
	if err := doIn(ctx, chromedp.Navigate(d.url("/ui/#/"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "list with the new slice", `!!document.querySelector('#slices tr[data-id="`+id+`"]')`, 30*time.Second)

	// A domain destroyed behind necos's back: the list shows the slice Degraded with its
	// own colour and the reason, the topology the part Lost with why; once the domain runs
	// again, Ready again.
	doms := domains(t, uri, id)
	if len(doms) == 0 {
		t.Fatal("no domains of the slice")
	}
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(doms[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Free()
	if err := dom.Destroy(); err != nil {
		t.Fatalf("destroy %s: %v", doms[0].Name, err)
	}
	row := `document.querySelector('#slices tr[data-id="` + id + `"]')`
	waitJS(t, ctx, "Degraded badge in the list", row+`.querySelector('.badge[data-state="Degraded"]') !== null && `+row+`.querySelector('.degraded') !== null`, time.Minute)
	ready := evalJS[string](t, ctx, `(() => { const b = document.createElement("span"); b.className = "badge st-Ready"; document.body.append(b);
		const c = getComputedStyle(b).backgroundColor; b.remove(); return c; })()`)
	if got := evalJS[string](t, ctx, `getComputedStyle(`+row+`.querySelector('.badge')).backgroundColor`); got == ready || got == "rgb(229, 231, 235)" {
		t.Errorf("the Degraded badge has the colour %s, as Ready or an unknown state", got)
	}
	if why := evalJS[string](t, ctx, row+`.querySelector('.degraded').textContent`); !strings.Contains(why, "stopped") {
		t.Errorf("the list gives no reason for Degraded: %q", why)
	}
	screenshot(t, ctx, "slices-degraded")
	if err := doIn(ctx, chromedp.Navigate(d.url("/ui/#/slices/"+id))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "a Lost part in the topology, with why", `(() => { const p = document.querySelector('#topology .part[data-state="Lost"]');
		return !!p && p.querySelector('.lost-why') !== null && p.querySelector('.lost-why').textContent.includes("stopped") &&
			getComputedStyle(p.querySelector('rect')).strokeDasharray !== "none"; })()`, time.Minute)
	waitJS(t, ctx, "Degraded badge on the slice page", `!!document.querySelector('.slice-head .badge[data-state="Degraded"]')`, 30*time.Second)
	screenshot(t, ctx, "slice-degraded")
	if err := dom.Create(); err != nil {
		t.Fatalf("start %s again: %v", doms[0].Name, err)
	}
	waitJS(t, ctx, "the part Ready again", `document.querySelectorAll('#topology .part[data-state="Ready"]').length === 4`, time.Minute)
	if err := doIn(ctx, chromedp.Navigate(d.url("/ui/#/"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "Ready again in the list", row+` !== null && `+row+`.querySelector('.badge[data-state="Ready"]') !== null`, time.Minute)
	screenshot(t, ctx, "slices")
	if body := evalJS[string](t, ctx, `document.body.innerText`); strings.Contains(body, hidden.ID) || strings.Contains(body, "secret-of-other") {
		t.Errorf("another tenant's slice is listed:\n%s", body)
	}
	if err := doIn(ctx, chromedp.Navigate(d.url("/ui/#/slices/"+hidden.ID))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "another tenant's slice not found", `!!document.getElementById("slice-gone")`, 30*time.Second)
	// Only the id asked for shows (in the heading), nothing of the slice.
	if body := evalJS[string](t, ctx, `document.getElementById("main").innerText`); strings.Contains(body, "hidden-part") ||
		strings.Contains(body, "hidden_vm") || strings.Contains(body, "GREECE") ||
		evalJS[int](t, ctx, `document.querySelectorAll("#topology .part, #events li, .chart").length`) != 0 {
		t.Errorf("another tenant's slice is shown:\n%s", body)
	}

	// The marketplace lists the five sites, the WAN and the monitor, with their plugins.
	if err := doIn(ctx, chromedp.Navigate(d.url("/ui/#/market"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "providers", `document.querySelectorAll("#providers tbody tr").length === 6`, 30*time.Second)
	waitJS(t, ctx, "plugins", `document.querySelectorAll("#plugins tbody tr").length > 0`, 30*time.Second)
	// UNICAMP quotes 4 euros per node per day and holds the CDN's core (2 vCPUs, then 3).
	waitJS(t, ctx, "UNICAMP's quote and reservation", `(() => { const r = document.querySelector('#providers tr[data-provider="UNICAMP"]');
		return r && r.textContent.includes("€4.00") && r.textContent.includes("64 vCPU") && /[23] vCPU .*\(1\)/.test(r.textContent); })()`, 30*time.Second)
	screenshot(t, ctx, "marketplace")

	// Delete from the list (a second click confirms): the slice leaves the list, the API
	// and libvirt.
	if err := doIn(ctx,
		chromedp.Navigate(d.url("/ui/#/")),
		chromedp.WaitVisible(`button[data-delete="`+id+`"]`),
		chromedp.Click(`button[data-delete="`+id+`"]`),
		chromedp.Click(`button[data-delete="`+id+`"]`),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "slice gone from the list", `!document.querySelector('#slices tr[data-id="`+id+`"]') && !document.getElementById("no-slices").hidden`, 2*time.Minute)
	d.expect(d.do("demo", "GET", "/v1/slices/"+id, "", nil), 404, "deleted slice")
	if left := domains(t, uri, id); len(left) != 0 {
		t.Errorf("domains left: %+v", left)
	}
	assertNoWANDevices(t, fed)

	violations := evalJS[[]string](t, ctx, `window.__csp`)
	if len(violations) > 0 {
		b, _ := json.Marshal(violations)
		t.Errorf("Content-Security-Policy violations: %s", b)
	}
}
