package v1

import "time"

// Outcomes of a Phase.
const (
	PhaseDone    = "done"
	PhaseFailed  = "failed"
	PhaseRunning = "running"
	// PhaseSkipped: a step that did not run (a post-deployment without a deployer).
	PhaseSkipped = "skipped"
)

// Phase is one step of a slice's life with when it started and ended, read from the
// slice's events.
type Phase struct {
	// Name is what happened: placement, part, link, creation, monitoring, service,
	// rollback, decommission; for an elastic action decision, action, post-deployment,
	// effect, reaction.
	Name string `json:"name"`
	// Subject names the part, link, service or policy concerned, when there is one.
	Subject string    `json:"subject,omitempty"`
	Start   time.Time `json:"start"`
	// End is absent while the phase runs.
	End *time.Time `json:"end,omitempty"`
	// Seconds is End - Start, or how long it has run so far.
	Seconds float64 `json:"seconds"`
	// Outcome is done, failed, running or skipped.
	Outcome string `json:"outcome"`
	Message string `json:"message,omitempty"`
}

// ElasticAction is one firing of an elasticity policy and what followed: threshold
// crossed, decision (fired), action started and done, post-deployment, and the metric
// back on the right side of the threshold (effective).
type ElasticAction struct {
	Policy string `json:"policy"`
	Part   string `json:"part,omitempty"`
	// Action is the action that ran (add-cpu, add-node, add-part...), the last one tried.
	Action string `json:"action,omitempty"`
	// Outcome is done, failed, exhausted (nothing left to do) or running.
	Outcome string `json:"outcome"`
	Message string `json:"message,omitempty"`
	// Crossed is the time of the first point that satisfied the trigger.
	Crossed      *time.Time `json:"crossed,omitempty"`
	Fired        time.Time  `json:"fired"`
	Started      *time.Time `json:"started,omitempty"`
	Done         *time.Time `json:"done,omitempty"`
	PostDeployed *time.Time `json:"post_deployed,omitempty"`
	// Effective is when every series of the policy's metric was first back on the
	// right side of the threshold after the action; absent until then, or when the
	// metrics cannot be read.
	Effective *time.Time `json:"effective,omitempty"`
	// Phases are the steps between those times.
	Phases []Phase `json:"phases"`
}

// Timings answers GET /v1/slices/{id}/timings.
type Timings struct {
	Slice string `json:"slice"`
	// Phases of the slice's life, in the order they started.
	Phases []Phase `json:"phases"`
	// Actions are the elastic actions, oldest first.
	Actions []ElasticAction `json:"actions"`
}

// MarketEntry is one provider of the marketplace (GET /v1/marketplace): what it has and
// what necos holds there now.
type MarketEntry struct {
	Provider string   `json:"provider"`
	Location string   `json:"location"`
	Kinds    []string `json:"kinds"`
	// Capacity and Free are what the provider's VIM reports for a probe of one node;
	// absent when it could not be asked (Error says why).
	Capacity *Resources `json:"capacity,omitempty"`
	Free     *Resources `json:"free,omitempty"`
	// PricePerNodeDay is the price the VIM quotes for one probe node per day, in euros.
	PricePerNodeDay *float64 `json:"price_per_node_day,omitempty"`
	// Reserved is what slices hold at the provider (parts' resources, links' bandwidth).
	Reserved    Resources `json:"reserved"`
	ReservedBps uint64    `json:"reserved_bps,omitempty"`
	Holders     int       `json:"holders"`
	Error       string    `json:"error,omitempty"`
}

// Marketplace answers GET /v1/marketplace.
type Marketplace struct {
	// Probe is the node each DC provider was asked to quote.
	Probe     Resources     `json:"probe"`
	Providers []MarketEntry `json:"providers"`
}
