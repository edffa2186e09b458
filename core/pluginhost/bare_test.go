package pluginhost_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The bare exchange is the floor under a plugin call: a request and an answer of the
// call's sizes between this process and a child over a Unix socket with TLS 1.3, and
// nothing else (no HTTP/2, no gRPC, no protobuf).
const (
	envBareEcho = "NECOS_TEST_BARE_ECHO" // the child's socket path
	envBareCert = "NECOS_TEST_BARE_CERT" // the child's certificate and key, PEM
	bareReqLen  = 114                    // the call's request and answer TLS records, as
	bareRespLen = 280                    // strace shows them
)

// bareEcho runs the child's side: it answers each request until the connection ends.
func bareEcho(path string) error {
	raw := []byte(os.Getenv(envBareCert))
	cert, err := tls.X509KeyPair(raw, raw)
	if err != nil {
		return fmt.Errorf("%s: %w", envBareCert, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println("ready")
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	conn := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	defer conn.Close()
	req, resp := make([]byte, bareReqLen), make([]byte, bareRespLen)
	for {
		if _, err := io.ReadFull(conn, req); err != nil {
			return nil // the benchmark is over
		}
		if _, err := conn.Write(resp); err != nil {
			return err
		}
	}
}

// startBare starts the child (this test binary in its bare-echo role) and returns a TLS
// connection to it, pinned to the certificate made for it, and its pid.
func startBare(b *testing.B) (*tls.Conn, int) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})

	path := filepath.Join(b.TempDir(), "bare.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envBareEcho+"="+path, envBareCert+"="+string(certPEM)+string(keyPEM))
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		b.Fatalf("bare echo child: %q, %v", line, err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		_ = cmd.Process.Kill()
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	conn := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13})
	b.Cleanup(func() { _ = conn.Close() }) // ends the child; runs before the Wait above
	return conn, cmd.Process.Pid
}
