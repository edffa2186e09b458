package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Message is one telemetry message as the IoT agent forwards it (images/iot-agent).
type Message struct {
	Device string `json:"device"`
	Topic  string `json:"topic"`
	// Payload is the device's payload: as is when it was JSON, else a JSON string.
	Payload  json.RawMessage `json:"payload"`
	Received time.Time       `json:"received"`
	// Edge names the edge that forwarded the message (the forward URL's edge
	// parameter); empty when it said none.
	Edge string `json:"edge,omitempty"`
}

// Device is what the device manager knows of one device.
type Device struct {
	ID        string    `json:"device"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Messages counts every message stored for the device, also those the history no
	// longer keeps.
	Messages int64 `json:"messages"`
	// Edge is the edge its last message came through.
	Edge string `json:"edge,omitempty"`
	// Last is the payload of its last message: its latest values.
	Last json.RawMessage `json:"last"`
}

// Stats counts what the store did.
type Stats struct {
	Received int64 `json:"received"`
	// Rejected counts messages refused: malformed, or of a new device beyond the bound.
	Rejected int64 `json:"rejected"`
	Devices  int   `json:"devices"`
	// Kept is the number of messages held over all devices' histories.
	Kept int `json:"kept"`
}

// errFull is returned for a new device when the store holds as many as it may.
var errFull = errors.New("the store holds as many devices as it may")

// errNoDevice is returned for a message without a device id.
var errNoDevice = errors.New("device: expected a device id, got none")

// store is the telemetry history and the device manager: every device seen, with the
// last keep messages of each in a ring.
type store struct {
	keep       int
	maxDevices int
	now        func() time.Time

	mu      sync.Mutex
	devices map[string]*deviceState
	stats   Stats
}

type deviceState struct {
	info Device
	// ring holds the last messages; next is where the following one goes once the
	// ring is full (its oldest).
	ring []Message
	next int
}

func newStore(keep, maxDevices int, now func() time.Time) *store {
	return &store{keep: keep, maxDevices: maxDevices, now: now, devices: map[string]*deviceState{}}
}

// add stores m and says whether its device is new. A message without a time is stamped with the store's clock; first and
// last seen are the earliest and latest message times, so that messages arriving out
// of order (two edges, retries) do not move them back.
func (s *store) add(m Message) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Device == "" {
		s.stats.Rejected++
		return false, errNoDevice
	}
	if m.Received.IsZero() {
		m.Received = s.now()
	}
	m.Received = m.Received.UTC()
	d, ok := s.devices[m.Device]
	if !ok {
		if len(s.devices) >= s.maxDevices {
			s.stats.Rejected++
			return false, fmt.Errorf("device %s: %w (%d)", m.Device, errFull, s.maxDevices)
		}
		d = &deviceState{info: Device{ID: m.Device, FirstSeen: m.Received, LastSeen: m.Received},
			ring: make([]Message, 0, min(s.keep, 64))}
		s.devices[m.Device] = d
	}
	if len(d.ring) < s.keep {
		d.ring = append(d.ring, m)
		s.stats.Kept++
	} else {
		d.ring[d.next] = m
		d.next = (d.next + 1) % s.keep
	}
	d.info.Messages++
	if m.Received.Before(d.info.FirstSeen) {
		d.info.FirstSeen = m.Received
	}
	if !m.Received.Before(d.info.LastSeen) {
		d.info.LastSeen = m.Received
		d.info.Last = m.Payload
		d.info.Edge = m.Edge
	}
	s.stats.Received++
	return !ok, nil
}

// history returns the last n messages of a device (all kept when n <= 0), oldest
// first, and whether the device is known.
func (s *store) history(device string, n int) ([]Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[device]
	if !ok {
		return nil, false
	}
	// The ring in order: from next (the oldest once full) round to next-1.
	all := make([]Message, 0, len(d.ring))
	all = append(all, d.ring[d.next:]...)
	all = append(all, d.ring[:d.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all, true
}

// list returns every device seen, sorted by id.
func (s *store) list() []Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Device, 0, len(s.devices))
	for _, d := range s.devices {
		out = append(out, d.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *store) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Devices = len(s.devices)
	return st
}

// reject counts a message refused before it reached add (a body that is not a message).
func (s *store) reject() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Rejected++
}
