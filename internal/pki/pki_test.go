package pki

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// A server certificate and a client certificate of one CA complete a mutual TLS
// handshake on loopback; a client without a certificate is refused.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v %v", fi.Mode(), err)
	}
	ca, err = LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	sc, sk, err := ca.Issue("server", []string{"127.0.0.1", "localhost"}, Server)
	if err != nil {
		t.Fatal(err)
	}
	cc, ck, err := ca.Issue("client", nil, Client)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	serverCert, _ := tls.X509KeyPair(sc, sk)
	clientCert, _ := tls.X509KeyPair(cc, ck)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serverCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = io.WriteString(c, "hello")
				}
			}()
		}
	}()
	dial := func(certs []tls.Certificate) (string, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, Certificates: certs})
		if err != nil {
			return "", err
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		return string(b), err
	}
	if got, err := dial([]tls.Certificate{clientCert}); err != nil || got != "hello" {
		t.Fatalf("with a client certificate: %q %v", got, err)
	}
	if got, err := dial(nil); err == nil && got == "hello" {
		t.Fatal("a client without a certificate was served")
	}
}
