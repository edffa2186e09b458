package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// maxBurn bounds a burn request: a load is a test's, and ends by itself.
const maxBurn = 30 * time.Minute

// handler serves the agent's HTTP interface (see README.md).
func (a *agent) handler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /telemetry", func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if s := r.URL.Query().Get("n"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 {
				http.Error(w, "n: expected a number >= 0, got "+strconv.Quote(s), http.StatusBadRequest)
				return
			}
			n = v
		}
		msgs, _ := a.snapshot(n)
		writeJSON(w, map[string]any{"messages": msgs})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		_, st := a.snapshot(0)
		writeJSON(w, st)
	})
	mux.HandleFunc("POST /burn", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		workers, err := strconv.Atoi(q.Get("workers"))
		if err != nil || workers < 1 || workers > 64 {
			http.Error(w, "workers: expected 1 to 64, got "+strconv.Quote(q.Get("workers")), http.StatusBadRequest)
			return
		}
		d, err := time.ParseDuration(q.Get("for"))
		if err != nil || d <= 0 || d > maxBurn {
			http.Error(w, fmt.Sprintf("for: expected a duration up to %s such as 60s, got %q", maxBurn, q.Get("for")),
				http.StatusBadRequest)
			return
		}
		bctx, cancel := context.WithTimeout(ctx, d)
		go func() {
			defer cancel()
			a.burn(bctx, workers)
		}()
		w.WriteHeader(http.StatusAccepted)
		writeJSON(w, map[string]any{"workers": workers, "for": d.String()})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	_ = json.NewEncoder(w).Encode(v)
}
