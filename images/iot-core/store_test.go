package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func msg(device string, i int) Message {
	return Message{Device: device, Topic: "devices/" + device + "/telemetry",
		Payload: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, i)), Received: t0.Add(time.Duration(i) * time.Second)}
}

func seqs(msgs []Message) []int {
	out := make([]int, 0, len(msgs))
	for _, m := range msgs {
		var p struct{ Seq int }
		_ = json.Unmarshal(m.Payload, &p)
		out = append(out, p.Seq)
	}
	return out
}

func TestStoreHistoryIsARing(t *testing.T) {
	for _, c := range []struct {
		name      string
		keep, add int
		n         int
		want      []int
	}{
		{"fewer than kept", 3, 2, 0, []int{1, 2}},
		{"exactly kept", 3, 3, 0, []int{1, 2, 3}},
		{"wrapped once", 3, 5, 0, []int{3, 4, 5}},
		{"wrapped many times", 3, 10, 0, []int{8, 9, 10}},
		{"last n of a wrapped ring", 3, 7, 2, []int{6, 7}},
		{"n beyond what is kept", 3, 7, 10, []int{5, 6, 7}},
		{"keep one", 1, 4, 0, []int{4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(c.keep, 10, func() time.Time { return t0 })
			for i := 1; i <= c.add; i++ {
				if _, err := s.add(msg("d", i)); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := s.history("d", c.n)
			if !ok || fmt.Sprint(seqs(got)) != fmt.Sprint(c.want) {
				t.Errorf("history = %v (known %v), want %v", seqs(got), ok, c.want)
			}
			devs := s.list()
			if len(devs) != 1 || devs[0].Messages != int64(c.add) {
				t.Errorf("devices %+v, want d with %d messages", devs, c.add)
			}
			if st := s.snapshot(); st.Kept != min(c.keep, c.add) || st.Received != int64(c.add) || st.Devices != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestStoreDevices(t *testing.T) {
	s := newStore(10, 10, func() time.Time { return t0.Add(time.Hour) })
	add := func(m Message) {
		t.Helper()
		if _, err := s.add(m); err != nil {
			t.Fatal(err)
		}
	}
	a2, a1, a3 := msg("a", 2), msg("a", 1), msg("a", 3)
	a2.Edge, a1.Edge, a3.Edge = "dc-slice2", "dc-slice2", "dc-slice2-h1"
	add(a2)
	add(a1) // late: first seen moves back, the last values stay a2's
	b := msg("b", 5)
	b.Received = time.Time{} // no time: stamped with the store's clock
	add(b)
	got := s.list()
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Fatalf("devices %+v, want a and b sorted", got)
	}
	a := got[0]
	if !a.FirstSeen.Equal(a1.Received) || !a.LastSeen.Equal(a2.Received) || string(a.Last) != `{"seq":2}` ||
		a.Messages != 2 || a.Edge != "dc-slice2" {
		t.Errorf("a after an out-of-order message: %+v", a)
	}
	if !got[1].FirstSeen.Equal(t0.Add(time.Hour)) || !got[1].LastSeen.Equal(t0.Add(time.Hour)) {
		t.Errorf("b, sent without a time: %+v, want the store's clock", got[1])
	}
	add(a3) // through another edge
	if a := s.list()[0]; a.Edge != "dc-slice2-h1" || string(a.Last) != `{"seq":3}` {
		t.Errorf("a after a message through another edge: %+v", a)
	}
	// The history keeps arrival order: what the edges forwarded, as they did.
	if h, _ := s.history("a", 0); fmt.Sprint(seqs(h)) != "[2 1 3]" {
		t.Errorf("history of a: %v", seqs(h))
	}
	if _, ok := s.history("c", 0); ok {
		t.Error("an unknown device has a history")
	}
}

func TestStoreBounds(t *testing.T) {
	s := newStore(2, 2, time.Now)
	for _, c := range []struct {
		m       Message
		wantNew bool
		want    error
	}{
		{msg("a", 1), true, nil},
		{msg("a", 2), false, nil},
		{msg("b", 1), true, nil},
		{msg("c", 1), false, errFull}, // a third device
		{msg("a", 3), false, nil},     // known devices still store
		{Message{Payload: json.RawMessage(`1`)}, false, errNoDevice},
	} {
		isNew, err := s.add(c.m)
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) || isNew != c.wantNew {
			t.Errorf("add %s: new %v, %v; want new %v, %v", c.m.Device, isNew, err, c.wantNew, c.want)
		}
	}
	if st := s.snapshot(); st.Received != 4 || st.Rejected != 2 || st.Devices != 2 || st.Kept != 3 {
		t.Errorf("stats %+v, want 4 received, 2 rejected, 2 devices, 3 kept", st)
	}
}

func BenchmarkStoreAdd(b *testing.B) {
	s := newStore(100, 1000, time.Now)
	ms := make([]Message, 100)
	for i := range ms {
		ms[i] = msg(fmt.Sprintf("sensor-%d", i), i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.add(ms[i%len(ms)]); err != nil {
			b.Fatal(err)
		}
	}
}
