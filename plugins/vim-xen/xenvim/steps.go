package xenvim

import (
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/sdk"
)

// Where a Create's time goes before the guests boot: each step of making a part's nodes
// is timed, logged at debug level and reported to testHookStep, so BenchmarkGuestBoot
// can tell the plugin's own share of a boot from QEMU's and the guest's.

// testHookStep, when set (by benchmarks), is told how long each step of a Create took.
// It is called from several goroutines when steps run concurrently.
var testHookStep func(step string, took time.Duration)

// stepClock times the steps of one call.
type stepClock struct {
	log  hclog.Logger
	part string
}

// step starts timing a step; the returned func ends it.
func (c stepClock) step(name string) func() {
	start := time.Now()
	return func() {
		took := time.Since(start)
		c.log.Debug("create step", "part", c.part, "step", name, "took", took)
		if h := testHookStep; h != nil {
			h(name, took)
		}
	}
}

// clock times the steps of a call on a part.
func (p *Plugin) clock(ref sdk.PartRef) stepClock {
	return stepClock{log: p.log, part: ref.String()}
}
