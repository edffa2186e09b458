package sdk

import (
	"context"
	"time"
)

// Deployer puts a tenant's service onto a DC slice part: Kubernetes manifests into the
// part's namespace, commands on its nodes. Every call takes one request struct, which the
// SDK validates (its Validate method) before the plugin sees it.
//
// Errors carry a [Code], one per kind of failure, the same in every Deployer:
//   - CodeInvalidArgument: a malformed request (no service id, an empty command) or work
//     the part cannot run at all (an unknown node or VDU in the work, manifests on a
//     part without Kubernetes, a malformed manifest);
//   - CodeNotFound: an unknown part (Deploy, DeployStatus) or deployment (DeployStatus;
//     Undeploy of one is done);
//   - CodeFailedPrecondition: the part is being deleted, or cannot be reached as asked.
type Deployer interface {
	// Deploy runs the work and returns when every node is done or has failed. A failing
	// step stops the steps that follow on its node and is reported in the Deployment, not
	// as an error; errors are for requests that cannot run at all. Deploying the same
	// service again is safe.
	Deploy(ctx context.Context, req DeployRequest) (Deployment, error)
	// Undeploy removes what Deploy applied; an unknown service is not an error.
	Undeploy(ctx context.Context, req UndeployRequest) error
	// DeployStatus returns the last known state of a deployment, also while it runs.
	DeployStatus(ctx context.Context, req DeployStatusRequest) (Deployment, error)
}

// NodeWork is what to do on one node of a part.
type NodeWork struct {
	// Node is a node name, or a VDU name meaning each of its nodes.
	Node      string
	Namespace string
	Commands  []string
	// Manifests are Kubernetes objects in YAML (a document or a multi-document stream).
	Manifests []string
}

// DeployRequest asks a Deployer to deploy a service onto a part.
type DeployRequest struct {
	ServiceID string
	// Part is the part as its VIM described it: nodes, endpoints, credentials.
	Part Part
	Work []NodeWork
	// StepTimeout bounds each step; zero means the plugin's default.
	StepTimeout time.Duration
}

// Kinds of a deployment step.
const (
	StepCommand  = "command"
	StepManifest = "manifest"
)

// States of deployments, nodes and steps.
const (
	DeployPending   = "pending"
	DeployRunning   = "running"
	DeploySucceeded = "succeeded"
	DeployFailed    = "failed"
	DeploySkipped   = "skipped"
	// DeployApplied is a deployment whose steps all succeeded but whose workloads are
	// not ready yet (pods pending, replicas not available) when the deploy's wait ended.
	// The Deployment's Message says what is waited for; a later DeployStatus evaluates
	// the workloads again and reports DeploySucceeded once they are ready, or
	// DeployFailed when they cannot become ready (an image that cannot be pulled, a
	// container in a crash loop).
	DeployApplied = "applied"
)

// StepResult is the outcome of one step on one node.
type StepResult struct {
	Index int
	// Kind is StepCommand or StepManifest.
	Kind string
	// Step is the command line, or the manifest's kind/name.
	Step     string
	State    string
	ExitCode int
	Stdout   string
	Stderr   string
	Error    string
	Started  time.Time
	Duration time.Duration
}

// NodeStatus is the progress of a deployment on one node.
type NodeStatus struct {
	Node  string
	State string
	Steps []StepResult
}

// Deployment is the state of a service on a part.
type Deployment struct {
	ServiceID string
	Ref       PartRef
	State     string
	Message   string
	Nodes     []NodeStatus
}
