package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/necos/necos/api/client"
	"github.com/spf13/cobra"
)

// Defaults of the global flags.
const (
	defaultServer    = "http://127.0.0.1:8080"
	defaultTokenFile = "data/demo-token"
	envServer        = "NECOS_SERVER"
	envToken         = "NECOS_TOKEN"
	envCAFile        = "NECOS_CA_FILE"
)

// app holds the global flags and where output goes.
type app struct {
	server    string
	token     string
	output    string
	tokenFile string
	caFile    string
	out, err  io.Writer
}

func newApp(out, errOut io.Writer) *app {
	return &app{out: out, err: errOut, tokenFile: defaultTokenFile}
}

func newRootCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "necosctl",
		Short: "necos CLI: slices, providers and plugins",
		Long: `necosctl talks to necosd's API to create, follow and delete slices, and to list the
federation's providers and plugins.

The server is --server, else NECOS_SERVER, else ` + defaultServer + `.
The token is --token, else NECOS_TOKEN, else the demo tenant's token that necosd writes
to ./` + defaultTokenFile + `.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch a.output {
			case "table", "yaml", "json":
				return nil
			}
			return fmt.Errorf("-o %q: expected table, yaml or json", a.output)
		},
	}
	root.SetOut(a.out)
	root.SetErr(a.err)
	f := root.PersistentFlags()
	f.StringVar(&a.server, "server", envOr(envServer, defaultServer), "necosd API URL (env "+envServer+")")
	f.StringVar(&a.token, "token", os.Getenv(envToken), "tenant bearer token (env "+envToken+"; default: ./"+defaultTokenFile+" if present)")
	f.StringVar(&a.caFile, "ca-file", os.Getenv(envCAFile), "PEM file of the CA that signed necosd's certificate, for an https --server (env "+envCAFile+")")
	f.StringVarP(&a.output, "output", "o", "table", "output format: table, yaml or json")
	root.AddCommand(newSliceCommand(a), newPolicyCommand(a), newServiceCommand(a), newProvidersCommand(a), newPluginsCommand(a), newSitesCommand(a), newBenchCommand(a))
	root.AddCommand(newLoadCommand(a), newDemoCommand(a))
	return root
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// client returns an API client with the resolved token.
func (a *app) client() (*client.Client, error) {
	tok := a.token
	if tok == "" {
		b, err := os.ReadFile(a.tokenFile)
		switch {
		case err == nil:
			tok = strings.TrimSpace(string(b))
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("read token: %w", err)
		}
	}
	var opts []client.Option
	if a.caFile != "" {
		o, err := client.WithCAFile(a.caFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	return client.New(a.server, tok, opts...)
}
