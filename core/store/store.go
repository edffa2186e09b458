// Package store is the slice database: slices, parts, links, provider reservations,
// tenants and events, kept in etcd. The embedded default runs a single-member etcd inside
// the process with its data under a directory; beyond one machine the same code talks to
// an existing etcd cluster. Every update is a compare-and-swap on the record's revision,
// so concurrent writers (API handlers, reconcilers, several necosd replicas) never lose
// an update.
package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors callers act on.
var (
	// ErrNotFound: no record under that key.
	ErrNotFound = errors.New("not found")
	// ErrExists: a record that must be new already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict: the record changed since it was read; read it again.
	ErrConflict = errors.New("revision conflict")
	// ErrIDTaken: a new slice's id is another slice's (ids end in a random suffix,
	// which can repeat); nothing was stored, and another id may be tried.
	ErrIDTaken = errors.New("slice id already taken")
)

// DefaultPrefix is where necos keeps its keys, so that one etcd can serve other users.
const DefaultPrefix = "/necos/"

// requestTimeout bounds each etcd round trip.
const requestTimeout = 10 * time.Second

// Store is the slice database. It is safe for concurrent use.
type Store struct {
	cli    *clientv3.Client
	prefix string
	logger hclog.Logger
	close  func() error
	// failed reports the embedded etcd's fatal errors (nil channel for a cluster).
	failed <-chan error
	// sealer seals the parts' secrets (see secrets.go).
	sealer *sealer
	// idemTTL is how long an Idempotency-Key is kept (IdempotencyTTL; tests shorten it).
	idemTTL   time.Duration
	idemLease idemLease
	closeOnce sync.Once
	closeErr  error

	// vniMu guards vni, this process's view of the VNIs held (see vni.go); vniLoadMu
	// makes concurrent allocations wait for one listing of them rather than each list.
	vniMu     sync.Mutex
	vniLoadMu sync.Mutex
	vni       vniState
	// resv queues ReserveAll's calls, to commit them in groups (reservegroup.go).
	resv reservations
	// embeddedEndpoint is the embedded etcd's client URL (empty for a cluster, whose
	// operators defragment it themselves); defragMinFree is what a defragmentation
	// must free at least (see defrag.go).
	embeddedEndpoint string
	defragMinFree    int64
	// afterPartsList, when set (by tests), runs between WatchParts' listing and the
	// watch that follows it: there a test compacts the revisions the watch starts from.
	afterPartsList func()
}

// Options configure Open.
type Options struct {
	// Endpoints of an existing etcd cluster. Empty means the embedded etcd under Dir.
	Endpoints []string
	// Dir holds the embedded etcd's data.
	Dir string
	// Prefix under which keys live; default DefaultPrefix.
	Prefix string
	// DialTimeout for an external cluster; default 5 s.
	DialTimeout time.Duration
	// CACert, Cert and Key are PEM files for an external cluster served over TLS: the
	// CA to trust (empty: the system's), and the client certificate and key to present
	// when the cluster asks for one.
	CACert, Cert, Key string
	// Username and Password authenticate to an external cluster with etcd's own
	// authentication; the user needs read and write on Prefix.
	Username, Password string
	// SecretKey seals the parts' secrets (SecretKeySize bytes). Without it, the key in
	// Dir/secret.key is used, made there on first use. Every necosd sharing a store
	// needs the same key: one given another is refused at Open.
	SecretKey []byte
	// History is how long the embedded etcd keeps the revisions that writes replace
	// before compacting them (default DefaultHistory); without compaction every update of
	// a slice stays on disk for ever. An external cluster compacts by its own
	// --auto-compaction-retention.
	History time.Duration
	Logger  hclog.Logger
	// defragMinFree overrides defragMinFree (tests).
	defragMinFree int64
}

// DefaultHistory is how long the embedded store keeps replaced revisions. Nothing reads
// the past beyond a watch that lags a little: a watch whose revision is compacted away
// lists again (WatchParts, WatchEvents, an event stream resumed from an old event), so a
// longer history only costs. And it costs much: the store's file, and so the memory its
// map takes once read, holds every revision kept, and etcd reads them all again at start
// to rebuild its index (an hour kept all of a 10,000-slice fill: 187 MB of database, of
// which 97 MB live). etcd compacts every History to the revision of a History ago, so
// at most twice this much is kept. A minute rather than less: with 10 s, compactions
// every 10 s cost the creates' throughput (1-part slices 16 at a time: 98-130/s against
// 131-148/s with a minute or an hour, alternated runs), and a watch stalled for a few
// seconds under load is not compacted away.
const DefaultHistory = time.Minute

// Open connects to the store described by opts: an external etcd cluster when Endpoints
// are given, else an embedded single-member etcd with its data under Dir.
func Open(ctx context.Context, opts Options) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	key := opts.SecretKey
	if key == nil {
		if opts.Dir == "" {
			return nil, errors.New("store: no secret key (Options.SecretKey) and no directory to keep one in")
		}
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("store dir: %w", err)
		}
		var err error
		if key, err = LoadSecretKey(filepath.Join(opts.Dir, "secret.key")); err != nil {
			return nil, err
		}
	}
	sl, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	s := &Store{prefix: prefix, logger: logger, sealer: sl, idemTTL: IdempotencyTTL}
	if err := s.connect(ctx, opts); err != nil {
		return nil, err
	}
	unversioned, err := s.checkSchema(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.checkSecretKey(ctx); err != nil {
		s.Close()
		return nil, err
	}
	// Secrets were sealed before the store recorded a schema version: a store that
	// records one holds no secret in plain text, and is not read whole at every start
	// to find one (a quarter of a second at 10,000 parts).
	if unversioned {
		if err := s.sealStoredSecrets(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// connect connects s to an external cluster, or starts the embedded one.
func (s *Store) connect(ctx context.Context, opts Options) error {
	prefix := s.prefix
	if len(opts.Endpoints) > 0 {
		timeout := opts.DialTimeout
		if timeout == 0 {
			timeout = 5 * time.Second
		}
		ccfg := clientv3.Config{Endpoints: opts.Endpoints, DialTimeout: timeout, Context: ctx,
			Username: opts.Username, Password: opts.Password}
		if opts.CACert != "" || opts.Cert != "" || opts.Key != "" {
			if (opts.Cert == "") != (opts.Key == "") {
				return errors.New("store: etcd client certificate and key: give both or neither")
			}
			info := transport.TLSInfo{CertFile: opts.Cert, KeyFile: opts.Key, TrustedCAFile: opts.CACert, MinVersion: tls.VersionTLS12}
			tc, err := info.ClientConfig()
			if err != nil {
				return fmt.Errorf("store: etcd TLS: %w", err)
			}
			ccfg.TLS = tc
		}
		cli, err := clientv3.New(ccfg)
		if err != nil {
			return fmt.Errorf("connect etcd %v: %w%s", opts.Endpoints, err, dialHint(err, opts))
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if _, err := cli.Status(cctx, opts.Endpoints[0]); err != nil {
			cli.Close()
			return fmt.Errorf("etcd %s does not answer: %w%s", opts.Endpoints[0], err, dialHint(err, opts))
		}
		s.cli, s.close = cli, cli.Close
		// One read under the prefix: it needs what every later call needs (a quorum, and
		// with authentication, the right to read there).
		if err := s.Ping(ctx); err != nil {
			cli.Close()
			if errors.Is(err, rpctypes.ErrPermissionDenied) {
				who := "a client without a user (etcd_username) or a certificate named as one"
				if opts.Username != "" {
					who = "user " + opts.Username
				}
				return fmt.Errorf("etcd %v: %s may not read %s: %w (grant it a role with read and write on the prefix)", opts.Endpoints, who, prefix, err)
			}
			return fmt.Errorf("etcd %v: %w", opts.Endpoints, err)
		}
		return nil
	}
	if opts.Dir == "" {
		return errors.New("store: neither etcd endpoints nor a data directory given")
	}
	history := opts.History
	if history <= 0 {
		history = DefaultHistory
	}
	cli, stop, failed, err := startEmbedded(ctx, opts.Dir, history, s.logger)
	if err != nil {
		return err
	}
	s.cli, s.failed, s.embeddedEndpoint = cli, failed, cli.Endpoints()[0]
	s.defragMinFree = defragMinFree
	if opts.defragMinFree > 0 {
		s.defragMinFree = opts.defragMinFree
	}
	// Before necosd serves: a file left mostly free (slices deleted before the last
	// stop) is rewritten while nothing waits on the store.
	if _, err := s.maybeDefragment(ctx); err != nil {
		s.logger.Warn("store defragmentation", "error", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	ticker := time.NewTicker(defragEvery)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.defragLoop(lctx, ticker.C)
	}()
	s.close = func() error {
		cancel()
		ticker.Stop()
		<-done
		return stop()
	}
	return nil
}

// dialHint says what to check when an etcd cluster does not answer in time: a TLS
// handshake it refuses looks the same from here.
func dialHint(err error, opts Options) string {
	if !errors.Is(err, context.DeadlineExceeded) {
		return ""
	}
	hint := " (no answer within the dial timeout: check etcd_endpoints"
	for _, e := range opts.Endpoints {
		if strings.HasPrefix(e, "https://") {
			hint += ", and for TLS the CA that signed the cluster's certificate (etcd_cacert) and the client certificate the cluster asks for (etcd_cert, etcd_key)"
			break
		}
	}
	return hint + ")"
}

// Err reports a fatal error of the embedded etcd (its server stopped serving): the
// store is then unusable and its owner should stop. The channel is nil, and so never
// ready, for an external cluster, whose failures the client's calls report.
func (s *Store) Err() <-chan error { return s.failed }

// Client returns the etcd client, for leader election.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the key prefix.
func (s *Store) Prefix() string { return s.prefix }

// Ping makes one linearizable read: it answers only when the store has a working quorum,
// which is what every other call needs.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := s.cli.Get(ctx, s.prefix+"ping", clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Close releases the store (and stops the embedded etcd). Later calls do nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Store) key(parts ...string) string { return s.prefix + strings.Join(parts, "/") }

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, requestTimeout)
}

// get reads one JSON record and its mod revision.
func (s *Store) get(ctx context.Context, key string, v any) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	r, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(r.Kvs) == 0 {
		return 0, ErrNotFound
	}
	if err := json.Unmarshal(r.Kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return r.Kvs[0].ModRevision, nil
}

// list reads every JSON record under a key prefix, calling each for every one.
func (s *Store) list(ctx context.Context, prefix string, each func(key string, rev int64, raw []byte) error) error {
	_, err := s.listAt(ctx, prefix, each)
	return err
}

// listAt is list, returning the store revision the records were read at.
func (s *Store) listAt(ctx context.Context, prefix string, each func(key string, rev int64, raw []byte) error) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	r, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", prefix, err)
	}
	for _, kv := range r.Kvs {
		if err := each(string(kv.Key), kv.ModRevision, kv.Value); err != nil {
			return 0, err
		}
	}
	return r.Header.Revision, nil
}

// op is one write of a transaction: a put of a JSON value, or a delete when v is nil;
// or, with check, no write, only rev's condition on key.
type op struct {
	key string
	v   any
	// rev: >0 the key must be at that revision; 0 the key must not exist; -1 no condition.
	rev   int64
	check bool
}

const anyRev = -1

// commit applies ops atomically when every condition holds, else returns ErrConflict,
// or an *ExistsError (matching ErrExists) naming a key that must be new and exists.
func (s *Store) commit(ctx context.Context, ops ...op) (int64, error) {
	var conds []clientv3.Cmp
	var puts []clientv3.Op
	// On failure the transaction counts the keys that had to be new, so that the error
	// names the one that exists rather than the first that had to be new.
	var counts []clientv3.Op
	for _, o := range ops {
		switch {
		case o.rev == 0:
			conds = append(conds, clientv3.Compare(clientv3.CreateRevision(o.key), "=", 0))
			counts = append(counts, clientv3.OpGet(o.key, clientv3.WithCountOnly()))
		case o.rev > 0:
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(o.key), "=", o.rev))
		}
		if o.check {
			continue
		}
		if o.v == nil {
			puts = append(puts, clientv3.OpDelete(o.key))
			continue
		}
		b, err := json.Marshal(o.v)
		if err != nil {
			return 0, fmt.Errorf("encode %s: %w", o.key, err)
		}
		puts = append(puts, clientv3.OpPut(o.key, string(b)))
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	r, err := s.cli.Txn(ctx).If(conds...).Then(puts...).Else(counts...).Commit()
	if err != nil {
		return 0, fmt.Errorf("commit %s: %w", describeOps(ops), err)
	}
	if !r.Succeeded {
		i := 0
		for _, o := range ops {
			if o.rev != 0 {
				continue
			}
			if rr := r.Responses[i].GetResponseRange(); rr != nil && rr.Count > 0 {
				return 0, &ExistsError{Key: strings.TrimPrefix(o.key, s.prefix)}
			}
			i++
		}
		return 0, fmt.Errorf("%s: %w", describeOps(ops), ErrConflict)
	}
	return r.Header.Revision, nil
}

// ExistsError is a write's answer when a record it had to create exists already. It
// matches ErrExists.
type ExistsError struct {
	// Key is the record's key under the store's prefix.
	Key string
}

func (e *ExistsError) Error() string { return e.Key + ": " + ErrExists.Error() }

// Is makes errors.Is(err, ErrExists) true.
func (e *ExistsError) Is(target error) bool { return target == ErrExists }

func describeOps(ops []op) string {
	keys := make([]string, 0, len(ops))
	for _, o := range ops {
		keys = append(keys, o.key)
	}
	return strings.Join(keys, ",")
}

// revSetter is a record that knows its revision (not stored with it).
type revSetter interface{ setRev(int64) }

// maxCASAttempts bounds read-modify-write retries under contention.
const maxCASAttempts = 64

// update reads the JSON record at key into a fresh T, lets fn change it, and writes it
// back if nobody wrote in between, retrying on conflicts. fn may be called several times.
// extra ops are committed in the same transaction (e.g. an event).
func update[T any](ctx context.Context, s *Store, key string, fn func(*T) ([]op, error)) (T, error) {
	var zero T
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		var v T
		rev, err := s.get(ctx, key, &v)
		if err != nil {
			return zero, err
		}
		extra, err := fn(&v)
		if err != nil {
			return zero, err
		}
		ops := append([]op{{key: key, v: &v, rev: rev}}, extra...)
		next, err := s.commit(ctx, ops...)
		if err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return zero, err
		}
		if r, ok := any(&v).(revSetter); ok {
			r.setRev(next)
		}
		return v, nil
	}
	return zero, fmt.Errorf("update %s: gave up after %d conflicting writers: %w", key, maxCASAttempts, ErrConflict)
}
