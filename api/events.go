package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
)

const eventStreamType = "text/event-stream"

// events is GET /v1/slices/{id}/events: the slice's events as JSON or, with Accept:
// text/event-stream, as server-sent events that follow the slice live.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	ctx, tenant := r.Context(), TenantFrom(r.Context())
	v, err := h.engine.Get(ctx, tenant, mux.Vars(r)["id"])
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if acceptsStream(r) {
		h.stream(w, r, v.Slice.ID)
		return
	}
	evs, err := h.records.Events(ctx, v.Slice.ID)
	if err != nil {
		WriteError(w, r, fmt.Errorf("events of slice %s: %w", v.Slice.ID, err))
		return
	}
	out := v1.EventList{Events: make([]v1.Event, 0, len(evs))}
	for _, ev := range evs {
		out.Events = append(out.Events, eventView(ev))
	}
	WriteJSON(w, http.StatusOK, out)
}

func acceptsStream(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == eventStreamType {
			return true
		}
	}
	return false
}

// goneGrace is how long a stream waits, once the slice has left the store, for the
// slice's last events: they travel on another watch than the slice record's.
const goneGrace = 2 * time.Second

// stream sends a slice's events as server-sent events: those already recorded (after
// Last-Event-ID, when the client reconnects), a stream.live marker with the slice's
// state, then each event as the engine records it, and heartbeat comments meanwhile.
// It ends with a stream.end event once the slice is gone, or when the client leaves.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	st := h.records
	last, err := lastEventID(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	past, err := st.Events(ctx, id)
	if err != nil {
		WriteError(w, r, fmt.Errorf("events of slice %s: %w", id, err))
		return
	}
	rc := http.NewResponseController(w)
	// A stream outlives any write timeout the server may set for ordinary answers.
	_ = rc.SetWriteDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", eventStreamType)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no") // proxies must not hold events back
	w.WriteHeader(http.StatusOK)
	sse := &sseWriter{w: w, rc: rc}
	sse.comment("necos events of slice " + id)

	send := func(ev store.Event) bool {
		if ev.Seq <= last {
			return true
		}
		last = ev.Seq
		return sse.event(strconv.FormatInt(ev.Seq, 10), ev.Type, eventView(ev)) == nil
	}
	for _, ev := range past {
		if !send(ev) {
			return
		}
	}
	// Watch from the last event sent: nothing recorded meanwhile is lost.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := st.WatchEvents(sctx, id, last)

	cur, err := st.GetSlice(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		sse.event("", v1.StreamEnd, v1.StreamState{State: v1.StateGone})
		return
	case err != nil:
		h.log.Warn("event stream: read slice", "slice", id, "error", err)
		return
	}
	if sse.event("", v1.StreamLive, v1.StreamState{State: string(cur.State), Deleting: cur.Deleting, Message: cur.Message}) != nil {
		return
	}

	gone := make(chan struct{})
	go func() {
		if h.engine.WaitGone(sctx, id) == nil {
			close(gone)
		}
	}()
	heartbeat := time.NewTicker(h.heartbeat)
	defer heartbeat.Stop()
	var grace <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-watch:
			if !ok {
				return // the client left: the store resumes a dropped watch by itself
			}
			if !send(ev) {
				return
			}
			if ev.Type == sro.EvDeleted {
				sse.event("", v1.StreamEnd, v1.StreamState{State: v1.StateGone})
				return
			}
		case <-gone:
			gone, grace = nil, time.After(goneGrace)
		case <-grace:
			sse.event("", v1.StreamEnd, v1.StreamState{State: v1.StateGone})
			return
		case <-heartbeat.C:
			if sse.comment("heartbeat") != nil {
				return
			}
		}
	}
}

// lastEventID reads Last-Event-ID, which an EventSource sends when it reconnects.
func lastEventID(r *http.Request) (int64, error) {
	s := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fieldError("header Last-Event-ID", "expected the seq of an event, got %q", s)
	}
	return n, nil
}

// sseWriter writes server-sent events, flushing each so that it leaves at once.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s *sseWriter) event(id, name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", name, err)
	}
	var buf strings.Builder
	if id != "" {
		buf.WriteString("id: " + id + "\n")
	}
	buf.WriteString("event: " + name + "\ndata: ")
	buf.Write(b)
	buf.WriteString("\n\n")
	return s.write(buf.String())
}

func (s *sseWriter) comment(text string) error { return s.write(": " + text + "\n\n") }

func (s *sseWriter) write(text string) error {
	if _, err := s.w.Write([]byte(text)); err != nil {
		return err
	}
	return s.rc.Flush()
}
