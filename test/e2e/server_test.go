package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necos/necos/internal/pki"
)

// TestAPIOverTLS: with --tls-cert and --tls-key, necosd serves its API over HTTPS
// only, and necosctl reaches it with --ca-file.
func TestAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("e2e CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("necosd", []string{"127.0.0.1"}, pki.Server)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "necosd.crt"), filepath.Join(dir, "necosd.key")
	for f, b := range map[string][]byte{caFile: ca.CertPEM, certFile: cert, keyFile: key} {
		if err := pki.WriteFile(f, b); err != nil {
			t.Fatal(err)
		}
	}
	d := newDaemon(t, xenCatalogue(t, nil, ""), false)
	d.useTLS(certFile, keyFile, caFile)
	d.start()
	if !strings.Contains(d.log.String(), "api=https://"+d.addr) {
		t.Errorf("necosd does not announce its HTTPS address:\n%s", tail(d.log.String(), 20))
	}

	r := d.do("demo", "POST", "/v1/slices?wait=true", "text/x-yaml", exampleUnlinked(t, "touristic-cdn-xen.yaml"))
	d.expect(r, 201, "create over HTTPS")
	out, err := d.necosctl("demo", "slice", "list")
	if err != nil || !strings.Contains(out, "Ready") {
		t.Errorf("necosctl --ca-file slice list: %v\n%s", err, out)
	}
	// Plain HTTP gets no answer from the API.
	resp, err := http.Get("http://" + d.addr + "/v1/slices")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "slices") {
			t.Errorf("plain HTTP: %d %s", resp.StatusCode, b)
		}
	}
	for _, s := range listSlices(t, d, "demo") {
		d.expect(d.do("demo", "DELETE", "/v1/slices/"+s.ID+"?wait=true", "", nil), 204, "delete")
	}
}

// procStat returns how many open file descriptors a process has, its resident memory
// and its peak resident memory, in kB.
func procStat(pid int) (fds, rssKB, hwmKB int, err error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rssKB, _ = strconv.Atoi(f[1])
		case "VmHWM:":
			hwmKB, _ = strconv.Atoi(f[1])
		}
	}
	return len(ents), rssKB, hwmKB, nil
}

// TestSlowClientFlood floods necosd with connections that never finish a request:
// unauthenticated bodies sent a byte at a time (each answered 401 at once, then closed)
// and headers sent a byte at a time (each dropped after --read-header-timeout). necosd
// never holds more than --max-connections of them, and a tenant is served meanwhile.
func TestSlowClientFlood(t *testing.T) {
	const maxConns, flood = 64, 1000
	d := startDaemon(t, xenCatalogue(t, nil, ""), "--max-connections", strconv.Itoa(maxConns), "--read-header-timeout", "1s")
	pid := d.cmd.Process.Pid
	baseFDs, baseRSS, _, err := procStat(pid)
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	slow := func(i int) {
		defer wg.Done()
		c, err := net.Dial("tcp", d.addr)
		if err != nil {
			t.Errorf("dial: %v", err)
			return
		}
		defer c.Close()
		var msg string
		if i%2 == 0 {
			msg = "POST /v1/slices HTTP/1.1\r\nHost: necos\r\nContent-Type: text/x-yaml\r\nContent-Length: 100000\r\n\r\n"
		} else {
			msg = "GET /v1/slices HTTP/1.1\r\nHost: necos\r\nAuthorization: Bearer "
		}
		if _, err := io.WriteString(c, msg); err != nil {
			return
		}
		if i%2 == 0 {
			_ = c.SetReadDeadline(time.Now().Add(time.Minute))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode == http.StatusUnauthorized {
				mu.Lock()
				refused++
				mu.Unlock()
			}
		}
		// Then a byte at a time, until necosd closes the connection or the test ends.
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}
	peakFDs, peakRSS := baseFDs, baseRSS
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if fds, rss, _, err := procStat(pid); err == nil {
				peakFDs, peakRSS = max(peakFDs, fds), max(peakRSS, rss)
			}
		}
	}()
	for i := range flood {
		wg.Add(1)
		go slow(i)
	}
	// A tenant is served during the flood (after a wait in the listen queue at worst).
	d.expect(d.do("demo", "GET", "/v1/slices", "", nil), 200, "list during the flood")
	// Until every unauthenticated body has been refused: the whole flood has then been
	// through necosd's connections.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		n := refused
		mu.Unlock()
		if n == flood/2 || time.Now().After(deadline) {
			break
		}
	}
	close(stop)
	wg.Wait()
	<-done

	t.Logf("flood of %d slow connections: necosd fds %d -> peak %d, RSS %d -> peak %d kB; %d bodies refused before read",
		flood, baseFDs, peakFDs, baseRSS, peakRSS, refused)
	// A few more fds than the cap: the listener, the store, the plugins' pipes come and go.
	if peakFDs > baseFDs+maxConns+16 {
		t.Errorf("necosd held %d fds at the peak, %d before: more than --max-connections %d", peakFDs, baseFDs, maxConns)
	}
	if refused != flood/2 {
		t.Errorf("%d of %d unauthenticated bodies refused before they were sent", refused, flood/2)
	}
}

// A busy address fails necosd's start with a clear error before it opens anything, and
// the tests' harness then starts it on another: an address found free may be taken by
// another process before necosd binds it.
func TestStartOnAnAddressTakenMeanwhile(t *testing.T) {
	d := newDaemon(t, xenCatalogue(t, nil, ""), true)
	taken, err := net.Listen("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	d.start()
	if d.addr == taken.Addr().String() || d.retries != 1 {
		t.Fatalf("necosd serves on %s after %d retries; %s was taken", d.addr, d.retries, taken.Addr())
	}
	d.expect(d.do("demo", "GET", "/v1/slices", "", nil), 200, "list on the new address")
}
