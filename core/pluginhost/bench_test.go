package pluginhost_test

import (
	"context"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/core/pluginhost/testdata/memvim"
	"github.com/necos/necos/core/pluginhost/testdata/stock"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
	pb "github.com/necos/necos/sdk/proto/pluginv1"
)

// reportLatency reports the median, 90th and 99th percentiles of per-op durations.
func reportLatency(b *testing.B, d []time.Duration, unit time.Duration, suffix string) {
	if len(d) == 0 {
		return
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(d)-1))
		return float64(d[i]) / float64(unit)
	}
	b.ReportMetric(at(0.50), "p50-"+suffix)
	b.ReportMetric(at(0.90), "p90-"+suffix)
	b.ReportMetric(at(0.99), "p99-"+suffix)
}

// benchDescribe times VIM.Describe of a small part (two nodes) through vim.
func benchDescribe(b *testing.B, vim sdk.VIM, pluginPid int) {
	ctx := context.Background()
	if _, err := vim.Create(ctx, sdk.CreateRequest{Part: smallPart("bench", "core")}); err != nil {
		b.Fatal(err)
	}
	ref := sdk.PartRef{SliceID: "bench", PartID: "core"}
	benchCalls(b, pluginPid, func() error {
		_, err := vim.Describe(ctx, sdk.DescribeRequest{Ref: ref})
		return err
	})
}

// benchCalls times call b.N times after a warm-up. With pluginPid set, it also reports
// the CPU time each op costs the host and the plugin, how long their threads waited for
// a CPU (on a busy machine, that wait is what moves the percentiles), and, for both
// processes together, the read and write system calls and the times a thread blocked
// per op: counts that the machine's load moves far less than times.
func benchCalls(b *testing.B, pluginPid int, call func() error) {
	for range 200 { // warm connections, caches and the plugin's goroutines
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	// Setting up copies and hashes plugin binaries (tens of MB): return that memory
	// now, or the runtime's scavenger does it while calls are timed.
	debug.FreeOSMemory()
	durs := make([]time.Duration, 0, b.N)
	hostRun0, hostWait0 := schedTotals(os.Getpid())
	plugRun0, plugWait0 := schedTotals(pluginPid)
	hostSys0, hostBlock0 := ioCounters(os.Getpid())
	plugSys0, plugBlock0 := ioCounters(pluginPid)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		err := call()
		durs = append(durs, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportLatency(b, durs, time.Microsecond, "µs")
	if pluginPid != 0 {
		hostRun, hostWait := schedTotals(os.Getpid())
		plugRun, plugWait := schedTotals(pluginPid)
		hostSys, hostBlock := ioCounters(os.Getpid())
		plugSys, plugBlock := ioCounters(pluginPid)
		perOp := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(b.N) }
		count := func(n int64) float64 { return float64(n) / float64(b.N) }
		b.ReportMetric(perOp(hostRun-hostRun0), "host-cpu-µs/op")
		b.ReportMetric(perOp(plugRun-plugRun0), "plugin-cpu-µs/op")
		b.ReportMetric(perOp(hostWait-hostWait0+plugWait-plugWait0), "runq-wait-µs/op")
		b.ReportMetric(count(hostSys-hostSys0+plugSys-plugSys0), "rw-syscalls/op")
		b.ReportMetric(count(hostBlock-hostBlock0+plugBlock-plugBlock0), "blocks/op")
	}
}

// launchStock starts the stock go-plugin plugin (see testdata/stock) as go-plugin's
// documentation does it: gRPC, AutoMTLS, no options of ours.
func launchStock(b testing.TB) (pb.VIMClient, int) {
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  stock.Handshake,
		Plugins:          plugin.PluginSet{stock.Name: &stock.Plugin{}},
		Cmd:              exec.Command(binary(b, "plugins/stock")),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.NewNullLogger(),
	})
	b.Cleanup(pc.Kill)
	proto, err := pc.Client()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := proto.Dispense(stock.Name)
	if err != nil {
		b.Fatal(err)
	}
	return raw.(pb.VIMClient), pc.ReattachConfig().Pid
}

// BenchmarkDescribe compares one plugin call through the real plugin process (go-plugin,
// gRPC over a Unix socket, AutoMTLS) via the host's instance; stock go-plugin moving the
// same messages with nothing of ours (the baseline our path is held to); the bare
// exchange of as many bytes over TLS between two processes (the floor under both); the
// process path with the plugin on one P; the same without the host's wrapper;
// go-plugin's in-process connection (gRPC on loopback, no TLS, no exec); and a plain Go
// call.
//
// NECOS_TEST_PLUGIN_CPUPROFILE=<dir> makes the test plugins write their own CPU profiles
// there when they are stopped, to read beside the host's -cpuprofile.
func BenchmarkDescribe(b *testing.B) {
	b.Run("stock", func(b *testing.B) {
		vim, pid := launchStock(b)
		ctx := context.Background()
		benchCalls(b, pid, func() error {
			_, err := vim.Describe(ctx, &pb.DescribeRequest{Ref: &pb.PartRef{SliceId: "bench", PartId: "core"}})
			return err
		})
	})
	b.Run("bare-tls", func(b *testing.B) {
		// The floor: the call's request and answer sizes over TLS 1.3 on a Unix socket
		// between two processes, with nothing else (see bare_test.go).
		conn, pid := startBare(b)
		req, resp := make([]byte, bareReqLen), make([]byte, bareRespLen)
		benchCalls(b, pid, func() error {
			if _, err := conn.Write(req); err != nil {
				return err
			}
			_, err := io.ReadFull(conn, resp)
			return err
		})
	})
	b.Run("process", func(b *testing.B) {
		h, _ := newHost(b, pluginDir(b, "memvim"), pluginhost.Options{Logger: hclog.NewNullLogger()})
		in := startMemvim(b, h, "bench", "")
		benchDescribe(b, vimOf(b, in), in.Status().Pid)
	})
	b.Run("process-plugin-gomaxprocs1", func(b *testing.B) {
		// The process path with the plugin's Go runtime on one P (GOMAXPROCS=1 in its
		// environment only): no thread of the plugin spins, looking for the goroutine
		// that each gRPC hand-off (reader, handler, writer) makes runnable. Not a default:
		// it is the machine's and the plugin's to choose.
		b.Setenv("GOMAXPROCS", "1")
		h, _ := newHost(b, pluginDir(b, "memvim"), pluginhost.Options{Logger: hclog.NewNullLogger()})
		in := startMemvim(b, h, "bench", "")
		benchDescribe(b, vimOf(b, in), in.Status().Pid)
	})
	b.Run("process-sdk", func(b *testing.B) {
		// The same process path without the host's wrapper: what supervision costs.
		b.Setenv(sdk.EnvLogLevel, "error")
		c := plugintest.Binary(b, binary(b, "plugins/memvim"), plugintest.Provider, memvimConfig("", ""))
		vim, err := c.VIM()
		if err != nil {
			b.Fatal(err)
		}
		benchDescribe(b, vim, c.Pid())
	})
	b.Run("in-process", func(b *testing.B) {
		b.Setenv(sdk.EnvLogLevel, "error")
		c := plugintest.InProcess(b, memvim.New(), plugintest.Provider, memvimConfig("", ""))
		vim, err := c.VIM()
		if err != nil {
			b.Fatal(err)
		}
		benchDescribe(b, vim, 0)
	})
	b.Run("direct", func(b *testing.B) {
		b.Setenv(sdk.EnvLogLevel, "error")
		p := memvim.New()
		if err := p.Configure(context.Background(), sdk.Config{APIVersion: sdk.APIVersion1,
			Provider: plugintest.Provider, JSON: memvimConfig("", "")}); err != nil {
			b.Fatal(err)
		}
		benchDescribe(b, p, 0)
	})
}

// BenchmarkColdStart times a plugin's start. "exec-to-info" is sdk.Launch with the
// lock's hash: hash check, exec, go-plugin handshake with AutoMTLS, first Info answer.
// "host-start" is all of Host.Start: lock read, the binary's identity checked against the
// one that last matched the lock (hashed only when it changed), exec, handshake, API
// negotiation, schema validation, Configure.
func BenchmarkColdStart(b *testing.B) {
	dir := pluginDir(b, "memvim")
	h, _ := newHost(b, dir, pluginhost.Options{Logger: hclog.NewNullLogger()})
	bins, err := h.Discover()
	if err != nil || len(bins) != 1 {
		b.Fatalf("discover: %v %v", bins, err)
	}
	sum := decodeHex(b, bins[0].SHA256)

	b.Run("exec-to-info", func(b *testing.B) {
		durs := make([]time.Duration, 0, b.N)
		for range b.N {
			start := time.Now()
			c, err := sdk.Launch(context.Background(), sdk.LaunchConfig{Path: bins[0].Path, SHA256: sum})
			durs = append(durs, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			c.Kill()
			b.StartTimer()
		}
		b.StopTimer()
		reportLatency(b, durs, time.Millisecond, "ms")
	})
	b.Run("host-start", func(b *testing.B) {
		durs := make([]time.Duration, 0, b.N)
		for range b.N {
			start := time.Now()
			_, err := h.Start(context.Background(), pluginhost.InstanceConfig{Name: "cold", Plugin: "memvim",
				Config: memvimConfig("", "")})
			durs = append(durs, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := h.Stop("cold"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.StopTimer()
		reportLatency(b, durs, time.Millisecond, "ms")
	})
}

func decodeHex(b *testing.B, s string) []byte {
	out, err := hex.DecodeString(s)
	if err != nil {
		b.Fatal(err)
	}
	return out
}
