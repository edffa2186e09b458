// Command build assembles container images without a registry or a container engine:
// each image is one layer made from files on this machine (the project's static Go
// programs, files of Debian packages extracted by scripts/images.sh, and the shared
// libraries an ELF program needs, found from its DT_NEEDED entries), written with
// go-containerregistry into one archive that `ctr images import` reads. The output is
// reproducible: entries sorted, times zero, owners root.
//
//	go run ./images/build -o images.tar spec.json
//
// spec.json lists the images (see [Image]).
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is one image of the spec.
type Image struct {
	// Name is the image reference, e.g. necos.local/pause:3.10.
	Name string `json:"name"`
	// Files are copied into the image: source path on this machine, destination path
	// in the image. Directories are copied whole.
	Files []File `json:"files"`
	// Symlinks are made in the image: link path -> target.
	Symlinks map[string]string `json:"symlinks"`
	// Dirs are made empty in the image (mode 1777 for /tmp, else 0755).
	Dirs []string `json:"dirs"`
	// Text files: path in the image -> content.
	Text map[string]string `json:"text"`
	// ELFRoot is a directory holding an extracted system (Debian packages); the programs
	// in ELF (paths within that root) are copied with every library they need from it.
	ELFRoot string   `json:"elf_root"`
	ELF     []string `json:"elf"`

	Entrypoint   []string `json:"entrypoint"`
	Cmd          []string `json:"cmd"`
	Env          []string `json:"env"`
	User         string   `json:"user"`
	WorkingDir   string   `json:"workdir"`
	ExposedPorts []string `json:"ports"`
}

// File is a file or directory copied into an image.
type File struct {
	Src  string `json:"src"`
	Dst  string `json:"dst"`
	Mode int64  `json:"mode"` // 0: the source's
}

func main() {
	out := flag.String("o", "", "output archive (docker/OCI tarball for ctr images import)")
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		log.Fatal("usage: build -o images.tar spec.json")
	}
	b, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		log.Fatal(err)
	}
	var images []Image
	if err := json.Unmarshal(b, &images); err != nil {
		log.Fatalf("%s: %v", flag.Arg(0), err)
	}
	refs := map[name.Reference]v1.Image{}
	for i, spec := range images {
		ref, err := name.ParseReference(spec.Name)
		if err != nil {
			log.Fatalf("images[%d].name: %v", i, err)
		}
		img, err := build(spec)
		if err != nil {
			log.Fatalf("image %s: %v", spec.Name, err)
		}
		refs[ref] = img
		d, _ := img.Digest()
		log.Printf("%s %s", spec.Name, d)
	}
	tmp := *out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(tmp, *out); err != nil {
		log.Fatal(err)
	}
}

func build(spec Image) (v1.Image, error) {
	l := newLayer()
	for _, d := range spec.Dirs {
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		l.dir(d, mode)
	}
	for _, f := range spec.Files {
		if err := l.copy(f.Src, f.Dst, f.Mode); err != nil {
			return nil, err
		}
	}
	for p, content := range spec.Text {
		l.file(p, []byte(content), 0o644)
	}
	for link, target := range spec.Symlinks {
		l.symlink(link, target)
	}
	if len(spec.ELF) > 0 {
		if err := l.elf(spec.ELFRoot, spec.ELF); err != nil {
			return nil, err
		}
	}
	data, err := l.bytes()
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.User, cf.Config.WorkingDir = spec.Entrypoint, spec.Cmd, spec.User, spec.WorkingDir
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, spec.Env...)
	if len(spec.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// layer collects entries by path; written sorted, so that the same inputs make the
// same bytes.
type layer struct {
	entries map[string]entry
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func newLayer() *layer { return &layer{entries: map[string]entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (l *layer) parents(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := l.entries[d]; !ok {
			l.entries[d] = entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}}
		}
	}
}

func (l *layer) dir(p string, mode int64) {
	p = clean(p)
	l.parents(p)
	l.entries[p] = entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode}}
}

func (l *layer) file(p string, data []byte, mode int64) {
	p = clean(p)
	l.parents(p)
	l.entries[p] = entry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data))}, data: data}
}

func (l *layer) symlink(p, target string) {
	p = clean(p)
	l.parents(p)
	l.entries[p] = entry{hdr: &tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777}}
}

// copy adds src (a file, symlink or directory tree) at dst.
func (l *layer) copy(src, dst string, mode int64) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return l.copyOne(src, dst, fi, mode)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return l.copyOne(p, path.Join(dst, filepath.ToSlash(rel)), fi, 0)
	})
}

func (l *layer) copyOne(src, dst string, fi fs.FileInfo, mode int64) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		l.symlink(dst, target)
	case fi.IsDir():
		l.dir(dst, int64(fi.Mode().Perm()))
	case fi.Mode().IsRegular():
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if mode == 0 {
			mode = int64(fi.Mode().Perm())
		}
		l.file(dst, b, mode)
	}
	return nil
}

// libDirs are where the dynamic loader of a Debian system finds libraries.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib", "/usr/lib"}

// elf copies programs from root with their interpreter and every library they need,
// recursively, keeping their paths (and the symlinks on the way).
func (l *layer) elf(root string, programs []string) error {
	if root == "" {
		return errors.New("elf_root: required with elf")
	}
	seen := map[string]bool{}
	queue := append([]string(nil), programs...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		real, err := l.copyResolved(root, p)
		if err != nil {
			return err
		}
		f, err := elf.Open(filepath.Join(root, real))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b, _ := io.ReadAll(prog.Open())
				queue = append(queue, strings.TrimRight(string(b), "\x00"))
			}
		}
		f.Close()
		for _, lib := range needed {
			found := ""
			for _, d := range libDirs {
				if _, err := os.Stat(filepath.Join(root, d, lib)); err == nil {
					found = path.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, which is not in %s (%s)", p, lib, root, strings.Join(libDirs, ", "))
			}
			queue = append(queue, found)
		}
	}
	return nil
}

// copyResolved copies p from root, following symlinks inside root (each link kept), and
// returns the path of the file it ends at.
func (l *layer) copyResolved(root, p string) (string, error) {
	for range 16 {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return p, l.copyOne(filepath.Join(root, p), p, fi, 0)
		}
		target, err := os.Readlink(filepath.Join(root, p))
		if err != nil {
			return "", err
		}
		l.symlink(p, target)
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = target
	}
	return "", fmt.Errorf("%s: too many symlinks", p)
}

func (l *layer) bytes() ([]byte, error) {
	names := make([]string, 0, len(l.entries))
	for n := range l.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := l.entries[n]
		h := *e.hdr
		h.ModTime, h.Uid, h.Gid, h.Format = time.Unix(0, 0), 0, 0, tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
