package seed

import (
	"reflect"
	"strings"
	"testing"
)

func TestFilesParseRoundTrip(t *testing.T) {
	in := Seed{InstanceID: "necos.s.p.core_vm-1.abcd", Hostname: "core_vm-1",
		AuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRbp19DDs6p4gHsUXgcBq+0AN5SKJZ3GccXam7P8aOS part"},
		HostKey:        "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
		HostKeyPublic:  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRbp19DDs6p4gHsUXgcBq+0AN5SKJZ3GccXam7P8aOS host",
		Interfaces: []Interface{{Name: "eth0", MAC: "52:54:00:12:34:56", Addresses: []string{"10.10.1.2/16"},
			Gateway: "10.10.1.1", Routes: []Route{{To: "10.20.0.0/16"}}}}}
	meta, user, network, err := in.Files()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(user), "#cloud-config\n") || !strings.Contains(string(user), "disable_root: false") {
		t.Errorf("user-data is not cloud-config for root:\n%s", user)
	}
	if !strings.Contains(string(network), `macaddress: "52:54:00:12:34:56"`) || !strings.Contains(string(network), "version: 2") {
		t.Errorf("network-config:\n%s", network)
	}
	out, err := Parse(meta, user, network)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestBadSeedNamesEveryField(t *testing.T) {
	_, _, _, err := Seed{Hostname: "a b", Interfaces: []Interface{{Addresses: []string{"10.0.0.1"}, Gateway: "x"}},
		HostKey: "k"}.Files()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"instance_id", "hostname", "addresses[0]", "gateway", "host_key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestParseRefusesOtherFormats(t *testing.T) {
	if _, err := Parse([]byte("instance-id: i\nlocal-hostname: h\n"), []byte("#!/bin/sh\necho hi\n"), nil); err == nil {
		t.Error("a user-data script was accepted")
	}
	if _, err := Parse([]byte("instance-id: i\nlocal-hostname: h\n"), nil, []byte("version: 1\nconfig: []\n")); err == nil {
		t.Error("network-config v1 was accepted")
	}
}
