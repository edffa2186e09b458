package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/necos/necos/internal/pki"
)

// Secrets (the credentials of parts: kubeconfigs, SSH private keys, passwords) live
// under their own keys, sealed with AES-256-GCM under a key the store is given, never
// in the records beside them: a copy of the store, a view, an event or a log line
// carries none of them. Records read from the store have them blanked; PartSecrets
// opens them for the one caller that may show them (the owning tenant's GET).

// SecretKeySize is the size of the key secrets are sealed with.
const SecretKeySize = 32

// ErrSecretKey: the store's secrets were sealed with another key than the one given.
var ErrSecretKey = errors.New("the secret key does not open the store's secrets")

// sealedSecret is a secret as the store holds it.
type sealedSecret struct {
	Nonce []byte `json:"nonce"`
	Data  []byte `json:"data"`
}

// keyCheck is a value sealed at the first open, so that a replica given another key
// refuses to start rather than write secrets nobody else can read.
const keyCheck = "necos secret key check"

type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != SecretKeySize {
		return nil, fmt.Errorf("secret key: %d bytes, want %d", len(key), SecretKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts plain; where (the record's key) is authenticated with it, so that a
// sealed secret moved to another part does not open.
func (s *sealer) seal(where, plain string) sealedSecret {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return sealedSecret{Nonce: nonce, Data: s.aead.Seal(nil, nonce, []byte(plain), []byte(where))}
}

func (s *sealer) open(where string, v sealedSecret) (string, error) {
	plain, err := s.aead.Open(nil, v.Nonce, v.Data, []byte(where))
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, ErrSecretKey)
	}
	return string(plain), nil
}

// LoadSecretKey reads a secret key file (the key in base64 on one line), or makes one
// there (readable by its owner only) when the file does not exist.
func LoadSecretKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, SecretKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := pki.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n")); err != nil {
			return nil, fmt.Errorf("secret key %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != SecretKeySize {
		return nil, fmt.Errorf("secret key %s: expected %d bytes in base64 on one line (e.g. from `head -c %d /dev/urandom | base64`)",
			path, SecretKeySize, SecretKeySize)
	}
	return key, nil
}

func (s *Store) secretKey(slice, part string) string { return s.key("secrets", slice, part) }

// checkSecretKey makes sure the key opens what the store holds: the check value is
// sealed at the first open and must open at every later one.
func (s *Store) checkSecretKey(ctx context.Context) error {
	key := s.key("secret-key-check")
	for range 2 {
		var v sealedSecret
		_, err := s.get(ctx, key, &v)
		if errors.Is(err, ErrNotFound) {
			_, err = s.commit(ctx, op{key: key, v: s.sealer.seal(key, keyCheck), rev: 0})
			if errors.Is(err, ErrExists) {
				continue // another replica sealed it first: check against it
			}
			return err
		}
		if err != nil {
			return err
		}
		if plain, err := s.sealer.open(key, v); err != nil || plain != keyCheck {
			return fmt.Errorf("store: %w: give the key the store's other users were given (secret_key_file)", ErrSecretKey)
		}
		return nil
	}
	return nil
}

// sealPart takes a part's secret out of the record to write: it returns the op that
// stores the secret sealed, and leaves the record with the secret blanked (a copy of
// Observed, so that the caller's sdk.Part keeps it). No secret, no op.
func (s *Store) sealPart(p *Part) (op, string, bool) {
	if p.Observed == nil || p.Observed.Credential.Secret == "" {
		return op{}, "", false
	}
	obs := *p.Observed
	secret := obs.Credential.Secret
	obs.Credential.Secret = ""
	p.Observed = &obs
	key := s.secretKey(p.SliceID, p.Name)
	return op{key: key, v: s.sealer.seal(key, secret), rev: anyRev}, secret, true
}

// blankSecret removes a secret from a record read from the store (one written before
// secrets had their own keys, until it is moved).
func blankSecret(p *Part) {
	if p.Observed != nil && p.Observed.Credential.Secret != "" {
		obs := *p.Observed
		obs.Credential.Secret = ""
		p.Observed = &obs
	}
}

// PartSecrets returns the secrets of a slice's parts, by part name. Only the owning
// tenant's view of the slice shows them.
func (s *Store) PartSecrets(ctx context.Context, sliceID string) (map[string]string, error) {
	out := map[string]string{}
	prefix := s.key("secrets", sliceID) + "/"
	err := s.list(ctx, prefix, func(key string, _ int64, raw []byte) error {
		var v sealedSecret
		if err := jsonUnmarshal(key, raw, &v); err != nil {
			return err
		}
		plain, err := s.sealer.open(key, v)
		if err != nil {
			return err
		}
		out[strings.TrimPrefix(key, prefix)] = plain
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("secrets of slice %s: %w", sliceID, err)
	}
	return out, nil
}

// sealStoredSecrets moves the secrets that records of an earlier version hold in plain
// text to their own sealed keys.
func (s *Store) sealStoredSecrets(ctx context.Context) error {
	var plain []*Part
	err := s.list(ctx, s.key("parts")+"/", func(key string, _ int64, raw []byte) error {
		var p Part
		if err := jsonUnmarshal(key, raw, &p); err != nil {
			return err
		}
		if p.Observed != nil && p.Observed.Credential.Secret != "" {
			plain = append(plain, &p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range plain {
		// UpdatePart seals what it writes; a part gone meanwhile has nothing to move.
		if _, err := s.UpdatePart(ctx, p.SliceID, p.Name, func(*Part) ([]Event, error) { return nil, nil }); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("seal the secret of part %s/%s: %w", p.SliceID, p.Name, err)
		}
	}
	if len(plain) > 0 {
		s.logger.Info("secrets moved out of part records and sealed", "parts", len(plain))
	}
	return nil
}
