// Command iot-agent is the IoT agent of the necos demo's IoT slice: it subscribes to the
// devices' telemetry on an MQTT broker, keeps the last messages, forwards each one as
// JSON to an HTTP endpoint (the platform's telemetry store at the core), and can burn
// CPU on request, for elasticity tests. See README.md for its interface.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func main() {
	broker := flag.String("broker", env("MQTT_BROKER", "tcp://127.0.0.1:1883"), "MQTT broker URL (MQTT_BROKER)")
	topic := flag.String("topic", env("MQTT_TOPIC", "devices/+/telemetry"), "topic filter to subscribe to (MQTT_TOPIC)")
	forward := flag.String("forward", env("FORWARD_URL", ""), "URL each message is POSTed to as JSON; empty: none (FORWARD_URL)")
	listen := flag.String("listen", env("HTTP_ADDR", ":8080"), "HTTP interface address (HTTP_ADDR)")
	keep := flag.Int("keep", 1000, "messages kept for GET /telemetry")
	burnWorkers := flag.Int("burn", atoi(env("BURN_WORKERS", "0")), "CPU-bound workers to run from the start, for ever: a load (BURN_WORKERS)")
	flag.Parse()
	if *keep < 1 {
		log.Fatalf("keep: expected >= 1, got %d", *keep)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a := newAgent(*forward, *keep)
	if *burnWorkers > 0 {
		log.Printf("burning %d CPU-bound workers", *burnWorkers)
		go a.burn(ctx, *burnWorkers)
	}
	go a.forwardLoop(ctx)

	srv := &http.Server{Addr: *listen, Handler: a.handler(ctx), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("http: %v", err)
		}
	}()

	opts := mqtt.NewClientOptions().AddBroker(*broker).SetClientID(fmt.Sprintf("iot-agent-%d", os.Getpid())).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetOnConnectHandler(func(c mqtt.Client) {
			// (Re)subscribe on every connection: a restarted broker forgets subscriptions.
			t := c.Subscribe(*topic, 1, func(_ mqtt.Client, m mqtt.Message) {
				msg := a.receive(m.Topic(), m.Payload(), time.Now())
				log.Printf("telemetry device=%s topic=%s bytes=%d", msg.Device, msg.Topic, len(m.Payload()))
			})
			if t.Wait() && t.Error() != nil {
				log.Printf("subscribe %s: %v", *topic, t.Error())
				return
			}
			a.setSubscribed(true)
			log.Printf("subscribed to %s on %s", *topic, *broker)
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			a.setSubscribed(false)
			log.Printf("connection lost: %v", err)
		})
	client := mqtt.NewClient(opts)
	client.Connect() // retried in the background until the broker answers
	log.Printf("iot-agent: broker %s, topic %s, forward %q, http %s", *broker, *topic, *forward, *listen)

	<-ctx.Done()
	client.Disconnect(250)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		log.Fatalf("BURN_WORKERS: expected a number, got %q", s)
	}
	return n
}
