package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necos/necos/api/apitest"
	"github.com/necos/necos/api/client"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/spec"
)

func TestMain(m *testing.M) { os.Exit(apitest.Main(m)) }

func newClient(t *testing.T, env *apitest.Env, tenant string) *client.Client {
	t.Helper()
	tok := ""
	if tenant != "" {
		tok = env.Token(tenant)
	}
	c, err := client.New(env.URL+"/", tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestNew(t *testing.T) {
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://x", "http://"} {
		if _, err := client.New(bad, ""); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

func TestSlices(t *testing.T) {
	env := apitest.Start(t)
	ctx := testCtx(t)
	c := newClient(t, env, "alice")

	s, err := c.CreateSlice(ctx, apitest.SmallSlice("cli"), client.YAML, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != "Ready" || len(s.Parts) != 2 || s.Parts[0].Nodes[0].IPs[0] == "" {
		t.Fatalf("created %+v", s)
	}
	got, err := c.GetSlice(ctx, s.ID)
	if err != nil || got.ID != s.ID || got.CostPerDay != 10 {
		t.Fatalf("get: %+v, %v", got, err)
	}
	doc, err := c.GetSliceNECOS(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if created, err := spec.ParseCreatedSlice(doc); err != nil || created.ID != "cli" {
		t.Fatalf("NECOS render: %v\n%s", err, doc)
	}
	l, err := c.ListSlices(ctx)
	if err != nil || len(l) != 1 || l[0].ID != s.ID {
		t.Fatalf("list: %+v, %v", l, err)
	}
	evs, err := c.Events(ctx, s.ID)
	if err != nil || len(evs) == 0 || evs[len(evs)-1].Type != "slice.ready" {
		t.Fatalf("events: %+v, %v", evs, err)
	}
	provs, err := c.Providers(ctx)
	if err != nil || len(provs) != 3 {
		t.Fatalf("providers: %+v, %v", provs, err)
	}
	plugins, err := c.Plugins(ctx)
	if err != nil || len(plugins) == 0 {
		t.Fatalf("plugins: %+v, %v", plugins, err)
	}
	if err := c.Healthy(ctx); err != nil {
		t.Fatal(err)
	}

	// Another tenant sees nothing of it.
	other := newClient(t, env, "bob")
	if _, err := other.GetSlice(ctx, s.ID); !client.IsNotFound(err) {
		t.Fatalf("bob's get: %v", err)
	}

	gone, err := c.DeleteSlice(ctx, s.ID, true)
	if err != nil || gone != nil {
		t.Fatalf("delete: %+v, %v", gone, err)
	}
	if _, err := c.GetSlice(ctx, s.ID); !client.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}

	// The NECOS routes, by spec id.
	created, err := c.CreateSliceNECOS(ctx, apitest.SmallSlice("necos"))
	if err != nil || !strings.Contains(string(created), "dc-slice-controller") {
		t.Fatalf("NECOS create: %v\n%s", err, created)
	}
	if err := c.DeleteSliceNECOS(ctx, "necos"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSliceNECOS(ctx, "necos"); !client.IsNotFound(err) {
		t.Fatalf("NECOS delete of a gone slice: %v", err)
	}
}

func TestErrors(t *testing.T) {
	env := apitest.Start(t)
	ctx := testCtx(t)
	c := newClient(t, env, "alice")

	bad := []byte(strings.Replace(string(apitest.SmallSlice("bad")), "instance-count: 1", "instance-count: many", 1))
	_, err := c.CreateSlice(ctx, bad, client.YAML, false)
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 400 || len(e.Problems) == 0 ||
		e.Problems[0].Path != "slices.sliced.slice-parts[0].dc-slice-part.VIM.vdus[0].vdu.instance-count" {
		t.Fatalf("bad spec: %#v", err)
	}
	if !strings.Contains(err.Error(), e.Problems[0].Path+": ") {
		t.Errorf("error text %q names no path", err)
	}
	// YAML errors of the NECOS routes decode the same.
	_, err = c.CreateSliceNECOS(ctx, bad)
	if !errors.As(err, &e) || e.Status != 400 || len(e.Problems) == 0 || !strings.HasSuffix(e.Problems[0].Path, "instance-count") {
		t.Fatalf("bad NECOS spec: %#v", err)
	}
	anonymous := newClient(t, env, "")
	if _, err := anonymous.ListSlices(ctx); !errors.As(err, &e) || e.Status != 401 || e.Message == "" {
		t.Fatalf("no token: %#v", err)
	}
	// A failed slice names itself and the part at fault.
	huge := strings.Replace(string(apitest.SmallSlice("huge")), "cpu-number: 1", "cpu-number: 64", 1)
	if _, err := c.CreateSlice(ctx, []byte(huge), client.YAML, true); !errors.As(err, &e) || e.Status != 409 || e.SliceID == "" {
		t.Fatalf("failed slice: %#v", err)
	}
}

func TestWatch(t *testing.T) {
	env := apitest.Start(t)
	ctx := testCtx(t)
	c := newClient(t, env, "alice")

	s, err := c.CreateSlice(ctx, apitest.SmallSlice("w"), client.YAML, false)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var live *v1.StreamState
	err = c.Watch(ctx, s.ID, func(ev client.StreamEvent) error {
		names = append(names, ev.Name)
		switch {
		case ev.Name == v1.StreamLive:
			live = ev.State
		case ev.Event != nil && ev.Event.Type == "slice.ready":
			if _, err := c.DeleteSlice(ctx, s.ID, false); err != nil {
				return err
			}
		case ev.Event != nil && ev.Event.Seq == 0:
			t.Errorf("event without seq: %+v", ev.Event)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if live == nil || names[0] != "slice.accepted" || names[len(names)-1] != v1.StreamEnd {
		t.Errorf("events %v (live %+v)", names, live)
	}
	count := map[string]int{}
	for _, n := range names {
		count[n]++
	}
	if count["part.ready"] != 2 || count["slice.ready"] != 1 || count["slice.deleted"] != 1 {
		t.Errorf("events %v", names)
	}

	// ErrStop ends a watch early; another tenant's slice is not found.
	s2, err := c.CreateSlice(ctx, apitest.SmallSlice("w2"), client.YAML, false)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := c.Watch(ctx, s2.ID, func(client.StreamEvent) error { n++; return client.ErrStop }); err != nil || n != 1 {
		t.Errorf("stop: %v after %d events", err, n)
	}
	if err := newClient(t, env, "bob").Watch(ctx, s2.ID, func(client.StreamEvent) error { return nil }); !client.IsNotFound(err) {
		t.Errorf("bob's watch: %v", err)
	}
}

// TestCreateSurvivesDroppedConnection: the server makes the slice but the connection
// drops before the answer (twice); the client sends the create again under its
// Idempotency-Key and gets that slice: one slice, known to the caller, on both routes.
func TestCreateSurvivesDroppedConnection(t *testing.T) {
	env := apitest.Start(t)
	var drops atomic.Int32
	drops.Store(2)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || drops.Add(-1) < 0 {
			env.Handler.ServeHTTP(w, r)
			return
		}
		// The request reaches the API, which makes the slice; its answer is lost.
		env.Handler.ServeHTTP(httptest.NewRecorder(), r)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	}))
	t.Cleanup(proxy.Close)
	c, err := client.New(proxy.URL, env.Token("alice"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	s, err := c.CreateSlice(ctx, apitest.SmallSlice("dropped"), client.YAML, true)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if drops.Load() >= 0 || s.State != "Ready" {
		t.Errorf("drops left %d, slice %s %s", drops.Load(), s.ID, s.State)
	}
	drops.Store(1)
	out, err := c.CreateSliceNECOS(ctx, apitest.SmallSlice("dropped-necos"))
	if err != nil || !strings.Contains(string(out), "dropped-necos") {
		t.Fatalf("NECOS create: %v\n%s", err, out)
	}
	l, err := c.ListSlices(ctx)
	if err != nil || len(l) != 2 {
		t.Errorf("slices %+v %v, want 2", l, err)
	}
}
