// Command futureapi is a plugin that speaks only API versions this host does not.
package main

import (
	"context"

	"github.com/necos/necos/sdk"
)

type plugin struct{}

func (plugin) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "futureapi", Version: "9.0.0", APIVersions: []string{"v7", "v8"}}, nil
}

func (plugin) ConfigSchema(context.Context) (sdk.ConfigSchema, error) { return sdk.ConfigSchema{}, nil }

func (plugin) Configure(context.Context, sdk.Config) error { return nil }

func main() { sdk.Serve(plugin{}) }
