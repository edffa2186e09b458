// Package v1 holds the JSON documents of the necos /v1 API, shared by the server (package
// api) and its clients (package client, necosctl), so that both sides agree on one
// definition. It depends on nothing of the engine, which keeps clients small.
//
// Names are snake_case; times are RFC 3339 in UTC; money is euros per day.
package v1

import "time"

// Slice is a slice with its parts and links (GET /v1/slices/{id}).
type Slice struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// State is Pending, Creating, Ready, Degraded (Ready, but a provider no longer has
	// some of its parts), RollingBack, Failed or Deleting.
	State string `json:"state"`
	// Message says why a slice failed, is rolling back or is Degraded, or, on a Ready
	// slice, which drift was not repaired (each part's Drift says more).
	Message string `json:"message,omitempty"`
	// Deleting is set once the tenant asked for decommission, before State follows.
	Deleting  bool       `json:"deleting,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	ReadyAt   *time.Time `json:"ready_at,omitempty"`
	// CostPerDay is the price of every part and link, per day.
	CostPerDay float64 `json:"cost_per_day"`
	Parts      []Part  `json:"parts"`
	Links      []Link  `json:"links"`
	// Events counts the slice's events (GET /v1/slices/{id}/events lists them).
	Events int `json:"events"`
}

// SliceSummary is one slice of a list (GET /v1/slices).
type SliceSummary struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	State      string     `json:"state"`
	Message    string     `json:"message,omitempty"`
	Deleting   bool       `json:"deleting,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	ReadyAt    *time.Time `json:"ready_at,omitempty"`
	CostPerDay float64    `json:"cost_per_day"`
	Parts      int        `json:"parts"`
	Links      int        `json:"links"`
}

// SliceList is the answer of GET /v1/slices.
type SliceList struct {
	Slices []SliceSummary `json:"slices"`
	// Continue, when set, asks for the next page: GET /v1/slices?limit=N&continue=TOKEN.
	Continue string `json:"continue,omitempty"`
}

// Part is a DC slice part.
type Part struct {
	Name     string `json:"name"`
	UUID     string `json:"uuid"`
	Type     string `json:"type,omitempty"`
	Location string `json:"location,omitempty"`
	Provider string `json:"provider"`
	// State is Planned, Creating, Ready, Lost (its provider no longer has it as created;
	// Message says what is missing), Failed, Deleting or Deleted.
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	// Elastic marks a part added by horizontal elasticity.
	Elastic bool `json:"elastic,omitempty"`
	// Drift is a difference between the part as recorded and as its provider holds it
	// that the reconciler could not repair (nil when none); it is retried every health
	// pass.
	Drift      *Drift  `json:"drift,omitempty"`
	CostPerDay float64 `json:"cost_per_day"`
	// Bridge is the per-slice switch the part's nodes attach to.
	Bridge string `json:"bridge,omitempty"`
	// Resources is what the part asked for, all nodes together.
	Resources Resources `json:"resources"`
	// VIMRef is where the tenant reaches the part's VIM (NECOS vim-ref).
	VIMRef *VIMRef `json:"vim_ref,omitempty"`
	// Credential is how the tenant logs in (NECOS vim-credential); only its owner sees it.
	Credential *Credential `json:"credential,omitempty"`
	Nodes      []Node      `json:"nodes"`
	// Attributes are the backend's facts about the part: for real guests "netns" (the
	// network namespace their addresses are reached from) and "ssh-known-hosts" (each
	// node's pinned host key).
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Drift is a part's unrepaired drift.
type Drift struct {
	// What differs, e.g. "node vm-1 of VDU vm has 4 vCPUs and 1024 MB at the provider, 2
	// vCPUs and 1024 MB recorded".
	What string `json:"what"`
	// Why the last repair failed.
	Why string `json:"why"`
	// Since is when What was first found unrepaired.
	Since time.Time `json:"since"`
}

// Resources is an amount of compute.
type Resources struct {
	Nodes     int   `json:"nodes"`
	CPUs      int   `json:"cpus"`
	MemoryMB  int64 `json:"memory_mb"`
	StorageGB int64 `json:"storage_gb"`
}

// VIMRef holds the endpoints of a part's VIM.
type VIMRef struct {
	API *Address `json:"api,omitempty"`
	SSH *Address `json:"ssh,omitempty"`
}

// Address is an IP address and port.
type Address struct {
	IP   string `json:"ip"`
	Port int    `json:"port"`
}

// Credential is a part's login: a kubeconfig, an SSH key pair or a password.
type Credential struct {
	// Kind is kubeconfig, ssh-key or password.
	Kind string `json:"kind"`
	User string `json:"user,omitempty"`
	// Secret is the kubeconfig, the private key or the password.
	Secret string `json:"secret,omitempty"`
	// HostKey is the SSH host public key pinned at creation (authorized_keys format).
	HostKey string     `json:"host_key,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
}

// Node is one VDU instance of a part.
type Node struct {
	Name      string   `json:"name"`
	VDU       string   `json:"vdu"`
	ID        string   `json:"id,omitempty"`
	Type      string   `json:"type,omitempty"`
	State     string   `json:"state,omitempty"`
	CPUs      int      `json:"cpus,omitempty"`
	MemoryMB  int64    `json:"memory_mb,omitempty"`
	StorageGB int64    `json:"storage_gb,omitempty"`
	IPs       []string `json:"ips"`
}

// Link is a net slice part: a VXLAN link between two DC parts.
type Link struct {
	Name     string `json:"name"`
	UUID     string `json:"uuid"`
	Provider string `json:"provider,omitempty"`
	// State is Planned, Creating, Ready, Failed, NotBuilt (no WAN provider can build it;
	// Message says why) or Deleting.
	State      string  `json:"state"`
	Message    string  `json:"message,omitempty"`
	Elastic    bool    `json:"elastic,omitempty"`
	CostPerDay float64 `json:"cost_per_day"`
	// VNI is the VXLAN network identifier; 0 until one is given.
	VNI uint32 `json:"vni,omitempty"`
	// BandwidthBps is the rate limit in each direction, bits per second; 0 is none.
	BandwidthBps uint64 `json:"bandwidth_bps,omitempty"`
	// Ends are the link's two ends: dc-part1, then dc-part2.
	Ends [2]LinkEnd `json:"ends"`
}

// LinkEnd is one side of a link: a part's bridge at its provider's site.
type LinkEnd struct {
	Part     string `json:"part"`
	Site     string `json:"site,omitempty"`
	Underlay string `json:"underlay,omitempty"`
	Bridge   string `json:"bridge,omitempty"`
}

// Event is one thing that happened to a slice (GET /v1/slices/{id}/events).
type Event struct {
	// Seq orders a slice's events; a server-sent event carries it as its id.
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	// Type says what happened: slice.accepted, part.ready, slice.failed...
	Type    string            `json:"type"`
	Part    string            `json:"part,omitempty"`
	Link    string            `json:"link,omitempty"`
	Message string            `json:"message,omitempty"`
	Data    map[string]string `json:"data,omitempty"`
}

// EventList is the answer of GET /v1/slices/{id}/events.
type EventList struct {
	Events []Event `json:"events"`
}

// Names of the server-sent events that are not slice events: StreamLive follows the
// past events (its data is a StreamState), StreamEnd is the last one sent, once the
// slice is gone (its data is a StreamState too).
const (
	StreamLive = "stream.live"
	StreamEnd  = "stream.end"
)

// StreamState is the data of the StreamLive and StreamEnd events.
type StreamState struct {
	// State is the slice's state when the event was sent; "Gone" once decommissioned.
	State    string `json:"state"`
	Deleting bool   `json:"deleting,omitempty"`
	Message  string `json:"message,omitempty"`
}

// StateGone is StreamState.State once the slice has left the store.
const StateGone = "Gone"

// Provider is a resource provider of the catalogue (GET /v1/providers). Plugin
// configurations are never shown: they hold the providers' secrets.
type Provider struct {
	Name     string `json:"name"`
	Location string `json:"location"`
	// Controller is the provider's slice controller endpoint, as NECOS replies show it.
	Controller *Address `json:"controller,omitempty"`
	Offers     []Offer  `json:"offers"`
	// Site is where WAN links to the provider's parts end.
	Site *Site `json:"site,omitempty"`
}

// Offer is one kind of slice part a provider builds.
type Offer struct {
	// Kind is "dc" (DC slice parts) or "wan" (links).
	Kind string `json:"kind"`
	// Plugin is the plugin serving the offer.
	Plugin string `json:"plugin"`
	// VIM and PartTypes describe a dc offer (empty part types: DC and EDGE).
	VIM       string   `json:"vim,omitempty"`
	PartTypes []string `json:"part_types,omitempty"`
	// Deployer is the plugin deploying services on a dc offer's parts, when not its VIM's.
	Deployer string `json:"deployer,omitempty"`
	// WIM and Sites describe a wan offer (empty sites: every provider's).
	WIM   string   `json:"wim,omitempty"`
	Sites []string `json:"sites,omitempty"`
}

// Site is a provider's WAN endpoint.
type Site struct {
	Underlay string `json:"underlay"`
}

// ProviderList is the answer of GET /v1/providers.
type ProviderList struct {
	Providers []Provider `json:"providers"`
}

// Plugin is a running plugin instance (GET /v1/plugins).
type Plugin struct {
	// Name is the instance's: the provider's name for its DC role, <provider>.<role> else.
	Name       string   `json:"name"`
	Plugin     string   `json:"plugin"`
	Provider   string   `json:"provider,omitempty"`
	Location   string   `json:"location,omitempty"`
	Version    string   `json:"version"`
	APIVersion string   `json:"api_version"`
	Kinds      []string `json:"kinds"`
	// SHA256 is the binary's hash the lock file records.
	SHA256 string `json:"sha256"`
	// State is running, exited, failed, stopped, or refused (the host did not start it:
	// LastError says why).
	State       string     `json:"state"`
	Pid         int        `json:"pid,omitempty"`
	Started     time.Time  `json:"started"`
	Restarts    int        `json:"restarts"`
	NextRestart *time.Time `json:"next_restart,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
}

// PluginList is the answer of GET /v1/plugins.
type PluginList struct {
	Plugins []Plugin `json:"plugins"`
}

// Error is every error answer of /v1 (and, as YAML, of the NECOS routes).
type Error struct {
	Error string `json:"error" yaml:"error"`
	// Problems name each field at fault, with what was expected.
	Problems []Problem `json:"problems,omitempty" yaml:"problems,omitempty"`
	// SliceID names the slice the error is about, when one was created (a failed create).
	SliceID string `json:"slice_id,omitempty" yaml:"slice-id,omitempty"`
}

// Problem is one problem of a request: where (a path into the document, a query
// parameter or a header) and what is wrong.
type Problem struct {
	Path    string `json:"path" yaml:"path"`
	Message string `json:"message" yaml:"message"`
}

// Health is the answer of /healthz and /readyz.
type Health struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}
