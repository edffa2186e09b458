package kubenode

import (
	"net"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func TestDNSAnswers(t *testing.T) {
	cs := fake.NewSimpleClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "necos-s-core", Name: "history"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.42"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "necos-s-core", Name: "headless"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}},
	)
	f := informers.NewSharedInformerFactory(cs, 0)
	s := &DNSServer{services: f.Core().V1().Services().Lister()}
	stop := make(chan struct{})
	defer close(stop)
	f.Start(stop)
	f.WaitForCacheSync(stop)
	for _, tc := range []struct {
		name  string
		qtype dnsmessage.Type
		rcode dnsmessage.RCode
		ip    string // the A record, "" for no answer
	}{
		{"history.necos-s-core.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.0.0.42"},
		{"History.Necos-S-Core.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.0.0.42"},
		// The name exists: no AAAA, but no NXDOMAIN either.
		{"history.necos-s-core.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, ""},
		{"gui.necos-s-core.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		{"headless.necos-s-core.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		// A resolver's search-list tries, and names outside the cluster.
		{"history.necos-s-core.svc.cluster.local.necos-s-edge.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		{"necos-s-core.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		{"example.org.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
	} {
		t.Run(tc.name+"/"+tc.qtype.String(), func(t *testing.T) {
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
			_ = b.StartQuestions()
			_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(tc.name), Type: tc.qtype, Class: dnsmessage.ClassINET})
			q, err := b.Finish()
			if err != nil {
				t.Fatal(err)
			}
			out, err := s.answer(q)
			if err != nil {
				t.Fatal(err)
			}
			var m dnsmessage.Message
			if err := m.Unpack(out); err != nil {
				t.Fatal(err)
			}
			if m.ID != 7 || !m.Response || m.RCode != tc.rcode {
				t.Errorf("header %+v, want id 7, a response, rcode %v", m.Header, tc.rcode)
			}
			if len(m.Questions) != 1 || m.Questions[0].Name.String() != tc.name {
				t.Errorf("questions %+v, want the query's", m.Questions)
			}
			var ips []string
			for _, a := range m.Answers {
				if r, ok := a.Body.(*dnsmessage.AResource); ok {
					ips = append(ips, net.IP(r.A[:]).String())
				}
			}
			switch {
			case tc.ip == "" && len(m.Answers) != 0:
				t.Errorf("answers %+v, want none", m.Answers)
			case tc.ip != "" && (len(ips) != 1 || ips[0] != tc.ip):
				t.Errorf("A records %v, want %s", ips, tc.ip)
			}
		})
	}
	if _, err := s.answer([]byte{1, 2, 3}); err == nil {
		t.Error("a truncated message: no error")
	}
}
