package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/necos/necos/sdk"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const privateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-material-0123456789\n-----END OPENSSH PRIVATE KEY-----\n"

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, SecretKeySize) }

// dump returns every value the store holds under its prefix.
func dump(t *testing.T, s *Store) string {
	t.Helper()
	r, err := s.cli.Get(context.Background(), s.prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, kv := range r.Kvs {
		b.Write(kv.Key)
		b.WriteString(" = ")
		b.Write(kv.Value)
		b.WriteString("\n")
	}
	return b.String()
}

// filesHolding lists the files under dir whose bytes contain s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// TestSecretsAreSealed: a part's credential secret is kept sealed under its own key,
// neither in the part's record, nor its events, nor anywhere in the store's files; the
// records read back have it blanked; PartSecrets opens it; the slice's decommission
// removes it; a store opened with another key is refused.
func TestSecretsAreSealed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir, SecretKey: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	sl := newSlice("alice", "sealed")
	if err := s.CreateSlice(ctx, sl, Event{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePlan(ctx, sl, []*Part{{SliceID: sl.ID, Name: "core", State: PartPlanned}}, nil, SliceCreating); err != nil {
		t.Fatal(err)
	}
	obs := &sdk.Part{Name: "core", Credential: sdk.Credential{Kind: sdk.CredentialSSHKey, User: "necos", Secret: privateKey, HostKey: "ssh-ed25519 AAAA"}}
	got, err := s.UpdatePart(ctx, sl.ID, "core", func(p *Part) ([]Event, error) {
		p.Observed, p.State = obs, PartReady
		return []Event{{Type: "part.ready", Part: "core"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Observed.Credential.Secret != privateKey || obs.Credential.Secret != privateKey {
		t.Error("UpdatePart took the secret away from its caller")
	}
	// Another write that does not touch the credential keeps the secret.
	if _, err := s.UpdatePart(ctx, sl.ID, "core", func(p *Part) ([]Event, error) { p.Message = "still here"; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	parts, err := s.ListParts(ctx, sl.ID)
	if err != nil || len(parts) != 1 {
		t.Fatalf("%+v %v", parts, err)
	}
	if c := parts[0].Observed.Credential; c.Secret != "" || c.Kind != sdk.CredentialSSHKey || c.User != "necos" || c.HostKey == "" {
		t.Errorf("part read back: credential %+v", c)
	}
	sec, err := s.PartSecrets(ctx, sl.ID)
	if err != nil || sec["core"] != privateKey {
		t.Errorf("PartSecrets: %q %v", sec, err)
	}
	if d := dump(t, s); strings.Contains(d, "secret-material") {
		t.Errorf("the store holds the secret in plain text:\n%s", d)
	}
	s.Close()
	if files := filesHolding(t, dir, "secret-material"); len(files) > 0 {
		t.Errorf("the store's files hold the secret in plain text: %v", files)
	}

	// Another key is refused, and opens nothing.
	if _, err := Open(ctx, Options{Dir: dir, SecretKey: testKey(2)}); !errors.Is(err, ErrSecretKey) {
		t.Fatalf("another key: %v", err)
	}
	s = openEmbeddedKey(t, dir, testKey(1))
	if err := s.DeleteSlice(ctx, sl); err != nil {
		t.Fatal(err)
	}
	if sec, err := s.PartSecrets(ctx, sl.ID); err != nil || len(sec) != 0 {
		t.Errorf("secrets left after the slice: %v %v", sec, err)
	}
}

func openEmbeddedKey(t *testing.T, dir string, key []byte) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, SecretKey: key})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPlainSecretsAreSealedAtOpen: a part record written by an earlier version (one
// from before the store recorded its schema version), its secret in plain text, has the
// secret moved and sealed when the store opens.
func TestPlainSecretsAreSealedAtOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openEmbeddedKey(t, dir, testKey(3))
	p := Part{SliceID: "old-1", Name: "edge", State: PartReady,
		Observed: &sdk.Part{Credential: sdk.Credential{Kind: sdk.CredentialKubeconfig, Secret: "kubeconfig with token secret-material"}}}
	b, _ := json.Marshal(p)
	if _, err := s.cli.Put(ctx, s.partKey("old-1", "edge"), string(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Delete(ctx, s.key("schema")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openEmbeddedKey(t, dir, testKey(3))
	if d := dump(t, s); strings.Contains(d, "secret-material") {
		t.Errorf("the secret is still in plain text after open:\n%s", d)
	}
	if sec, err := s.PartSecrets(ctx, "old-1"); err != nil || sec["edge"] != p.Observed.Credential.Secret {
		t.Errorf("moved secret: %q %v", sec, err)
	}
}

// TestSecretKeyFile: a key file is made once (owner-only) and read back; a file that
// holds no key is refused, saying what it should hold.
func TestSecretKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	k1, err := LoadSecretKey(path)
	if err != nil || len(k1) != SecretKeySize {
		t.Fatalf("%x %v", k1, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v %v", fi.Mode(), err)
	}
	if k2, err := LoadSecretKey(path); err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("read back: %v", err)
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecretKey(path); err == nil || !strings.Contains(err.Error(), "base64") {
		t.Errorf("bad key file: %v", err)
	}
}
