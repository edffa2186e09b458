package kubevim

import (
	"context"
	"fmt"
	"maps"
	"slices"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	admissionv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
)

// A part's pods admit other namespaces' pods by their source address (the part's
// NetworkPolicy: pods of the same slice only, plus every address outside the pod
// network when pod_cidrs is given, which is where node-port clients that are not pods
// come from). A Service reached from outside the cluster (NodePort, LoadBalancer,
// externalIPs) with the default externalTrafficPolicy Cluster has kube-proxy masquerade
// every client to the address of the node it came in by, a pod of another slice
// included: the policy then sees a node and lets it in. With Local, kube-proxy keeps
// the source address of pods (their traffic goes to any of the Service's endpoints
// without masquerade, as to its ClusterIP) and of outside clients (these reach the node
// an endpoint runs on), and only masquerades clients on the node itself, whose source
// is the node's own address: the policy decides again. So a part's externally reachable
// Services must use Local: the deployer writes it into manifests that say nothing, and
// an admission policy refuses anything else in parts' namespaces, since a tenant can
// make Services with its own kubeconfig too (or a selectorless Service with Endpoints
// naming another slice's pod, which would relay through a masquerading node port).
const (
	nodePortPolicyName = "necos-node-port-source"
	nodePortMessage    = "a necos part's NodePort, LoadBalancer and externalIPs Services must set " +
		"spec.externalTrafficPolicy: Local, so that its network policy sees the clients' own addresses " +
		"(Cluster masquerades other slices' pods as their node)"
	nodePortExpression = `!((has(object.spec.type) && object.spec.type in ['NodePort', 'LoadBalancer']) || ` +
		`(has(object.spec.externalIPs) && size(object.spec.externalIPs) > 0)) || ` +
		`(has(object.spec.externalTrafficPolicy) && object.spec.externalTrafficPolicy == 'Local')`
)

// ensureNodePortPolicy applies the admission policy and its binding (cluster-scoped,
// shared by every provider of the cluster: each applies the same objects) unless both
// are there as they should be: two reads cost a Create less than two server-side
// applies, and a policy someone removed is still put back (BenchmarkNodePortPolicy).
func ensureNodePortPolicy(ctx context.Context, k *cluster) error {
	managed := map[string]string{labelManagedBy: managedBy}
	if nodePortPolicyCurrent(ctx, k, managed) {
		return nil
	}
	fail := admissionv1.Fail
	if _, err := k.cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Apply(ctx,
		admissionv1ac.ValidatingAdmissionPolicy(nodePortPolicyName).WithLabels(managed).WithSpec(
			admissionv1ac.ValidatingAdmissionPolicySpec().WithFailurePolicy(fail).
				WithMatchConstraints(admissionv1ac.MatchResources().WithResourceRules(
					admissionv1ac.NamedRuleWithOperations().WithAPIGroups("").WithAPIVersions("v1").
						WithResources("services").
						WithOperations(admissionv1.Create, admissionv1.Update))).
				WithValidations(admissionv1ac.Validation().WithExpression(nodePortExpression).
					WithMessage(nodePortMessage))),
		applyOpts); err != nil {
		return apiError(err, "apply admission policy "+nodePortPolicyName)
	}
	if _, err := k.cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Apply(ctx,
		admissionv1ac.ValidatingAdmissionPolicyBinding(nodePortPolicyName).WithLabels(managed).WithSpec(
			admissionv1ac.ValidatingAdmissionPolicyBindingSpec().WithPolicyName(nodePortPolicyName).
				WithValidationActions(admissionv1.Deny).
				WithMatchResources(admissionv1ac.MatchResources().WithNamespaceSelector(
					metav1ac.LabelSelector().WithMatchLabels(managed)))),
		applyOpts); err != nil {
		return apiError(err, "apply admission policy binding "+nodePortPolicyName)
	}
	return nil
}

// nodePortPolicyCurrent reports whether the policy and its binding hold what
// ensureNodePortPolicy applies; any error reads as no.
func nodePortPolicyCurrent(ctx context.Context, k *cluster, managed map[string]string) bool {
	pol, err := k.cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, nodePortPolicyName, metav1.GetOptions{})
	if err != nil || pol.Spec.FailurePolicy == nil || *pol.Spec.FailurePolicy != admissionv1.Fail ||
		len(pol.Spec.Validations) != 1 || pol.Spec.Validations[0].Expression != nodePortExpression ||
		pol.Spec.Validations[0].Message != nodePortMessage {
		return false
	}
	b, err := k.cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, nodePortPolicyName, metav1.GetOptions{})
	if err != nil || b.Spec.PolicyName != nodePortPolicyName || !slices.Equal(b.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) ||
		b.Spec.MatchResources == nil || b.Spec.MatchResources.NamespaceSelector == nil ||
		len(b.Spec.MatchResources.NamespaceSelector.MatchExpressions) != 0 ||
		!maps.Equal(b.Spec.MatchResources.NamespaceSelector.MatchLabels, managed) {
		return false
	}
	return true
}

// keepClientSource gives a Service manifest reached from outside the cluster that
// names no externalTrafficPolicy the Local one (see above); one naming Cluster is
// left for the admission policy to refuse with its reason.
func keepClientSource(u *unstructured.Unstructured) error {
	typ, _, err := unstructured.NestedString(u.Object, "spec", "type")
	if err != nil {
		return fmt.Errorf("Service %s: spec.type: %w", u.GetName(), err)
	}
	ips, _, err := unstructured.NestedSlice(u.Object, "spec", "externalIPs")
	if err != nil {
		return fmt.Errorf("Service %s: spec.externalIPs: %w", u.GetName(), err)
	}
	if typ != "NodePort" && typ != "LoadBalancer" && len(ips) == 0 {
		return nil
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "externalTrafficPolicy"); found {
		return nil
	}
	return unstructured.SetNestedField(u.Object, "Local", "spec", "externalTrafficPolicy")
}
