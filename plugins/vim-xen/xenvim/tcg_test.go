package xenvim

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/necos/necos/sdk"
)

func TestTCGEmulatorConfig(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "qemu"), filepath.Join(dir, "notes")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TCG_TEST_DIR", dir)
	_, defErr := os.Stat(DefaultTCGEmulator)
	def := ""
	if defErr == nil {
		def = DefaultTCGEmulator
	}
	for _, tc := range []struct {
		in, want, bad string
	}{
		{in: "", want: def}, // the installed wrapper, else libvirt's
		{in: "libvirt", want: ""},
		{in: exe, want: exe},
		{in: "${TCG_TEST_DIR}/qemu", want: exe},
		{in: "qemu-system-x86_64", bad: "tcg_emulator: expected an absolute path"},
		{in: plain, bad: "tcg_emulator: " + plain + " is not an executable file"},
		{in: filepath.Join(dir, "none"), bad: "tcg_emulator: stat"},
	} {
		s, err := Config{URI: "qemu:///system", Capacity: Capacity{CPUs: 1, MemoryMB: 1}, TCGEmulator: tc.in}.check(sdk.Provider{Name: "p"})
		switch {
		case tc.bad != "":
			if sdk.CodeOf(err) != sdk.CodeInvalidArgument || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%q: got %v, want an error with %q", tc.in, err, tc.bad)
			}
		case err != nil || s.tcgEmulator != tc.want:
			t.Errorf("%q: emulator %q (%v), want %q", tc.in, s.tcgEmulator, err, tc.want)
		}
	}
}

func TestTCGGuestXMLNamesTheEmulator(t *testing.T) {
	for _, tc := range []struct {
		typ, emulator string
		want          bool
	}{{"qemu", "/opt/q", true}, {"qemu", "", false}, {"kvm", "/opt/q", false}} {
		d := domainSpec{Name: "n", Type: tc.typ, CPUs: 1, MaxCPUs: 4, MemoryMB: 256, MaxMemMB: 1024,
			Guest: &guestSpec{Kernel: "/k", Seed: "/s", Tap: "t", MAC: "52:54:00:00:00:01",
				Emulated: tc.typ == "qemu", Emulator: tc.emulator}}
		x, err := d.xml()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(x, "<emulator>/opt/q</emulator>"); got != tc.want {
			t.Errorf("%s with emulator %q: <emulator> present %v:\n%s", tc.typ, tc.emulator, got, x)
		}
		if strings.Contains(x, "<emulator></emulator>") {
			t.Errorf("empty <emulator> element:\n%s", x)
		}
	}
}

// The wrapper (scripts/qemu-tcg-single) adds thread=single to libvirt's -accel tcg and
// passes every other argument through unchanged, spaces and empty ones included.
func TestTCGWrapperArguments(t *testing.T) {
	src, err := os.ReadFile("../../../scripts/qemu-tcg-single")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The real QEMU replaced by a program printing one argument a line.
	printer := filepath.Join(dir, "print")
	if err := os.WriteFile(printer, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '<%s>\\n' \"$a\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "wrapper")
	if err := os.WriteFile(wrapper, []byte(strings.ReplaceAll(string(src), "@QEMU@", printer)), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args, want []string
	}{
		{[]string{"-name", "guest=a b", "-accel", "tcg,tb-size=32", "-append", "", "-m", "1024"},
			[]string{"-name", "guest=a b", "-accel", "tcg,tb-size=32,thread=single", "-append", "", "-m", "1024"}},
		{[]string{"-accel", "tcg"}, []string{"-accel", "tcg,thread=single"}},
		{[]string{"-accel", "tcg,thread=multi"}, []string{"-accel", "tcg,thread=multi"}},
		{[]string{"-accel", "kvm", "-accel", "tcgx", "tcg"}, []string{"-accel", "kvm", "-accel", "tcgx", "tcg"}},
		// libvirt's capability probing.
		{[]string{"-S", "-no-user-config", "-machine", "none,accel=kvm:tcg", "-qmp", "unix:/x/qmp.monitor,server=on,wait=off"},
			[]string{"-S", "-no-user-config", "-machine", "none,accel=kvm:tcg", "-qmp", "unix:/x/qmp.monitor,server=on,wait=off"}},
	} {
		out, err := exec.Command(wrapper, tc.args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for _, a := range tc.want {
			want.WriteString("<" + a + ">\n")
		}
		if string(out) != want.String() {
			t.Errorf("%q: qemu got\n%s\nwant\n%s", tc.args, out, want.String())
		}
	}
}

// A TCG guest's translation cache is tcg_cache_mb (the default when unset).
func TestTCGCacheSize(t *testing.T) {
	for _, tc := range []struct {
		cache int
		want  string
	}{{0, fmt.Sprintf("<tb-cache unit=\"MiB\">%d</tb-cache>", DefaultTCGCacheMB)}, {16, "<tb-cache unit=\"MiB\">16</tb-cache>"}} {
		d := domainSpec{Name: "n", Type: "qemu", CPUs: 1, MaxCPUs: 4, MemoryMB: 256, MaxMemMB: 1024,
			Guest: &guestSpec{Kernel: "/k", Seed: "/s", Tap: "t", MAC: "52:54:00:00:00:01", Emulated: true, TCGCacheMB: tc.cache}}
		x, err := d.xml()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(x, tc.want) {
			t.Errorf("tcg_cache_mb %d: no %s in\n%s", tc.cache, tc.want, x)
		}
	}
}

// A QEMU guest booting a kernel directly runs boot_firmware, with QEMU's ACPI tables
// (qboot makes none); without it, and on Xen or for a guest booting its disk, libvirt
// picks. A tap NIC has no option ROM.
func TestBootFirmware(t *testing.T) {
	for _, tc := range []struct {
		name             string
		typ, kernel, fw  string
		loader, noLoader bool
	}{
		{name: "qboot", typ: "qemu", kernel: "/k", fw: QbootFirmware, loader: true},
		{name: "libvirt's", typ: "qemu", kernel: "/k", noLoader: true},
		{name: "disk boot", typ: "kvm", fw: QbootFirmware, noLoader: true},
		{name: "xen", typ: "xen", kernel: "/k", fw: QbootFirmware, noLoader: true},
	} {
		g := &guestSpec{Kernel: tc.kernel, Seed: "/s", Tap: "t", MAC: "52:54:00:00:00:01", Emulated: tc.typ == "qemu", Firmware: tc.fw}
		if tc.typ == "xen" {
			g.Tap, g.Bridge = "", "br0"
		}
		d := domainSpec{Name: "n", Type: tc.typ, CPUs: 1, MaxCPUs: 4, MemoryMB: 256, MaxMemMB: 1024, Guest: g}
		x, err := d.xml()
		if err != nil {
			t.Fatal(err)
		}
		loader := `<loader type="rom" readonly="yes">` + QbootFirmware + `</loader>`
		if got := strings.Contains(x, loader) && strings.Contains(x, "<acpi></acpi>"); got != tc.loader {
			t.Errorf("%s: loader and ACPI %v, want %v in\n%s", tc.name, got, tc.loader, x)
		}
		if tc.noLoader && (strings.Contains(x, "<loader") || strings.Contains(x, "<acpi")) {
			t.Errorf("%s: a loader or ACPI in\n%s", tc.name, x)
		}
		if rom := strings.Contains(x, `<rom enabled="no"></rom>`); rom != (tc.typ != "xen") {
			t.Errorf("%s: NIC option ROM disabled %v in\n%s", tc.name, rom, x)
		}
	}
}
