package kubetest

import (
	"context"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStart(t *testing.T) {
	if !Available() {
		t.Skip(MissingReason)
	}
	c, err := Start(context.Background(), Options{ControllerLog: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %v", c.Started)
	nodes, err := c.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	begin := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(begin))
}
