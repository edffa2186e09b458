package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// embeddedPorts are the loopback ports the embedded member listens on. They are chosen
// once and kept in the data directory: the member's peer URL is part of its identity.
type embeddedPorts struct {
	Client int `json:"client"`
	Peer   int `json:"peer"`
}

// startEmbedded runs a single-member etcd with its data under dir and returns an
// in-process client to it (no network hop), and a function that stops both.
func startEmbedded(ctx context.Context, dir string, logger hclog.Logger) (*clientv3.Client, func() error, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("store dir: %w", err)
	}
	ports, err := loadPorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		return nil, nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "necos"
	cfg.Dir = filepath.Join(dir, "etcd")
	// etcd logs through zap; its errors go to the store's logger. While it shuts down it
	// reports its closing listeners as errors: those are dropped.
	closing := &atomic.Bool{}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(&hclogCore{log: logger.Named("etcd"), closing: closing}))
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports.Client)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports.Peer)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peerURL.String())
	// The metrics listener is not wanted; the client one is kept so that operators can
	// inspect the store with etcdctl.
	cfg.ListenMetricsUrls = nil

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, nil, fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, nil, errors.New("embedded etcd not ready after 60s")
	case <-ctx.Done():
		e.Close()
		return nil, nil, ctx.Err()
	}
	logger.Info("embedded store ready", "dir", dir, "client_url", clientURL.String())
	cli := v3client.New(e.Server)
	stop := func() error {
		// The in-process client reports its own cancellation on Close: not an error.
		err := cli.Close()
		closing.Store(true)
		e.Close()
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return err
	}
	return cli, stop, nil
}

func loadPorts(path string) (embeddedPorts, error) {
	var p embeddedPorts
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &p); err != nil {
			return p, fmt.Errorf("read %s: %w", path, err)
		}
		if p.Client > 0 && p.Peer > 0 {
			return p, nil
		}
	}
	var err error
	if p.Client, err = freePort(); err != nil {
		return p, err
	}
	if p.Peer, err = freePort(); err != nil {
		return p, err
	}
	b, _ := json.Marshal(p)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return p, fmt.Errorf("write %s: %w", path, err)
	}
	return p, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// hclogCore passes etcd's warnings and errors to an hclog logger.
type hclogCore struct {
	log     hclog.Logger
	closing *atomic.Bool
	fields  []zapcore.Field
}

func (c *hclogCore) Enabled(l zapcore.Level) bool {
	return l >= zapcore.WarnLevel && !c.closing.Load()
}

func (c *hclogCore) With(fields []zapcore.Field) zapcore.Core {
	return &hclogCore{log: c.log, closing: c.closing, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *hclogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *hclogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(append([]zapcore.Field(nil), c.fields...), fields...) {
		f.AddTo(enc)
	}
	args := make([]any, 0, 2*len(enc.Fields))
	for k, v := range enc.Fields {
		args = append(args, k, v)
	}
	if e.Level >= zapcore.ErrorLevel {
		c.log.Error(e.Message, args...)
	} else {
		c.log.Warn(e.Message, args...)
	}
	return nil
}

func (c *hclogCore) Sync() error { return nil }
