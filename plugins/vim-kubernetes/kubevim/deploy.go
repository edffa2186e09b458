package kubevim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/necos/necos/sdk"
)

// The Deployer puts a tenant's service onto a part: the Kubernetes manifests of each
// node's work are applied into the part's namespace (server-side apply, field manager
// "necos"), and its commands run as a Job there. Everything runs as the tenant (the
// plugin impersonates the part's ServiceAccount), so a manifest can do no more than the
// tenant could with its own kubeconfig. What a deployment applied is labelled
// necos.io/service=<id> and recorded in a ConfigMap of the namespace
// (necos-service-<hash>), which DeployStatus and Undeploy read: both work after a restart.

// DefaultStepTimeout bounds a step when the request sets none.
const DefaultStepTimeout = 5 * time.Minute

// partNode names the work of a NodeWork without a node: the part as a whole.
const partNode = "part"

// objRef names an object a deployment applied.
type objRef struct {
	Group    string `json:"group,omitempty"`
	Version  string `json:"version"`
	Resource string `json:"resource"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
}

func (o objRef) gvr() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: o.Group, Version: o.Version, Resource: o.Resource}
}

// jobRef is the Job running a node's commands, whose results are the node's steps from
// First on.
type jobRef struct {
	Node     string   `json:"node"`
	Name     string   `json:"name"`
	Commands []string `json:"commands"`
	First    int      `json:"first"`
}

// record is what the namespace keeps of a deployment.
type record struct {
	ServiceID  string         `json:"service_id"`
	Objects    []objRef       `json:"objects"`
	Jobs       []jobRef       `json:"jobs"`
	Deployment sdk.Deployment `json:"deployment"`
}

// planned is one object to apply.
type planned struct {
	node string
	obj  *unstructured.Unstructured
	ref  objRef
	// vdu is the VDU the object is deployed for (nil: the part as a whole).
	vdu *vduLayout
}

// nodeWork is the work of one node, the request's entries for it merged in order.
type nodeWork struct {
	node     string
	objects  []planned
	commands []string
}

func recordName(serviceID string) string { return "necos-service-" + hashHex(serviceID, 16) }

// Deploy applies the manifests and runs the commands of every node, and returns when
// each node is done or failed; a commands' Job is stopped by the cluster once its step
// timeouts have passed. Malformed manifests, unknown kinds or nodes and cluster-scoped
// kinds fail the request before anything is applied.
func (p *Plugin) Deploy(ctx context.Context, req sdk.DeployRequest) (sdk.Deployment, error) {
	s, k, err := p.state()
	if err != nil {
		return sdk.Deployment{}, err
	}
	ns, err := mustFind(ctx, s, k, req.Part.Ref)
	if err != nil {
		return sdk.Deployment{}, err
	}
	if ns.DeletionTimestamp != nil {
		return sdk.Deployment{}, sdk.Errorf(sdk.CodeFailedPrecondition, "deploy %s: part %s is being deleted", req.ServiceID, req.Part.Ref)
	}
	l, err := parseLayout(ns.Annotations[annLayout])
	if err != nil {
		return sdk.Deployment{}, sdk.Errorf(sdk.CodeInternal, "deploy %s: namespace %s: %v", req.ServiceID, ns.Name, err)
	}
	works, err := plan(k, l, req)
	if err != nil {
		return sdk.Deployment{}, err
	}
	tc, td, err := tenantClients(k, ns.Name)
	if err != nil {
		return sdk.Deployment{}, err
	}
	stepTimeout := req.StepTimeout
	if stepTimeout <= 0 {
		stepTimeout = DefaultStepTimeout
	}
	prev, err := readRecord(ctx, k, ns.Name, req.ServiceID)
	if err != nil {
		return sdk.Deployment{}, err
	}

	rec := &record{ServiceID: req.ServiceID,
		Deployment: sdk.Deployment{ServiceID: req.ServiceID, Ref: req.Part.Ref, State: sdk.DeployRunning}}
	for _, w := range works {
		for _, o := range w.objects {
			rec.Objects = append(rec.Objects, o.ref)
		}
	}
	// Recorded before anything is applied, together with what the previous deployment
	// applied: a crash half-way leaves nothing Undeploy does not know of.
	pending := *rec
	if prev != nil {
		pending.Objects = unionRefs(rec.Objects, prev.Objects)
		pending.Jobs = prev.Jobs
	}
	if err := writeRecord(ctx, k, ns.Name, &pending); err != nil {
		return sdk.Deployment{}, err
	}

	label := serviceLabel(req.ServiceID)
	for _, w := range works {
		st := sdk.NodeStatus{Node: w.node, State: sdk.DeployRunning}
		failed := false
		for _, o := range w.objects {
			step := sdk.StepResult{Index: len(st.Steps), Kind: sdk.StepManifest, Step: o.ref.Kind + "/" + o.ref.Name,
				Started: time.Now()}
			if failed {
				step.State = sdk.DeploySkipped
			} else if err := applyObject(ctx, td, ns.Name, label, req.ServiceID, o); err != nil {
				step.State, step.Error, failed = sdk.DeployFailed, err.Error(), true
			} else {
				step.State = sdk.DeploySucceeded
			}
			step.Duration = time.Since(step.Started)
			st.Steps = append(st.Steps, step)
		}
		if len(w.commands) > 0 {
			first := len(st.Steps)
			for i, c := range w.commands {
				st.Steps = append(st.Steps, sdk.StepResult{Index: first + i, Kind: sdk.StepCommand, Step: c,
					State: sdk.DeployPending})
			}
			if failed {
				for i := first; i < len(st.Steps); i++ {
					st.Steps[i].State = sdk.DeploySkipped
				}
			} else {
				name, err := ensureJob(ctx, tc, s, ns.Name, req.ServiceID, w, stepTimeout)
				if err != nil {
					st.Steps[first].State, st.Steps[first].Error = sdk.DeployFailed, err.Error()
					for i := first + 1; i < len(st.Steps); i++ {
						st.Steps[i].State = sdk.DeploySkipped
					}
				} else {
					rec.Jobs = append(rec.Jobs, jobRef{Node: w.node, Name: name, Commands: w.commands, First: first})
				}
			}
		}
		rec.Deployment.Nodes = append(rec.Deployment.Nodes, st)
	}
	if prev != nil {
		p.prune(ctx, k, ns.Name, label, prev, rec)
	}
	// Pods made from templates start at the manifest's size: bring them (and replicas)
	// to what the VDUs' nodes are now.
	if err := syncWorkloads(ctx, k, ns.Name, l); err != nil {
		p.log.Warn("workloads not yet sized for their VDUs", "service", req.ServiceID, "error", err)
	}
	rec.Deployment = p.waitJobs(ctx, k, ns.Name, rec, stepTimeout)
	// Deployed means running: wait (a step's timeout at most) for the workloads to be
	// ready, else say what they wait for.
	rec.Deployment = withReadiness(ctx, k, ns.Name, rec.Objects, rec.Deployment, stepTimeout)
	if err := writeRecord(ctx, k, ns.Name, rec); err != nil {
		return sdk.Deployment{}, err
	}
	p.log.Info("service deployed", "service", req.ServiceID, "part", req.Part.Ref.String(), "namespace", ns.Name,
		"state", rec.Deployment.State, "objects", len(rec.Objects), "jobs", len(rec.Jobs))
	return rec.Deployment, nil
}

// plan parses and checks every manifest and node of the request: all problems at once,
// nothing applied when there is one.
func plan(k *cluster, l layout, req sdk.DeployRequest) ([]nodeWork, error) {
	var problems []string
	var works []nodeWork
	index := map[string]int{}
	known := map[string]bool{}
	for _, n := range l.nodes() {
		known[n.Name] = true
	}
	for _, v := range l.VDUs {
		known[v.Name] = true
	}
	for i, w := range req.Work {
		at := fmt.Sprintf("work[%d]", i)
		node := w.Node
		if node == "" {
			node = partNode
		} else if !known[node] {
			problems = append(problems, fmt.Sprintf("%s.node: the part has no node or VDU %q", at, node))
		}
		wi, ok := index[node]
		if !ok {
			wi = len(works)
			index[node] = wi
			works = append(works, nodeWork{node: node})
		}
		for j, m := range w.Manifests {
			objs, err := decodeManifest(m)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s.manifests[%d]: %v", at, j, err))
				continue
			}
			for _, o := range objs {
				ref, err := mapObject(k, o)
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s.manifests[%d]: %v", at, j, err))
					continue
				}
				pl := planned{node: node, obj: o, ref: ref}
				if vi, ok := l.vdu(vduOfWork(l, node)); ok {
					pl.vdu = &l.VDUs[vi]
				}
				works[wi].objects = append(works[wi].objects, pl)
			}
		}
		works[wi].commands = append(works[wi].commands, w.Commands...)
	}
	seen := map[objRef]string{}
	for _, w := range works {
		for _, o := range w.objects {
			if other, dup := seen[o.ref]; dup {
				problems = append(problems, fmt.Sprintf("%s %s is in the work of both %s and %s", o.ref.Kind, o.ref.Name, other, w.node))
			}
			seen[o.ref] = w.node
		}
	}
	if len(problems) > 0 {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "deploy %s: %s", req.ServiceID, strings.Join(problems, "; "))
	}
	return works, nil
}

// decodeManifest reads the objects of a YAML (or JSON) document stream; Lists are
// expanded.
func decodeManifest(m string) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(m), 4096)
	var out []*unstructured.Unstructured
	for doc := 0; ; doc++ {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("document %d: %v", doc, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("document %d: %v", doc, err)
			}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			continue
		}
		out = append(out, u)
	}
	for i, u := range out {
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			return nil, fmt.Errorf("object %d: apiVersion and kind are required", i)
		}
		if u.GetName() == "" {
			return nil, fmt.Errorf("%s %d: metadata.name is required (generateName cannot be applied again)", u.GetKind(), i)
		}
	}
	return out, nil
}

// mapObject finds an object's resource and refuses cluster-scoped kinds: a part is a
// namespace.
func mapObject(k *cluster, u *unstructured.Unstructured) (objRef, error) {
	gvk := u.GroupVersionKind()
	m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// A kind installed (a CRD) since discovery was cached.
		k.mapper.Reset()
		m, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		if meta.IsNoMatchError(err) {
			return objRef{}, fmt.Errorf("%s %s: the cluster serves no such kind", gvk.Kind, u.GetName())
		}
		return objRef{}, apiError(err, "map "+gvk.String())
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return objRef{}, fmt.Errorf("%s %s: cluster-scoped kinds cannot be deployed into a part", gvk.Kind, u.GetName())
	}
	return objRef{Group: m.Resource.Group, Version: m.Resource.Version, Resource: m.Resource.Resource,
		Kind: gvk.Kind, Name: u.GetName()}, nil
}

// tenantClients are clients that act as the part's ServiceAccount.
func tenantClients(k *cluster, ns string) (kubernetes.Interface, dynamic.Interface, error) {
	c := rest.CopyConfig(k.rest)
	c.Impersonate = rest.ImpersonationConfig{
		UserName: fmt.Sprintf("system:serviceaccount:%s:%s", ns, tenantName),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, nil, fmt.Errorf("tenant client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return nil, nil, fmt.Errorf("tenant client: %w", err)
	}
	return cs, dyn, nil
}

// applyObject applies o into namespace ns, labelled with its service.
func applyObject(ctx context.Context, dyn dynamic.Interface, ns, label, serviceID string, o planned) error {
	u := o.obj.DeepCopy()
	// Forced into the part, whatever namespace the manifest names (the NECOS examples
	// used one of their own cluster, "dojot").
	u.SetNamespace(ns)
	lbl := u.GetLabels()
	if lbl == nil {
		lbl = map[string]string{}
	}
	lbl[labelService], lbl[labelManagedBy] = label, managedBy
	u.SetLabels(lbl)
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[annServiceID] = serviceID
	u.SetAnnotations(ann)
	if o.ref.Group == "" && o.ref.Kind == "Service" {
		if err := keepClientSource(u); err != nil {
			return err
		}
	}
	if o.vdu != nil {
		if err := shapeForVDU(u, *o.vdu); err != nil {
			return err
		}
	}
	// Fields the server owns cannot be applied.
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(u.Object, "status")
	_, err := dyn.Resource(o.ref.gvr()).Namespace(ns).Apply(ctx, u.GetName(), u,
		metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply %s/%s: %w", o.ref.Kind, o.ref.Name, err)
	}
	return nil
}

// prune deletes what the previous deployment applied and this one does not.
func (p *Plugin) prune(ctx context.Context, k *cluster, ns, label string, prev, cur *record) {
	keep := map[objRef]bool{}
	for _, o := range cur.Objects {
		keep[o] = true
	}
	for _, o := range prev.Objects {
		if !keep[o] {
			if err := deleteObject(ctx, k, ns, label, o); err != nil {
				p.log.Warn("prune", "service", cur.ServiceID, "object", o.Kind+"/"+o.Name, "error", err)
			}
		}
	}
	jobs := map[string]bool{}
	for _, j := range cur.Jobs {
		jobs[j.Name] = true
	}
	for _, j := range prev.Jobs {
		if !jobs[j.Name] {
			if err := deleteJob(ctx, k, ns, j.Name); err != nil {
				p.log.Warn("prune", "service", cur.ServiceID, "job", j.Name, "error", err)
			}
		}
	}
}

func unionRefs(a, b []objRef) []objRef {
	out := append([]objRef(nil), a...)
	seen := map[objRef]bool{}
	for _, o := range a {
		seen[o] = true
	}
	for _, o := range b {
		if !seen[o] {
			out = append(out, o)
		}
	}
	return out
}

// deleteObject deletes an object the service applied, and nothing the service does not
// own (the record is in the tenant's namespace: the label is checked on the object).
func deleteObject(ctx context.Context, k *cluster, ns, label string, o objRef) error {
	r := k.dyn.Resource(o.gvr()).Namespace(ns)
	got, err := r.Get(ctx, o.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if got.GetLabels()[labelService] != label {
		return nil
	}
	bg := metav1.DeletePropagationBackground
	err = r.Delete(ctx, o.Name, metav1.DeleteOptions{PropagationPolicy: &bg,
		Preconditions: &metav1.Preconditions{UID: ptr(got.GetUID())}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func ptr[T any](v T) *T { return &v }

func readRecord(ctx context.Context, k *cluster, ns, serviceID string) (*record, error) {
	cm, err := k.cs.CoreV1().ConfigMaps(ns).Get(ctx, recordName(serviceID), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, apiError(err, "read deployment record")
	}
	var rec record
	if err := json.Unmarshal([]byte(cm.Data["deployment.json"]), &rec); err != nil || rec.ServiceID != serviceID {
		return nil, sdk.Errorf(sdk.CodeInternal, "deployment record %s/%s of service %s is damaged", ns, cm.Name, serviceID)
	}
	return &rec, nil
}

func writeRecord(ctx context.Context, k *cluster, ns string, rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode deployment record: %w", err)
	}
	_, err = k.cs.CoreV1().ConfigMaps(ns).Apply(ctx, corev1ac.ConfigMap(recordName(rec.ServiceID), ns).
		WithLabels(map[string]string{labelManagedBy: managedBy, labelService: serviceLabel(rec.ServiceID)}).
		WithAnnotations(map[string]string{annServiceID: rec.ServiceID}).
		WithData(map[string]string{"deployment.json": string(b)}), applyOpts)
	return apiError(err, "write deployment record")
}

// DeployStatus returns the deployment as recorded, its commands' steps refreshed from
// their Jobs.
func (p *Plugin) DeployStatus(ctx context.Context, req sdk.DeployStatusRequest) (sdk.Deployment, error) {
	serviceID := req.ServiceID
	ref := req.Ref
	s, k, err := p.state()
	if err != nil {
		return sdk.Deployment{}, err
	}
	ns, err := mustFind(ctx, s, k, ref)
	if err != nil {
		return sdk.Deployment{}, err
	}
	rec, err := readRecord(ctx, k, ns.Name, serviceID)
	if err != nil {
		return sdk.Deployment{}, err
	}
	if rec == nil {
		return sdk.Deployment{}, sdk.Errorf(sdk.CodeNotFound, "service %s is not deployed on part %s", serviceID, ref)
	}
	d, _ := refreshJobs(ctx, k, ns.Name, rec)
	// Evaluated afresh: an applied service becomes succeeded once its pods are ready.
	return withReadiness(ctx, k, ns.Name, rec.Objects, d, 0), nil
}

// Undeploy deletes what the service applied and its Jobs (with their pods), then its
// record. An unknown service or part is not an error.
func (p *Plugin) Undeploy(ctx context.Context, req sdk.UndeployRequest) error {
	serviceID := req.ServiceID
	part := req.Part
	s, k, err := p.state()
	if err != nil {
		return err
	}
	ns, err := find(ctx, s, k, part.Ref)
	if err != nil || ns == nil {
		return err
	}
	rec, err := readRecord(ctx, k, ns.Name, serviceID)
	if err != nil || rec == nil {
		return err
	}
	label := serviceLabel(serviceID)
	var errs []error
	for _, o := range rec.Objects {
		if err := deleteObject(ctx, k, ns.Name, label, o); err != nil {
			errs = append(errs, fmt.Errorf("delete %s/%s: %w", o.Kind, o.Name, err))
		}
	}
	for _, j := range rec.Jobs {
		if err := deleteJob(ctx, k, ns.Name, j.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete job %s: %w", j.Name, err))
		}
	}
	if len(errs) > 0 {
		// The record stays, so that a retry finds what is left.
		return apiError(errors.Join(errs...), fmt.Sprintf("undeploy %s from part %s", serviceID, part.Ref))
	}
	err = k.cs.CoreV1().ConfigMaps(ns.Name).Delete(ctx, recordName(serviceID), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(err, fmt.Sprintf("undeploy %s: delete record", serviceID))
	}
	p.log.Info("service undeployed", "service", serviceID, "part", part.Ref.String(), "objects", len(rec.Objects),
		"jobs", len(rec.Jobs))
	return nil
}

// failedSteps describes the first failed step of each failed node, so that a failed
// deployment's message says where and why (sdk.Deployment.Message).
func failedSteps(d sdk.Deployment) []string {
	var out []string
	for _, n := range d.Nodes {
		for _, st := range n.Steps {
			if st.State != sdk.DeployFailed {
				continue
			}
			why := st.Error
			if why == "" {
				why = fmt.Sprintf("exit code %d", st.ExitCode)
			}
			out = append(out, fmt.Sprintf("%s step %d (%s): %s", n.Node, st.Index, st.Step, why))
			break
		}
	}
	return out
}

// summarize sets the states of nodes and deployment from their steps: failed when a
// step failed, running while one is pending or running, else succeeded.
func summarize(d *sdk.Deployment) {
	overall := sdk.DeploySucceeded
	for i := range d.Nodes {
		n := &d.Nodes[i]
		n.State = sdk.DeploySucceeded
		for _, s := range n.Steps {
			switch s.State {
			case sdk.DeployFailed:
				n.State = sdk.DeployFailed
			case sdk.DeployPending, sdk.DeployRunning:
				if n.State != sdk.DeployFailed {
					n.State = sdk.DeployRunning
				}
			}
		}
		switch {
		case n.State == sdk.DeployFailed:
			overall = sdk.DeployFailed
		case n.State == sdk.DeployRunning && overall != sdk.DeployFailed:
			overall = sdk.DeployRunning
		}
	}
	d.State = overall
}

// podPhase is a short account of a Job's pod, for messages.
func podPhase(pod *corev1.Pod) string {
	if pod == nil {
		return "no pod yet"
	}
	msg := "pod " + pod.Name + " " + string(pod.Status.Phase)
	if pod.Spec.NodeName == "" && pod.Status.Phase == corev1.PodPending {
		msg += ", not scheduled to a node yet"
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
				msg += ": " + c.Message
			}
		}
	}
	return msg
}
