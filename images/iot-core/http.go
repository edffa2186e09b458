package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/hashicorp/go-hclog"
)

// Bounds on what a client may send: a message is a few hundred bytes.
const (
	maxBody  = 1 << 20
	maxIDLen = 256
)

// storeHandler serves the telemetry store's HTTP interface (see README.md).
func storeHandler(s *store, log hclog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /telemetry", func(w http.ResponseWriter, r *http.Request) {
		var m Message
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		if err := dec.Decode(&m); err != nil {
			s.reject()
			http.Error(w, "body: expected a telemetry message as JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		if e := r.URL.Query().Get("edge"); e != "" {
			m.Edge = e
		}
		if len(m.Device) > maxIDLen || len(m.Edge) > maxIDLen {
			s.reject()
			http.Error(w, fmt.Sprintf("device and edge: expected at most %d bytes each", maxIDLen), http.StatusBadRequest)
			return
		}
		isNew, err := s.add(m)
		switch {
		case errors.Is(err, errFull):
			http.Error(w, err.Error(), http.StatusInsufficientStorage)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if isNew {
			log.Info("new device", "device", m.Device, "edge", m.Edge)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /telemetry", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		device := q.Get("device")
		if device == "" {
			http.Error(w, "device: expected a device id, such as ?device=sensor-1", http.StatusBadRequest)
			return
		}
		n := 0
		if v := q.Get("n"); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i < 0 {
				http.Error(w, "n: expected a number >= 0, got "+strconv.Quote(v), http.StatusBadRequest)
				return
			}
			n = i
		}
		msgs, ok := s.history(device, n)
		if !ok {
			http.Error(w, "device "+strconv.Quote(device)+": never seen", http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]any{"device": device, "messages": msgs})
	})
	mux.HandleFunc("GET /devices", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"devices": s.list()})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.snapshot())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
