package kubevim

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	netv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	"github.com/necos/necos/sdk"
)

// pollInterval paces the waits for the cluster's controllers.
const pollInterval = 100 * time.Millisecond

var applyOpts = metav1.ApplyOptions{FieldManager: fieldManager, Force: true}

// Create builds the part, or returns it when it exists. It returns once the quota is
// enforced and the namespace has its default ServiceAccount: from then on the tenant's
// workloads are admitted and capped.
func (p *Plugin) Create(ctx context.Context, req sdk.CreateRequest) (sdk.Part, error) {
	spec := req.Part
	s, k, err := p.state()
	if err != nil {
		return sdk.Part{}, err
	}
	begin := time.Now()
	ns, created, err := p.claim(ctx, s, k, spec)
	if err != nil {
		return sdk.Part{}, fmt.Errorf("create part %s: %w", spec.Ref, err)
	}
	l, err := parseLayout(ns.Annotations[annLayout])
	if err != nil {
		return sdk.Part{}, sdk.Errorf(sdk.CodeInternal, "create part %s: namespace %s: %v", spec.Ref, ns.Name, err)
	}
	// Also on a repeated Create: puts back what a crash or a person removed.
	if err := ensureObjects(ctx, k, ns, l, s.PodCIDRs); err != nil {
		return sdk.Part{}, fmt.Errorf("create part %s: %w", spec.Ref, err)
	}
	if err := waitReady(ctx, s, k, ns.Name, quotaHard(l.total())); err != nil {
		return sdk.Part{}, fmt.Errorf("create part %s: %w", spec.Ref, err)
	}
	part, err := p.describe(ctx, s, k, ns)
	if err != nil {
		return sdk.Part{}, fmt.Errorf("create part %s: %w", spec.Ref, err)
	}
	if created {
		p.log.Info("part created", "part", spec.Ref.String(), "namespace", ns.Name, "nodes", len(part.Nodes),
			"cpus", part.Allocated.CPUs, "memory_mb", part.Allocated.MemoryMB, "elapsed", time.Since(begin).String())
	}
	return part, nil
}

// claim finds the part's namespace or, when there is room, creates it with the part's
// layout; the capacity check and the creation happen under p.grant, so concurrent
// creates cannot both take the last room.
func (p *Plugin) claim(ctx context.Context, s settings, k *cluster, spec sdk.PartSpec) (*corev1.Namespace, bool, error) {
	p.grant.Lock()
	defer p.grant.Unlock()
	ns, err := find(ctx, s, k, spec.Ref)
	if err != nil {
		return nil, false, err
	}
	if ns != nil {
		if ns.DeletionTimestamp != nil {
			return nil, false, sdk.Errorf(sdk.CodeUnavailable, "namespace %s is being deleted; retry once it is gone", ns.Name)
		}
		return ns, false, nil
	}
	_, free, err := available(ctx, s, k, "")
	if err != nil {
		return nil, false, err
	}
	if ok, why := spec.Resources().Fits(free); !ok {
		return nil, false, sdk.Errorf(sdk.CodeResourceExhausted, "provider %s: %s", s.provider.Name, why)
	}
	want := newNamespace(s, spec, p.log)
	primary, fallback := namespaceNames(spec.Ref)
	for _, name := range []string{primary, fallback} {
		want.Name = name
		got, err := k.cs.CoreV1().Namespaces().Create(ctx, want, metav1.CreateOptions{FieldManager: fieldManager})
		if err == nil {
			return got, true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, false, apiError(err, "create namespace "+name)
		}
		// Taken: by this part (another process won the race) or by another one whose ids
		// sanitize to the same name, which the fallback name (with a hash) avoids.
		got, gerr := k.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if gerr == nil && ownedBy(got, s, spec.Ref) {
			return got, false, nil
		}
	}
	return nil, false, sdk.Errorf(sdk.CodeAborted, "namespaces %s and %s are taken by others", primary, fallback)
}

func newNamespace(s settings, spec sdk.PartSpec, log hclog.Logger) *corev1.Namespace {
	lbl := map[string]string{}
	for key, v := range spec.Labels {
		// The part's own labels are extras: those Kubernetes cannot hold are left out
		// rather than failing the part.
		if errs := validation.IsQualifiedName(key); len(errs) > 0 || strings.HasPrefix(key, "necos.io/") {
			log.Warn("label left out", "part", spec.Ref.String(), "label", key, "problem", strings.Join(errs, "; "))
			continue
		}
		lbl[key] = labelValue(v)
	}
	maps.Copy(lbl, map[string]string{
		labelManagedBy: managedBy,
		labelProvider:  labelValue(s.provider.Name),
		labelKey:       partKey(spec.Ref),
		labelSlice:     labelValue(spec.Ref.SliceID),
		labelSliceKey:  sliceKey(spec.Ref.SliceID),
		labelPart:      labelValue(spec.Ref.PartID),
	})
	if spec.Tenant != "" {
		lbl[labelTenant] = labelValue(spec.Tenant)
	}
	if s.PodSecurity != "none" {
		lbl[labelPodSec] = s.PodSecurity
	}
	ann := map[string]string{
		annSliceID: spec.Ref.SliceID,
		annPartID:  spec.Ref.PartID,
		annLayout:  layoutOf(spec).encode(),
	}
	for key, v := range map[string]string{annPartName: spec.Name, annPartType: spec.Type, annTenant: spec.Tenant,
		annLocation: spec.Location, annBridge: spec.Bridge} {
		if v != "" {
			ann[key] = v
		}
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: ann}}
}

// ownedBy reports whether ns is the namespace of ref at this provider.
func ownedBy(ns *corev1.Namespace, s settings, ref sdk.PartRef) bool {
	return ns.Labels[labelManagedBy] == managedBy && ns.Labels[labelProvider] == labelValue(s.provider.Name) &&
		ns.Annotations[annSliceID] == ref.SliceID && ns.Annotations[annPartID] == ref.PartID
}

// find returns the part's namespace, found from its labels, or nil.
func find(ctx context.Context, s settings, k *cluster, ref sdk.PartRef) (*corev1.Namespace, error) {
	sel := labels.SelectorFromSet(labels.Set{labelManagedBy: managedBy,
		labelProvider: labelValue(s.provider.Name), labelKey: partKey(ref)})
	list, err := k.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, apiError(err, "find part "+ref.String())
	}
	for i := range list.Items {
		if ownedBy(&list.Items[i], s, ref) {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

// mustFind is find with CodeNotFound for a missing part.
func mustFind(ctx context.Context, s settings, k *cluster, ref sdk.PartRef) (*corev1.Namespace, error) {
	ns, err := find(ctx, s, k, ref)
	if err == nil && ns == nil {
		err = sdk.Errorf(sdk.CodeNotFound, "part %s not found at provider %s", ref, s.provider.Name)
	}
	return ns, err
}

// ensureObjects applies what a part's namespace holds besides workloads, sized for l;
// podCIDRs is the cluster's pod network (the config's pod_cidrs).
func ensureObjects(ctx context.Context, k *cluster, namespace *corev1.Namespace, l layout, podCIDRs []string) error {
	ns := namespace.Name
	if err := applyLimits(ctx, k, ns, l); err != nil {
		return err
	}
	managed := map[string]string{labelManagedBy: managedBy}
	if _, err := k.cs.CoreV1().ServiceAccounts(ns).Apply(ctx,
		corev1ac.ServiceAccount(tenantName, ns).WithLabels(managed), applyOpts); err != nil {
		return apiError(err, "apply service account")
	}
	if _, err := k.cs.RbacV1().Roles(ns).Apply(ctx,
		rbacv1ac.Role(tenantName, ns).WithLabels(managed).WithRules(tenantRules()...), applyOpts); err != nil {
		return apiError(err, "apply role")
	}
	if _, err := k.cs.RbacV1().RoleBindings(ns).Apply(ctx,
		rbacv1ac.RoleBinding(tenantName, ns).WithLabels(managed).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("Role").WithName(tenantName)).
			WithSubjects(rbacv1ac.Subject().WithKind("ServiceAccount").WithName(tenantName).WithNamespace(ns)),
		applyOpts); err != nil {
		return apiError(err, "apply role binding")
	}
	key := sliceKey(namespace.Annotations[annSliceID])
	if namespace.Labels[labelSliceKey] != key {
		// A part made before the label existed: its slice's other parts are admitted by
		// it, so it gets it too.
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, labelSliceKey, key)
		if _, err := k.cs.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(patch),
			metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
			return apiError(err, "label namespace "+ns+" with its slice")
		}
	}
	// Pods of the namespace accept traffic from pods of the same slice only — this part
	// and the slice's other parts in the cluster, whatever provider made them, since a
	// slice's parts work together (an edge sending to its core) — and, when the
	// cluster's pod network is known, from every address outside it: the nodes and
	// beyond, where a NodePort's clients that are not pods come from. Other slices' pods
	// stay out, through node ports too, since a part's node ports keep their clients'
	// addresses (nodeport.go). Namespace labels are the plugin's: a tenant cannot give its
	// namespace another slice's key. The tenant may add policies (they only add allowed
	// traffic, to its own pods).
	from := []*netv1ac.NetworkPolicyPeerApplyConfiguration{
		netv1ac.NetworkPolicyPeer().WithPodSelector(metav1ac.LabelSelector()),
		netv1ac.NetworkPolicyPeer().WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{
			labelManagedBy: managedBy, labelSliceKey: key})),
	}
	if len(podCIDRs) > 0 {
		from = append(from, netv1ac.NetworkPolicyPeer().WithIPBlock(netv1ac.IPBlock().WithCIDR("0.0.0.0/0").WithExcept(podCIDRs...)))
	}
	if err := ensureNodePortPolicy(ctx, k); err != nil {
		return err
	}
	if _, err := k.cs.NetworkingV1().NetworkPolicies(ns).Apply(ctx,
		netv1ac.NetworkPolicy(netPolName, ns).WithLabels(managed).WithSpec(netv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector()).
			WithPolicyTypes("Ingress").
			WithIngress(netv1ac.NetworkPolicyIngressRule().WithFrom(from...))),
		applyOpts); err != nil {
		return apiError(err, "apply network policy")
	}
	return nil
}

// applyLimits applies the quota and the limit range for l.
func applyLimits(ctx context.Context, k *cluster, ns string, l layout) error {
	managed := map[string]string{labelManagedBy: managedBy}
	hard := corev1.ResourceList(quotaHard(l.total()))
	if _, err := k.cs.CoreV1().ResourceQuotas(ns).Apply(ctx,
		corev1ac.ResourceQuota(quotaName, ns).WithLabels(managed).
			WithSpec(corev1ac.ResourceQuotaSpec().WithHard(hard)), applyOpts); err != nil {
		return apiError(err, "apply resource quota")
	}
	// A quota on requests and limits refuses containers that state neither: give them
	// defaults, never more than the smallest node.
	small := l.smallestNode()
	limCPU, limMem := capped(resource.MustParse("500m"), small.CPUs*1000, true), capped(resource.MustParse("512Mi"), int(small.MemoryMB), false)
	reqCPU, reqMem := capped(resource.MustParse("100m"), small.CPUs*1000, true), capped(resource.MustParse("128Mi"), int(small.MemoryMB), false)
	if _, err := k.cs.CoreV1().LimitRanges(ns).Apply(ctx,
		corev1ac.LimitRange(limitRangeName, ns).WithLabels(managed).WithSpec(corev1ac.LimitRangeSpec().WithLimits(
			corev1ac.LimitRangeItem().WithType(corev1.LimitTypeContainer).
				WithDefault(corev1.ResourceList{corev1.ResourceCPU: limCPU, corev1.ResourceMemory: limMem}).
				WithDefaultRequest(corev1.ResourceList{corev1.ResourceCPU: reqCPU, corev1.ResourceMemory: reqMem}))),
		applyOpts); err != nil {
		return apiError(err, "apply limit range")
	}
	return nil
}

// capped returns q, or limit (millicores, or MiB) when that is smaller and positive.
func capped(q resource.Quantity, limit int, milli bool) resource.Quantity {
	if limit <= 0 {
		return q
	}
	var l *resource.Quantity
	if milli {
		l = resource.NewMilliQuantity(int64(limit), resource.DecimalSI)
	} else {
		l = resource.NewQuantity(int64(limit)*mib, resource.BinarySI)
	}
	if l.Cmp(q) < 0 {
		return *l
	}
	return q
}

// tenantRules is what the tenant may do in its namespace: run and expose workloads,
// read (not change) its quota and limits. Roles and bindings are allowed because the
// API server refuses to let anyone grant what they do not hold themselves.
func tenantRules() []*rbacv1ac.PolicyRuleApplyConfiguration {
	all := []string{"*"}
	read := []string{"get", "list", "watch"}
	rule := func(groups, resources, verbs []string) *rbacv1ac.PolicyRuleApplyConfiguration {
		return rbacv1ac.PolicyRule().WithAPIGroups(groups...).WithResources(resources...).WithVerbs(verbs...)
	}
	return []*rbacv1ac.PolicyRuleApplyConfiguration{
		rule([]string{""}, []string{"pods", "pods/log", "pods/exec", "pods/attach", "pods/portforward", "pods/eviction",
			"services", "endpoints", "configmaps", "secrets", "persistentvolumeclaims", "serviceaccounts",
			"serviceaccounts/token", "replicationcontrollers", "replicationcontrollers/scale", "events"}, all),
		rule([]string{""}, []string{"resourcequotas", "limitranges", "namespaces", "pods/status", "services/status"}, read),
		rule([]string{"apps", "batch", "autoscaling"}, []string{"*"}, all),
		rule([]string{"policy"}, []string{"poddisruptionbudgets"}, all),
		rule([]string{"networking.k8s.io"}, []string{"ingresses", "networkpolicies"}, all),
		rule([]string{"discovery.k8s.io"}, []string{"endpointslices"}, read),
		rule([]string{"coordination.k8s.io"}, []string{"leases"}, all),
		rule([]string{"events.k8s.io"}, []string{"events"}, read),
		rule([]string{"rbac.authorization.k8s.io"}, []string{"roles", "rolebindings"}, all),
		rule([]string{"metrics.k8s.io"}, []string{"pods"}, read),
	}
}

// waitReady waits until the quota controller has taken hard into the quota's status
// (before that the API server does not enforce it) and the service-account controller
// has made the namespace's default ServiceAccount (before that pods are refused).
func waitReady(ctx context.Context, s settings, k *cluster, ns string, hard corev1.ResourceList) error {
	ctx, cancel := context.WithTimeout(ctx, s.waitTimeout)
	defer cancel()
	var why string
	for {
		q, err := k.cs.CoreV1().ResourceQuotas(ns).Get(ctx, quotaName, metav1.GetOptions{})
		switch {
		case err != nil:
			why = fmt.Sprintf("quota: %v", err)
		case !sameHard(q.Status.Hard, hard):
			why = "the quota controller has not taken the quota into its status (is kube-controller-manager running?)"
		default:
			_, err = k.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			if err == nil {
				return nil
			}
			why = fmt.Sprintf("default service account: %v (is kube-controller-manager running?)", err)
		}
		select {
		case <-ctx.Done():
			return sdk.Errorf(sdk.CodeUnavailable, "namespace %s not ready after %s: %s", ns, s.waitTimeout, why)
		case <-time.After(pollInterval):
		}
	}
}

// Describe returns the part as the cluster holds it now, with a credential renewed when
// less than a third of its lifetime is left.
func (p *Plugin) Describe(ctx context.Context, req sdk.DescribeRequest) (sdk.Part, error) {
	ref := req.Ref
	s, k, err := p.state()
	if err != nil {
		return sdk.Part{}, err
	}
	ns, err := mustFind(ctx, s, k, ref)
	if err != nil {
		return sdk.Part{}, err
	}
	part, err := p.describe(ctx, s, k, ns)
	if err != nil {
		return sdk.Part{}, fmt.Errorf("describe part %s: %w", ref, err)
	}
	return part, nil
}

func (p *Plugin) describe(ctx context.Context, s settings, k *cluster, ns *corev1.Namespace) (sdk.Part, error) {
	ref := sdk.PartRef{SliceID: ns.Annotations[annSliceID], PartID: ns.Annotations[annPartID]}
	l, err := parseLayout(ns.Annotations[annLayout])
	if err != nil {
		return sdk.Part{}, sdk.Errorf(sdk.CodeInternal, "namespace %s: %v", ns.Name, err)
	}
	part := sdk.Part{
		Ref: ref, Name: ns.Annotations[annPartName], Bridge: ns.Annotations[annBridge],
		VIMRef: k.endpoint, Allocated: l.total(),
		Attributes: map[string]string{"namespace": ns.Name, "service_account": tenantName},
	}
	hard := quotaHard(part.Allocated)
	q, err := k.cs.CoreV1().ResourceQuotas(ns.Name).Get(ctx, quotaName, metav1.GetOptions{})
	switch {
	case ns.DeletionTimestamp != nil:
		part.State, part.Message = sdk.StateDeleting, "namespace is terminating"
	case apierrors.IsNotFound(err):
		part.State, part.Message = sdk.StateCreating, "quota not made yet"
	case err != nil:
		return sdk.Part{}, apiError(err, "get quota")
	case !sameHard(q.Status.Hard, hard):
		part.State, part.Message = sdk.StateCreating, "quota not enforced yet"
	default:
		part.State = sdk.StateReady
	}
	if q != nil && err == nil {
		part.Used = usedResources(q.Status.Used)
		for name, h := range q.Status.Hard {
			u := q.Status.Used[name]
			part.Attributes["quota."+string(name)] = u.String() + "/" + h.String()
		}
	}
	nodeState := map[string]string{sdk.StateReady: sdk.StateRunning, sdk.StateCreating: sdk.StateCreating,
		sdk.StateDeleting: sdk.StateDeleting}[part.State]
	for _, n := range l.nodes() {
		n.ID = ns.Name + "/" + n.Name
		n.State = nodeState
		part.Nodes = append(part.Nodes, n)
	}
	if part.State == sdk.StateDeleting {
		return part, nil
	}
	pods, err := k.cs.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
	if err != nil {
		return sdk.Part{}, apiError(err, "list pods")
	}
	for phase, n := range podCounts(pods.Items) {
		part.Attributes["pods."+strings.ToLower(string(phase))] = fmt.Sprint(n)
	}
	if part.State == sdk.StateReady {
		if part.Credential, err = p.credential(ctx, s, k, ns.Name); err != nil {
			return sdk.Part{}, err
		}
	}
	return part, nil
}

// Resize changes the CPUs and/or memory of a VDU's nodes (or of one node): the quota
// follows. Growth must fit in what is free; shrinking below what the part's workloads
// already request is refused (CodeFailedPrecondition).
func (p *Plugin) Resize(ctx context.Context, req sdk.ResizeRequest) (sdk.Part, error) {
	return p.change(ctx, req.Ref, "resize", func(l layout) (layout, error) { return l.resized(req) })
}

// Scale sets the number of nodes of a VDU: the quota follows, as for Resize.
func (p *Plugin) Scale(ctx context.Context, req sdk.ScaleRequest) (sdk.Part, error) {
	return p.change(ctx, req.Ref, "scale", func(l layout) (layout, error) { return l.scaled(req) })
}

func (p *Plugin) change(ctx context.Context, ref sdk.PartRef, what string, fn func(layout) (layout, error)) (sdk.Part, error) {
	s, k, err := p.state()
	if err != nil {
		return sdk.Part{}, err
	}
	ns, l, err := p.relayout(ctx, s, k, ref, what, fn)
	if err != nil {
		return sdk.Part{}, err
	}
	if err := applyLimits(ctx, k, ns.Name, l); err != nil {
		return sdk.Part{}, fmt.Errorf("%s part %s: %w", what, ref, err)
	}
	if err := waitReady(ctx, s, k, ns.Name, quotaHard(l.total())); err != nil {
		return sdk.Part{}, fmt.Errorf("%s part %s: %w", what, ref, err)
	}
	// The quota is there first: resized pods and new replicas are admitted against it.
	if err := syncWorkloads(ctx, k, ns.Name, l); err != nil {
		return sdk.Part{}, fmt.Errorf("%s part %s: workloads: %w", what, ref, err)
	}
	part, err := p.describe(ctx, s, k, ns)
	if err != nil {
		return sdk.Part{}, fmt.Errorf("%s part %s: %w", what, ref, err)
	}
	p.log.Info("part "+what+"d", "part", ref.String(), "nodes", len(part.Nodes), "cpus", part.Allocated.CPUs,
		"memory_mb", part.Allocated.MemoryMB)
	return part, nil
}

// relayout checks and records a new layout under p.grant: growth against free capacity,
// shrinking against the quota's use.
func (p *Plugin) relayout(ctx context.Context, s settings, k *cluster, ref sdk.PartRef, what string,
	fn func(layout) (layout, error)) (*corev1.Namespace, layout, error) {
	p.grant.Lock()
	defer p.grant.Unlock()
	ns, err := mustFind(ctx, s, k, ref)
	if err != nil {
		return nil, layout{}, err
	}
	if ns.DeletionTimestamp != nil {
		return nil, layout{}, sdk.Errorf(sdk.CodeFailedPrecondition, "%s part %s: it is being deleted", what, ref)
	}
	old, err := parseLayout(ns.Annotations[annLayout])
	if err != nil {
		return nil, layout{}, sdk.Errorf(sdk.CodeInternal, "%s part %s: namespace %s: %v", what, ref, ns.Name, err)
	}
	l, err := fn(old)
	if err != nil {
		return nil, layout{}, err
	}
	was, now := old.total(), l.total()
	if now.CPUs > was.CPUs || now.MemoryMB > was.MemoryMB || now.StorageGB > was.StorageGB {
		_, free, err := available(ctx, s, k, partKey(ref))
		if err != nil {
			return nil, layout{}, fmt.Errorf("%s part %s: %w", what, ref, err)
		}
		if ok, why := now.Fits(free); !ok {
			return nil, layout{}, sdk.Errorf(sdk.CodeResourceExhausted, "%s part %s: provider %s: %s",
				what, ref, s.provider.Name, why)
		}
	}
	q, err := k.cs.CoreV1().ResourceQuotas(ns.Name).Get(ctx, quotaName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, layout{}, apiError(err, fmt.Sprintf("%s part %s: get quota", what, ref))
	}
	if err == nil {
		if over := overUsed(quotaHard(now), q.Status.Used); len(over) > 0 {
			return nil, layout{}, sdk.Errorf(sdk.CodeFailedPrecondition,
				"%s part %s: the part's workloads use more than the new size allows: %s", what, ref, strings.Join(over, "; "))
		}
	}
	ns = ns.DeepCopy()
	ns.Annotations[annLayout] = l.encode()
	updated, err := k.cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{FieldManager: fieldManager})
	if err != nil {
		return nil, layout{}, apiError(err, fmt.Sprintf("%s part %s: record layout", what, ref))
	}
	return updated, l, nil
}

// Delete deletes the part's namespace and waits until it is gone: the namespace
// controller removes everything in it first. An unknown part is not an error.
func (p *Plugin) Delete(ctx context.Context, req sdk.DeleteRequest) error {
	ref := req.Ref
	s, k, err := p.state()
	if err != nil {
		return err
	}
	ns, err := find(ctx, s, k, ref)
	if err != nil || ns == nil {
		return err
	}
	begin := time.Now()
	if ns.DeletionTimestamp == nil {
		uid := ns.UID
		err := k.cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return apiError(err, fmt.Sprintf("delete part %s: namespace %s", ref, ns.Name))
		}
	}
	wctx, cancel := context.WithTimeout(ctx, s.waitTimeout)
	defer cancel()
	for {
		got, err := k.cs.CoreV1().Namespaces().Get(wctx, ns.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && got.UID != ns.UID) {
			p.log.Info("part deleted", "part", ref.String(), "namespace", ns.Name, "elapsed", time.Since(begin).String())
			return nil
		}
		if err == nil {
			ns = got
		}
		select {
		case <-wctx.Done():
			var conds []string
			for _, c := range ns.Status.Conditions {
				if c.Status == corev1.ConditionTrue {
					conds = append(conds, c.Message)
				}
			}
			return sdk.Errorf(sdk.CodeUnavailable, "delete part %s: namespace %s still terminating after %s "+
				"(is kube-controller-manager's namespace controller running?) %s", ref, ns.Name, s.waitTimeout,
				strings.Join(conds, "; "))
		case <-time.After(pollInterval):
		}
	}
}
