package store

import (
	"context"
	"crypto/tls"
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
	"github.com/necos/necos/internal/pki"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// embeddedPorts are the loopback ports the embedded member listens on. They are chosen
// once and kept in the data directory: the member's peer URL is part of its identity.
type embeddedPorts struct {
	Client int `json:"client"`
	Peer   int `json:"peer"`
}

// embeddedSnapshotCount is how many writes the embedded member's raft log keeps in memory
// between two snapshots.
const embeddedSnapshotCount = 2000

// startEmbedded runs a single-member etcd with its data under dir and returns an
// in-process client to it (no network hop), a function that stops both, and the channel
// on which etcd reports a fatal error.
//
// The member's listeners are on loopback and speak TLS with client certificates only,
// from a CA whose files are under dir/pki (0600): other local users cannot read or write
// the store, while an operator who can read those files reaches it with etcdctl (see
// EmbeddedAccess).
func startEmbedded(ctx context.Context, dir string, history time.Duration, logger hclog.Logger) (*clientv3.Client, func() error, <-chan error, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("store dir: %w", err)
	}
	// A directory made by an earlier version, or by hand, may be open to others.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("store dir: %w", err)
	}
	ports, err := loadPorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		return nil, nil, nil, err
	}
	access, err := embeddedPKI(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "necos"
	cfg.Dir = filepath.Join(dir, "etcd")
	// etcd logs through zap; its errors go to the store's logger. While it shuts down it
	// reports its closing listeners as errors: those are dropped.
	closing := &atomic.Bool{}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(&hclogCore{log: logger.Named("etcd"), closing: closing}))
	clientURL := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", ports.Client)}
	peerURL := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", ports.Peer)}
	tlsInfo := transport.TLSInfo{CertFile: access.serverCert, KeyFile: access.serverKey,
		TrustedCAFile: access.CACert, ClientCertAuth: true, MinVersion: tls.VersionTLS12}
	cfg.ClientTLSInfo, cfg.PeerTLSInfo = tlsInfo, tlsInfo
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peerURL.String())
	// The metrics listener is not wanted; the client one is kept so that operators can
	// inspect the store with etcdctl (and the certificates of dir/pki).
	cfg.ListenMetricsUrls = nil
	// Every update of a record keeps its old revision until compacted: without this the
	// store grows with every write for ever (hundreds of MB for 10k slices).
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = history.String()
	// The raft log of the last SnapshotCount writes is held in memory: etcd's default
	// (10,000 writes, each a whole record) costs tens of MB, kept for followers that
	// a single member never has.
	cfg.SnapshotCount = embeddedSnapshotCount
	cfg.SnapshotCatchUpEntries = embeddedSnapshotCount / 4
	// At start etcd decodes every WAL file kept (to find the valid snapshots), so each
	// one kept costs restarts time (~0.25 s per 64 MB segment here) as well as disk:
	// etcd's default keeps five. Entries before the last snapshot are in the backend
	// already, and the files a recovery needs are locked and never purged.
	cfg.MaxWalFiles = 1

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, nil, nil, fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, nil, nil, errors.New("embedded etcd not ready after 60s")
	case <-ctx.Done():
		e.Close()
		return nil, nil, nil, ctx.Err()
	}
	// The client dials the store's own TLS listener rather than using etcd's in-process
	// client: under many watches created and cancelled at once (every ?wait=true request
	// watches its slice), the in-process adapter's unbuffered streams deadlock the watch
	// stream (etcd-io/etcd#18879, #20716), and waiters then never hear of their slice.
	tc, err := (transport.TLSInfo{CertFile: access.ClientCert, KeyFile: access.ClientKey,
		TrustedCAFile: access.CACert, MinVersion: tls.VersionTLS12}).ClientConfig()
	if err != nil {
		e.Close()
		return nil, nil, nil, fmt.Errorf("embedded etcd: client TLS: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL.String()}, TLS: tc,
		DialTimeout: 10 * time.Second})
	if err != nil {
		e.Close()
		return nil, nil, nil, fmt.Errorf("embedded etcd: connect: %w", err)
	}
	// Reads and writes call the member in-process: through the TLS listener each round
	// trip cost two gRPC stacks, TLS both ways and four system calls, which under a burst
	// of creates (tens of store round trips each) was most of necosd's own CPU and, on a
	// busy machine, 20-30 ms a read. Only KV goes this way: watches and leases keep the
	// TLS client, whose streams do not deadlock (see above); a unary call has no stream.
	cli.KV = clientv3.NewKVFromKVClient(adapter.KvServerToKvClient(v3rpc.NewQuotaKVServer(e.Server)), cli)
	// A store made by an earlier version knows its member by a plain http peer URL;
	// the member is told its new one, so that nothing names a listener that is gone.
	if err := updatePeerURL(ctx, cli, e, peerURL.String()); err != nil {
		cli.Close()
		e.Close()
		return nil, nil, nil, err
	}
	logger.Info("embedded store ready", "dir", dir, "client_url", clientURL.String(),
		"ca", access.CACert, "client_cert", access.ClientCert, "client_key", access.ClientKey)
	stop := func() error {
		// A client reports its own cancellation on Close: not an error.
		err := cli.Close()
		closing.Store(true)
		e.Close()
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return err
	}
	return cli, stop, e.Err(), nil
}

// updatePeerURL sets the member's peer URL to want when it says otherwise.
func updatePeerURL(ctx context.Context, cli *clientv3.Client, e *embed.Etcd, want string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	id := uint64(e.Server.MemberID())
	r, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("embedded etcd: list members: %w", err)
	}
	for _, m := range r.Members {
		if m.ID == id && (len(m.PeerURLs) != 1 || m.PeerURLs[0] != want) {
			if _, err := cli.MemberUpdate(ctx, id, []string{want}); err != nil {
				return fmt.Errorf("embedded etcd: update peer URL to %s: %w", want, err)
			}
		}
	}
	return nil
}

// EmbeddedAccess is how an operator reaches an embedded store from outside necosd,
// e.g. etcdctl --endpoints Endpoint --cacert CACert --cert ClientCert --key ClientKey.
// Its files are readable by their owner only.
type EmbeddedAccess struct {
	Endpoint                      string
	CACert, ClientCert, ClientKey string
	serverCert, serverKey         string
}

// Embedded returns how to reach the embedded store kept under dir (Options.Dir), once
// necosd has started it there.
func Embedded(dir string) (EmbeddedAccess, error) {
	ports, err := readPorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		return EmbeddedAccess{}, err
	}
	a := pkiFiles(dir)
	a.Endpoint = fmt.Sprintf("https://127.0.0.1:%d", ports.Client)
	return a, nil
}

func pkiFiles(dir string) EmbeddedAccess {
	p := filepath.Join(dir, "pki")
	return EmbeddedAccess{CACert: filepath.Join(p, "ca.crt"), ClientCert: filepath.Join(p, "client.crt"),
		ClientKey: filepath.Join(p, "client.key"), serverCert: filepath.Join(p, "server.crt"), serverKey: filepath.Join(p, "server.key")}
}

// embeddedPKI makes, on first use, the CA of the embedded store and its server and
// client certificates under dir/pki, in a directory only the owner may enter.
func embeddedPKI(dir string) (EmbeddedAccess, error) {
	a := pkiFiles(dir)
	pdir := filepath.Dir(a.CACert)
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		return a, fmt.Errorf("store pki: %w", err)
	}
	if err := os.Chmod(pdir, 0o700); err != nil {
		return a, fmt.Errorf("store pki: %w", err)
	}
	complete := true
	for _, f := range []string{a.CACert, a.ClientCert, a.ClientKey, a.serverCert, a.serverKey} {
		if _, err := os.Stat(f); err != nil {
			complete = false
		}
	}
	if complete {
		return a, nil
	}
	ca, err := pki.NewCA("necos embedded store CA")
	if err != nil {
		return a, err
	}
	sc, sk, err := ca.Issue("necos embedded store", []string{"127.0.0.1", "localhost"}, pki.Server|pki.Client)
	if err != nil {
		return a, err
	}
	cc, ck, err := ca.Issue("necosd", nil, pki.Client)
	if err != nil {
		return a, err
	}
	// The CA's key is not kept: nothing else is ever signed with it.
	for f, b := range map[string][]byte{a.CACert: ca.CertPEM, a.serverCert: sc, a.serverKey: sk, a.ClientCert: cc, a.ClientKey: ck} {
		if err := pki.WriteFile(f, b); err != nil {
			return a, fmt.Errorf("store pki: %w", err)
		}
	}
	return a, nil
}

func readPorts(path string) (embeddedPorts, error) {
	var p embeddedPorts
	b, err := os.ReadFile(path)
	if err != nil {
		return p, fmt.Errorf("embedded store: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("read %s: %w", path, err)
	}
	return p, nil
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
