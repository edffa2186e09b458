// Package xenvim is the necos VIM plugin for Xen hosts, driven through libvirt: a DC
// slice part is one libvirt domain per VDU instance.
//
// The plugin keeps no state of its own. Each domain carries libvirt metadata in the
// [Namespace] XML namespace naming its provider, slice, part, VDU, node, type, storage
// and address, plus a copy of the part's record (its VDU templates as created, resized
// and scaled). After any restart the plugin lists the host's domains and finds its
// parts, and what they use of the provider's capacity, in that metadata.
//
// Sizing: a node's domain has the VDU's vCPUs and memory as its current values, and the
// provider's max_node (default: the whole capacity) as its maximum vCPUs and maximum
// memory, so Resize can grow a running node without a restart. On Xen the maximum memory
// is the balloon ceiling: guests need a balloon driver (every PVHVM Linux has one). The
// VDU's storage is recorded in the metadata and counted against the capacity; the plugin
// attaches no disk.
//
// Addresses: with a subnet configured, each node gets the lowest free address of it,
// recorded in the metadata (the test driver reports no guest addresses). On Xen the
// address is also set on the node's NIC (<ip>), which libxl hands to the vif and its
// scripts; the guest image configures it (e.g. cloud-init). QEMU refuses addresses on
// bridged NICs, so there it is only recorded.
//
// Capacity: creates, scale-ups and resizes of one plugin process are serialized between
// the capacity check and the define, so concurrent requests never exceed the capacity.
// Two processes serving one provider on one host are not coordinated.
package xenvim

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// Name is the plugin's name.
const Name = "vim-xen"

// Version is the plugin's version.
const Version = "0.1.0"

// Plugin is the Xen VIM plugin. It implements [sdk.Plugin], [sdk.VIM], [sdk.Deployer]
// (commands over SSH, see deploy.go) and io.Closer.
type Plugin struct {
	log hclog.Logger

	mu   sync.Mutex // guards set, conn
	set  *settings
	conn *libvirt.Connect

	// capMu serializes every capacity check with the change it allows (define, resize),
	// so concurrent requests cannot both take the last free resources.
	capMu sync.Mutex
	// parts serializes the calls on one part (Create, Resize, Scale, Delete).
	parts keyedMutex

	cpu cpuTracker
	// index holds what the provider's domains hold of its capacity (index.go).
	index domainIndex
	// names remembers each part's domain names, so a part is read by name (inventory.go).
	names partNames

	// deploys holds the deployments this process ran or runs (see deploy.go).
	deploys deployTable

	// store remembers the images' base volumes (storage.go).
	store storage
}

var (
	_ sdk.Plugin   = (*Plugin)(nil)
	_ sdk.VIM      = (*Plugin)(nil)
	_ sdk.Deployer = (*Plugin)(nil)
)

// New returns an unconfigured plugin logging to logger (nil: [sdk.Logger]).
func New(logger hclog.Logger) *Plugin {
	if logger == nil {
		logger = sdk.Logger(Name)
	}
	return &Plugin{log: logger}
}

// Info says who the plugin is.
func (p *Plugin) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:        Name,
		Version:     Version,
		Description: "DC slice parts as libvirt domains on a Xen host (one per VDU instance)",
		Kinds:       []sdk.Kind{sdk.KindVIM, sdk.KindDeployer},
	}, nil
}

// ConfigSchema describes the configuration (see [Config]).
func (p *Plugin) ConfigSchema(context.Context) (sdk.ConfigSchema, error) { return schema, nil }

// Configure checks the configuration and connects to libvirt.
func (p *Plugin) Configure(_ context.Context, cfg sdk.Config) error {
	var c Config
	if err := cfg.Decode(&c); err != nil {
		return err
	}
	s, err := c.check(cfg.Provider)
	if err != nil {
		return err
	}
	conn, err := libvirt.NewConnect(s.uri)
	if err != nil {
		return lvError(err, "connect to %s", s.uri)
	}
	if s.domainType == "" {
		s.domainType = qemuDomainType(conn, s.uri, p.log)
	}
	// A domain cannot have more vCPUs than the hypervisor allows for its type.
	if n, err := conn.GetMaxVcpus(s.domainType); err == nil && n > 0 && s.maxCPUs > n {
		s.maxCPUs = n
	}
	p.mu.Lock()
	old := p.conn
	p.set, p.conn = &s, conn
	p.mu.Unlock()
	if old != nil {
		_, _ = old.Close()
	}
	// The usage index, from one listing of the host's domains (index.go).
	p.index.invalidate()
	if err := p.ensureIndex(conn, &s); err != nil {
		p.log.Warn("reading the provider's domains (again at the next call)", "error", err)
	}
	p.log.Info("configured", "uri", s.uri, "domain_type", s.domainType, "provider", s.provider.Name,
		"cpus", s.capacity.CPUs, "memory_mb", s.capacity.MemoryMB, "storage_gb", s.capacity.StorageGB,
		"subnet", s.subnet)
	if s.guests {
		// What a killed predecessor left of its parts' networks (sweep.go).
		if r, err := p.sweep(conn, &s); err != nil {
			p.log.Warn("sweeping what parts without domains left", "error", err,
				"taps", r.Taps, "bridges", r.Bridges, "endpoints", r.Endpoints, "volumes", r.Volumes)
		} else if r.total() > 0 {
			p.log.Info("swept what parts without domains left", "taps", r.Taps, "bridges", r.Bridges,
				"endpoints", r.Endpoints, "volumes", r.Volumes)
		}
	}
	return nil
}

// Close closes the libvirt connection. The domains keep running.
func (p *Plugin) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return nil
	}
	_, err := p.conn.Close()
	p.conn = nil
	if err != nil {
		return fmt.Errorf("close libvirt connection: %w", err)
	}
	return nil
}

// session returns the settings and a live connection, reconnecting when the old one
// died (e.g. libvirtd restarted).
func (p *Plugin) session() (*settings, *libvirt.Connect, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set == nil {
		return nil, nil, sdk.Errorf(sdk.CodeFailedPrecondition, "%s is not configured", Name)
	}
	if p.conn != nil {
		// IsAlive alone misses a daemon that went away while no call was in flight (no
		// event loop runs keepalives), so ask the other side something cheap.
		if alive, err := p.conn.IsAlive(); err == nil && alive {
			if _, err := p.conn.GetLibVersion(); err == nil {
				return p.set, p.conn, nil
			}
		}
		p.log.Warn("libvirt connection lost, reconnecting", "uri", p.set.uri)
		_, _ = p.conn.Close()
		p.conn = nil
	}
	conn, err := libvirt.NewConnect(p.set.uri)
	if err != nil {
		return nil, nil, lvError(err, "connect to %s", p.set.uri)
	}
	p.conn = conn
	return p.set, conn, nil
}

// lvError gives a libvirt error the code the core acts on, with context.
func lvError(err error, format string, args ...any) error {
	code := sdk.CodeInternal
	var le libvirt.Error
	if errors.As(err, &le) {
		switch le.Code {
		case libvirt.ERR_NO_DOMAIN:
			code = sdk.CodeNotFound
		case libvirt.ERR_NO_CONNECT, libvirt.ERR_INVALID_CONN, libvirt.ERR_RPC, libvirt.ERR_SYSTEM_ERROR,
			libvirt.ERR_AUTH_FAILED, libvirt.ERR_OPERATION_TIMEOUT:
			code = sdk.CodeUnavailable
		case libvirt.ERR_NO_SUPPORT, libvirt.ERR_OPERATION_UNSUPPORTED, libvirt.ERR_CONFIG_UNSUPPORTED:
			code = sdk.CodeFailedPrecondition
		}
	} else if c := sdk.CodeOf(err); c != sdk.CodeUnknown {
		code = c
	}
	return sdk.Errorf(code, "%s: %v", fmt.Sprintf(format, args...), err)
}

func isLibvirtCode(err error, codes ...libvirt.ErrorNumber) bool {
	var le libvirt.Error
	if !errors.As(err, &le) {
		return false
	}
	for _, c := range codes {
		if le.Code == c {
			return true
		}
	}
	return false
}

// keyedMutex is a mutex per part, dropped when nobody holds or waits for it.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[sdk.PartRef]*refLock
}

type refLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(ref sdk.PartRef) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[sdk.PartRef]*refLock{}
	}
	l := k.locks[ref]
	if l == nil {
		l = &refLock{}
		k.locks[ref] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, ref)
		}
		k.mu.Unlock()
	}
}
