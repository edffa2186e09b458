package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func call(t *testing.T, h http.Handler, method, target, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, r))
	return w.Code, w.Body.String()
}

func TestStoreHTTP(t *testing.T) {
	s := newStore(2, 3, func() time.Time { return t0 })
	h := storeHandler(s, hclog.NewNullLogger())
	// The agent's message, as images/README.md documents it.
	agent := `{"device": "sensor-1", "topic": "devices/sensor-1/telemetry",
	  "payload": {"temperature": 21.5}, "received": "2026-01-02T03:04:05Z"}`
	for _, c := range []struct {
		name, method, target, body string
		code                       int
		has, hasNot                []string
	}{
		{"health", "GET", "/healthz", "", 200, []string{"ok"}, nil},
		{"an agent's message", "POST", "/telemetry?edge=dc-slice2", agent, 204, nil, nil},
		{"a second", "POST", "/telemetry?edge=dc-slice2",
			`{"device":"sensor-1","payload":{"temperature":22},"received":"2026-01-02T03:04:06Z"}`, 204, nil, nil},
		{"a third, the edge in the body", "POST", "/telemetry",
			`{"device":"sensor-1","payload":{"temperature":23},"received":"2026-01-02T03:04:07Z","edge":"e2"}`, 204, nil, nil},
		{"a payload that was no JSON", "POST", "/telemetry", `{"device":"sensor-2","payload":"not json"}`, 204, nil, nil},
		{"not JSON", "POST", "/telemetry", `device=x`, 400, []string{"expected a telemetry message"}, nil},
		{"no device", "POST", "/telemetry", `{"payload":{}}`, 400, []string{"device: expected a device id"}, nil},
		{"a device id too long", "POST", "/telemetry", `{"device":"` + strings.Repeat("x", 300) + `"}`, 400, []string{"at most 256"}, nil},
		{"a body too big", "POST", "/telemetry", `{"device":"big","payload":"` + strings.Repeat("x", maxBody) + `"}`, 400, nil, nil},
		{"history, last 2 kept", "GET", "/telemetry?device=sensor-1", "", 200,
			[]string{`"temperature":22`, `"temperature":23`}, []string{`21.5`}},
		{"history, last 1", "GET", "/telemetry?device=sensor-1&n=1", "", 200, []string{`"temperature":23`}, []string{`"temperature":22`}},
		{"history without device", "GET", "/telemetry", "", 400, []string{"device: expected"}, nil},
		{"history with a bad n", "GET", "/telemetry?device=sensor-1&n=-1", "", 400, []string{"n: expected a number"}, nil},
		{"history of an unknown device", "GET", "/telemetry?device=nobody", "", 404, []string{"never seen"}, nil},
		{"devices", "GET", "/devices", "", 200,
			[]string{`"device":"sensor-1"`, `"messages":3`, `"edge":"e2"`, `"last":{"temperature":23}`,
				`"first_seen":"2026-01-02T03:04:05Z"`, `"last_seen":"2026-01-02T03:04:07Z"`,
				`"device":"sensor-2"`, `"last":"not json"`}, []string{"big"}},
		{"a third device", "POST", "/telemetry", `{"device":"sensor-3"}`, 204, nil, nil},
		{"a fourth: beyond the bound", "POST", "/telemetry", `{"device":"sensor-4"}`, 507, []string{"as many devices as it may"}, nil},
		{"stats", "GET", "/stats", "", 200, []string{`"received":5`, `"rejected":5`, `"devices":3`, `"kept":4`}, nil},
		{"a method not served", "DELETE", "/telemetry", "", 405, nil, nil},
	} {
		code, body := call(t, h, c.method, c.target, c.body)
		if code != c.code {
			t.Errorf("%s: %s %s: %d %s, want %d", c.name, c.method, c.target, code, body, c.code)
		}
		for _, s := range c.has {
			if !strings.Contains(body, s) {
				t.Errorf("%s: %s %s: no %s in %s", c.name, c.method, c.target, s, body)
			}
		}
		for _, s := range c.hasNot {
			if strings.Contains(body, s) {
				t.Errorf("%s: %s %s: %s in %s", c.name, c.method, c.target, s, body)
			}
		}
	}
}

func TestGUIPage(t *testing.T) {
	temp := `{"device":"sensor-1","seq":3,"ts":"2026-01-02T03:04:05Z","temperature":21.456,"humidity":55.04,` +
		`"light":812.4,"gps":{"lat":-22.91234567,"lon":-47.0612}}`
	devs := []Device{
		{ID: "sensor-1", Edge: "dc-slice2", Messages: 3, LastSeen: t0, Last: json.RawMessage(temp)},
		{ID: "<b>odd</b>", Messages: 1, LastSeen: t0, Last: json.RawMessage(`"not json"`)},
	}
	for _, c := range []struct {
		name, target string
		devices      devicesFunc
		code         int
		has, hasNot  []string
	}{
		{"the page", "/", func(context.Context) ([]Device, error) { return devs, nil }, 200,
			[]string{"IoTService_sliced", "<td>sensor-1</td>", "<td>dc-slice2</td>", ">3</td>", "2026-01-02T03:04:05Z",
				">21.46</td>", ">55.0</td>", ">812</td>", "-22.91235, -47.06120", "&lt;b&gt;odd&lt;/b&gt;",
				`<span id="count">2</span>`, "const refresh =  1500 ;", "fetch('devices'"},
			[]string{"<b>odd</b>"}},
		{"no device yet", "/", func(context.Context) ([]Device, error) { return nil, nil }, 200,
			[]string{`<span id="count">0</span>`}, []string{"<td>"}},
		{"the store unreachable", "/", func(context.Context) ([]Device, error) { return nil, errors.New("connection refused") }, 502,
			[]string{"store: connection refused", "IoTService_sliced"}, nil},
		{"the list", "/devices", func(context.Context) ([]Device, error) { return devs, nil }, 200,
			[]string{`"device":"sensor-1"`, `"temperature":21.456`}, nil},
		{"the list, the store unreachable", "/devices",
			func(context.Context) ([]Device, error) { return nil, errors.New("connection refused") }, 502,
			[]string{"store: connection refused"}, nil},
		{"another path", "/x", func(context.Context) ([]Device, error) { return devs, nil }, 404, nil, nil},
	} {
		code, body := call(t, guiHandler("IoTService_sliced", c.devices, 1500*time.Millisecond), "GET", c.target, "")
		if code != c.code {
			t.Errorf("%s: GET %s: %d, want %d", c.name, c.target, code, c.code)
		}
		for _, s := range c.has {
			if !strings.Contains(body, s) {
				t.Errorf("%s: GET %s: no %s in\n%s", c.name, c.target, s, body)
			}
		}
		for _, s := range c.hasNot {
			if strings.Contains(body, s) {
				t.Errorf("%s: GET %s: %s in\n%s", c.name, c.target, s, body)
			}
		}
	}
}

// The GUI as a Deployment of its own: it reads the store over HTTP.
func TestGUIReadsARemoteStore(t *testing.T) {
	st := httptest.NewServer(storeHandler(newStore(10, 10, time.Now), hclog.NewNullLogger()))
	defer st.Close()
	gui := httptest.NewServer(guiHandler("s1", remoteDevices(st.Client(), st.URL+"/"), time.Second))
	defer gui.Close()
	resp, err := http.Post(st.URL+"/telemetry?edge=dc-slice2-h1", "application/json",
		strings.NewReader(`{"device":"sensor-9","payload":{"temperature":19.5}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for path, want := range map[string][]string{
		"/":        {"<td>sensor-9</td>", "<td>dc-slice2-h1</td>", ">19.50</td>"},
		"/devices": {`"device":"sensor-9"`, `"edge":"dc-slice2-h1"`},
	} {
		resp, err := http.Get(gui.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("GET %s: no %s in %s", path, w, b)
			}
		}
	}
	// A store that answers with an error: the GUI says which and what.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	if _, err := remoteDevices(bad.Client(), bad.URL)(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "overloaded") {
		t.Errorf("a failing store: %v", err)
	}
}

func TestCheckStoreURL(t *testing.T) {
	for _, c := range []struct {
		url  string
		want string // a part of the error; empty: accepted
	}{
		{"http://10.0.0.12:8080", ""},
		{"https://store.example/", ""},
		{"", "expected a URL"},
		{"10.0.0.12:8080", "expected a URL"},
		{"ftp://x", "expected a URL"},
		{"http://$(HISTORY_SERVICE_HOST):$(HISTORY_SERVICE_PORT)", "did not expand"},
	} {
		err := checkStoreURL(c.url)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("checkStoreURL(%q) = %v, want %q", c.url, err, c.want)
		}
	}
}
