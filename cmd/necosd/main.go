// Command necosd is the necos daemon: the tenant API and the slice engine, with the
// slice database embedded by default. With no arguments it runs on its embedded
// defaults: data under ./data, plugins from the plugins directory next to the binary,
// the example catalogue of five providers, the API on 127.0.0.1:8080.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "necosd:", err)
		os.Exit(1)
	}
}
