package xenvim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/necos/necos/sdk"
)

// Part keys: the private key of a part's credential is kept in a file of its own under
// key_dir (0600, in a 0700 directory per provider), never in the domains' XML, which
// anyone with read access to libvirt can see. It lives as long as the part: Create makes
// it, Delete removes it.

func keyPath(s *settings, ref sdk.PartRef) string {
	return filepath.Join(s.keyDir, cleanName(s.provider.Name), digest(s.provider.Name, ref.SliceID, ref.PartID)+".key")
}

func readPartKey(s *settings, ref sdk.PartRef) (string, error) {
	b, err := os.ReadFile(keyPath(s, ref))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the part's key: %w", err)
	}
	return string(b), nil
}

func writePartKey(s *settings, ref sdk.PartRef, key string) error {
	path := keyPath(s, ref)
	// Only the key directory is private: the ones above it may hold the storage pool
	// too (the defaults share /var/lib/necos/vim-xen), which QEMU's user must traverse;
	// made 0700 by the first key, every guest failed to start ("Permission denied").
	if err := os.MkdirAll(filepath.Dir(s.keyDir), 0o755); err != nil {
		return fmt.Errorf("key directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("key directory: %w", err)
	}
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, []byte(key), 0o600)
	if errors.Is(err, os.ErrNotExist) {
		// The provider's directory went with its last key (deletePartKey) meanwhile.
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			err = os.WriteFile(tmp, []byte(key), 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("write the part's key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write the part's key: %w", err)
	}
	return nil
}

func deletePartKey(s *settings, ref sdk.PartRef) error {
	path := keyPath(s, ref)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the part's key: %w", err)
	}
	// The provider's directory goes with its last key, or every provider a host ever
	// had (each test makes its own) would leave one behind. Not empty, it stays.
	_ = os.Remove(filepath.Dir(path))
	return nil
}
