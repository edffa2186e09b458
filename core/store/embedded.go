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
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
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
	cfg.LogLevel = "error"
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
		err := cli.Close()
		e.Close()
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
