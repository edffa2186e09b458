// Command necos-guest is the first-boot agent of the project's own small guest image
// (scripts/guest-image.sh): the busybox init of the image runs `necos-guest boot`, which
// does what cloud-init does on a standard cloud image, for the subset the vim-xen plugin
// writes (package seed): it finds the NoCloud seed volume (label cidata), sets the host
// name, authorizes the part's SSH key for root, installs the node's SSH host key for
// dropbear, configures the NICs, mounts the data disk at /data and onlines every CPU.
//
// It also measures link throughput for the tests: `necos-guest recv PORT` counts what
// one connection sends and answers with the count and time; `necos-guest send
// HOST:PORT SECONDS` sends for that long and prints the receiver's measured rate.
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "boot":
		err = boot()
	case "online-cpus":
		_, err = onlineCPUs()
	case "watch-cpus":
		err = watchCPUs()
	case "recv":
		if len(os.Args) != 3 {
			usage()
		}
		err = recv(os.Args[2])
	case "send":
		if len(os.Args) != 4 {
			usage()
		}
		var d time.Duration
		if d, err = time.ParseDuration(os.Args[3] + "s"); err == nil {
			err = send(os.Args[2], d)
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "necos-guest %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: necos-guest boot | online-cpus | watch-cpus | recv PORT | send HOST:PORT SECONDS")
	os.Exit(2)
}
