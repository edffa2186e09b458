package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	v1 "github.com/necos/necos/api/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// kubeForward is a loopback port relayed to a port of a pod of a Kubernetes part, through
// the cluster's API server (pods/portforward, as kubectl port-forward does), with the
// part's own kubeconfig: a part on Kubernetes has no node address this machine reaches,
// and the host may contact loopback addresses only.
type kubeForward struct {
	// Addr is the loopback host:port relayed to the pod.
	Addr string
	// Pod is the pod's name.
	Pod  string
	stop chan struct{}
	done chan struct{}
}

// Close stops the relay and waits for it.
func (f *kubeForward) Close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// partKube returns a client of a Kubernetes part as its tenant: the part's kubeconfig
// credential and its namespace.
func partKube(p v1.Part) (*rest.Config, string, error) {
	if p.Credential == nil || p.Credential.Kind != "kubeconfig" || p.Credential.Secret == "" {
		return nil, "", fmt.Errorf("part %s has no kubeconfig credential (only the slice's owner sees it)", p.Name)
	}
	cc, err := clientcmd.NewClientConfigFromBytes([]byte(p.Credential.Secret))
	if err != nil {
		return nil, "", fmt.Errorf("part %s's kubeconfig: %w", p.Name, err)
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("part %s's kubeconfig: %w", p.Name, err)
	}
	ns := p.Attributes["namespace"]
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil || ns == "" {
			return nil, "", fmt.Errorf("part %s: no namespace attribute and none in its kubeconfig", p.Name)
		}
	}
	return cfg, ns, nil
}

// runningPod waits until a pod matching selector in the part's namespace is Running
// and every container of it ready, and returns its name.
func runningPod(ctx context.Context, cs kubernetes.Interface, ns, selector string) (string, error) {
	var last string
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			last = fmt.Sprintf("%d pods match %s", len(pods.Items), selector)
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && podReady(p) {
					return p.Name, nil
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no ready pod %s in namespace %s: %s", selector, ns, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// forwardPod relays address:local (local 0: any free port) to port of a ready pod
// matching selector in the part's namespace, until Close or ctx ends.
func forwardPod(ctx context.Context, p v1.Part, selector, address string, local, port int, wait time.Duration) (*kubeForward, error) {
	cfg, ns, err := partKube(p)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	pod, err := runningPod(wctx, cs, ns, selector)
	if err != nil {
		return nil, fmt.Errorf("part %s: %w", p.Name, err)
	}
	url := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	tr, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	// WebSockets first, SPDY when the API server does not upgrade (kubectl's order).
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: tr}, http.MethodPost, url)
	wsDialer, err := portforward.NewSPDYOverWebsocketDialer(url, cfg)
	if err != nil {
		return nil, err
	}
	dialer := portforward.NewFallbackDialer(wsDialer, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	f := &kubeForward{Pod: pod, stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	var errOut strings.Builder
	pf, err := portforward.NewOnAddresses(dialer, []string{address}, []string{strconv.Itoa(local) + ":" + strconv.Itoa(port)}, f.stop, ready, io.Discard, &errOut)
	if err != nil {
		return nil, err
	}
	failed := make(chan error, 1)
	go func() {
		defer close(f.done)
		failed <- pf.ForwardPorts()
	}()
	go func() {
		select {
		case <-ctx.Done():
			f.Close()
		case <-f.done:
		}
	}()
	select {
	case <-ready:
	case err := <-failed:
		if err == nil {
			err = errors.New("ended before it was ready")
		}
		return nil, fmt.Errorf("port-forward to %s/%s:%d: %w %s", ns, pod, port, err, errOut.String())
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		f.Close()
		return nil, fmt.Errorf("port-forward to %s/%s:%d: no local port (%v)", ns, pod, port, err)
	}
	f.Addr = net.JoinHostPort(address, strconv.Itoa(int(ports[0].Local)))
	return f, nil
}
