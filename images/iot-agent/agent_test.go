package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReceiveKeepsAndForwards(t *testing.T) {
	got := make(chan Message, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m Message
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("forwarded body: %v", err)
		}
		got <- m
	}))
	defer srv.Close()
	a := newAgent(srv.URL, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.forwardLoop(ctx)

	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a.receive("devices/sensor-1/telemetry", []byte(`{"temperature": 21.5}`), now)
	a.receive("devices/sensor-2/telemetry", []byte(`not json`), now)
	a.receive("other", []byte(`3`), now)

	for i, want := range []struct{ device, payload string }{
		{"sensor-1", `{"temperature":21.5}`}, {"sensor-2", `"not json"`}, {"other", `3`}} {
		select {
		case m := <-got:
			if m.Device != want.device || string(m.Payload) != want.payload || !m.Received.Equal(now) {
				t.Errorf("forwarded %d: %+v, want device %s payload %s", i, m, want.device, want.payload)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not forwarded", i)
		}
	}
	msgs, st := a.snapshot(0)
	if len(msgs) != 2 || msgs[0].Device != "sensor-2" || msgs[1].Device != "other" {
		t.Errorf("kept %+v, want the last 2", msgs)
	}
	if st.Received != 3 {
		t.Errorf("stats %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.Forwarded != 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		_, st = a.snapshot(0)
	}
	if st.Forwarded != 3 || st.ForwardErrors != 0 {
		t.Errorf("stats %+v, want 3 forwarded", st)
	}
}

func TestForwardFailureIsCounted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	a := newAgent(srv.URL, 10)
	if err := a.post(context.Background(), Message{Device: "d"}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("post to a failing endpoint: %v", err)
	}
}

func TestHTTPInterface(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := newAgent("", 10)
	srv := httptest.NewServer(a.handler(ctx))
	defer srv.Close()
	a.receive("devices/d1/telemetry", []byte(`{"v":1}`), time.Now())
	a.receive("devices/d2/telemetry", []byte(`{"v":2}`), time.Now())

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/telemetry?n=1"); code != 200 || !strings.Contains(body, `"device":"d2"`) || strings.Contains(body, "d1") {
		t.Errorf("telemetry?n=1: %d %s", code, body)
	}
	if code, _ := get("/telemetry?n=x"); code != 400 {
		t.Errorf("telemetry?n=x: %d, want 400", code)
	}
	for _, q := range []string{"workers=0&for=1s", "workers=1&for=forever", "workers=1&for=2h"} {
		resp, err := http.Post(srv.URL+"/burn?"+q, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("burn?%s: %d, want 400", q, resp.StatusCode)
		}
	}
	resp, err := http.Post(srv.URL+"/burn?workers=1&for=300ms", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("burn: %d", resp.StatusCode)
	}
	// The worker runs, then stops by itself.
	var st Stats
	deadline := time.Now().Add(5 * time.Second)
	seen := false
	for time.Now().Before(deadline) {
		_, body := get("/stats")
		_ = json.Unmarshal([]byte(body), &st)
		if st.Burning == 1 {
			seen = true
		}
		if seen && st.Burning == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !seen || st.Burning != 0 {
		t.Errorf("burn: seen running %v, now %+v", seen, st)
	}
	// /stats says whether the subscription is held: a load waits for it.
	for _, on := range []bool{true, false} {
		a.setSubscribed(on)
		_, body := get("/stats")
		if err := json.Unmarshal([]byte(body), &st); err != nil || st.Subscribed != on {
			t.Errorf("stats after setSubscribed(%v): %s %v", on, body, err)
		}
	}
}

func TestDeviceOf(t *testing.T) {
	for topic, want := range map[string]string{"devices/a/telemetry": "a", "devices//x": "devices//x", "x/y": "x/y"} {
		if got := deviceOf(topic); got != want {
			t.Errorf("deviceOf(%q) = %q, want %q", topic, got, want)
		}
	}
}
