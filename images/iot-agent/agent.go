package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Message is one telemetry message as the agent keeps it and forwards it.
type Message struct {
	// Device is the device id: the topic's second level (devices/<id>/telemetry).
	Device string `json:"device"`
	Topic  string `json:"topic"`
	// Payload is the message's payload: as is when it is JSON, else as a JSON string.
	Payload  json.RawMessage `json:"payload"`
	Received time.Time       `json:"received"`
}

// Stats counts what the agent did.
type Stats struct {
	Received      int64 `json:"received"`
	Forwarded     int64 `json:"forwarded"`
	ForwardErrors int64 `json:"forward_errors"`
	// Burning is the number of CPU-bound workers running now.
	Burning int `json:"burning"`
	// Subscribed says the agent holds its subscription at the broker now: messages
	// published before it were not delivered to it (a broker keeps nothing for a topic
	// nobody subscribes to), so a load should start only once it is true.
	Subscribed bool `json:"subscribed"`
}

// agent keeps the last messages, forwards each one and burns CPU on request.
type agent struct {
	forwardURL string
	client     *http.Client
	keep       int

	mu      sync.Mutex
	recent  []Message
	stats   Stats
	forward chan Message
}

func newAgent(forwardURL string, keep int) *agent {
	return &agent{forwardURL: forwardURL, keep: keep, client: &http.Client{Timeout: 5 * time.Second},
		forward: make(chan Message, 1024)}
}

// deviceOf returns the device id of a topic devices/<id>/...; the whole topic otherwise.
func deviceOf(topic string) string {
	parts := strings.Split(topic, "/")
	if len(parts) >= 2 && parts[0] == "devices" && parts[1] != "" {
		return parts[1]
	}
	return topic
}

// receive records a message and queues it for forwarding.
func (a *agent) receive(topic string, payload []byte, now time.Time) Message {
	raw := json.RawMessage(payload)
	if !json.Valid(payload) {
		raw, _ = json.Marshal(string(payload))
	}
	m := Message{Device: deviceOf(topic), Topic: topic, Payload: raw, Received: now.UTC()}
	a.mu.Lock()
	a.stats.Received++
	a.recent = append(a.recent, m)
	if len(a.recent) > a.keep {
		a.recent = a.recent[len(a.recent)-a.keep:]
	}
	a.mu.Unlock()
	if a.forwardURL != "" {
		select {
		case a.forward <- m:
		default: // the receiver is slow: count it as lost rather than block the broker
			a.count(false)
		}
	}
	return m
}

func (a *agent) count(ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ok {
		a.stats.Forwarded++
	} else {
		a.stats.ForwardErrors++
	}
}

// forwardLoop POSTs every queued message, as JSON, to the forward URL.
func (a *agent) forwardLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-a.forward:
			a.count(a.post(ctx, m) == nil)
		}
	}
}

func (a *agent) post(ctx context.Context, m Message) error {
	body, _ := json.Marshal(m)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.forwardURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("forward: %s", resp.Status)
	}
	return nil
}

// setSubscribed records whether the agent holds its subscription at the broker.
func (a *agent) setSubscribed(on bool) {
	a.mu.Lock()
	a.stats.Subscribed = on
	a.mu.Unlock()
}

// snapshot returns the last n messages (all kept when n <= 0), oldest first, and stats.
func (a *agent) snapshot(n int) ([]Message, Stats) {
	a.mu.Lock()
	defer a.mu.Unlock()
	msgs := a.recent
	if n > 0 && len(msgs) > n {
		msgs = msgs[len(msgs)-n:]
	}
	return append([]Message(nil), msgs...), a.stats
}

// burn runs workers CPU-bound goroutines until ctx ends.
func (a *agent) burn(ctx context.Context, workers int) {
	a.mu.Lock()
	a.stats.Burning += workers
	a.mu.Unlock()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(1)
			for ctx.Err() == nil {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			_ = x
		}()
	}
	wg.Wait()
	a.mu.Lock()
	a.stats.Burning -= workers
	a.mu.Unlock()
}
