// Command iot-core is the core of the necos demo's IoT slice, in the shape of Dojot's
// micro-services: one binary, one role per Deployment.
//
//	iot-core store   the telemetry history and the device manager: the IoT agents at the
//	                 edges POST every message to it; it keeps the last messages of each
//	                 device and lists every device seen
//	iot-core gui     the web page listing the devices and their latest readings, read
//	                 from a store
//
// `iot-core store --gui ADDR` serves both from one process. See README.md for the
// interface.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

const usage = `usage: iot-core store [flags]   telemetry history and device manager
       iot-core gui [flags]     web page of the devices, read from a store
run iot-core <role> -h for the flags`

func main() {
	log := hclog.New(&hclog.LoggerOptions{Name: "iot-core", Output: os.Stderr})
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch role := os.Args[1]; role {
	case "store":
		err = runStore(ctx, log.Named("store"), os.Args[2:])
	case "gui":
		err = runGUI(ctx, log.Named("gui"), os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "iot-core: unknown role %q\n%s\n", role, usage)
		os.Exit(2)
	}
	if err != nil {
		log.Error("stopped", "error", err)
		os.Exit(1)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// intFlag is an int flag whose default comes from an environment variable.
func intFlag(fs *flag.FlagSet, name, key string, def int, help string) *int {
	v := new(int)
	*v = def
	fs.Func(name, fmt.Sprintf("%s (%s; default %d)", help, key, def), func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("expected a number, got %q", s)
		}
		*v = n
		return nil
	})
	if s, ok := os.LookupEnv(key); ok && s != "" {
		if err := fs.Set(name, s); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", key, err)
			os.Exit(2)
		}
	}
	return v
}

func runStore(ctx context.Context, log hclog.Logger, args []string) error {
	fs := flag.NewFlagSet("iot-core store", flag.ExitOnError)
	listen := fs.String("listen", env("HTTP_ADDR", ":8080"), "HTTP address (HTTP_ADDR)")
	keep := intFlag(fs, "keep", "HISTORY_KEEP", 100, "messages kept per device")
	maxDevices := intFlag(fs, "max-devices", "MAX_DEVICES", 10000, "devices kept; messages of more are refused")
	gui := fs.String("gui", env("GUI_ADDR", ""), "also serve the web page on this address (GUI_ADDR); empty: not")
	slice := fs.String("slice", env("DOJOT_SLICE", ""), "the slice's id, shown on the page (DOJOT_SLICE)")
	refresh := fs.Duration("refresh", 2*time.Second, "how often the page refreshes itself")
	_ = fs.Parse(args)
	if *keep < 1 {
		return fmt.Errorf("keep: expected >= 1, got %d", *keep)
	}
	if *maxDevices < 1 {
		return fmt.Errorf("max-devices: expected >= 1, got %d", *maxDevices)
	}
	if *refresh < 100*time.Millisecond {
		return fmt.Errorf("refresh: expected at least 100ms, got %s", *refresh)
	}
	s := newStore(*keep, *maxDevices, time.Now)
	servers := []server{{"store", *listen, storeHandler(s, log)}}
	if *gui != "" {
		list := func(context.Context) ([]Device, error) { return s.list(), nil }
		servers = append(servers, server{"gui", *gui, guiHandler(*slice, list, *refresh)})
	}
	log.Info("serving", "listen", *listen, "gui", *gui, "keep", *keep, "max_devices", *maxDevices, "slice", *slice)
	return serve(ctx, log, servers)
}

func runGUI(ctx context.Context, log hclog.Logger, args []string) error {
	fs := flag.NewFlagSet("iot-core gui", flag.ExitOnError)
	listen := fs.String("listen", env("HTTP_ADDR", ":8080"), "HTTP address (HTTP_ADDR)")
	storeURL := fs.String("store", env("STORE_URL", ""), "the store's URL, such as http://10.0.0.12:8080 (STORE_URL)")
	slice := fs.String("slice", env("DOJOT_SLICE", ""), "the slice's id, shown on the page (DOJOT_SLICE)")
	refresh := fs.Duration("refresh", 2*time.Second, "how often the page refreshes itself")
	_ = fs.Parse(args)
	if err := checkStoreURL(*storeURL); err != nil {
		return err
	}
	if *refresh < 100*time.Millisecond {
		return fmt.Errorf("refresh: expected at least 100ms, got %s", *refresh)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	log.Info("serving", "listen", *listen, "store", *storeURL, "slice", *slice)
	return serve(ctx, log, []server{{"gui", *listen, guiHandler(*slice, remoteDevices(client, *storeURL), *refresh)}})
}

// checkStoreURL accepts an http(s) URL with a host. A Kubernetes variable reference
// left as is ($(HISTORY_SERVICE_HOST): the Service did not exist when the pod was made)
// is refused, so that the container restarts and is given the Service's address.
func checkStoreURL(s string) error {
	if strings.Contains(s, "$(") {
		return fmt.Errorf("store: %q holds a variable Kubernetes did not expand (is its Service created before this pod?)", s)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("store: expected a URL such as http://10.0.0.12:8080, got %q", s)
	}
	return nil
}

type server struct {
	name, addr string
	h          http.Handler
}

// serve runs the servers until ctx ends or one of them fails, then shuts them all down.
func serve(ctx context.Context, log hclog.Logger, servers []server) error {
	lns := make([]net.Listener, 0, len(servers))
	for _, s := range servers {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("%s: %w", s.name, err)
		}
		lns = append(lns, ln)
	}
	errc := make(chan error, len(servers))
	hs := make([]*http.Server, 0, len(servers))
	for i, s := range servers {
		h := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
		hs = append(hs, h)
		go func() {
			if err := h.Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s on %s: %w", s.name, s.addr, err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, h := range hs {
		_ = h.Shutdown(sctx)
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}
