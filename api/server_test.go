package api_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/necos/necos/api"
	"github.com/necos/necos/api/apitest"
	v1 "github.com/necos/necos/api/v1"
)

// rawConn opens a TCP connection to the env's API and sends s.
func rawConn(t *testing.T, env *apitest.Env, s string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(env.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if s != "" {
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// closedByServer waits (up to a bound that only guards against a hang) until the
// server closes c, reading and dropping whatever it sends.
func closedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the server kept the connection open")
	}
}

// A request without a valid token is refused before anything of its body is read, and
// its connection closes: a client announcing a body it never sends gets its 401 at once.
func TestRefusedBeforeTheBody(t *testing.T) {
	env := apitest.Start(t, apitest.Options{Server: &api.ServerOptions{}})
	for _, auth := range []string{"", "Authorization: Bearer nosuchtoken\r\n"} {
		// Under 256 KiB, which net/http would otherwise wait for and discard before
		// answering.
		c := rawConn(t, env, "POST /v1/slices HTTP/1.1\r\nHost: necos\r\nContent-Type: text/x-yaml\r\n"+auth+
			"Content-Length: 100000\r\n\r\nslices:")
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer before the body (auth %q): %v", auth, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Errorf("auth %q: status %d, close %v", auth, resp.StatusCode, resp.Close)
		}
		closedByServer(t, c)
	}
}

// Headers sent too slowly, and a tenant's body sent too slowly, cost the server a
// connection for ReadHeaderTimeout and ReadTimeout at most, and store nothing.
func TestSlowRequestsAreCut(t *testing.T) {
	env := apitest.Start(t, apitest.Options{Server: &api.ServerOptions{
		ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond}})
	c := rawConn(t, env, "GET /healthz HTTP/1.1\r\nHo")
	closedByServer(t, c)

	c = rawConn(t, env, "POST /v1/slices HTTP/1.1\r\nHost: necos\r\nContent-Type: text/x-yaml\r\nAuthorization: Bearer "+
		env.Token("alice")+"\r\nContent-Length: 1000\r\n\r\nslices:")
	closedByServer(t, c)
	if l := listSlices(t, env, "alice"); len(l) != 0 {
		t.Errorf("a request cut short stored slices: %+v", l)
	}
}

// Answers that come long after the request (an event stream here, a synchronous create
// alike) outlive ReadTimeout and WriteTimeout: those bound sending a request and each
// write of the answer, not the wait in between.
func TestLongAnswersOutliveTheTimeouts(t *testing.T) {
	release := make(chan struct{})
	late := func(r *mux.Router, auth func(http.Handler) http.Handler) {
		// POST: a client retries a GET whose connection closed, hiding a cut answer.
		r.Handle("/test/late", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-release
			_, _ = io.WriteString(w, "late but whole")
		})))
	}
	env := apitest.Start(t, apitest.Options{API: api.Options{Extra: late}, Server: &api.ServerOptions{
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond}})
	api.SetHeartbeat(env.Handler, 50*time.Millisecond)
	tok := env.Token("alice")
	var s v1.Slice
	do(t, "POST", env.URL+"/v1/slices?wait=true", tok, apitest.SmallSlice("long"), "Content-Type", yamlType).status(t, 201).json(t, &s)

	req, _ := http.NewRequest("GET", env.URL+"/v1/slices/"+s.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// Ten heartbeats: the stream has lasted well past both timeouts.
	for beats := 0; beats < 10; {
		line, ok := <-lines
		if !ok {
			t.Fatalf("the stream ended after %d heartbeats", beats)
		}
		if strings.HasPrefix(line, ":") {
			beats++
		}
	}
	do(t, "DELETE", env.URL+"/v1/slices/"+s.ID, tok, nil)
	ended := false
	for line := range lines {
		if line == "event: "+v1.StreamEnd {
			ended = true
			break
		}
	}
	if !ended {
		t.Fatal("the stream ended without stream.end")
	}

	// An answer written once, long after the request: the route answers when the test
	// says so, well past WriteTimeout.
	time.AfterFunc(time.Second, func() { close(release) })
	a := do(t, "POST", env.URL+"/test/late", tok, nil).status(t, 200)
	if string(a.body) != "late but whole" {
		t.Errorf("late answer %q", a.body)
	}
}

// countingListener records how many accepted connections are open at most.
type countingListener struct {
	net.Listener
	open, max atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := l.open.Add(1)
	for m := l.max.Load(); n > m && !l.max.CompareAndSwap(m, n); m = l.max.Load() {
	}
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// A flood of connections that send nothing holds at most MaxConnections of the server's
// connections; the others wait in the listen queue, and a real request is served once
// the flood's connections time out.
func TestConnectionCap(t *testing.T) {
	counter := &countingListener{}
	env := apitest.Start(t, apitest.Options{
		Server:   &api.ServerOptions{MaxConnections: 4, ReadHeaderTimeout: 300 * time.Millisecond},
		Listener: func(ln net.Listener) net.Listener { counter.Listener = ln; return counter },
	})
	var wg sync.WaitGroup
	for i := range 40 {
		c := rawConn(t, env, fmt.Sprintf("GET /healthz HTTP/1.1\r\nX-Flood: %d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			closedByServer(t, c)
		}()
	}
	do(t, "GET", env.URL+"/healthz", "", nil).status(t, 200)
	wg.Wait()
	if m := counter.max.Load(); m > 4 {
		t.Errorf("%d connections open at once, cap 4", m)
	}
}
