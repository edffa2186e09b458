package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necos/necos/api"
	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/store"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) { os.Exit(apitest.Main(m)) }

// answer is a response with its body read.
type answer struct {
	*http.Response
	body []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body:\n%s", ct, a.body)
	}
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

func (a answer) yaml(t *testing.T, v any) {
	t.Helper()
	if ct := a.Header.Get("Content-Type"); ct != yamlAnswer {
		t.Fatalf("Content-Type %q, want text/x-yaml with charset=utf-8; body:\n%s", ct, a.body)
	}
	if err := yaml.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

func (a answer) status(t *testing.T, want int) answer {
	t.Helper()
	if a.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body:\n%s", a.Request.Method, a.Request.URL, a.StatusCode, want, a.body)
	}
	return a
}

// do sends a request; headers are name, value pairs.
func do(t *testing.T, method, url, token string, body []byte, headers ...string) answer {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return answer{Response: resp, body: b}
}

const yamlType = "text/x-yaml"

// yamlAnswer is the Content-Type of YAML answers.
const yamlAnswer = "text/x-yaml; charset=utf-8"

// toJSON turns a YAML slice spec into JSON of the same structure.
func toJSON(t *testing.T, doc []byte) []byte {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func listSlices(t *testing.T, env *apitest.Env, tenant string) []v1.SliceSummary {
	t.Helper()
	var l v1.SliceList
	do(t, "GET", env.URL+"/v1/slices", env.Token(tenant), nil).status(t, 200).json(t, &l)
	return l.Slices
}

// TestNECOSRoutes creates the touristic CDN of the original demo through the NECOS
// route and checks the created slice it answers, then deletes it by its spec id.
func TestNECOSRoutes(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	doc := apitest.Example(t, "touristic-cdn-xen.yaml")

	a := do(t, "POST", env.URL+"/slice_activator/create_slice", tok, doc, "Content-Type", yamlType).status(t, 201)
	if ct := a.Header.Get("Content-Type"); ct != yamlAnswer {
		t.Fatalf("Content-Type %q", ct)
	}
	if !strings.HasPrefix(a.Header.Get("Location"), "/v1/slices/touristiccdn-") {
		t.Errorf("Location %q", a.Header.Get("Location"))
	}
	created, err := spec.ParseCreatedSlice(a.body)
	if err != nil {
		t.Fatalf("created slice does not parse: %v\n%s", err, a.body)
	}
	if created.ID != "TouristicCDN_xen_sliced" || len(created.Parts) != 4 || len(created.Links) != 3 {
		t.Fatalf("created slice %s: %d parts, %d links", created.ID, len(created.Parts), len(created.Links))
	}
	wantProvider := map[string]string{"core-dc": "UNICAMP", "edge-dc-slice-spain": "SPAIN",
		"edge-dc-slice-greece": "SPAIN", "edge-dc-slice-brazil": "UFSCAR"}
	for _, p := range created.Parts {
		st := p.Status
		if st == nil {
			t.Fatalf("part %s has no status:\n%s", p.Name, a.body)
		}
		if st.Controller.Provider != wantProvider[p.Name] || st.Controller.IP != "127.0.0.1" {
			t.Errorf("part %s: dc-slice-controller %+v, want provider %s", p.Name, st.Controller, wantProvider[p.Name])
		}
		if st.ID.PartUUID == "" || st.VSwitch.Bridge == "" || st.VIMRef.IPSSH != "127.0.0.1" {
			t.Errorf("part %s: not enriched: %+v", p.Name, st)
		}
		if st.Cost == nil || st.Cost.Euros <= 0 || st.Cost.Euros > 10 {
			t.Errorf("part %s: cost %+v", p.Name, st.Cost)
		}
		if len(st.Nodes) != 1 || !strings.HasPrefix(st.Nodes[0].IP, "10.10.") || st.Nodes[0].ID == "" {
			t.Errorf("part %s: nodes %+v", p.Name, st.Nodes)
		}
	}
	for _, l := range created.Links {
		if l.Status == nil || l.Status.End1IP != "10.100.0.1" || l.Status.ID.PartUUID == "" {
			t.Errorf("link %s: status %+v", l.Name, l.Status)
		}
	}
	// The same document again (a retry whose answer was lost) gets the same slice; another
	// document with the same id only once the first slice is gone.
	again := do(t, "POST", env.URL+"/slice_activator/create_slice", tok, doc, "Content-Type", yamlType).status(t, 201)
	if again.Header.Get("Idempotent-Replayed") != "true" || again.Header.Get("Location") != a.Header.Get("Location") {
		t.Errorf("retry: headers %v", again.Header)
	}
	var e v1.Error
	other := append(append([]byte(nil), doc...), "# another document\n"...)
	do(t, "POST", env.URL+"/slice_activator/create_slice", tok, other, "Content-Type", yamlType).status(t, 409).yaml(t, &e)
	if len(e.Problems) != 1 || e.Problems[0].Path != "slices.sliced.id" {
		t.Errorf("duplicate: %+v", e)
	}

	del := []byte("slices:\n  sliced:\n    id: TouristicCDN_xen_sliced\n")
	var confirm map[string]any
	do(t, "POST", env.URL+"/slice_activator/delete_slice", tok, del, "Content-Type", yamlType).status(t, 200).yaml(t, &confirm)
	if !strings.Contains(fmt.Sprint(confirm["message"]), "decommissioned") {
		t.Errorf("confirmation %v", confirm)
	}
	if l := listSlices(t, env, "alice"); len(l) != 0 {
		t.Errorf("slices left after delete: %+v", l)
	}
	e = v1.Error{}
	do(t, "POST", env.URL+"/slice_activator/delete_slice", tok, del, "Content-Type", yamlType).status(t, 404).yaml(t, &e)
	if len(e.Problems) != 1 || e.Problems[0].Path != "slices.sliced.id" {
		t.Errorf("delete unknown: %+v", e)
	}
	e = v1.Error{}
	do(t, "POST", env.URL+"/slice_activator/delete_slice", tok, []byte("slices: {sliced: {name: x}}"), "Content-Type", yamlType).
		status(t, 400).yaml(t, &e)
	if len(e.Problems) == 0 || e.Problems[0].Path != "slices.sliced.slice-id" {
		t.Errorf("delete without id: %+v", e)
	}
}

// TestV1Lifecycle creates a slice from JSON and waits, reads it in both formats, lists
// it and deletes it.
func TestV1Lifecycle(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")

	a := do(t, "POST", env.URL+"/v1/slices?wait=true", tok, toJSON(t, apitest.SmallSlice("cdn")),
		"Content-Type", "application/json").status(t, 201)
	var s v1.Slice
	a.json(t, &s)
	if a.Header.Get("Location") != "/v1/slices/"+s.ID {
		t.Errorf("Location %q for %s", a.Header.Get("Location"), s.ID)
	}
	if s.Name != "cdn" || s.State != "Ready" || s.ReadyAt == nil || s.Events == 0 {
		t.Errorf("slice %+v", s)
	}
	// Four euros a day at UNICAMP, six in Spain, the link is free (no WAN provider).
	if s.CostPerDay != 10 || len(s.Parts) != 2 || len(s.Links) != 1 {
		t.Fatalf("slice: cost %v, %d parts, %d links", s.CostPerDay, len(s.Parts), len(s.Links))
	}
	core := s.Parts[0]
	if core.Name != "core-dc" || core.Provider != "UNICAMP" || core.State != "Ready" || core.CostPerDay != 4 ||
		core.Bridge == "" || core.Resources.Nodes != 1 || core.Resources.CPUs != 1 {
		t.Errorf("core part %+v", core)
	}
	if core.VIMRef == nil || core.VIMRef.SSH == nil || core.VIMRef.SSH.Port != 22101 {
		t.Errorf("core vim_ref %+v", core.VIMRef)
	}
	if len(core.Nodes) != 1 || core.Nodes[0].Name != "core_vm-1" || len(core.Nodes[0].IPs) == 0 ||
		!strings.HasPrefix(core.Nodes[0].IPs[0], "10.10.1.") {
		t.Errorf("core nodes %+v", core.Nodes)
	}
	link := s.Links[0]
	if link.State != "NotBuilt" || link.Ends[0].Part != "core-dc" || link.Ends[0].Underlay != "10.100.0.1" ||
		link.Ends[1].Site != "SPAIN" || link.Ends[1].Underlay != "10.100.0.3" {
		t.Errorf("link %+v", link)
	}

	var got v1.Slice
	do(t, "GET", env.URL+"/v1/slices/"+s.ID, tok, nil).status(t, 200).json(t, &got)
	if got.ID != s.ID || got.State != "Ready" || len(got.Parts) != 2 {
		t.Errorf("get: %+v", got)
	}
	for _, q := range []answer{
		do(t, "GET", env.URL+"/v1/slices/"+s.ID+"?format=necos", tok, nil),
		do(t, "GET", env.URL+"/v1/slices/"+s.ID, tok, nil, "Accept", "text/x-yaml, application/json"),
	} {
		q.status(t, 200)
		var doc map[string]any
		q.yaml(t, &doc)
		created, err := spec.ParseCreatedSlice(q.body)
		if err != nil || created.ID != "cdn" || created.Parts[0].Status == nil {
			t.Errorf("NECOS render: %v\n%s", err, q.body)
		}
	}
	var e v1.Error
	do(t, "GET", env.URL+"/v1/slices/"+s.ID+"?format=xml", tok, nil).status(t, 400).json(t, &e)
	if e.Problems[0].Path != "query format" {
		t.Errorf("bad format: %+v", e)
	}

	l := listSlices(t, env, "alice")
	if len(l) != 1 || l[0].ID != s.ID || l[0].State != "Ready" || l[0].CostPerDay != 10 || l[0].Parts != 2 {
		t.Errorf("list %+v", l)
	}

	var evs v1.EventList
	do(t, "GET", env.URL+"/v1/slices/"+s.ID+"/events", tok, nil).status(t, 200).json(t, &evs)
	if len(evs.Events) != s.Events || evs.Events[0].Type != "slice.accepted" || evs.Events[len(evs.Events)-1].Type != "slice.ready" {
		t.Errorf("events %+v", evs.Events)
	}

	do(t, "DELETE", env.URL+"/v1/slices/"+s.ID+"?wait=true", tok, nil).status(t, 204)
	do(t, "GET", env.URL+"/v1/slices/"+s.ID, tok, nil).status(t, 404)
	do(t, "DELETE", env.URL+"/v1/slices/"+s.ID, tok, nil).status(t, 404)
	if l := listSlices(t, env, "alice"); len(l) != 0 {
		t.Errorf("list after delete %+v", l)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	id, name, data string
}

// readSSE sends the events of a stream to ch until it ends.
func readSSE(body io.Reader, ch chan<- sseEvent) {
	defer close(ch)
	sc := bufio.NewScanner(body)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" || ev.data != "" {
				ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// TestEventStream follows a slice from its creation to its decommission as server-sent
// events: the past ones first, then live ones, then the end of the stream.
func TestEventStream(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")

	a := do(t, "POST", env.URL+"/v1/slices", tok, apitest.SmallSlice("watched"), "Content-Type", yamlType).status(t, 202)
	var s v1.Slice
	a.json(t, &s)
	if s.State != "Pending" && s.State != "Creating" {
		t.Errorf("accepted slice in state %s", s.State)
	}
	if a.Header.Get("Location") != "/v1/slices/"+s.ID {
		t.Errorf("Location %q", a.Header.Get("Location"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", env.URL+a.Header.Get("Location")+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 64)
	go readSSE(resp.Body, ch)

	seen := map[string]int{}
	var order []string
	deleted := false
	for ev := range ch {
		order = append(order, ev.name)
		seen[ev.name]++
		if ev.name != v1.StreamLive && ev.name != v1.StreamEnd {
			var e v1.Event
			if err := json.Unmarshal([]byte(ev.data), &e); err != nil || e.Type != ev.name || fmt.Sprint(e.Seq) != ev.id {
				t.Errorf("event %+v: %v", ev, err)
			}
			if e.Type == "part.ready" && e.Part == "" {
				t.Errorf("part.ready names no part: %+v", e)
			}
		}
		if ev.name == "slice.ready" && !deleted {
			// Live: the delete's events must follow on the same stream.
			deleted = true
			do(t, "DELETE", env.URL+"/v1/slices/"+s.ID, tok, nil).status(t, 202)
		}
		if ev.name == v1.StreamEnd {
			var st v1.StreamState
			if err := json.Unmarshal([]byte(ev.data), &st); err != nil || st.State != v1.StateGone {
				t.Errorf("end %q: %v", ev.data, err)
			}
		}
	}
	if seen["part.ready"] != 2 || seen["slice.ready"] != 1 || seen[v1.StreamLive] != 1 ||
		seen["slice.deleted"] != 1 || seen[v1.StreamEnd] != 1 || order[0] != "slice.accepted" {
		t.Errorf("events: %v", order)
	}
	if order[len(order)-1] != v1.StreamEnd {
		t.Errorf("stream did not end with %s: %v", v1.StreamEnd, order)
	}
}

// TestTenants checks that tokens are required and that a tenant sees only its slices.
func TestTenants(t *testing.T) {
	env := apitest.Start(t)
	alice, bob := env.Token("alice"), env.Token("bob")

	var s v1.Slice
	do(t, "POST", env.URL+"/v1/slices?wait=true", alice, apitest.SmallSlice("mine"), "Content-Type", yamlType).
		status(t, 201).json(t, &s)

	if l := listSlices(t, env, "bob"); len(l) != 0 {
		t.Errorf("bob lists alice's slices: %+v", l)
	}
	for _, a := range []answer{
		do(t, "GET", env.URL+"/v1/slices/"+s.ID, bob, nil),
		do(t, "GET", env.URL+"/v1/slices/"+s.ID+"/events", bob, nil),
		do(t, "GET", env.URL+"/v1/slices/"+s.ID+"/events", bob, nil, "Accept", "text/event-stream"),
		do(t, "DELETE", env.URL+"/v1/slices/"+s.ID, bob, nil),
		do(t, "POST", env.URL+"/slice_activator/delete_slice", bob, []byte("slices: {sliced: {id: mine}}"), "Content-Type", yamlType),
	} {
		a.status(t, 404)
	}
	// Bob may use the same spec id: names are per tenant.
	do(t, "POST", env.URL+"/v1/slices", bob, apitest.SmallSlice("mine"), "Content-Type", yamlType).status(t, 202)

	for _, route := range []string{"/v1/slices", "/v1/slices/" + s.ID, "/v1/slices/" + s.ID + "/events", "/v1/providers", "/v1/plugins"} {
		for _, tok := range []string{"", "necos_not-a-token"} {
			a := do(t, "GET", env.URL+route, tok, nil).status(t, 401)
			if !strings.HasPrefix(a.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: WWW-Authenticate %q", route, a.Header.Get("WWW-Authenticate"))
			}
			var e v1.Error
			a.json(t, &e)
			if e.Error == "" || e.Problems[0].Path != "header Authorization" {
				t.Errorf("%s: %+v", route, e)
			}
		}
	}
	a := do(t, "POST", env.URL+"/slice_activator/create_slice", "", apitest.SmallSlice("x"), "Content-Type", yamlType).status(t, 401)
	var e v1.Error
	a.yaml(t, &e)
	do(t, "GET", env.URL+"/v1/slices", "", nil, "Authorization", "Basic YWxpY2U6eA==").status(t, 401)
	// Still alice's, and only hers.
	if l := listSlices(t, env, "alice"); len(l) != 1 || l[0].ID != s.ID {
		t.Errorf("alice's slices %+v", l)
	}
	for _, route := range []string{"/healthz", "/readyz", "/metrics", "/v1/openapi.yaml"} {
		do(t, "GET", env.URL+route, "", nil).status(t, 200)
	}
}

// TestBadRequests sends malformed requests to both families of routes: each gets the
// status it should, names the field at fault, and stores nothing.
func TestBadRequests(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	good := apitest.SmallSlice("good")
	noID := bytes.Replace(good, []byte("    id: good\n"), nil, 1)
	badVDU := bytes.Replace(good, []byte("instance-count: 1"), []byte("instance-count: -2"), 1)
	iot := apitest.Example(t, "iot-dojot.yaml") // Kubernetes parts: not offered here

	cases := []struct {
		name        string
		body        []byte
		contentType string
		status      int
		path        string // a problem's path, "-" for none expected
	}{
		{"no id", noID, yamlType, 400, "slices.sliced.id"},
		{"bad instance count", badVDU, yamlType, 400, "slices.sliced.slice-parts[0].dc-slice-part.VIM.vdus[0].vdu.instance-count"},
		{"VIM not offered", iot, yamlType, 400, "slices.sliced.slice-parts[0].dc-slice-part.VIM.name"},
		{"not YAML", []byte("slices: [unclosed"), yamlType, 400, ""},
		{"not a slice", []byte("hello: world\n"), yamlType, 400, "slices"},
		{"empty", []byte("  \n"), yamlType, 400, ""},
		{"bad JSON", []byte(`{"slices": `), "application/json", 400, ""},
		{"JSON no id", toJSON(t, noID), "application/json", 400, "slices.sliced.id"},
		{"wrong type", good, "text/plain", 415, "header Content-Type"},
		{"form", good, "application/x-www-form-urlencoded", 415, "header Content-Type"},
		{"too large", bytes.Repeat([]byte("#"), api.DefaultMaxBody+1), yamlType, 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			check := func(e v1.Error) {
				t.Helper()
				if e.Error == "" {
					t.Errorf("no error message")
				}
				for _, p := range e.Problems {
					if p.Path == c.path {
						return
					}
				}
				t.Errorf("no problem at %q: %+v", c.path, e)
			}
			var e v1.Error
			do(t, "POST", env.URL+"/v1/slices", tok, c.body, "Content-Type", c.contentType).status(t, c.status).json(t, &e)
			check(e)
			e = v1.Error{}
			do(t, "POST", env.URL+"/slice_activator/create_slice", tok, c.body, "Content-Type", c.contentType).status(t, c.status).yaml(t, &e)
			check(e)
		})
	}
	var e v1.Error
	do(t, "POST", env.URL+"/v1/slices?wait=maybe", tok, good, "Content-Type", yamlType).status(t, 400).json(t, &e)
	if e.Problems[0].Path != "query wait" {
		t.Errorf("bad wait: %+v", e)
	}
	if l := listSlices(t, env, "alice"); len(l) != 0 {
		t.Errorf("bad requests stored slices: %+v", l)
	}
	do(t, "PUT", env.URL+"/v1/slices", tok, good, "Content-Type", yamlType).status(t, 405).json(t, &e)
	do(t, "GET", env.URL+"/slice_activator/create_slice", tok, nil).status(t, 405).yaml(t, &e)
	do(t, "POST", env.URL+"/slice_activator/nothing", tok, nil).status(t, 404).yaml(t, &e)
	do(t, "GET", env.URL+"/v1/nothing", tok, nil).status(t, 404)
}

// TestFailedSlice asks for more than the federation has: the slice fails, the answer
// says why per part, and the failed slice stays listed until deleted.
func TestFailedSlice(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	// Spain sells 16 CPUs.
	huge := bytes.Replace(apitest.SmallSlice("huge"), []byte("host-epa: {cpu-number: 1, memory-mb: 512, storage-gb: 5}\n      - net"),
		[]byte("host-epa: {cpu-number: 64, memory-mb: 512, storage-gb: 5}\n      - net"), 1)
	if bytes.Equal(huge, apitest.SmallSlice("huge")) {
		t.Fatal("test spec not changed")
	}
	var e v1.Error
	do(t, "POST", env.URL+"/slice_activator/create_slice", tok, huge, "Content-Type", yamlType).status(t, 409).yaml(t, &e)
	if e.SliceID == "" || !strings.Contains(e.Error, "edge-dc") || len(e.Problems) == 0 {
		t.Errorf("failure %+v", e)
	}
	l := listSlices(t, env, "alice")
	if len(l) != 1 || l[0].State != "Failed" || l[0].ID != e.SliceID || l[0].Message == "" {
		t.Fatalf("list %+v", l)
	}
	do(t, "DELETE", env.URL+"/v1/slices/"+e.SliceID+"?wait=true", tok, nil).status(t, 204)

	e = v1.Error{}
	do(t, "POST", env.URL+"/v1/slices?wait=true", tok, huge, "Content-Type", yamlType).status(t, 409).json(t, &e)
	if e.SliceID == "" || len(e.Problems) == 0 {
		t.Errorf("failure %+v", e)
	}

	// The refused slice holds nothing: a corrected document takes its id, the failed
	// record goes; the same document again is still answered with the failed slice.
	do(t, "POST", env.URL+"/v1/slices", tok, huge, "Content-Type", yamlType).status(t, 202)
	var s v1.Slice
	do(t, "POST", env.URL+"/v1/slices?wait=true", tok, apitest.SmallSlice("huge"), "Content-Type", yamlType).status(t, 201).json(t, &s)
	if s.State != "Ready" || s.ID == e.SliceID || s.Name != "huge" {
		t.Errorf("corrected slice %+v", s)
	}
	do(t, "GET", env.URL+"/v1/slices/"+e.SliceID, tok, nil).status(t, 404)
	if l := listSlices(t, env, "alice"); len(l) != 1 || l[0].ID != s.ID {
		t.Errorf("list after the replacement %+v", l)
	}
	// A Ready slice is live: another document under its id is still refused.
	do(t, "POST", env.URL+"/v1/slices", tok, huge, "Content-Type", yamlType).status(t, 409)
}

// TestFederation lists providers (never their plugins' configuration) and plugins.
func TestFederation(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")

	a := do(t, "GET", env.URL+"/v1/providers", tok, nil).status(t, 200)
	var pl v1.ProviderList
	a.json(t, &pl)
	if len(pl.Providers) != 3 {
		t.Fatalf("providers %+v", pl)
	}
	p := pl.Providers[0]
	if p.Name != "UNICAMP" || p.Location != "AMERICA.BRAZIL.UNICAMP" || len(p.Offers) != 1 ||
		p.Offers[0].Kind != "dc" || p.Offers[0].Plugin != "vim-xen" || p.Offers[0].VIM != "xen-vim" ||
		p.Site == nil || p.Site.Underlay != "10.100.0.1" || p.Controller == nil {
		t.Errorf("provider %+v", p)
	}
	for _, secret := range []string{"config", "test:///default", "capacity", "price_per_node_day", "subnet"} {
		if bytes.Contains(a.body, []byte(secret)) {
			t.Errorf("providers show %q:\n%s", secret, a.body)
		}
	}

	var plugins v1.PluginList
	do(t, "GET", env.URL+"/v1/plugins", tok, nil).status(t, 200).json(t, &plugins)
	if len(plugins.Plugins) != 0 {
		t.Errorf("plugins before any use: %+v", plugins)
	}
	do(t, "POST", env.URL+"/v1/slices?wait=true", tok, apitest.SmallSlice("p"), "Content-Type", yamlType).status(t, 201)
	do(t, "GET", env.URL+"/v1/plugins", tok, nil).status(t, 200).json(t, &plugins)
	names := map[string]v1.Plugin{}
	for _, p := range plugins.Plugins {
		names[p.Name] = p
	}
	u, ok := names["UNICAMP"]
	if !ok || u.Plugin != "vim-xen" || u.State != "running" || u.Pid == 0 || len(u.Kinds) == 0 || u.SHA256 == "" {
		t.Errorf("plugins %+v", plugins)
	}

	// Without a registry, no plugins are listed.
	srv := newServer(t, api.Options{Engine: env.Engine})
	do(t, "GET", srv+"/v1/plugins", tok, nil).status(t, 200).json(t, &plugins)
	if len(plugins.Plugins) != 0 {
		t.Errorf("plugins without registry: %+v", plugins)
	}
}

// TestMetrics checks the request metrics and that the engine's share the registry.
func TestMetrics(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	do(t, "POST", env.URL+"/v1/slices?wait=true", tok, apitest.SmallSlice("m"), "Content-Type", yamlType).status(t, 201)
	listSlices(t, env, "alice")
	do(t, "GET", env.URL+"/v1/slices/nope", tok, nil).status(t, 404)
	do(t, "GET", env.URL+"/no/such/route/42", tok, nil).status(t, 404)

	a := do(t, "GET", env.URL+"/metrics", "", nil).status(t, 200)
	text := string(a.body)
	for _, want := range []string{
		`necos_http_request_duration_seconds_bucket{code="201",method="POST",route="/v1/slices",le=`,
		`necos_http_request_duration_seconds_count{code="200",method="GET",route="/v1/slices"} 1`,
		`necos_http_requests_total{code="404",method="GET",route="/v1/slices/{id}"} 1`,
		`necos_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`necos_slice_phase_seconds_bucket{phase="create"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A second API on the same registry shares the series instead of panicking.
	srv := newServer(t, api.Options{Engine: env.Engine, Metrics: env.Prometheus})
	do(t, "GET", srv+"/healthz", "", nil).status(t, 200)
}

// TestReadyz checks the readiness callback.
func TestReadyz(t *testing.T) {
	env := apitest.Start(t)
	var started atomic.Bool
	srv := newServer(t, api.Options{Engine: env.Engine, Ready: func() error {
		if !started.Load() {
			return errors.New("plugins still starting")
		}
		return nil
	}})
	var h v1.Health
	do(t, "GET", srv+"/readyz", "", nil).status(t, 503).json(t, &h)
	if h.Status != "unavailable" || !strings.Contains(h.Error, "plugins still starting") {
		t.Errorf("readyz %+v", h)
	}
	started.Store(true)
	do(t, "GET", srv+"/readyz", "", nil).status(t, 200)
	do(t, "GET", srv+"/healthz", "", nil).status(t, 200)
}

// openStream opens a slice's event stream; it is closed when the test ends.
func openStream(t *testing.T, url, token string, headers ...string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("stream: status %d", resp.StatusCode)
	}
	ch := make(chan sseEvent, 64)
	go readSSE(resp.Body, ch)
	return ch
}

func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(time.Minute):
		t.Fatal("no event within a minute")
	}
	return sseEvent{}
}

// TestEventStreamResume resumes a stream after Last-Event-ID, and checks heartbeats.
func TestEventStreamResume(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	var s v1.Slice
	do(t, "POST", env.URL+"/v1/slices?wait=true", tok, apitest.SmallSlice("r"), "Content-Type", yamlType).status(t, 201).json(t, &s)
	var evs v1.EventList
	do(t, "GET", env.URL+"/v1/slices/"+s.ID+"/events", tok, nil).status(t, 200).json(t, &evs)
	n := len(evs.Events)

	ch := openStream(t, env.URL+"/v1/slices/"+s.ID+"/events", tok, "Last-Event-ID", fmt.Sprint(evs.Events[n-2].Seq))
	if ev := next(t, ch); ev.name != "slice.ready" || ev.id != fmt.Sprint(evs.Events[n-1].Seq) {
		t.Errorf("resumed with %+v, want the last event only", ev)
	}
	if ev := next(t, ch); ev.name != v1.StreamLive || !strings.Contains(ev.data, `"state":"Ready"`) {
		t.Errorf("then %+v", ev)
	}
	do(t, "GET", env.URL+"/v1/slices/"+s.ID+"/events", tok, nil, "Accept", "text/event-stream", "Last-Event-ID", "x").status(t, 400)

	// Heartbeats are comments: read the raw stream.
	h := api.New(api.Options{Engine: env.Engine})
	api.SetHeartbeat(h, 20*time.Millisecond)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/slices/"+s.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == ": heartbeat" {
			return
		}
	}
	t.Errorf("no heartbeat: %v", sc.Err())
}

// TestListSlicesPages pages through a tenant's slices: every slice once, oldest first,
// never another tenant's, and a bad limit or token is a 400 naming the parameter.
func TestListSlicesPages(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	var want []string
	for i := range 5 {
		var s v1.Slice
		do(t, "POST", env.URL+"/v1/slices?wait=true", tok, apitest.SmallSlice(fmt.Sprintf("p%d", i)),
			"Content-Type", yamlType).status(t, 201).json(t, &s)
		want = append(want, s.ID)
		if i == 2 {
			do(t, "POST", env.URL+"/v1/slices?wait=true", env.Token("bob"), apitest.SmallSlice("b"),
				"Content-Type", yamlType).status(t, 201)
		}
	}
	var got []string
	next, pages := "", 0
	for {
		var l v1.SliceList
		do(t, "GET", env.URL+"/v1/slices?limit=2&continue="+next, tok, nil).status(t, 200).json(t, &l)
		pages++
		if len(l.Slices) > 2 {
			t.Fatalf("page of %d with limit 2", len(l.Slices))
		}
		for _, s := range l.Slices {
			if s.Parts != 2 || s.CostPerDay != 10 {
				t.Errorf("summary %+v", s)
			}
			got = append(got, s.ID)
		}
		if l.Continue == "" {
			break
		}
		next = l.Continue
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || pages != 3 {
		t.Fatalf("%d pages: %v, want %v", pages, got, want)
	}
	if all := listSlices(t, env, "alice"); len(all) != 5 || all[4].ID != want[4] {
		t.Fatalf("without limit: %+v", all)
	}
	for q, field := range map[string]string{"limit=0": "query limit", "limit=1001": "query limit",
		"limit=x": "query limit", "continue=-3": "query continue", "continue=abc": "query continue"} {
		var e v1.Error
		do(t, "GET", env.URL+"/v1/slices?"+q, tok, nil).status(t, 400).json(t, &e)
		if len(e.Problems) == 0 || e.Problems[0].Path != field {
			t.Errorf("%s: %+v, want a problem at %q", q, e, field)
		}
	}
}

// A drift the reconciler could not repair is shown on its part (the health pass records
// it: core/sro's drift tests; here it is written as that pass would).
func TestPartDriftShown(t *testing.T) {
	env := apitest.Start(t)
	tok := env.Token("alice")
	var s v1.Slice
	do(t, "POST", env.URL+"/v1/slices?wait=true", tok, toJSON(t, apitest.SmallSlice("drift")),
		"Content-Type", "application/json").status(t, 201).json(t, &s)
	since := time.Now().UTC().Truncate(time.Second)
	if _, err := env.Store.UpdatePart(context.Background(), s.ID, "core-dc", func(p *store.Part) ([]store.Event, error) {
		p.Drift = &store.PartDrift{What: "node core_vm-1 has 4 vCPUs at the provider, 1 recorded", Why: "no room", Since: since}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	var got v1.Slice
	do(t, "GET", env.URL+"/v1/slices/"+s.ID, tok, nil).status(t, 200).json(t, &got)
	for _, p := range got.Parts {
		switch {
		case p.Name == "core-dc" && (p.Drift == nil || p.Drift.Why != "no room" || !p.Drift.Since.Equal(since) ||
			!strings.Contains(p.Drift.What, "4 vCPUs")):
			t.Errorf("core-dc's drift: %+v", p.Drift)
		case p.Name != "core-dc" && p.Drift != nil:
			t.Errorf("%s has a drift it never had: %+v", p.Name, p.Drift)
		}
	}
}
