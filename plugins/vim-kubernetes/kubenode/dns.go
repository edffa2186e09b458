package kubenode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/necos/necos/sdk/nsnet"
)

// The cluster's DNS: what CoreDNS's kubernetes plugin answers for Services, and nothing
// more. Pods name another namespace's Service as <service>.<namespace>.svc.<ClusterDomain>
// (a slice's edge names its core's history so, the namespace being a service-file
// reference), which the Service's environment variables cannot do (they only hold the
// pod's own namespace's Services). It is served from the hub namespace on the hub's
// address, every node's and pod's router, so no Service or kube-proxy rule is needed to
// reach it; the kubelets write it into every pod's resolv.conf (clusterDNS). It runs in
// the data plane's own process: nothing to build or start. Names outside the cluster
// domain get NXDOMAIN: pods reach nothing outside the cluster's namespaces. Answers come
// from a watched cache of the cluster's Services (an informer), not a request to the API
// server per query: the admin client is rate limited (5 requests a second by default),
// which made a lookup (A and AAAA) take 400 ms.
const (
	// ClusterDomain is the cluster's DNS domain, as in most clusters.
	ClusterDomain = "cluster.local"
	dnsPort       = 53
	// dnsTTL is short: a Service deleted and made again gets another ClusterIP.
	dnsTTL = 5
)

// DNSServer is the hub's DNS server (UDP only: its answers are one address each).
type DNSServer struct {
	conn     net.PacketConn
	services corelisters.ServiceLister
	informer informers.SharedInformerFactory
	stop     chan struct{}
	wg       sync.WaitGroup
}

// startDNS listens on the hub's address inside the hub namespace and answers for the
// cluster's Services from cs.
func startDNS(ctx context.Context, hub string, cs kubernetes.Interface) (*DNSServer, error) {
	var conn net.PacketConn
	err := nsnet.In(hub, func() error {
		c, err := net.ListenPacket("udp4", net.JoinHostPort(hubIP, fmt.Sprint(dnsPort)))
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kubenode: cluster DNS on %s:%d in %s: %w", hubIP, dnsPort, hub, err)
	}
	s := &DNSServer{conn: conn, stop: make(chan struct{})}
	f := informers.NewSharedInformerFactory(cs, 0)
	s.services, s.informer = f.Core().V1().Services().Lister(), f
	f.Start(s.stop)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			close(s.stop)
			f.Shutdown()
			conn.Close()
			return nil, fmt.Errorf("kubenode: cluster DNS: the %v cache did not fill within a minute", typ)
		}
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Close stops the server and waits for its queries to end.
func (s *DNSServer) Close() error {
	close(s.stop)
	s.informer.Shutdown()
	err := s.conn.Close()
	s.wg.Wait()
	return err
}

func (s *DNSServer) serve() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		q := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if out, err := s.answer(q); err == nil {
				_, _ = s.conn.WriteTo(out, from)
			}
		}()
	}
}

// answer builds the reply to one query message.
func (s *DNSServer) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	resp := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	ip, found, err := s.lookup(q.Name.String())
	switch {
	case err != nil:
		resp.RCode = dnsmessage.RCodeServerFailure
	case !found:
		resp.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, resp)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	// A name that exists has no AAAA (or other) record: an empty answer, not NXDOMAIN,
	// which would tell the resolver the name does not exist at all.
	if found && q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET {
		if err := b.StartAnswers(); err != nil {
			return nil, err
		}
		var a dnsmessage.AResource
		copy(a.A[:], ip.To4())
		if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}, a); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// lookup resolves <service>.<namespace>.svc.<ClusterDomain>. to the Service's ClusterIP.
func (s *DNSServer) lookup(name string) (net.IP, bool, error) {
	rest, ok := strings.CutSuffix(strings.ToLower(name), ".svc."+ClusterDomain+".")
	if !ok {
		return nil, false, nil
	}
	svc, ns, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(ns, ".") {
		return nil, false, nil
	}
	got, err := s.services.Services(ns).Get(svc)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	ip := net.ParseIP(got.Spec.ClusterIP).To4()
	if ip == nil {
		// Headless (None) or IPv6: nothing this server answers with.
		return nil, false, nil
	}
	return ip, true, nil
}
