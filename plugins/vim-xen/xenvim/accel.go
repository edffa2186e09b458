package xenvim

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"libvirt.org/go/libvirt"
)

// Choosing between KVM and TCG on a qemu:// host. libvirt's capabilities offer KVM
// whenever /dev/kvm opens, which says nothing about whether a guest runs under it: a
// nested host without the processor features KVM needs refuses the guest's CPU ("failed
// to set MSR") or lets it hang at its first instruction. So the plugin boots a probe
// guest under KVM once per URI and process, and picks KVM only when the guest really
// executes code; otherwise it uses TCG, software emulation, which runs everywhere.

// probeTimeout bounds the wait for a probe guest's firmware to write to its memory;
// under KVM it does so within milliseconds.
const probeTimeout = 5 * time.Second

// accelChoice is a decision and why it was made.
type accelChoice struct {
	domainType string
	why        string
}

// chooseAccel decides the domain type of a qemu:// host from its capabilities and, when
// they offer KVM, a probe that boots a guest under it (nil: ran).
func chooseAccel(caps string, probe func() error) accelChoice {
	if !strings.Contains(caps, "<domain type='kvm'") {
		return accelChoice{"qemu", "the host offers no KVM: TCG (software emulation)"}
	}
	if err := probe(); err != nil {
		return accelChoice{"qemu", fmt.Sprintf("KVM is offered but a probe guest does not run under it (%v): TCG (software emulation)", err)}
	}
	return accelChoice{"kvm", "a probe guest ran under KVM"}
}

// accelCache remembers each URI's decision for the life of the process: a probe costs a
// guest's start.
var accelCache struct {
	sync.Mutex
	m map[string]accelChoice
}

// qemuDomainType picks kvm or qemu for a qemu:// connection (see chooseAccel), once per
// URI, and logs which and why.
func qemuDomainType(conn *libvirt.Connect, uri string, log hclog.Logger) string {
	accelCache.Lock()
	defer accelCache.Unlock()
	if c, ok := accelCache.m[uri]; ok {
		return c.domainType
	}
	caps, err := conn.GetCapabilities()
	if err != nil {
		log.Warn("cannot read the host's capabilities: TCG", "uri", uri, "error", err)
		return "qemu" // not cached: the next Configure asks again
	}
	start := time.Now()
	c := chooseAccel(caps, func() error { return probeGuest(conn, probeName("kvm"), "kvm", probeTimeout) })
	log.Info("domain type chosen", "uri", uri, "domain_type", c.domainType, "why", c.why,
		"took", time.Since(start).Round(time.Millisecond))
	if accelCache.m == nil {
		accelCache.m = map[string]accelChoice{}
	}
	accelCache.m[uri] = c
	return c.domainType
}

// probeName names a probe guest; never "necos." (namePrefix), so no listing takes it
// for a node.
func probeName(domainType string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "necos-probe-" + domainType + "-" + hex.EncodeToString(b)
}

// probeXML is a guest without disks or NICs: its firmware starts, finds nothing to boot
// and waits. The CPU is the one the plugin gives guests of the type.
func probeXML(name, domainType string) string {
	cpu := "host-passthrough"
	if domainType == "qemu" {
		cpu = "maximum"
	}
	return fmt.Sprintf(`<domain type='%s'><name>%s</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>`+
		`<os><type machine='q35'>hvm</type></os><cpu mode='%s'/>`+
		`<devices><memballoon model='none'/></devices></domain>`, domainType, name, cpu)
}

// probeGuest starts a transient guest of domainType and waits until its firmware has
// written its interrupt vector table (the first KiB of memory, zero until then): proof
// that the guest executes instructions. The guest is destroyed in any case (and by
// libvirt should this process die meanwhile: it is bound to the connection).
func probeGuest(conn *libvirt.Connect, name, domainType string, timeout time.Duration) error {
	dom, err := conn.DomainCreateXML(probeXML(name, domainType), libvirt.DOMAIN_START_AUTODESTROY)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer func() {
		_ = dom.Destroy()
		_ = dom.Free()
	}()
	deadline := time.Now().Add(timeout)
	for {
		if st, reason, err := dom.GetState(); err == nil && st != libvirt.DOMAIN_RUNNING {
			return fmt.Errorf("guest %s in state %d (reason %d)", name, st, reason)
		}
		mem, err := dom.MemoryPeek(0, 1024, libvirt.MEMORY_PHYSICAL)
		if err != nil {
			return fmt.Errorf("read guest memory: %w", err)
		}
		for _, x := range mem {
			if x != 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("its firmware did not run within " + timeout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
