// Command necosctl is the tenant and operator CLI of necos: it creates, lists, reads,
// watches and deletes slices through necosd's API, lists the federation's providers and
// plugins, and locks plugin binaries (locally, without a server).
//
//	necosctl slice create -f examples/slices/touristic-cdn-xen.yaml --wait
//	necosctl slice watch touristiccdn-xen-sliced-1a2b3c
//	necosctl plugins lock --dir bin/plugins
//
// The server is --server or NECOS_SERVER (default http://127.0.0.1:8080); the token is
// --token, NECOS_TOKEN, or the demo tenant's token necosd writes to ./data/demo-token.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/necos/necos/api/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand(newApp(os.Stdout, os.Stderr)).ExecuteContext(ctx)
	stop()
	var exit *exitError
	if errors.As(err, &exit) {
		os.Exit(exit.code) // the remote command said why on its standard error
	}
	if err != nil {
		printError(os.Stderr, err)
		os.Exit(1)
	}
}

// printError shows an error for people: the server's message, then each problem's
// path on its own line.
func printError(w io.Writer, err error) {
	var e *client.Error
	if !errors.As(err, &e) {
		fmt.Fprintln(w, "Error:", err)
		var uerr *url.Error
		if errors.As(err, &uerr) && errors.Is(err, syscall.ECONNREFUSED) {
			// The commonest first-hour mistake: no necosd listening where necosctl looks.
			// (Only for a call to necosd: a guest refusing SSH is not that.)
			fmt.Fprintln(w, "  Is necosd running? Start it with ./scripts/run.sh, or point necosctl at it with --server or NECOS_SERVER.")
		}
		return
	}
	fmt.Fprintf(w, "Error: %s (HTTP %d)\n", e.Message, e.Status)
	for _, p := range e.Problems {
		if len(e.Problems) == 1 && (e.Message == p.Path+": "+p.Message || e.Message == p.Message) {
			break // the message already is the problem
		}
		if p.Path == "" {
			fmt.Fprintf(w, "  %s\n", p.Message)
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Message)
	}
	if e.SliceID != "" {
		fmt.Fprintf(w, "  (slice %s)\n", e.SliceID)
		if e.Status == 409 && len(e.Problems) > 0 && e.Problems[0].Path == "slices.sliced.id" {
			// The id is held by an earlier slice, maybe one that failed: name the commands.
			fmt.Fprintf(w, "  See it with: necosctl slice get %s; free the id with: necosctl slice delete %s --wait\n", e.SliceID, e.SliceID)
		}
	}
	if e.Status == 401 {
		fmt.Fprintln(w, "  Give a tenant's token with --token or NECOS_TOKEN (necosd writes the demo tenant's to data/demo-token).")
	}
}
