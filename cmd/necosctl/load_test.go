package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest"
)

func TestLoadSchedule(t *testing.T) {
	ramp := mqttLoad{Rate: 10, MaxRate: 110, Ramp: 10 * time.Second, Duration: 20 * time.Second}
	flat := mqttLoad{Rate: 10, MaxRate: 10, Duration: 20 * time.Second}
	for _, c := range []struct {
		l    mqttLoad
		at   time.Duration
		rate float64
		due  int64
	}{
		{ramp, 0, 10, 0},
		{ramp, 5 * time.Second, 60, 175},   // 10*5 + 100*25/20
		{ramp, 10 * time.Second, 110, 600}, // 100 + 500
		{ramp, 12 * time.Second, 110, 820}, // 600 + 2*110
		{flat, 3 * time.Second, 10, 30},
		{flat, 1500 * time.Millisecond, 10, 15},
	} {
		if got := c.l.rateAt(c.at); got != c.rate {
			t.Errorf("%+v rateAt(%s) = %g, want %g", c.l, c.at, got, c.rate)
		}
		if got := c.l.due(c.at); got != c.due {
			t.Errorf("%+v due(%s) = %d, want %d", c.l, c.at, got, c.due)
		}
	}
}

func TestLoadValidate(t *testing.T) {
	err := mqttLoad{Broker: nsnet.Endpoint{Addr: "nohost"}, Devices: 0, Rate: -1, MaxRate: -5,
		Ramp: time.Hour, Duration: time.Minute, QoS: 3}.validate()
	if err == nil {
		t.Fatal("bad load accepted")
	}
	for _, want := range []string{"broker: expected host:port", "--devices", "--rate", "--max-rate", "--ramp", "--qos"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// startMosquitto runs Debian's mosquitto on a free loopback port until the test ends.
func startMosquitto(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/mosquitto"); err2 != nil {
			plugintest.NeedBackend(t, "mosquitto (apt-get install mosquitto; scripts/setup.sh installs it)")
		}
		bin = "/usr/sbin/mosquitto"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\n", port)), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto never listened on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The load generator against a real broker: every message it counts as acknowledged
// reaches a subscriber, carries the four readings, and the devices are distinct clients.
func TestLoadMQTTRealBroker(t *testing.T) {
	broker := startMosquitto(t)
	var mu sync.Mutex
	got := map[string]int{}
	var bad []string
	total := 0
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("load-test-sub"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe("devices/+/telemetry", 1, func(_ mqtt.Client, m mqtt.Message) {
		var v telemetry
		var keys map[string]any
		mu.Lock()
		defer mu.Unlock()
		total++
		err1, err2 := json.Unmarshal(m.Payload(), &v), json.Unmarshal(m.Payload(), &keys)
		_, hasLight := keys["light"]
		_, hasHumidity := keys["humidity"]
		_, hasTemp := keys["temperature"]
		if err1 != nil || err2 != nil || !hasLight || !hasHumidity || !hasTemp ||
			v.GPS.Lat < -23 || v.GPS.Lat > -22.8 || v.Seq < 1 ||
			m.Topic() != "devices/"+v.Device+"/telemetry" {
			bad = append(bad, m.Topic()+" "+string(m.Payload()))
		}
		got[v.Device]++
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	l := mqttLoad{Broker: nsnet.Endpoint{Addr: broker}, Devices: 5, Rate: 50, MaxRate: 150,
		Ramp: time.Second, Duration: 2 * time.Second, QoS: 1, Prefix: "dev"}
	var progress bytes.Buffer
	l.Report = 500 * time.Millisecond
	res, err := l.run(context.Background(), &progress)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v\n%s", res, progress.String())
	want := l.due(2 * time.Second) // 50 + 50 + 150 = 250
	if res.Sent < want*9/10 || res.Sent > want {
		t.Errorf("sent %d, want about %d", res.Sent, want)
	}
	if res.Acked != res.Sent || res.Failed != 0 {
		t.Errorf("acked %d failed %d of %d sent", res.Acked, res.Failed, res.Sent)
	}
	if !strings.Contains(progress.String(), "msg/s") {
		t.Errorf("no progress lines: %q", progress.String())
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		mu.Lock()
		n := total
		mu.Unlock()
		if int64(n) >= res.Acked || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if int64(total) != res.Acked {
		t.Errorf("subscriber received %d, load acknowledged %d", total, res.Acked)
	}
	if len(got) != 5 {
		t.Errorf("devices seen: %v, want dev-1..dev-5", got)
	}
	if len(bad) > 0 {
		t.Errorf("%d bad messages, first: %s", len(bad), bad[0])
	}
}

// The command: flags, the broker named directly, the summary line.
func TestLoadMQTTCommand(t *testing.T) {
	broker := startMosquitto(t)
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut)
	root := newRootCommand(a)
	root.SetArgs([]string{"load", "mqtt", "--broker", broker, "--devices", "2", "--rate", "20",
		"--duration", "1s", "--report", "0"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "acknowledged 20") && !strings.Contains(out.String(), "acknowledged 19") {
		t.Errorf("output: %s", out.String())
	}
	out.Reset()
	root = newRootCommand(newApp(&out, &errOut))
	root.SetArgs([]string{"load", "mqtt", "--broker", broker, "--slice", "x", "--part", "y"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("both --broker and --slice: %v", err)
	}
}
