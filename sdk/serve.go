package sdk

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is the go-plugin handshake shared by the core and every plugin. Its protocol
// version changes only if the transport itself changes; the application API version is
// negotiated separately (see [Info.APIVersions]).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "NECOS_PLUGIN",
	MagicCookieValue: "necos-slice-engine",
}

// EnvParentPID names the variable through which the host tells a plugin its pid, so the
// plugin can exit when the host dies without shutting it down (e.g. SIGKILL).
const EnvParentPID = "NECOS_PLUGIN_PARENT_PID"

// EnvLogLevel sets the plugin's log level (trace, debug, info, warn, error).
const EnvLogLevel = "NECOS_PLUGIN_LOG_LEVEL"

// parentPollInterval bounds how long a plugin outlives a killed host.
const parentPollInterval = 250 * time.Millisecond

// flowWindow is the HTTP/2 flow-control window, per stream and per connection, that
// each side of a plugin connection grants the other. A fixed window turns off gRPC's
// bandwidth-delay estimation, which answers data received with a ping to time the round
// trip: on a plugin's call-and-answer traffic that is a ping and its ack per call, each
// side, often written apart from the answer (measured: 0.6 read or write system calls
// and six host allocations per call), to grow a window that a Unix socket between two
// processes never needs to grow. 4 MiB is far above a call's message, and a window
// bounds only what a side may send before the other has read it.
const flowWindow = 4 << 20

// MaxMessageBytes is the largest message a plugin accepts from its host in one call.
// gRPC's default (4 MiB) refused a large Monitor.Write or a Deploy carrying many
// manifests; the host already accepts any size from a plugin. Callers with more than
// this to send split it into several calls.
const MaxMessageBytes = 64 << 20

// grpcServer is the plugin's gRPC server: go-plugin's options (its mutual TLS),
// flowWindow and MaxMessageBytes.
func grpcServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, grpc.InitialWindowSize(flowWindow), grpc.InitialConnWindowSize(flowWindow),
		grpc.MaxRecvMsgSize(MaxMessageBytes))...)
}

// Logger returns the logger a plugin should use. It writes JSON to stderr, which the host
// reads and re-logs under the plugin's name with the right level. A plugin must never
// write to stdout: the host reads its handshake there.
func Logger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.LevelFromString(envOr(EnvLogLevel, "info")),
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// Serve runs a plugin until the host stops it. It never returns before then; call it from
// main. A plugin that implements io.Closer is closed before the process exits, also when
// the host died.
func Serve(impl Plugin) {
	name := "plugin"
	if info, err := impl.Info(context.Background()); err == nil && info.Name != "" {
		name = info.Name
	}
	logger := Logger(name)
	go watchParent(logger, impl)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         pluginSet(impl),
		GRPCServer:      grpcServer,
		Logger:          logger,
	})
	closeImpl(logger, impl)
}

func closeImpl(logger hclog.Logger, impl Plugin) {
	if c, ok := impl.(io.Closer); ok {
		if err := c.Close(); err != nil {
			logger.Warn("close", "error", err)
		}
	}
}

// watchParent exits the process once its parent is gone. go-plugin leaves plugins running
// when the host is killed; polling the parent pid is the portable way to notice.
func watchParent(logger hclog.Logger, impl Plugin) {
	want, err := strconv.Atoi(os.Getenv(EnvParentPID))
	if err != nil || want <= 1 {
		want = os.Getppid()
	}
	for {
		if os.Getppid() != want {
			logger.Warn("host process is gone, exiting", "host_pid", want)
			done := make(chan struct{})
			go func() { closeImpl(logger, impl); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
			os.Exit(1)
		}
		time.Sleep(parentPollInterval)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func marshalDefault(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

func unmarshalDefault(s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	var v any
	err := json.Unmarshal([]byte(s), &v)
	return v, err
}
