package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/internal/pki"
	"github.com/necos/necos/sdk/plugintest"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// etcdClient connects to endpoint with TLS files (any may be empty) and tries one read.
func etcdRead(endpoint, ca, cert, key string) error {
	cfg := clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second}
	if strings.HasPrefix(endpoint, "https://") {
		info := transport.TLSInfo{TrustedCAFile: ca, CertFile: cert, KeyFile: key}
		tc, err := info.ClientConfig()
		if err != nil {
			return err
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = cli.Get(ctx, DefaultPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	return err
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestEmbeddedStoreIsClosed: the embedded store answers only a client presenting the
// certificate under its directory (owner-only files): neither plain HTTP nor TLS
// without that certificate reads anything, on the client port or the peer port.
func TestEmbeddedStoreIsClosed(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir)
	if err := s.AddToken(context.Background(), "demo", NewToken()); err != nil {
		t.Fatal(err)
	}
	a, err := Embedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.Replace(a.Endpoint, "https://", "http://", 1)
	if err := etcdRead(plain, "", "", ""); err == nil {
		t.Error("plain HTTP reads the store")
	}
	if err := etcdRead(a.Endpoint, a.CACert, "", ""); err == nil {
		t.Error("TLS without a client certificate reads the store")
	}
	if err := etcdRead(a.Endpoint, a.CACert, a.ClientCert, a.ClientKey); err != nil {
		t.Errorf("the operator's certificate does not read the store: %v", err)
	}
	// The peer port asks for a certificate of the store's CA too.
	ports, err := readPorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports.Peer), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Write([]byte("GET /members HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		c.Close()
	}
	if err == nil {
		t.Error("the peer port answers a client without a certificate")
	}
	for _, d := range []string{dir, filepath.Dir(a.CACert)} {
		if m := mode(t, d); m != 0o700 {
			t.Errorf("%s: mode %v, want 0700", d, m)
		}
	}
	for _, f := range []string{a.CACert, a.ClientCert, a.ClientKey} {
		if m := mode(t, f); m != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, m)
		}
	}
}

// TestEmbeddedUpgradesPlainStore: a store an earlier version left (plain HTTP
// listeners, a directory open to others) opens with its data, closed, its member's peer
// URL updated.
func TestEmbeddedUpgradesPlainStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ports, err := loadPorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	// What the earlier version ran.
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "necos", filepath.Join(dir, "etcd")
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports.Client)}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports.Peer)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = "necos=" + pu.String()
	cfg.ListenMetricsUrls = nil
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	<-e.Server.ReadyNotify()
	sl := &Slice{ID: "old-1", Name: "old", Tenant: "t", State: SliceReady}
	b, _ := json.Marshal(sl)
	if _, err := v3client.New(e.Server).Put(context.Background(), DefaultPrefix+"slices/old-1", string(b)); err != nil {
		t.Fatal(err)
	}
	e.Close()

	s := openEmbedded(t, dir)
	if got, err := s.GetSlice(context.Background(), "old-1"); err != nil || got.Name != "old" {
		t.Fatalf("data of the earlier store: %+v %v", got, err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("store dir mode %v", m)
	}
	r, err := s.cli.MemberList(context.Background())
	if err != nil || len(r.Members) != 1 || len(r.Members[0].PeerURLs) != 1 || !strings.HasPrefix(r.Members[0].PeerURLs[0], "https://") {
		t.Errorf("members %+v %v", r, err)
	}
	if err := etcdRead("http://"+cu.Host, "", "", ""); err == nil {
		t.Error("the upgraded store still answers plain HTTP")
	}
}

// TestExternalEtcdTLSAndAuth runs the store on an etcd cluster that asks for client
// certificates and has authentication on: with the certificate, the CA and a user
// allowed on the prefix it works; without any of them it is refused, saying why.
func TestExternalEtcdTLSAndAuth(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	bin := filepath.Join(assets, "etcd")
	if _, err := os.Stat(bin); assets == "" || err != nil {
		plugintest.NeedBackend(t, "KUBEBUILDER_ASSETS with an etcd binary (scripts/kube-binaries.sh)")
	}
	dir := t.TempDir()
	ca, err := pki.NewCA("test etcd CA")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	issue := func(name string, usage pki.Usage) {
		cert, key, err := ca.Issue(name, []string{"127.0.0.1"}, usage)
		if err != nil {
			t.Fatal(err)
		}
		files[name+".crt"], files[name+".key"] = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		_ = pki.WriteFile(files[name+".crt"], cert)
		_ = pki.WriteFile(files[name+".key"], key)
	}
	issue("server", pki.Server|pki.Client)
	issue("necosd", pki.Client) // no user of that name: the user is given by name and password
	issue("necos", pki.Client)  // named as a user: etcd takes the certificate's name as the user
	caFile := filepath.Join(dir, "ca.crt")
	_ = pki.WriteFile(caFile, ca.CertPEM)

	client, peer := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "--data-dir", t.TempDir(), "--name", "ext",
		"--listen-client-urls", "https://"+client, "--advertise-client-urls", "https://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "ext=http://"+peer, "--log-level", "error",
		"--cert-file", files["server.crt"], "--key-file", files["server.key"], "--trusted-ca-file", caFile, "--client-cert-auth")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	endpoint := "https://" + client

	// Users: root (needed to turn authentication on) and necos, allowed on its prefix.
	info := transport.TLSInfo{TrustedCAFile: caFile, CertFile: files["necosd.crt"], KeyFile: files["necosd.key"]}
	tc, err := info.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var admin *clientv3.Client
	for i := 0; i < 50; i++ {
		if admin, err = clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tc, DialTimeout: time.Second}); err == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err = admin.Status(cctx, endpoint)
			cancel()
			if err == nil {
				break
			}
			admin.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("etcd over TLS: %v", err)
	}
	defer admin.Close()
	steps := []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "necos"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "necos", "/tls/", clientv3.GetPrefixRangeEnd("/tls/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "necos", "necospw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "necos", "necos"); return err },
		func() error { _, err := admin.UserAdd(ctx, "nobody", "nobodypw"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("set up authentication, step %d: %v", i, err)
		}
	}

	good := Options{Endpoints: []string{endpoint}, Prefix: "/tls/", DialTimeout: 2 * time.Second, SecretKey: testKey(8),
		CACert: caFile, Cert: files["necosd.crt"], Key: files["necosd.key"], Username: "necos", Password: "necospw"}
	s, err := Open(ctx, good)
	if err != nil {
		t.Fatalf("open with certificate and user: %v", err)
	}
	sl := newSlice("alice", "tls")
	if err := s.CreateSlice(ctx, sl, Event{Type: "slice.accepted"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSlice(ctx, sl.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A certificate named as a user authenticates as that user, without a password.
	byCert := good
	byCert.Cert, byCert.Key, byCert.Username, byCert.Password = files["necos.crt"], files["necos.key"], "", ""
	s, err = Open(ctx, byCert)
	if err != nil {
		t.Fatalf("open with a certificate named as a user: %v", err)
	}
	if _, err := s.GetSlice(ctx, sl.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()

	bad := map[string]func(o *Options){
		"no client certificate": func(o *Options) { o.Cert, o.Key = "", "" },
		"no CA":                 func(o *Options) { o.CACert = "" },
		"wrong password":        func(o *Options) { o.Password = "guess" },
		"no user":               func(o *Options) { o.Username, o.Password = "", "" },
		"a user without rights": func(o *Options) { o.Username, o.Password = "nobody", "nobodypw" },
		"a certificate alone":   func(o *Options) { o.Key = "" },
	}
	for name, change := range bad {
		o := good
		change(&o)
		s, err := Open(ctx, o)
		if err == nil {
			s.Close()
			t.Errorf("%s: opened", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if name == "no client certificate" && !strings.Contains(err.Error(), "etcd_cert") {
			t.Errorf("%s: the error does not say what to check: %v", name, err)
		}
	}
}
