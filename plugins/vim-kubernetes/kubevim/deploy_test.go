package kubevim

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
)

const webManifests = `apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: dojot
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: necos.local/busybox:1.35
        command: [httpd, -f, -p, "8080"]
`

const webOnly = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: necos.local/busybox:1.35
        command: [httpd, -f, -p, "8080"]
`

// TestDeployer drives the Deployer (and the VIM) through the plugin's gRPC adapters.
func TestDeployer(t *testing.T) {
	c := needCluster(t)
	ctx := context.Background()
	client := plugintest.InProcess(t, NewWithLogger(plugintest.TestLogger(t)), testProvider, configJSON(t, c, nil))
	vim, err := client.VIM()
	if err != nil {
		t.Fatal(err)
	}
	dep, err := client.Deployer()
	if err != nil {
		t.Fatal(err)
	}
	spec := partSpec(t, "edge", master(), worker(1, 1, 512))
	t.Cleanup(func() { _ = vim.Delete(context.Background(), sdk.DeleteRequest{Ref: spec.Ref}) })
	part, err := vim.Create(ctx, sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatalf("create part: %v", err)
	}
	ns := part.Attributes["namespace"]

	req := sdk.DeployRequest{ServiceID: "IoT service/1", Part: part, StepTimeout: 30 * time.Second, Work: []sdk.NodeWork{
		{Node: "master", Namespace: "dojot", Manifests: []string{webManifests}},
		{Node: "worker-1", Commands: []string{"echo hello", "uname -a"}},
	}}
	begin := time.Now()
	d, err := dep.Deploy(ctx, req)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	t.Logf("deploy: %v, state %s: %s", time.Since(begin), d.State, d.Message)
	if len(d.Nodes) != 2 {
		t.Fatalf("deployment nodes: %+v", d.Nodes)
	}
	master, w := d.Nodes[0], d.Nodes[1]
	if master.State != sdk.DeploySucceeded || len(master.Steps) != 2 || master.Steps[1].Step != "Deployment/web" {
		t.Errorf("master: %+v", master)
	}
	// The commands ran as a Job on a real node: each step has its own output.
	if len(w.Steps) != 2 || w.Steps[0].Kind != sdk.StepCommand || w.Steps[0].State != sdk.DeploySucceeded ||
		w.Steps[0].Stdout != "hello" || w.Steps[1].State != sdk.DeploySucceeded ||
		!strings.Contains(w.Steps[1].Stdout, "Linux") {
		t.Errorf("command steps %+v", w.Steps)
	}
	if d.State != sdk.DeploySucceeded || w.State != sdk.DeploySucceeded {
		t.Errorf("deployment %s, node %s; want succeeded: %s", d.State, w.State, d.Message)
	}
	cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("config map: %v", err)
	}
	if cm.Labels[labelService] != serviceLabel(req.ServiceID) || cm.Data["greeting"] != "hello" {
		t.Errorf("config map %+v", cm)
	}
	web, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("deployment: %v", err)
	}
	jobs, err := c.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: labelService + "=" + serviceLabel(req.ServiceID)})
	if err != nil || len(jobs.Items) != 1 {
		t.Fatalf("jobs: %v %v", jobs, err)
	}
	job := jobs.Items[0]
	if cmd := job.Spec.Template.Spec.Containers[0].Command; len(cmd) != 3 || cmd[0] != "sh" || !strings.Contains(cmd[2], "echo hello") ||
		job.Spec.Template.Spec.Containers[0].Image != testJobImage {
		t.Errorf("job container: %+v", job.Spec.Template.Spec.Containers[0])
	}

	// Again: nothing changes, the Job is not run twice.
	if _, err := dep.Deploy(ctx, req); err != nil {
		t.Fatalf("deploy again: %v", err)
	}
	web2, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil || web2.Generation != web.Generation {
		t.Errorf("re-deploy changed the deployment: generation %d, was %d (%v)", web2.Generation, web.Generation, err)
	}
	if jobs, _ := c.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{}); len(jobs.Items) != 1 || jobs.Items[0].UID != job.UID {
		t.Errorf("re-deploy made new jobs: %d", len(jobs.Items))
	}
	st, err := dep.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: req.ServiceID, Ref: part.Ref})
	if err != nil || len(st.Nodes) != 2 || st.ServiceID != req.ServiceID {
		t.Errorf("status: %+v %v", st, err)
	}

	// Dropping the ConfigMap from the manifests and the commands removes them.
	req.Work = []sdk.NodeWork{{Node: "master", Manifests: []string{webOnly}}}
	d, err = dep.Deploy(ctx, req)
	if err != nil || d.State != sdk.DeploySucceeded {
		t.Fatalf("deploy without the config map: %+v %v", d, err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("config map left after it left the manifests: %v", err)
	}
	if j, err := c.Client.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{}); err == nil && j.DeletionTimestamp == nil {
		t.Errorf("job left after its commands left the work")
	}

	// Requests that cannot run apply nothing.
	bad := []struct {
		what string
		work sdk.NodeWork
	}{
		{"cluster-scoped kind", sdk.NodeWork{Node: "master", Manifests: []string{
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-applied}\n---\n" +
				"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: mine}\n"}}},
		{"unknown node", sdk.NodeWork{Node: "nowhere", Manifests: []string{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-applied}\n"}}},
		{"unknown kind", sdk.NodeWork{Node: "master", Manifests: []string{"apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n"}}},
		{"bad yaml", sdk.NodeWork{Node: "master", Manifests: []string{"apiVersion: v1\nkind: [\n"}}},
	}
	for _, b := range bad {
		_, err := dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "bad", Part: part, Work: []sdk.NodeWork{b.work}})
		wantCode(t, "deploy with "+b.what, err, sdk.CodeInvalidArgument)
	}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "not-applied", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused request applied a config map: %v", err)
	}

	// A manifest the tenant may not apply fails its step (as the tenant), not the request.
	d, err = dep.Deploy(ctx, sdk.DeployRequest{ServiceID: "quota-grab", Part: part, Work: []sdk.NodeWork{{Node: "master",
		Manifests: []string{"apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: mine}\nspec: {hard: {pods: '1000'}}\n"},
		Commands:  []string{"echo never"}}}})
	if err != nil || d.State != sdk.DeployFailed || !strings.Contains(d.Nodes[0].Steps[0].Error, "forbidden") ||
		d.Nodes[0].Steps[1].State != sdk.DeploySkipped {
		t.Errorf("forbidden manifest: %+v %v", d, err)
	}
	if err := dep.Undeploy(ctx, sdk.UndeployRequest{ServiceID: "quota-grab", Part: part}); err != nil {
		t.Errorf("undeploy quota-grab: %v", err)
	}

	if err := dep.Undeploy(ctx, sdk.UndeployRequest{ServiceID: req.ServiceID, Part: part}); err != nil {
		t.Fatalf("undeploy: %v", err)
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("deployment after undeploy: %v", err)
	}
	if err := dep.Undeploy(ctx, sdk.UndeployRequest{ServiceID: req.ServiceID, Part: part}); err != nil {
		t.Errorf("second undeploy: %v", err)
	}
	_, err = dep.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: req.ServiceID, Ref: part.Ref})
	wantCode(t, "status after undeploy", err, sdk.CodeNotFound)
	_, err = dep.DeployStatus(ctx, sdk.DeployStatusRequest{ServiceID: req.ServiceID, Ref: sdk.PartRef{SliceID: "no", PartID: "such"}})
	wantCode(t, "status of an unknown part", err, sdk.CodeNotFound)
	if err := dep.Undeploy(ctx, sdk.UndeployRequest{ServiceID: req.ServiceID, Part: sdk.Part{Ref: sdk.PartRef{SliceID: "no", PartID: "such"}}}); err != nil {
		t.Errorf("undeploy from an unknown part: %v", err)
	}
}

// The shared Deployer suite: commands run as Jobs on a worker of a real node.
func TestDeployerConformance(t *testing.T) {
	c := needCluster(t)
	client := plugintest.InProcess(t, NewWithLogger(plugintest.TestLogger(t)), testProvider, configJSON(t, c, nil))
	vim, err := client.VIM()
	if err != nil {
		t.Fatal(err)
	}
	spec := partSpec(t, "edge", master(), worker(1, 1, 512))
	t.Cleanup(func() { _ = vim.Delete(context.Background(), sdk.DeleteRequest{Ref: spec.Ref}) })
	part, err := vim.Create(context.Background(), sdk.CreateRequest{Part: spec})
	if err != nil {
		t.Fatalf("create part: %v", err)
	}
	plugintest.RunDeployer(t, client, plugintest.DeployerOptions{Part: part, Node: "worker-1", StepTimeout: time.Minute})
}
