// Command monitor-influx is the necos Monitor plugin for InfluxDB. The necos core
// launches it; see package influx for its configuration.
package main

import (
	"github.com/necos/necos/plugins/monitor-influx/influx"
	"github.com/necos/necos/sdk"
)

func main() { sdk.Serve(influx.New(nil)) }
