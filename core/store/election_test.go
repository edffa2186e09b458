package store

import (
	"context"
	"testing"
	"time"
)

// One leader at a time; a resign hands the lead on at once; a lead left by a killed run
// of the same identity is taken over without waiting for its lease.
func TestCampaign(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := s.Campaign(ctx, "a", 30)
	if err != nil {
		t.Fatal(err)
	}
	won := make(chan *Term, 1)
	go func() {
		b, err := s.Campaign(ctx, "b", 30)
		if err != nil {
			t.Error(err)
		}
		won <- b
	}()
	select {
	case <-won:
		t.Fatal("b leads while a does")
	case <-time.After(300 * time.Millisecond):
	}
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	var b *Term
	select {
	case b = <-won:
	case <-time.After(10 * time.Second):
		t.Fatal("b does not lead after a resigned")
	}
	if b == nil || b.TookOver {
		t.Fatalf("b's term: %+v", b)
	}

	// b's process dies without resigning (its session is not closed); a restart of b
	// takes over at once although the lease has 30 s to live.
	start := time.Now()
	b2, err := s.Campaign(ctx, "b", 30)
	if err != nil {
		t.Fatal(err)
	}
	if !b2.TookOver {
		t.Fatal("the restarted b did not take over its previous run's lead")
	}
	select {
	case <-b.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the previous term of b did not end when its lead was taken over")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("take-over took %v", took)
	}
	_ = b2.Resign(ctx)
}
