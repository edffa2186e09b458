package api

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/netutil"
)

// Defaults of ServerOptions.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout admits a 1 MiB body (the default body limit) at ~9 KB/s.
	DefaultReadTimeout  = 2 * time.Minute
	DefaultWriteTimeout = time.Minute
	DefaultIdleTimeout  = time.Minute
	// DefaultMaxConnections is well above what a hundred tenants waiting on synchronous
	// creates hold, and keeps a flood of idle connections to a few tens of megabytes.
	DefaultMaxConnections = 1024
	DefaultMaxHeaderBytes = 64 << 10
)

// ServerOptions bound what clients may hold of the API server: time to send a request,
// to take an answer, to sit idle, and connections at once. Zero values take the
// defaults above.
type ServerOptions struct {
	// ReadHeaderTimeout bounds the time to send a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the time from a request's first byte to the end of its body.
	// It stops applying once the body is read (net/http clears it): the answer may then
	// take minutes (?wait=true, event streams).
	ReadTimeout time.Duration
	// WriteTimeout bounds each write of an answer: a client that stops reading is
	// dropped, a long wait before the answer is not.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a kept-alive connection waits for its next request.
	IdleTimeout time.Duration
	// MaxConnections caps the connections served at once; more wait in the kernel's
	// listen queue, costing necosd nothing, until one ends.
	MaxConnections int
	// MaxHeaderBytes caps the size of a request's headers.
	MaxHeaderBytes int
	// TLS, when set, serves HTTPS (HTTP/1.1) with it.
	TLS *tls.Config
	// Logger receives the server's own errors (TLS handshakes, accept errors).
	Logger hclog.Logger
}

func (o *ServerOptions) defaults() {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
}

// Server serves a handler (the API's) over HTTP or HTTPS with ServerOptions' bounds.
type Server struct {
	srv  *http.Server
	opts ServerOptions
}

// NewServer returns a server of h with opts.
func NewServer(h http.Handler, opts ServerOptions) *Server {
	opts.defaults()
	srv := &http.Server{
		Handler:           writeDeadlines(h, opts.WriteTimeout),
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ReadTimeout:       opts.ReadTimeout,
		// The handler extends the write deadline before each write (writeDeadlines), so
		// this bounds an answer that starts at once; later writes get their own.
		WriteTimeout:   opts.WriteTimeout,
		IdleTimeout:    opts.IdleTimeout,
		MaxHeaderBytes: opts.MaxHeaderBytes,
		ErrorLog:       opts.Logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	if opts.TLS != nil {
		cfg := opts.TLS.Clone()
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
		// HTTP/1.1 only: with HTTP/2 one connection carries hundreds of streams, which
		// the connection cap would not bound.
		cfg.NextProtos = []string{"http/1.1"}
		srv.TLSConfig = cfg
	}
	return &Server{srv: srv, opts: opts}
}

// Serve accepts connections on ln (at most MaxConnections at once) until Shutdown or
// Close; it returns http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	ln = netutil.LimitListener(ln, s.opts.MaxConnections)
	if s.srv.TLSConfig != nil {
		ln = tls.NewListener(ln, s.srv.TLSConfig)
	}
	return s.srv.Serve(ln)
}

// Shutdown stops accepting and waits for requests in flight, up to ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close closes every connection at once.
func (s *Server) Close() error { return s.srv.Close() }

// writeDeadlines gives each write of an answer WriteTimeout to complete, counted from
// that write: a handler that waits minutes before answering (a synchronous create, an
// event stream between events) is not cut, while a client that stops reading is.
func writeDeadlines(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d}, r)
	})
}

type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *deadlineWriter) WriteHeader(code int) {
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(b)
}

// Flush sends what is buffered, within a fresh deadline.
func (w *deadlineWriter) Flush() {
	w.extend()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// hasBody reports whether a request carries a body still to read.
func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }
