package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/sdk/nsnet"
)

// cdnVisitor is a browser in a part's namespace (the place the part is at) that looks
// names up at the CDN's DNS, the core guest.
type cdnVisitor struct {
	netns, dns string
	client     *http.Client
}

func newCDNVisitor(netnsName, coreIP string) *cdnVisitor {
	v := &cdnVisitor{netns: netnsName, dns: net.JoinHostPort(coreIP, "53")}
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return nsnet.Dial(ctx, "udp", nsnet.Endpoint{Netns: v.netns, Addr: v.dns})
	}}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		ips, err := res.LookupHost(ctx, host)
		if err != nil {
			return nil, err
		}
		return nsnet.Dial(ctx, network, nsnet.Endpoint{Netns: v.netns, Addr: net.JoinHostPort(ips[0], port)})
	}
	v.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	return v
}

// get fetches url and returns who served it (X-CDN-Server) and the body.
func (v *cdnVisitor) get(url string) (server, body string, err error) {
	resp, err := v.client.Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.Header.Get("X-CDN-Server"), string(b), fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return resp.Header.Get("X-CDN-Server"), string(b), nil
}

// waitSSH waits until every node of the slice's parts answers SSH: a deployment dials
// each node once, and a guest still booting refuses.
func waitSSH(t *testing.T, s v1.Slice, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, p := range s.Parts {
		for _, n := range p.Nodes {
			for {
				_, err := guestSSH(t, p, n.Name, "true")
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s/%s never answered SSH: %v", p.Name, n.Name, err)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
}

// The Touristic CDN service on real guests, deployed by examples/services: a visitor at
// each edge's place asking for the place's content is served by that edge (the core's DNS
// sends it there), asking for the general pages by the core, and asking the edge for
// another place's content is sent on to the core; the core's page is reachable from the
// host through a loopback forwarder.
func TestRealGuestsCDNService(t *testing.T) {
	needRoot(t)
	fed := newFederation(t)
	d := startDaemon(t, guestCatalogue(t, fed))
	start := time.Now()
	r := d.do("demo", "POST", "/v1/slices?wait=true", "application/yaml", example(t, "touristic-cdn-xen.yaml"))
	d.expect(r, 201, "create the CDN slice")
	var s v1.Slice
	r.json(t, &s)
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			d.do("demo", "DELETE", "/v1/slices/"+s.ID+"?wait=true", "", nil)
		}
	})
	t.Logf("slice Ready in %s", time.Since(start))
	s = getSlice(t, d, "demo", s.ID)
	waitSSH(t, s, 2*time.Minute)
	t.Logf("every guest answers SSH after %s", time.Since(start))

	svc, err := os.ReadFile(root() + "/examples/services/touristic-cdn-xen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	deployStart := time.Now()
	r = d.do("demo", "POST", "/v1/slices/"+s.ID+"/services?wait=true", "application/yaml", svc)
	if r.Status != 201 {
		t.Fatalf("deploy the CDN service: HTTP %d: %s", r.Status, r.Body)
	}
	t.Logf("service deployed in %s", time.Since(deployStart))

	parts := map[string]v1.Part{}
	for _, p := range s.Parts {
		parts[p.Name] = p
	}
	core := parts["core-dc"]
	coreIP := core.Nodes[0].IPs[0]
	for _, place := range []string{"spain", "greece", "brazil"} {
		edge := parts["edge-dc-slice-"+place]
		v := newCDNVisitor(edge.Attributes["netns"], coreIP)
		server, body, err := v.get("http://" + place + ".cdn.touristic.example/")
		if err != nil {
			t.Fatalf("%s visitor, local content: %v (%s)", place, err, server)
		}
		if !strings.HasPrefix(server, edge.Name+"/") || !strings.Contains(body, "edge") {
			t.Errorf("%s visitor, local content served by %q: %q; want the %s edge", place, server, body, edge.Name)
		}
		server, body, err = v.get("http://" + place + ".cdn.touristic.example/videos/" + place + ".ts")
		if err != nil || !strings.HasPrefix(server, edge.Name+"/") || len(body) != 262144 {
			t.Errorf("%s visitor, local video: %v, served by %q, %d bytes", place, err, server, len(body))
		}
		server, body, err = v.get("http://www.cdn.touristic.example/")
		if err != nil || !strings.HasPrefix(server, "core-dc/") || !strings.Contains(body, "Touristic CDN") {
			t.Errorf("%s visitor, the general page: %v, served by %q: %q; want the core", place, err, server, body)
		}
		other := map[string]string{"spain": "greece", "greece": "brazil", "brazil": "spain"}[place]
		// Asked of the local edge (by its address), another place's page comes from the core.
		edgeIP := edge.Nodes[0].IPs[0]
		server, body, err = v.get("http://" + edgeIP + "/" + other + "/")
		if err != nil || !strings.HasPrefix(server, "core-dc/") || !strings.Contains(body, "From the core") {
			t.Errorf("%s visitor, %s content at its edge: %v, served by %q: %q; want the core", place, other, err, server, body)
		}
		t.Logf("%s visitor: local content from %s, other content from the core", place, edge.Name)
	}

	// From the host: a loopback forwarder to the core's web server (the demo uses 60080).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := nsnet.Forward(ctx, nsnet.Endpoint{Addr: "127.0.0.1:0"},
		nsnet.Endpoint{Netns: core.Attributes["netns"], Addr: net.JoinHostPort(coreIP, "80")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	resp, err := http.Get("http://" + f.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("X-CDN-Server"), "core-dc/") || !strings.Contains(string(b), "Touristic CDN") {
		t.Errorf("the core's page through the forwarder: %d %q %s", resp.StatusCode, resp.Header.Get("X-CDN-Server"), b)
	}

	deleted = true
	d.expect(d.do("demo", "DELETE", "/v1/slices/"+s.ID+"?wait=true", "", nil), 204, "decommission")
	if left := domains(t, os.Getenv("NECOS_QEMU_URI"), s.ID); len(left) != 0 {
		t.Errorf("domains left: %+v", left)
	}
	assertNoWANDevices(t, fed)
}
