package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/sdk/nsnet"
	"github.com/necos/necos/sdk/plugintest"
	"golang.org/x/crypto/ssh"
)

// guestCatalogue is the default catalogue's federation with real guests under QEMU.
func guestCatalogue(t *testing.T, fed *federation) string {
	t.Helper()
	img, uri := os.Getenv("NECOS_GUEST_IMAGE"), os.Getenv("NECOS_QEMU_URI")
	if img == "" || uri == "" {
		plugintest.NeedBackend(t, "NECOS_GUEST_IMAGE and NECOS_QEMU_URI (scripts/guest-image.sh, scripts/qemu.sh)")
	}
	keys := t.TempDir()
	var b strings.Builder
	b.WriteString("providers:\n")
	for i, s := range demoSites {
		fmt.Fprintf(&b, `  - name: %s
    location: %s
    dc:
      vim: xen-vim
      part_types: %s
      plugin: vim-xen
      config:
        uri: "%s"
        capacity: {cpus: 16, memory_mb: 32768, storage_gb: 400}
        max_node: {cpus: 4, memory_mb: 3072}
        price_per_node_day: %g
        subnet: 10.10.%d.0/24
        slice_network: 10.10.0.0/16
        storage_pool: necos-e2e
        storage_dir: /var/lib/necos/vim-xen/e2e-pool
        key_dir: %s
        images:
          necos-guest: &g%d {disk: %s/disk.qcow2, kernel: %s/vmlinuz, initrd: %s/initrd.img, cmdline: "console=ttyS0 quiet init_on_alloc=0 no5lvl"}
          core-vm-template: *g%d
          edge-vm-template: *g%d
    site: {underlay: %s, netns: %s}
`, s.Name, s.Location, s.Types, uri, s.Price, i+1, keys, i, img, img, img, i, i, s.Underlay, fed.netns(s.Name))
	}
	fmt.Fprintf(&b, `  - name: WAN
    location: AMERICA.BRAZIL
    wan:
      wim: VXLAN
      plugin: wan
      config:
        netns: ["%s-*"]
        provision_sites: {underlay_netns: %s, prefix_len: 24}
`, fed.prefix, fed.netns("underlay"))
	return b.String()
}

// guestSSH runs cmd on a node of a part of real guests, from the part's namespace, with
// the part's key and the node's pinned host key.
func guestSSH(t *testing.T, p v1.Part, node, cmd string) (string, error) {
	t.Helper()
	var ip string
	for _, n := range p.Nodes {
		if n.Name == node && len(n.IPs) > 0 {
			ip = n.IPs[0]
		}
	}
	if ip == "" || p.Credential == nil {
		t.Fatalf("part %s: no address for %s or no credential", p.Name, node)
	}
	var pinned ssh.PublicKey
	for _, line := range strings.Split(p.Attributes["ssh-known-hosts"], "\n") {
		if a, k, ok := strings.Cut(line, " "); ok && a == ip {
			pinned, _, _, _, _ = ssh.ParseAuthorizedKey([]byte(k))
		}
	}
	signer, err := ssh.ParsePrivateKey([]byte(p.Credential.Secret))
	if err != nil || pinned == nil {
		t.Fatalf("part %s: key %v, pinned host key %v", p.Name, err, pinned)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := nsnet.Dial(ctx, "tcp", nsnet.Endpoint{Netns: p.Attributes["netns"], Addr: ip + ":22"})
	if err != nil {
		return "", err
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, ip, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(pinned), HostKeyAlgorithms: []string{pinned.Type()}, Timeout: 15 * time.Second})
	if err != nil {
		conn.Close()
		return "", err
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

// The all-VM Touristic CDN on real guests: from the core guest, each edge guest answers
// ping and a TCP transfer across its link runs at the link's bandwidth; decommission
// leaves no domain.
func TestRealGuestsCDN(t *testing.T) {
	needRoot(t)
	fed := newFederation(t)
	d := startDaemon(t, guestCatalogue(t, fed))
	doc, err := os.ReadFile(root() + "/examples/slices/touristic-cdn-xen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := d.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", doc)
	d.expect(r, 201, "create the CDN slice")
	var s v1.Slice
	r.json(t, &s)
	t.Logf("4-part slice Ready in %s", time.Since(start))
	s = getSlice(t, d, "demo", s.ID)
	parts := map[string]v1.Part{}
	for _, p := range s.Parts {
		parts[p.Name] = p
	}
	core := parts["core-dc"]
	if len(core.Nodes) == 0 {
		t.Fatalf("no core part in %+v", s.Parts)
	}
	coreNode := core.Nodes[0].Name
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := guestSSH(t, core, coreNode, "true"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("core guest never answered SSH: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, l := range s.Links {
		edgeName := l.Ends[1].Part
		if edgeName == core.Name {
			edgeName = l.Ends[0].Part
		}
		edge := parts[edgeName]
		en := edge.Nodes[0]
		for deadline := time.Now().Add(90 * time.Second); ; {
			out, err := guestSSH(t, core, coreNode, "ping -c 1 -W 2 "+en.IPs[0])
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("core cannot ping %s (%s) across %s: %v %s", edgeName, en.IPs[0], l.Name, err, out)
			}
		}
		// The edge answers pings once its kernel is up; its sshd may start a moment later.
		for deadline := time.Now().Add(90 * time.Second); ; {
			out, err := guestSSH(t, edge, en.Name, "(necos-guest recv 5001 >/tmp/recv.log 2>&1 &) ; sleep 0.5")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("start the receiver on %s: %v %s", edgeName, err, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
		out, err := guestSSH(t, core, coreNode, "necos-guest send "+en.IPs[0]+":5001 5")
		if err != nil {
			t.Fatalf("transfer to %s: %v %s", edgeName, err, out)
		}
		i := strings.Index(out, "mbps=")
		mbps, _ := strconv.ParseFloat(strings.TrimSpace(out[i+5:]), 64)
		want := float64(l.BandwidthBps) / 1e6
		t.Logf("link %s (%s): %.1f Mbit/s, limit %.0f", l.Name, edgeName, mbps, want)
		if mbps < want*0.9 || mbps > want*1.1 {
			t.Errorf("link %s: %.1f Mbit/s, want %.0f ±10%%", l.Name, mbps, want)
		}
	}
	d.expect(d.do("demo", "DELETE", "/v1/slices/"+s.ID+"?wait=true", "", nil), 204, "decommission")
	if left := domains(t, os.Getenv("NECOS_QEMU_URI"), s.ID); len(left) != 0 {
		t.Errorf("domains left: %+v", left)
	}
}
