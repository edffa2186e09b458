package v1

import "time"

// Service is a service deployed onto a slice (GET /v1/slices/{id}/services/{service}),
// with the progress of its last deployment part by part, VDU by VDU, node by node and
// step by step. POST /service_orchestrator/deploy_service answers it in YAML under the
// key "service".
type Service struct {
	ID      string `json:"id" yaml:"id"`
	SliceID string `json:"slice_id" yaml:"slice-id"`
	// State is Deploying, Deployed, Failed or Undeploying.
	State string `json:"state" yaml:"state"`
	// Message says how the deployment went: the parts and steps that failed.
	Message string `json:"message,omitempty" yaml:"message,omitempty"`
	// Warnings are problems of the document that did not stop the deployment.
	Warnings []string `json:"warnings,omitempty" yaml:"warnings,omitempty"`
	// Generation counts the deployments of the service: 1 for the first.
	Generation int `json:"generation" yaml:"generation"`
	// Policies are the elasticity policies the document registered on the slice.
	Policies   []string      `json:"policies,omitempty" yaml:"policies,omitempty"`
	CreatedAt  time.Time     `json:"created_at" yaml:"created-at"`
	StartedAt  time.Time     `json:"started_at" yaml:"started-at"`
	FinishedAt *time.Time    `json:"finished_at,omitempty" yaml:"finished-at,omitempty"`
	Parts      []ServicePart `json:"parts" yaml:"parts"`
	Counts     ServiceCounts `json:"steps" yaml:"steps"`
	// Document is the service document as sent (GET of one service only).
	Document string `json:"document,omitempty" yaml:"-"`
}

// ServiceCounts counts a deployment's steps by state.
type ServiceCounts struct {
	Total     int `json:"total" yaml:"total"`
	Pending   int `json:"pending" yaml:"pending"`
	Running   int `json:"running" yaml:"running"`
	Succeeded int `json:"succeeded" yaml:"succeeded"`
	Failed    int `json:"failed" yaml:"failed"`
	Skipped   int `json:"skipped" yaml:"skipped"`
}

// ServicePart is a service's deployment onto one DC slice part.
type ServicePart struct {
	Name     string `json:"name" yaml:"name"`
	Provider string `json:"provider" yaml:"provider"`
	// State is pending, running, succeeded or failed.
	State   string       `json:"state" yaml:"state"`
	Message string       `json:"message,omitempty" yaml:"message,omitempty"`
	VDUs    []ServiceVDU `json:"vdus" yaml:"vdus"`
}

// ServiceVDU is the deployment onto one VDU of a part: its nodes. A deployer that works
// per part rather than per node reports a VDU named after what it worked on.
type ServiceVDU struct {
	Name string `json:"name" yaml:"name"`
	// State is failed if a node failed, else running, pending, succeeded.
	State string        `json:"state" yaml:"state"`
	Nodes []ServiceNode `json:"nodes" yaml:"nodes"`
}

// ServiceNode is the deployment onto one node: its steps in order.
type ServiceNode struct {
	Name  string `json:"name" yaml:"name"`
	State string `json:"state" yaml:"state"`
	Steps []Step `json:"steps" yaml:"steps"`
}

// Step is one command or manifest on one node.
type Step struct {
	Index int `json:"index" yaml:"index"`
	// Kind is command or manifest.
	Kind string `json:"kind" yaml:"kind"`
	// Step is the command line (references substituted) or the manifest's kind/name.
	Step string `json:"step" yaml:"step"`
	// State is pending, running, succeeded, failed or skipped (after a failure).
	State    string `json:"state" yaml:"state"`
	ExitCode int    `json:"exit_code" yaml:"exit-code"`
	// Stdout and Stderr are the end of the step's output.
	Stdout     string     `json:"stdout,omitempty" yaml:"stdout,omitempty"`
	Stderr     string     `json:"stderr,omitempty" yaml:"stderr,omitempty"`
	Error      string     `json:"error,omitempty" yaml:"error,omitempty"`
	Started    *time.Time `json:"started,omitempty" yaml:"started,omitempty"`
	DurationMS int64      `json:"duration_ms" yaml:"duration-ms"`
}

// ServiceList is the answer of GET /v1/slices/{id}/services: the services without
// their steps' output.
type ServiceList struct {
	Services []Service `json:"services"`
}
