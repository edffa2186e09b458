package xenvim

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/necos/necos/plugins/vim-xen/seed"
)

// seedISO renders a node's seed as an ISO 9660 image labelled cidata, with Rock Ridge
// names (cloud-init's file names have dashes, which plain ISO 9660 cannot hold), as
// cloud-localds would make it.
func seedISO(s seed.Seed) ([]byte, error) {
	meta, user, network, err := s.Files()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "necos-seed-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "seed.iso")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ws := filepath.Join(dir, "ws")
	if err := os.Mkdir(ws, 0o700); err != nil {
		return nil, err
	}
	fs, err := iso9660.Create(file.New(f, false), 0, 0, 2048, ws)
	if err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	for name, body := range map[string][]byte{seed.MetaData: meta, seed.UserData: user, seed.NetworkConfig: network} {
		w, err := fs.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return nil, fmt.Errorf("seed image: %s: %w", name, err)
		}
		if _, err := w.Write(body); err != nil {
			return nil, fmt.Errorf("seed image: %s: %w", name, err)
		}
	}
	if err := fs.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: seed.Label}); err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}
