package influxtest

import (
	"net"
	"net/url"
	"strconv"
	"testing"
)

// TestStartOnAPortTakenMeanwhile: a port taken between its choice and influxd's bind
// (by another test process's server) costs a restart on other ports, not the test.
func TestStartOnAPortTakenMeanwhile(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	first := true
	pickPort = func(t testing.TB) int {
		if first {
			first = false
			return port
		}
		return freePort(t)
	}
	defer func() { pickPort = freePort }()
	s := Start(t)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == strconv.Itoa(port) {
		t.Fatalf("influxd at %s, the taken port", s.URL)
	}
	if first {
		t.Fatal("the taken port was never handed out")
	}
}
