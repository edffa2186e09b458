package sdk

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Every plugin call takes one request struct (besides its context), so that a field can
// be added to a call later without breaking the Go code of the plugins that implement it
// or of the callers that make it: a plugin built before the field existed ignores it.
//
// Each request type has a Validate method that checks what every plugin of the kind
// needs of it and returns a CodeInvalidArgument error naming each bad field and what was
// expected. The SDK's gRPC server calls it before the plugin sees the request, and its
// client before the request crosses the wire, so a plugin never receives a request that
// fails it and need not check those things again.

// invalid returns a CodeInvalidArgument error listing problems after the call's name, or
// nil when there are none.
func invalid(call string, problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return Errorf(CodeInvalidArgument, "%s: %s", call, strings.Join(problems, "; "))
}

// refProblems lists what is wrong with the two ids of a ref: field is the ref's name in
// its request ("ref", "part.ref"), idName the second id's name ("part_id", "link_id").
func refProblems(field, sliceID, id, idName string) []string {
	var p []string
	if sliceID == "" {
		p = append(p, field+".slice_id: required")
	}
	if id == "" {
		p = append(p, field+"."+idName+": required")
	}
	return p
}

// ---- VIM ----

// OfferRequest asks a [VIM] whether it can host a part now, and at what price.
type OfferRequest struct {
	// Part is the part that would be created.
	Part PartSpec
}

// Validate checks the part spec as [PartSpec.Validate] does.
func (r OfferRequest) Validate() error { return specError("offer", r.Part) }

// CreateRequest asks a [VIM] to build a part.
type CreateRequest struct {
	// Part is the part to build.
	Part PartSpec
}

// Validate checks the part spec as [PartSpec.Validate] does.
func (r CreateRequest) Validate() error { return specError("create", r.Part) }

// specError prefixes the problems of a part spec with the call's name.
func specError(call string, p PartSpec) error {
	if err := p.Validate(); err != nil {
		return Errorf(CodeInvalidArgument, "%s: part: %s", call, err.Error())
	}
	return nil
}

// DescribeRequest asks a [VIM] for a part as its backend holds it.
type DescribeRequest struct {
	// Ref names the part.
	Ref PartRef
}

// Validate checks that both ids of Ref are set.
func (r DescribeRequest) Validate() error {
	return invalid("describe", refProblems("ref", r.Ref.SliceID, r.Ref.PartID, "part_id"))
}

// DeleteRequest asks a [VIM] to remove a part and everything it holds.
type DeleteRequest struct {
	// Ref names the part.
	Ref PartRef
}

// Validate checks that both ids of Ref are set.
func (r DeleteRequest) Validate() error {
	return invalid("delete", refProblems("ref", r.Ref.SliceID, r.Ref.PartID, "part_id"))
}

// Validate checks that both ids of Ref are set, VDU is named, and CPUs and MemoryMB are
// not negative and not both zero (a resize that changes nothing).
func (r ResizeRequest) Validate() error {
	p := refProblems("ref", r.Ref.SliceID, r.Ref.PartID, "part_id")
	if r.VDU == "" {
		p = append(p, "vdu: required")
	}
	if r.CPUs < 0 {
		p = append(p, fmt.Sprintf("cpus: must be >= 0 (0 keeps the value), got %d", r.CPUs))
	}
	if r.MemoryMB < 0 {
		p = append(p, fmt.Sprintf("memory_mb: must be >= 0 (0 keeps the value), got %d", r.MemoryMB))
	}
	if r.CPUs == 0 && r.MemoryMB == 0 {
		p = append(p, "cpus, memory_mb: at least one must be set")
	}
	return invalid("resize", p)
}

// Validate checks that both ids of Ref are set, VDU is named and Instances is not
// negative.
func (r ScaleRequest) Validate() error {
	p := refProblems("ref", r.Ref.SliceID, r.Ref.PartID, "part_id")
	if r.VDU == "" {
		p = append(p, "vdu: required")
	}
	if r.Instances < 0 {
		p = append(p, fmt.Sprintf("instances: must be >= 0, got %d", r.Instances))
	}
	return invalid("scale", p)
}

// Validate checks that both ids of Ref are set and no name in Names is empty. Whether a
// name is a metric the plugin knows is the plugin's to say (CodeInvalidArgument too).
func (r MetricsRequest) Validate() error {
	p := refProblems("ref", r.Ref.SliceID, r.Ref.PartID, "part_id")
	for i, n := range r.Names {
		if n == "" {
			p = append(p, fmt.Sprintf("names[%d]: empty (leave names empty for all metrics)", i))
		}
	}
	return invalid("metrics", p)
}

// MetricsBatchRequest asks a [MetricsBatcher] for the metrics of many parts at once.
type MetricsBatchRequest struct {
	// Parts are the parts to measure, at most MaxMetricsBatch. An answer is returned for
	// each, in the same order.
	Parts []MetricsRequest
}

// Validate checks the size of the batch only: a bad part within it is answered with its
// own Err (see [MetricsRequest.Validate]) and does not fail the others.
func (r MetricsBatchRequest) Validate() error {
	if len(r.Parts) > MaxMetricsBatch {
		return Errorf(CodeInvalidArgument, "metrics batch: parts: at most %d per batch, got %d", MaxMetricsBatch, len(r.Parts))
	}
	return nil
}

// ---- Deployer ----

// Validate checks that ServiceID is set, both ids of Part.Ref are set, no work item
// holds an empty command and StepTimeout is not negative. Whether a work item's node
// exists, and whether its manifests apply, is the plugin's to say.
func (r DeployRequest) Validate() error {
	var p []string
	if r.ServiceID == "" {
		p = append(p, "service_id: required")
	}
	p = append(p, refProblems("part.ref", r.Part.Ref.SliceID, r.Part.Ref.PartID, "part_id")...)
	for i, w := range r.Work {
		for j, c := range w.Commands {
			if strings.TrimSpace(c) == "" {
				p = append(p, fmt.Sprintf("work[%d].commands[%d]: empty", i, j))
			}
		}
	}
	if r.StepTimeout < 0 {
		p = append(p, fmt.Sprintf("step_timeout: must be >= 0 (0 is the plugin's default), got %s", r.StepTimeout))
	}
	return invalid("deploy", p)
}

// UndeployRequest asks a [Deployer] to remove what Deploy applied of a service.
type UndeployRequest struct {
	// ServiceID is the service to remove.
	ServiceID string
	// Part is the part as its VIM described it.
	Part Part
}

// Validate checks that ServiceID and both ids of Part.Ref are set.
func (r UndeployRequest) Validate() error {
	var p []string
	if r.ServiceID == "" {
		p = append(p, "service_id: required")
	}
	p = append(p, refProblems("part.ref", r.Part.Ref.SliceID, r.Part.Ref.PartID, "part_id")...)
	return invalid("undeploy", p)
}

// DeployStatusRequest asks a [Deployer] for the last known state of a deployment.
type DeployStatusRequest struct {
	// ServiceID is the deployed service.
	ServiceID string
	// Ref names the part it was deployed onto.
	Ref PartRef
}

// Validate checks that ServiceID and both ids of Ref are set.
func (r DeployStatusRequest) Validate() error {
	var p []string
	if r.ServiceID == "" {
		p = append(p, "service_id: required")
	}
	p = append(p, refProblems("ref", r.Ref.SliceID, r.Ref.PartID, "part_id")...)
	return invalid("deploy status", p)
}

// ---- WAN ----

// maxVNI is the largest VXLAN network identifier (24 bits).
const maxVNI = 1<<24 - 1

// maxIfname is the longest Linux interface name (IFNAMSIZ less the terminating NUL).
const maxIfname = 15

// Validate checks what every WAN plugin needs of a link and reports every problem at
// once, each naming its field: both ids of Ref; at each end a Site, an Underlay that is
// an IP address, a Bridge that is a Linux interface name and a Netns that is a name;
// two ends that differ; a VNI that fits in 24 bits. What a plugin can build (which
// namespaces it manages, the smallest rate it can shape) is the plugin's to say.
func (s LinkSpec) Validate() error {
	p := refProblems("ref", s.Ref.SliceID, s.Ref.LinkID, "link_id")
	for i, e := range []LinkEnd{s.End1, s.End2} {
		f := fmt.Sprintf("end%d", i+1)
		if e.Site == "" {
			p = append(p, f+".site: required")
		}
		switch {
		case e.Underlay == "":
			p = append(p, f+".underlay: required")
		case net.ParseIP(e.Underlay) == nil:
			p = append(p, fmt.Sprintf("%s.underlay: %q is not an IP address", f, e.Underlay))
		}
		switch b := e.Bridge; {
		case b == "":
			p = append(p, f+".bridge: required")
		case len(b) > maxIfname:
			p = append(p, fmt.Sprintf("%s.bridge: %q is longer than %d bytes", f, b, maxIfname))
		case b == "." || b == ".." || strings.ContainsAny(b, "/: \t\n\x00"):
			p = append(p, fmt.Sprintf("%s.bridge: %q is not a valid device name", f, b))
		}
		if n := e.Netns; n != "" && (n == "." || n == ".." || strings.ContainsAny(n, "/\x00")) {
			p = append(p, fmt.Sprintf("%s.netns: %q is not a namespace name", f, n))
		}
	}
	if s.End1 == s.End2 {
		p = append(p, "end2: same as end1 (a link joins two different sites, or two bridges of one site)")
	}
	if s.VNI > maxVNI {
		p = append(p, fmt.Sprintf("vni: %d is above the largest VNI %d", s.VNI, maxVNI))
	}
	if len(p) > 0 {
		return Errorf(CodeInvalidArgument, "link %s: %s", s.Ref, strings.Join(p, "; "))
	}
	return nil
}

// OfferLinkRequest asks a [WAN] whether it can build a link, and at what price.
type OfferLinkRequest struct {
	// Link is the link that would be built.
	Link LinkSpec
}

// Validate checks the link as [LinkSpec.Validate] does.
func (r OfferLinkRequest) Validate() error { return linkError("offer link", r.Link) }

// ConnectRequest asks a [WAN] to build a link.
type ConnectRequest struct {
	// Link is the link to build.
	Link LinkSpec
}

// Validate checks the link as [LinkSpec.Validate] does.
func (r ConnectRequest) Validate() error { return linkError("connect", r.Link) }

// linkError prefixes the problems of a link spec with the call's name.
func linkError(call string, l LinkSpec) error {
	if err := l.Validate(); err != nil {
		return Errorf(CodeInvalidArgument, "%s: %s", call, err.Error())
	}
	return nil
}

// DescribeLinkRequest asks a [WAN] for a link as its backend holds it.
type DescribeLinkRequest struct {
	// Ref names the link.
	Ref LinkRef
}

// Validate checks that both ids of Ref are set.
func (r DescribeLinkRequest) Validate() error {
	return invalid("describe link", refProblems("ref", r.Ref.SliceID, r.Ref.LinkID, "link_id"))
}

// DisconnectRequest asks a [WAN] to remove every device a link made.
type DisconnectRequest struct {
	// Ref names the link.
	Ref LinkRef
}

// Validate checks that both ids of Ref are set.
func (r DisconnectRequest) Validate() error {
	return invalid("disconnect", refProblems("ref", r.Ref.SliceID, r.Ref.LinkID, "link_id"))
}

// ReleaseSitesRequest asks a [SiteReleaser] to remove sites it built that nothing uses.
type ReleaseSitesRequest struct {
	// Sites are the sites to release; only each one's Site, Underlay and Netns are read.
	Sites []LinkEnd
}

// Validate checks that every site is named.
func (r ReleaseSitesRequest) Validate() error {
	var p []string
	for i, s := range r.Sites {
		if s.Site == "" {
			p = append(p, fmt.Sprintf("sites[%d].site: required", i))
		}
	}
	return invalid("release sites", p)
}

// ---- Monitor ----

// WriteRequest asks a [Monitor] to queue points.
type WriteRequest struct {
	// Points are the points to write; callers send at most MaxWritePoints.
	Points []Point
}

// Validate checks that each point has a metric and no empty tag key. What else a
// backend can store (which characters, which times) is the plugin's to say. The number
// of points is not checked: MaxWritePoints is what callers send, and a plugin takes a
// larger write whole (the SDK's message limit is what bounds it).
func (r WriteRequest) Validate() error {
	var p []string
	for i, pt := range r.Points {
		if len(p) >= 5 {
			// One bad batch of thousands must not make an error of thousands of lines.
			p = append(p, "...")
			break
		}
		if pt.Metric == "" {
			p = append(p, fmt.Sprintf("points[%d].metric: required", i))
		}
		if _, ok := pt.Tags[""]; ok {
			p = append(p, fmt.Sprintf("points[%d].tags: empty key", i))
		}
	}
	return invalid("write", p)
}

// Validate checks that Metric is set, Last is not negative, End is not before Start and
// no tag key is empty.
func (q Query) Validate() error {
	var p []string
	if q.Metric == "" {
		p = append(p, "metric: required")
	}
	if q.Last < 0 {
		p = append(p, fmt.Sprintf("last: must be zero (all points) or positive, got %d", q.Last))
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.End.Before(q.Start) {
		p = append(p, fmt.Sprintf("end: %s is before start %s",
			q.End.UTC().Format(time.RFC3339Nano), q.Start.UTC().Format(time.RFC3339Nano)))
	}
	if _, ok := q.Tags[""]; ok {
		p = append(p, "tags: empty key")
	}
	return invalid("query", p)
}
