package xenvim

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/necos/necos/sdk/plugintest"
	"libvirt.org/go/libvirt"
)

func TestChooseAccel(t *testing.T) {
	const kvmCaps = "<capabilities><guest><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest></capabilities>"
	const tcgCaps = "<capabilities><guest><arch name='x86_64'><domain type='qemu'/></arch></guest></capabilities>"
	for _, tc := range []struct {
		name     string
		caps     string
		probe    error
		want     string
		why      string
		probed   bool
		whyNotIn string
	}{
		{name: "no KVM offered", caps: tcgCaps, want: "qemu", why: "offers no KVM"},
		{name: "KVM runs", caps: kvmCaps, want: "kvm", why: "ran under KVM", probed: true},
		{name: "KVM refuses the CPU", caps: kvmCaps, probe: errors.New("start: failed to set MSR 0x10a"),
			want: "qemu", why: "failed to set MSR 0x10a", probed: true},
		{name: "KVM hangs", caps: kvmCaps, probe: errors.New("its firmware did not run within 5s"),
			want: "qemu", why: "did not run", probed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probed := false
			c := chooseAccel(tc.caps, func() error { probed = true; return tc.probe })
			if c.domainType != tc.want || !strings.Contains(c.why, tc.why) {
				t.Errorf("got %q (%s), want %q (…%s…)", c.domainType, c.why, tc.want, tc.why)
			}
			if probed != tc.probed {
				t.Errorf("probed %v, want %v", probed, tc.probed)
			}
		})
	}
}

// The probe against the real QEMU driver: a TCG guest is seen running (so a probe that
// fails says something about KVM, not about the probe), the type the plugin picks runs
// a guest too, and no probe guest is left behind.
func TestProbeGuestReal(t *testing.T) {
	uri := os.Getenv(envQemuURI)
	if uri == "" {
		plugintest.NeedBackend(t, envQemuURI+" (scripts/qemu.sh)")
	}
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	name := probeName("qemu")
	if err := probeGuest(conn, name, "qemu", 60*time.Second); err != nil {
		t.Fatalf("a TCG probe guest did not run: %v", err)
	}
	if d, err := conn.LookupDomainByName(name); err == nil {
		_ = d.Free()
		t.Errorf("probe guest %s left behind", name)
	}
	picked := qemuDomainType(conn, uri, plugintest.TestLogger(t))
	if picked != "kvm" && picked != "qemu" {
		t.Fatalf("picked %q", picked)
	}
	if err := probeGuest(conn, probeName(picked), picked, 60*time.Second); err != nil {
		t.Errorf("the picked type %s does not run a guest: %v", picked, err)
	}
	t.Logf("picked %s", picked)
}
