package sro

import (
	"slices"
	"testing"
	"time"
)

// Repairs that keep failing are tried at passes 0, 1, 3, 7, 15, ... (the wait doubles
// from the pass interval up to the cap); repairs that land, or other repairs, are
// tried at the next pass.
func TestDriftBackoff(t *testing.T) {
	const pass = 30 * time.Second
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		limit time.Duration
		// outcome says, for the pass and its repairs' sig, whether an attempt fails.
		fails func(pass int) bool
		// sig gives the repairs found at a pass.
		sig  func(pass int) string
		want []int // the passes that attempt
	}{
		{name: "doubling", limit: time.Hour, want: []int{0, 1, 3, 7, 15, 31}},
		{name: "capped at 4 passes", limit: 4 * pass, want: []int{0, 1, 3, 7, 11, 15, 19, 23, 27, 31}},
		{name: "cap below the pass interval", limit: pass, want: seq(0, 32)},
		{name: "lands at pass 7, drifts again at 9", limit: time.Hour,
			fails: func(p int) bool { return p != 7 },
			sig: func(p int) string {
				if p == 8 {
					return "" // no drift found
				}
				return "vm-1"
			},
			want: []int{0, 1, 3, 7, 9, 10, 12, 16, 24}},
		{name: "other repairs at pass 5", limit: time.Hour,
			sig: func(p int) string {
				if p >= 5 {
					return "vm-2"
				}
				return "vm-1"
			},
			want: []int{0, 1, 3, 5, 6, 8, 12, 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newDriftBackoff(pass, max(tc.limit, pass))
			var got []int
			for p := range 32 {
				now := t0.Add(time.Duration(p) * pass)
				sig := "vm-1"
				if tc.sig != nil {
					sig = tc.sig(p)
				}
				if sig == "" {
					b.clear("s/core")
					continue
				}
				due, why := b.due("s/core", sig, now)
				if !due {
					if why[sig] != "no room" {
						t.Fatalf("pass %d: why %v, want the last failure's", p, why)
					}
					continue
				}
				got = append(got, p)
				if tc.fails == nil || tc.fails(p) {
					b.failed("s/core", sig, now, map[string]string{sig: "no room"})
				} else {
					b.clear("s/core")
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("attempts at passes %v, want %v", got, tc.want)
			}
		})
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// A slice decommissioned takes its parts' back-offs along, and no other slice's.
func TestDriftBackoffClearSlice(t *testing.T) {
	b := newDriftBackoff(time.Second, time.Minute)
	now := time.Now()
	for _, key := range []string{"s-1/core", "s-1/edge", "s-10/core"} {
		b.failed(key, "x", now, nil)
	}
	b.clearSlice("s-1")
	for key, want := range map[string]bool{"s-1/core": true, "s-1/edge": true, "s-10/core": false} {
		if due, _ := b.due(key, "x", now); due != want {
			t.Errorf("%s due %v, want %v", key, due, want)
		}
	}
}
