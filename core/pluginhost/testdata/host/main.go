// Command host starts one plugin instance through pluginhost, prints the plugin's pid on
// stdout and waits to be killed. The tests SIGKILL it to check that the plugin exits by
// itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/sdk"
)

func main() {
	dir := flag.String("dir", "", "plugin directory")
	name := flag.String("plugin", "memvim", "plugin to start")
	config := flag.String("config", `{"capacity_cpus": 8}`, "plugin configuration")
	flag.Parse()
	log := hclog.New(&hclog.LoggerOptions{Name: "testhost", Output: os.Stderr, Level: hclog.Info})
	h := pluginhost.New(pluginhost.Options{Dir: *dir, Logger: log})
	in, err := h.Start(context.Background(), pluginhost.InstanceConfig{
		Name: "orphan-check", Plugin: *name, Provider: sdk.Provider{Name: "orphan-check"}, Config: []byte(*config)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(in.Status().Pid)
	select {}
}
