package xenvim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// Storage: every node of a real guest has two volumes in the provider's directory pool,
// named after its domain: <domain>.qcow2, a copy-on-write overlay of the image's disk
// sized to the VDU's storage-gb, and <domain>.seed, its NoCloud seed (ISO 9660, cidata).
// The images' files are uploaded into the same pool once, as base volumes named by
// their content (base-<sha256>), so the hypervisor (qemu runs as its own user) can read
// them wherever the files were, and a changed file is a new base that running overlays
// never see change under them.

// basePrefix starts the names of the images' base volumes.
const basePrefix = "base-"

// volumes are the names of a node's volumes.
func overlayName(domain string) string { return domain + ".qcow2" }
func seedName(domain string) string    { return domain + ".seed" }

// baseSet is an image's files as base volumes in the pool: their paths.
type baseSet struct {
	disk, format, kernel, initrd, cmdline string
	diskBytes                             uint64
}

// storage keeps what the process learned of the pool and the images' bases.
type storage struct {
	mu    sync.Mutex
	bases map[string]baseSet // by image file identity
	sums  map[string]string  // file identity (path, size, mtime) -> sha256
}

// pool returns the provider's storage pool, defining and starting it when missing.
func (p *Plugin) pool(conn *libvirt.Connect, s *settings) (*libvirt.StoragePool, error) {
	pool, err := conn.LookupStoragePoolByName(s.pool)
	if err != nil {
		if !isLibvirtCode(err, libvirt.ERR_NO_STORAGE_POOL) {
			return nil, lvError(err, "storage pool %s", s.pool)
		}
		x := fmt.Sprintf("<pool type='dir'><name>%s</name><target><path>%s</path><permissions><mode>0711</mode></permissions></target></pool>",
			xmlText(s.pool), xmlText(s.storageDir))
		pool, err = conn.StoragePoolDefineXML(x, 0)
		if err != nil {
			// Another plugin process defined it meanwhile.
			if pool, err = conn.LookupStoragePoolByName(s.pool); err != nil {
				return nil, lvError(err, "define storage pool %s at %s", s.pool, s.storageDir)
			}
		} else {
			_ = pool.Build(libvirt.STORAGE_POOL_BUILD_NEW)
			_ = pool.SetAutostart(true)
			p.log.Info("storage pool defined", "pool", s.pool, "dir", s.storageDir)
		}
	}
	if active, err := pool.IsActive(); err == nil && !active {
		// Another process may have defined the pool and not built its directory yet:
		// building is idempotent (an existing directory is kept).
		_ = pool.Build(0)
		if err := pool.Create(0); err != nil && !isLibvirtCode(err, libvirt.ERR_OPERATION_INVALID) {
			_ = pool.Free()
			return nil, lvError(err, "start storage pool %s", s.pool)
		}
	}
	return pool, nil
}

// poolDir returns the directory a directory pool keeps its volumes in.
func poolDir(pool *libvirt.StoragePool) (string, error) {
	desc, err := pool.GetXMLDesc(0)
	if err != nil {
		return "", err
	}
	var x struct {
		Path string `xml:"target>path"`
	}
	if err := xml.Unmarshal([]byte(desc), &x); err != nil {
		return "", err
	}
	if x.Path == "" {
		return "", fmt.Errorf("pool has no target path")
	}
	return x.Path, nil
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// bases makes sure an image's files are base volumes in the pool and returns them.
func (p *Plugin) bases(conn *libvirt.Connect, s *settings, pool *libvirt.StoragePool, name string, im Image) (baseSet, error) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	if p.store.bases == nil {
		p.store.bases, p.store.sums = map[string]baseSet{}, map[string]string{}
	}
	id := im.Disk + "\x00" + im.Kernel + "\x00" + im.Initrd
	if b, ok := p.store.bases[id]; ok && p.stillThere(pool, b) {
		return b, nil
	}
	b := baseSet{format: im.Format, cmdline: im.Cmdline}
	for _, f := range []struct {
		path string
		out  *string
		size *uint64
	}{{im.Disk, &b.disk, &b.diskBytes}, {im.Kernel, &b.kernel, nil}, {im.Initrd, &b.initrd, nil}} {
		if f.path == "" {
			continue
		}
		path, size, err := p.upload(conn, pool, f.path)
		if err != nil {
			return baseSet{}, sdk.Errorf(sdk.CodeFailedPrecondition, "image %s: %v", name, err)
		}
		*f.out = path
		if f.size != nil {
			*f.size = size
		}
	}
	p.store.bases[id] = b
	return b, nil
}

func (p *Plugin) stillThere(pool *libvirt.StoragePool, b baseSet) bool {
	for _, path := range []string{b.disk, b.kernel, b.initrd} {
		if path == "" {
			continue
		}
		v, err := pool.LookupStorageVolByName(filepath.Base(path))
		if err != nil {
			return false
		}
		_ = v.Free()
	}
	return true
}

// upload puts a file into the pool as base-<sha256 of its content>, unless it is there,
// and returns the volume's path and size. Plugin processes of one host serialize on a
// lock file, so none sees another's half-uploaded volume.
func (p *Plugin) upload(conn *libvirt.Connect, pool *libvirt.StoragePool, path string) (string, uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	ident := fmt.Sprintf("%s\x00%d\x00%d", path, fi.Size(), fi.ModTime().UnixNano())
	sum, ok := p.store.sums[ident]
	if !ok {
		f, err := os.Open(path)
		if err != nil {
			return "", 0, err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", 0, fmt.Errorf("read %s: %w", path, err)
		}
		sum = hex.EncodeToString(h.Sum(nil))[:24]
		p.store.sums[ident] = sum
	}
	name := basePrefix + sum
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "necos-vim-xen-upload.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", 0, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", 0, err
	}
	_ = pool.Refresh(0)
	if v, err := pool.LookupStorageVolByName(name); err == nil {
		defer v.Free()
		vp, err := v.GetPath()
		return vp, uint64(fi.Size()), err
	}
	x := fmt.Sprintf("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><target><format type='raw'/>"+
		"<permissions><mode>0644</mode></permissions></target></volume>", name, fi.Size())
	v, err := pool.StorageVolCreateXML(x, 0)
	if err != nil {
		return "", 0, fmt.Errorf("create base volume %s: %w", name, err)
	}
	defer v.Free()
	if err := sendFile(conn, v, path, uint64(fi.Size())); err != nil {
		_ = v.Delete(0)
		return "", 0, fmt.Errorf("upload %s: %w", path, err)
	}
	p.log.Info("image file uploaded", "file", path, "volume", name, "bytes", fi.Size())
	vp, err := v.GetPath()
	return vp, uint64(fi.Size()), err
}

// sendFile uploads a file's content into a volume through a libvirt stream.
func sendFile(conn *libvirt.Connect, v *libvirt.StorageVol, path string, size uint64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return sendReader(conn, v, f, size)
}

func sendReader(conn *libvirt.Connect, v *libvirt.StorageVol, r io.Reader, size uint64) error {
	st, err := conn.NewStream(0)
	if err != nil {
		return err
	}
	defer st.Free()
	if err := v.Upload(st, 0, size, 0); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		n, rerr := r.Read(buf)
		for off := 0; off < n; {
			k, err := st.Send(buf[off:n])
			if err != nil {
				_ = st.Abort()
				return err
			}
			off += k
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			_ = st.Abort()
			return rerr
		}
	}
	return st.Finish()
}

// makeVolumes creates a node's overlay (on the image's disk, sized to storageGB, at
// least the disk's size) and its seed volume holding iso.
func makeVolumes(conn *libvirt.Connect, pool *libvirt.StoragePool, domain string, b baseSet, storageGB int64, iso []byte) (disk, seedPath string, err error) {
	if b.disk != "" {
		capacity := uint64(storageGB) << 30
		if capacity < b.diskBytes {
			capacity = b.diskBytes
		}
		x := fmt.Sprintf("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><target><format type='qcow2'/>"+
			"<permissions><mode>0600</mode></permissions></target>"+
			"<backingStore><path>%s</path><format type='%s'/></backingStore></volume>",
			overlayName(domain), capacity, xmlText(b.disk), b.format)
		v, err := pool.StorageVolCreateXML(x, 0)
		if err != nil {
			return "", "", lvError(err, "create disk of %s", domain)
		}
		disk, err = v.GetPath()
		_ = v.Free()
		if err != nil {
			return "", "", lvError(err, "disk of %s", domain)
		}
	}
	x := fmt.Sprintf("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><target><format type='raw'/>"+
		"<permissions><mode>0600</mode></permissions></target></volume>", seedName(domain), len(iso))
	v, err := pool.StorageVolCreateXML(x, 0)
	if err != nil {
		return "", "", lvError(err, "create seed of %s", domain)
	}
	defer v.Free()
	if err := sendReader(conn, v, bytes.NewReader(iso), uint64(len(iso))); err != nil {
		return "", "", lvError(err, "write seed of %s", domain)
	}
	seedPath, err = v.GetPath()
	if err != nil {
		return "", "", lvError(err, "seed of %s", domain)
	}
	return disk, seedPath, nil
}

// deleteVolumes removes a node's volumes; missing ones are done.
func deleteVolumes(pool *libvirt.StoragePool, domain string) error {
	for _, name := range []string{overlayName(domain), seedName(domain)} {
		v, err := pool.LookupStorageVolByName(name)
		if err != nil {
			if isLibvirtCode(err, libvirt.ERR_NO_STORAGE_VOL) {
				continue
			}
			return lvError(err, "look up volume %s", name)
		}
		err = v.Delete(0)
		_ = v.Free()
		if err != nil && !isLibvirtCode(err, libvirt.ERR_NO_STORAGE_VOL) {
			return lvError(err, "delete volume %s", name)
		}
	}
	return nil
}
