package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/spf13/cobra"
)

// defaultMQTTPort is the broker's port at a node reached from a part's namespace (a node
// port of the cluster, or a guest's); a Kubernetes part's broker is reached through its
// cluster's API instead.
const defaultMQTTPort = 31883

func newLoadCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Generate load on a slice's service",
	}
	cmd.AddCommand(newLoadMQTT(a))
	return cmd
}

// mqttLoad is what `necosctl load mqtt` does, as flags give it.
type mqttLoad struct {
	// Broker is where the broker is reached, and from which namespace.
	Broker nsnet.Endpoint
	// Devices is the number of simulated devices, each its own MQTT connection.
	Devices int
	// Rate is the total messages/s at the start; MaxRate the rate the ramp reaches after Ramp.
	Rate, MaxRate float64
	Ramp          time.Duration
	// Duration is how long the load runs in all (ramp included).
	Duration time.Duration
	QoS      byte
	// Topic is a format with one %s: the device's id.
	Topic string
	// Report is how often a progress line is written (0: never).
	Report time.Duration
	// Prefix names the devices and their client ids (prefix-1 ... prefix-N).
	Prefix string
}

// rateAt is the target rate (messages/s) at elapsed time t: a linear ramp from Rate to
// MaxRate over Ramp, then MaxRate.
func (l mqttLoad) rateAt(t time.Duration) float64 {
	if l.Ramp <= 0 || t >= l.Ramp || l.MaxRate <= l.Rate {
		if t < l.Ramp || l.MaxRate <= l.Rate {
			return l.Rate
		}
		return l.MaxRate
	}
	return l.Rate + (l.MaxRate-l.Rate)*float64(t)/float64(l.Ramp)
}

// due is the number of messages that should have been sent by elapsed time t: the
// integral of rateAt from 0 to t.
func (l mqttLoad) due(t time.Duration) int64 {
	s := t.Seconds()
	if l.Ramp <= 0 || l.MaxRate <= l.Rate {
		return int64(l.Rate * s)
	}
	r := l.Ramp.Seconds()
	if s <= r {
		return int64(l.Rate*s + (l.MaxRate-l.Rate)*s*s/(2*r))
	}
	return int64(l.Rate*r + (l.MaxRate-l.Rate)*r/2 + l.MaxRate*(s-r))
}

func (l mqttLoad) validate() error {
	var errs []error
	if l.Broker.Addr == "" {
		errs = append(errs, errors.New("broker: expected host:port"))
	} else if _, _, err := net.SplitHostPort(l.Broker.Addr); err != nil {
		errs = append(errs, fmt.Errorf("broker: expected host:port, got %q", l.Broker.Addr))
	}
	if l.Devices < 1 || l.Devices > 10000 {
		errs = append(errs, fmt.Errorf("--devices: expected 1 to 10000, got %d", l.Devices))
	}
	if l.Rate <= 0 || math.IsInf(l.Rate, 0) || math.IsNaN(l.Rate) {
		errs = append(errs, fmt.Errorf("--rate: expected messages/s > 0, got %g", l.Rate))
	}
	if l.MaxRate != 0 && l.MaxRate < l.Rate {
		errs = append(errs, fmt.Errorf("--max-rate: expected >= --rate (%g), got %g", l.Rate, l.MaxRate))
	}
	if l.Ramp < 0 || l.Ramp > l.Duration {
		errs = append(errs, fmt.Errorf("--ramp: expected 0 to --duration (%s), got %s", l.Duration, l.Ramp))
	}
	if l.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration: expected > 0, got %s", l.Duration))
	}
	if l.QoS > 2 {
		errs = append(errs, fmt.Errorf("--qos: expected 0, 1 or 2, got %d", l.QoS))
	}
	return errors.Join(errs...)
}

// loadResult is what a run did.
type loadResult struct {
	Elapsed time.Duration `json:"-"`
	Seconds float64       `json:"seconds"`
	// Sent counts publishes handed to the connections; Acked those the broker
	// acknowledged (PUBACK for QoS 1, PUBCOMP for QoS 2; written for QoS 0); Failed those
	// that failed or were never acknowledged.
	Sent   int64 `json:"sent"`
	Acked  int64 `json:"acked"`
	Failed int64 `json:"failed"`
	// SentRate and AckedRate are messages/s over the run.
	SentRate  float64 `json:"sent_per_second"`
	AckedRate float64 `json:"acked_per_second"`
	// LastRate is the target rate at the end.
	LastRate float64 `json:"last_target_rate"`
}

// device is one simulated sensor: its readings drift as a random walk.
type device struct {
	id     string
	client mqtt.Client
	rnd    *rand.Rand

	mu                    sync.Mutex
	seq                   int64
	temp, humidity, light float64
	lat, lon              float64
}

// telemetry is one message's payload.
type telemetry struct {
	Device      string    `json:"device"`
	Seq         int64     `json:"seq"`
	Time        time.Time `json:"ts"`
	Temperature float64   `json:"temperature"`
	Humidity    float64   `json:"humidity"`
	Light       float64   `json:"light"`
	GPS         struct {
		Lat float64 `json:"lat"`
		Lon float64 `json:"lon"`
	} `json:"gps"`
}

func (d *device) next(now time.Time) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.temp = clamp(d.temp+d.rnd.NormFloat64()*0.2, -20, 50)
	d.humidity = clamp(d.humidity+d.rnd.NormFloat64()*0.5, 0, 100)
	d.light = clamp(d.light+d.rnd.NormFloat64()*20, 0, 100000)
	d.lat = clamp(d.lat+d.rnd.NormFloat64()*1e-4, -90, 90)
	d.lon = clamp(d.lon+d.rnd.NormFloat64()*1e-4, -180, 180)
	m := telemetry{Device: d.id, Seq: d.seq, Time: now.UTC(), Temperature: round(d.temp, 2),
		Humidity: round(d.humidity, 1), Light: round(d.light, 0)}
	m.GPS.Lat, m.GPS.Lon = round(d.lat, 6), round(d.lon, 6)
	b, _ := json.Marshal(m)
	return b
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }
func round(v float64, n int) float64 {
	p := math.Pow(10, float64(n))
	return math.Round(v*p) / p
}

// run connects the devices, publishes at the ramped rate until Duration has passed or ctx
// ends, waits briefly for outstanding acknowledgements, and returns the counts. progress,
// when not nil, gets a line every Report.
func (l mqttLoad) run(ctx context.Context, progress io.Writer) (loadResult, error) {
	if err := l.validate(); err != nil {
		return loadResult{}, err
	}
	if l.Topic == "" {
		l.Topic = "devices/%s/telemetry"
	}
	if l.Prefix == "" {
		l.Prefix = fmt.Sprintf("necos-load-%04x", rand.IntN(1<<16))
	}
	devs, err := l.connect(ctx)
	defer func() {
		for _, d := range devs {
			d.client.Disconnect(250)
		}
	}()
	if err != nil {
		return loadResult{}, err
	}

	var sent, acked, failed atomic.Int64
	var pending sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var report <-chan time.Time
	if l.Report > 0 && progress != nil {
		rt := time.NewTicker(l.Report)
		defer rt.Stop()
		report = rt.C
	}
	var lastSent, lastAcked int64
	lastReport := start
	next := 0
	ackTimeout := 30 * time.Second
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-report:
			s, a := sent.Load(), acked.Load()
			dt := now.Sub(lastReport).Seconds()
			fmt.Fprintf(progress, "%6.1fs  target %7.1f msg/s  sent %7.1f msg/s  acked %7.1f msg/s  (total sent %d, acked %d, failed %d)\n",
				now.Sub(start).Seconds(), l.rateAt(now.Sub(start)), float64(s-lastSent)/dt, float64(a-lastAcked)/dt,
				s, a, failed.Load())
			lastSent, lastAcked, lastReport = s, a, now
		case now := <-tick.C:
			el := now.Sub(start)
			if el >= l.Duration {
				break loop
			}
			for n := l.due(el) - sent.Load(); n > 0; n-- {
				d := devs[next%len(devs)]
				next++
				tok := d.client.Publish(fmt.Sprintf(l.Topic, d.id), l.QoS, false, d.next(now))
				sent.Add(1)
				pending.Add(1)
				go func() {
					defer pending.Done()
					if tok.WaitTimeout(ackTimeout) && tok.Error() == nil {
						acked.Add(1)
					} else {
						failed.Add(1)
					}
				}()
			}
		}
	}
	end := time.Now()
	pending.Wait()
	el := end.Sub(start)
	res := loadResult{Elapsed: el, Seconds: el.Seconds(), Sent: sent.Load(), Acked: acked.Load(), Failed: failed.Load(),
		LastRate: l.rateAt(el)}
	if s := el.Seconds(); s > 0 {
		res.SentRate, res.AckedRate = float64(res.Sent)/s, float64(res.Acked)/s
	}
	return res, nil
}

// connect opens one MQTT connection per device, dialling inside the broker's namespace.
func (l mqttLoad) connect(ctx context.Context) ([]*device, error) {
	seed := rand.Uint64()
	devs := make([]*device, 0, l.Devices)
	for i := 1; i <= l.Devices; i++ {
		rnd := rand.New(rand.NewPCG(seed, uint64(i)))
		d := &device{id: fmt.Sprintf("%s-%d", l.Prefix, i), rnd: rnd,
			temp: 18 + rnd.Float64()*10, humidity: 40 + rnd.Float64()*30, light: 200 + rnd.Float64()*800,
			// Around Campinas (the original demo's core site), a few km apart.
			lat: -22.9 + rnd.NormFloat64()*0.02, lon: -47.06 + rnd.NormFloat64()*0.02}
		ep := l.Broker
		opts := mqtt.NewClientOptions().AddBroker("tcp://" + ep.Addr).SetClientID(d.id).
			SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(15 * time.Second).
			SetMaxResumePubInFlight(0).SetWriteTimeout(10 * time.Second).
			SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
				return nsnet.Dial(ctx, "tcp", ep)
			})
		d.client = mqtt.NewClient(opts)
		tok := d.client.Connect()
		if !tok.WaitTimeout(20 * time.Second) {
			return devs, fmt.Errorf("device %s: connect to broker %s: timed out", d.id, ep)
		}
		if err := tok.Error(); err != nil {
			return devs, fmt.Errorf("device %s: connect to broker %s: %w", d.id, ep, err)
		}
		devs = append(devs, d)
	}
	return devs, nil
}

func newLoadMQTT(a *app) *cobra.Command {
	var (
		l                  mqttLoad
		slice, part, node  string
		port               int
		broker, netnsFlag  string
		pods               string
		podPort            int
		qos                int
		rate, maxRate      float64
		ramp, dur, reportE time.Duration
	)
	cmd := &cobra.Command{
		Use:   "mqtt (--slice ID --part NAME | --broker HOST:PORT)",
		Short: "Publish simulated device telemetry to a slice's MQTT broker",
		Long: `Simulated devices (each its own MQTT connection) publish telemetry — temperature,
humidity, light and a GPS position, as JSON on devices/<id>/telemetry — to the MQTT
broker of a slice's part, at a total rate that ramps linearly from --rate to --max-rate
over --ramp and then holds until --duration has passed. Every --report it prints the
target rate and the messages/s sent and acknowledged by the broker (PUBACK at QoS 1),
and a summary at the end.

The broker is reached at a node of the part (--node, else its first) on --port, from inside the network namespace the part's nodes are
reached from (its "netns" attribute, or --netns): run it as root on the provider's
machine. A Kubernetes part (no such attribute, a kubeconfig credential) is reached
through its cluster's API instead, as kubectl port-forward does: port --pod-port of a
ready pod matching --pods in the part's namespace, with the part's own kubeconfig.
--broker HOST:PORT (with --netns) names a broker directly instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l.Rate, l.MaxRate, l.Ramp, l.Duration, l.Report = rate, maxRate, ramp, dur, reportE
			if l.MaxRate == 0 {
				l.MaxRate = l.Rate
			}
			if qos < 0 || qos > 2 {
				return fmt.Errorf("--qos: expected 0, 1 or 2, got %d", qos)
			}
			l.QoS = byte(qos)
			switch {
			case broker != "" && slice == "":
				l.Broker = nsnet.Endpoint{Netns: netnsFlag, Addr: broker}
			case broker == "" && slice != "" && part != "":
				if port < 1 || port > 65535 {
					return fmt.Errorf("--port: expected 1-65535, got %d", port)
				}
				c, err := a.client()
				if err != nil {
					return err
				}
				s, err := c.GetSlice(cmd.Context(), slice)
				if err != nil {
					return err
				}
				pt, ok := partByName(s, part)
				if node == "" && ok && len(pt.Nodes) > 0 {
					node = pt.Nodes[0].Name
				}
				if ok && pt.Attributes[attrNetns] == "" && netnsFlag == "" && pt.Credential != nil && pt.Credential.Kind == "kubeconfig" {
					// A Kubernetes part: its broker pod, through the cluster's API.
					f, err := forwardPod(cmd.Context(), pt, pods, "127.0.0.1", 0, podPort, time.Minute)
					if err != nil {
						return err
					}
					defer f.Close()
					l.Broker = nsnet.Endpoint{Addr: f.Addr}
					break
				}
				ep, err := forwardTarget(s, part, node, port)
				if err != nil {
					return err
				}
				if netnsFlag != "" {
					ep.Netns = netnsFlag
				}
				l.Broker = ep
			default:
				return errors.New("expected --slice and --part, or --broker (not both)")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%d devices -> broker %s, %g -> %g msg/s over %s, for %s, QoS %d\n",
				l.Devices, l.Broker, l.Rate, l.MaxRate, l.Ramp, l.Duration, l.QoS)
			res, err := l.run(ctx, out)
			if err != nil {
				return err
			}
			return printLoadResult(a, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&slice, "slice", "", "slice id")
	f.StringVar(&part, "part", "", "part of the slice running the broker")
	f.StringVar(&node, "node", "", "node of the part to reach the broker at (default: the part's first)")
	f.IntVar(&port, "port", defaultMQTTPort, "broker port on the node")
	f.StringVar(&broker, "broker", "", "broker HOST:PORT, instead of --slice/--part")
	f.StringVar(&netnsFlag, "netns", "", "network namespace to dial from (default: the part's)")
	f.StringVar(&pods, "pods", "app=iotagent-mqtt", "Kubernetes part: label selector of the broker's pods")
	f.IntVar(&podPort, "pod-port", 1883, "Kubernetes part: the broker's port in its pod")
	f.IntVar(&l.Devices, "devices", 10, "simulated devices (one MQTT connection each)")
	f.Float64Var(&rate, "rate", 10, "total messages/s at the start")
	f.Float64Var(&maxRate, "max-rate", 0, "total messages/s the ramp reaches (default: --rate, no ramp)")
	f.DurationVar(&ramp, "ramp", 0, "how long the ramp from --rate to --max-rate takes")
	f.DurationVar(&dur, "duration", time.Minute, "how long the load runs in all")
	f.IntVar(&qos, "qos", 1, "MQTT QoS of the publishes (1: the broker acknowledges each)")
	f.DurationVar(&reportE, "report", 5*time.Second, "progress line interval (0: none)")
	f.StringVar(&l.Topic, "topic", "devices/%s/telemetry", "topic, %s is the device id")
	f.StringVar(&l.Prefix, "prefix", "", "device id prefix (default: necos-load-<random>)")
	return cmd
}

func printLoadResult(a *app, r loadResult) error {
	return a.print(r, func(w io.Writer) {
		fmt.Fprintf(w, "sent %d, acknowledged %d, failed %d in %.1fs: %.1f msg/s sent, %.1f msg/s acknowledged\n",
			r.Sent, r.Acked, r.Failed, r.Elapsed.Seconds(), r.SentRate, r.AckedRate)
	})
}
