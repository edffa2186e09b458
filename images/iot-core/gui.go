package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// devicesFunc returns the devices the GUI shows: the store's list, in the same process
// or over HTTP.
type devicesFunc func(ctx context.Context) ([]Device, error)

// remoteDevices reads the devices from a store's GET /devices.
func remoteDevices(client *http.Client, storeURL string) devicesFunc {
	u := strings.TrimRight(storeURL, "/") + "/devices"
	return func(ctx context.Context) ([]Device, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
		}
		var body struct {
			Devices []Device `json:"devices"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&body); err != nil {
			return nil, fmt.Errorf("GET %s: %w", u, err)
		}
		return body.Devices, nil
	}
}

//go:embed gui.html
var guiHTML string

var guiPage = template.Must(template.New("gui").Parse(guiHTML))

// row is one device as the page shows it: its latest readings, formatted as the
// page's script formats them when it refreshes.
type row struct {
	ID, Edge, LastSeen                     string
	Messages                               int64
	Temperature, Humidity, Light, Position string
}

// reading is the part of a load generator's payload the page shows (necosctl load mqtt).
type reading struct {
	Temperature *float64 `json:"temperature"`
	Humidity    *float64 `json:"humidity"`
	Light       *float64 `json:"light"`
	GPS         *struct {
		Lat float64 `json:"lat"`
		Lon float64 `json:"lon"`
	} `json:"gps"`
}

func rowOf(d Device) row {
	r := row{ID: d.ID, Edge: d.Edge, Messages: d.Messages, LastSeen: d.LastSeen.UTC().Format(time.RFC3339)}
	var p reading
	// A payload that is not an object of readings shows no values, which is not an error.
	if json.Unmarshal(d.Last, &p) != nil {
		return r
	}
	r.Temperature, r.Humidity, r.Light = fixed(p.Temperature, 2), fixed(p.Humidity, 1), fixed(p.Light, 0)
	if p.GPS != nil {
		r.Position = strconv.FormatFloat(p.GPS.Lat, 'f', 5, 64) + ", " + strconv.FormatFloat(p.GPS.Lon, 'f', 5, 64)
	}
	return r
}

func fixed(v *float64, decimals int) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', decimals, 64)
}

// guiHandler serves the web page listing the devices and their latest readings (which
// it renders at once and its script refreshes every refresh from GET /devices), and
// that list.
func guiHandler(slice string, devices devicesFunc, refresh time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /devices", func(w http.ResponseWriter, r *http.Request) {
		ds, err := devices(r.Context())
		if err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, map[string]any{"devices": ds})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		data := struct {
			Slice, Updated, Error string
			Rows                  []row
			RefreshMillis         int64
		}{Slice: slice, Updated: time.Now().UTC().Format(time.RFC3339), RefreshMillis: refresh.Milliseconds()}
		ds, err := devices(r.Context())
		if err != nil {
			data.Error = "store: " + err.Error()
		}
		for _, d := range ds {
			data.Rows = append(data.Rows, rowOf(d))
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			// The page still renders, saying why it is empty.
			w.WriteHeader(http.StatusBadGateway)
		}
		_ = guiPage.Execute(w, data)
	})
	return mux
}
