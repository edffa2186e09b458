package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/necos/necos/core/spec"
	"github.com/necos/necos/core/sro"
	"github.com/necos/necos/core/store"
	"github.com/necos/necos/sdk"
)

// VIMKubernetes is the NECOS VIM name of Kubernetes parts, the only ones manifests can
// be applied to.
const VIMKubernetes = "KUBERNETES"

// plan is a checked deployment: what to hand to which part's deployer.
type plan struct {
	view   *sro.View
	id     string
	tenant string
	doc    string
	// policies are the document's policies as written (references are substituted when
	// a policy's post-deployment runs, against the slice as it is then).
	policies []spec.Policy
	parts    []partPlan
	warnings []string
}

// partPlan is the work of one part.
type partPlan struct {
	part *store.Part
	dep  sdk.Deployer
	work []sdk.NodeWork
}

// DeriveID returns the id of a service the tenant did not name: "svc-" and 12 hex digits
// of the SHA-256 of the parsed document (before references are substituted), so the
// same document always names the same service.
func DeriveID(svc *spec.Service) string {
	b, _ := json.Marshal(struct {
		Slice string             `json:"slice"`
		Parts []spec.ServicePart `json:"parts"`
	}{svc.SliceID, svc.Parts})
	sum := sha256.Sum256(b)
	return "svc-" + hex.EncodeToString(sum[:6])
}

// resolverFor returns the reference resolver of a created slice: its spec (with the
// parts elasticity added, which the spec lacks) and what was created of it.
func (o *Orchestrator) resolverFor(v *sro.View) (*spec.Slice, func(string) (string, bool), error) {
	s, err := v.WholeSpec()
	if err != nil {
		return nil, nil, err
	}
	st := o.opts.Slices.Status(v)
	// A Kubernetes part's namespace is an attribute of what its provider made (the status
	// rendered to tenants does not carry attributes).
	for _, p := range v.Parts {
		if ps, ok := st.Parts[p.Name]; ok && p.Observed != nil && p.Observed.Attributes[AttrNamespace] != "" {
			ps.Namespace = p.Observed.Attributes[AttrNamespace]
			st.Parts[p.Name] = ps
		}
	}
	return s, spec.Resolver(s, st), nil
}

// AttrNamespace is the part attribute naming a Kubernetes part's namespace
// (vim-kubernetes sets it), which ${parts.<part>.namespace} gives.
const AttrNamespace = "namespace"

// plan checks a service against the slice — references, parts, VDUs, manifests only on
// Kubernetes parts, policy names — and finds each part's deployer. Every problem of the
// document is reported at once in a *spec.Error; nothing has run.
func (o *Orchestrator) plan(ctx context.Context, v *sro.View, svc *spec.Service, id string, withPolicies bool) (*plan, error) {
	s, resolve, err := o.resolverFor(v)
	if err != nil {
		return nil, err
	}
	expanded := *svc
	if err := spec.Expand(&expanded, resolve); err != nil {
		return nil, err
	}
	p := &plan{view: v, id: id}
	for _, w := range svc.Warnings {
		p.warnings = append(p.warnings, w.String())
	}
	var problems []spec.FieldError
	bad := func(path, format string, args ...any) {
		problems = append(problems, spec.FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	var notReady []string
	for _, sp := range expanded.Parts {
		part, ok := v.Part(sp.Name)
		if !ok {
			bad("parts."+sp.Name, "the slice has no dc-slice-part %q (it has %s)", sp.Name, partNames(v))
			continue
		}
		if part.State != store.PartReady || part.Observed == nil {
			notReady = append(notReady, fmt.Sprintf("%s is %s", part.Name, part.State))
			continue
		}
		dp, _ := s.Part(sp.Name)
		vim := ""
		if dp != nil {
			vim = dp.VIM.Name
		}
		pp := partPlan{part: part}
		for _, vdu := range sp.VDUs {
			at := "parts." + sp.Name + ".vdus." + vdu.Name
			node, ok := resolveNode(part, dp, vdu.Name)
			if vdu.Name == "" {
				// Only a post-deployment without a node gets here: the whole part.
				node, ok = "", true
			}
			if !ok {
				bad(at+".name", "part %s has no VDU or node %q (VDUs: %s; nodes: %s)", sp.Name, vdu.Name,
					vduNames(part), nodeNames(part))
				continue
			}
			if vdu.VIM != "" && vim != "" && !strings.EqualFold(vdu.VIM, vim) {
				p.warnings = append(p.warnings, fmt.Sprintf("%s.VIM: the part runs %s, the document says %s", at, vim, vdu.VIM))
			}
			if len(vdu.Manifests) > 0 && vim != "" && !strings.EqualFold(vim, VIMKubernetes) {
				bad(at+".manifests", "part %s runs %s: manifests go onto %s parts only (run commands here)", sp.Name, vim, VIMKubernetes)
			}
			if len(vdu.Commands) == 0 && len(vdu.Manifests) == 0 {
				continue
			}
			pp.work = append(pp.work, sdk.NodeWork{Node: node, Namespace: vdu.Namespace, Commands: vdu.Commands,
				Manifests: vdu.Manifests})
		}
		if len(pp.work) > 0 {
			p.parts = append(p.parts, pp)
		}
	}
	if withPolicies {
		p.policies = svc.Policies()
		problems = append(problems, o.checkPolicies(ctx, v.Slice.ID, id, p.policies)...)
	}
	if len(problems) > 0 {
		return nil, &spec.Error{Problems: problems}
	}
	if len(notReady) > 0 {
		return nil, fmt.Errorf("slice %s: %s: %w", v.Slice.ID, strings.Join(notReady, ", "), ErrSliceNotReady)
	}
	for i := range p.parts {
		pp := &p.parts[i]
		dep, err := o.opts.Deployers.Deployer(ctx, pp.part.Provider)
		if err != nil {
			return nil, fmt.Errorf("part %s at %s: %v: %w", pp.part.Name, pp.part.Provider, err, ErrNoDeployer)
		}
		pp.dep = dep
	}
	return p, nil
}

// checkPolicies reports policy names used twice in the document, or already registered
// on the slice by someone else (the API, another service).
func (o *Orchestrator) checkPolicies(ctx context.Context, sliceID, id string, pols []spec.Policy) []spec.FieldError {
	var problems []spec.FieldError
	if len(pols) == 0 {
		return nil
	}
	existing, err := o.store.ListPolicies(ctx, sliceID)
	if err != nil {
		return []spec.FieldError{{Path: "elasticity", Message: fmt.Sprintf("cannot read the slice's policies: %v", err)}}
	}
	owner := map[string]string{}
	for _, e := range existing {
		owner[e.Name] = e.Source
	}
	seen := map[string]string{}
	for _, pol := range pols {
		at := "parts." + pol.Part + ".elasticity." + pol.Name
		if other, dup := seen[pol.Name]; dup {
			problems = append(problems, spec.FieldError{Path: at + ".name",
				Message: fmt.Sprintf("policy %q is also written under part %s: policy names are unique within a slice", pol.Name, other)})
		}
		seen[pol.Name] = pol.Part
		if src, ok := owner[pol.Name]; ok && src != policySource(id) {
			problems = append(problems, spec.FieldError{Path: at + ".name",
				Message: fmt.Sprintf("the slice already has a policy %q, registered by %s", pol.Name, src)})
		}
	}
	return problems
}

func policySource(id string) string { return "service:" + id }

// registerPolicies registers the service's policies and unregisters those an earlier
// deployment of it registered and this one no longer has.
func (o *Orchestrator) registerPolicies(ctx context.Context, sliceID, id string, pols []spec.Policy) error {
	keep := map[string]bool{}
	for _, pol := range pols {
		keep[pol.Name] = true
		err := o.store.PutPolicy(ctx, &store.Policy{SliceID: sliceID, Name: pol.Name, Source: policySource(id), Spec: pol},
			store.Event{Type: "policy.registered", Part: pol.Part, Message: fmt.Sprintf("policy %s (service %s)", pol.Name, id),
				Data: map[string]string{"service": id, "policy": pol.Name}})
		if err != nil {
			return fmt.Errorf("register policy %s: %w", pol.Name, err)
		}
	}
	return o.unregisterPolicies(ctx, sliceID, id, keep)
}

// unregisterPolicies removes the service's policies not in keep.
func (o *Orchestrator) unregisterPolicies(ctx context.Context, sliceID, id string, keep map[string]bool) error {
	existing, err := o.store.ListPolicies(ctx, sliceID)
	if err != nil {
		return fmt.Errorf("list policies of slice %s: %w", sliceID, err)
	}
	for _, e := range existing {
		if e.Source != policySource(id) || keep[e.Name] {
			continue
		}
		if err := o.store.DeletePolicy(ctx, sliceID, e.Name, store.Event{Type: "policy.unregistered", Part: e.Spec.Part,
			Message: fmt.Sprintf("policy %s (service %s)", e.Name, id), Data: map[string]string{"service": id, "policy": e.Name}}); err != nil {
			return fmt.Errorf("unregister policy %s: %w", e.Name, err)
		}
	}
	return nil
}

// resolveNode finds what a service's vdu entry names in a part: a node (by name, or by
// backend id as the original's node ids), or a VDU (by name, or by the id the slice's
// spec gave it). It returns the node or VDU name a deployer knows.
func resolveNode(part *store.Part, dp *spec.DCPart, name string) (string, bool) {
	nodes := part.Observed.Nodes
	for _, n := range nodes {
		if n.Name == name || n.VDU == name {
			return name, true
		}
	}
	for _, vdu := range part.Spec.VDUs {
		if vdu.Name == name {
			return name, true
		}
	}
	for _, n := range nodes {
		if n.ID == name {
			return n.Name, true
		}
	}
	if dp != nil {
		for _, vdu := range dp.VIM.VDUs {
			if vdu.ID == name {
				return vdu.Name, true
			}
		}
	}
	return "", false
}

// vduOf returns the VDU of a node (or the name itself when it is a VDU).
func vduOf(part *store.Part, name string) string {
	if part.Observed != nil {
		for _, n := range part.Observed.Nodes {
			if n.Name == name {
				return n.VDU
			}
		}
	}
	for _, vdu := range part.Spec.VDUs {
		if vdu.Name == name {
			return name
		}
	}
	return ""
}

func partNames(v *sro.View) string {
	var names []string
	for _, p := range v.Parts {
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func vduNames(p *store.Part) string {
	var names []string
	for _, v := range p.Spec.VDUs {
		names = append(names, v.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func nodeNames(p *store.Part) string {
	var names []string
	for _, n := range p.Observed.Nodes {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func joinSemi(s []string) string { return strings.Join(s, "; ") }
