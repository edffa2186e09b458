// Package kubevim is the necos VIM and Deployer plugin for Kubernetes: a DC slice part
// is a share of a provider's real cluster, handed to the tenant with its own credentials.
//
// A part is a namespace (necos-<slice>-<part>) holding:
//   - a ResourceQuota sized from the part's VDUs: CPUs and memory as requests and limits,
//     storage as PVC requests, 110 pods per node;
//   - a LimitRange giving containers default requests and limits (quota needs them);
//   - a ServiceAccount, Role and RoleBinding limited to the namespace: the tenant's
//     identity, handed out as a kubeconfig with a bounded-lifetime token;
//   - a NetworkPolicy denying ingress from other slices' namespaces (the slice's other
//     parts in the cluster are let in);
//   - the Pod Security level of the configuration (baseline by default), so that tenants
//     cannot break out of the share through privileged pods.
//
// A part's nodes are slices of its quota, not cluster nodes: one per VDU instance, sized
// as the VDU asks. The layout of VDUs and nodes is kept in an annotation of the namespace
// and the namespace carries labels naming provider, slice, part and tenant, so every call
// works from the cluster alone, also after a restart of the plugin.
package kubevim

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/necos/necos/sdk"
)

// Name is the plugin's name.
const Name = "vim-kubernetes"

// Version is the plugin's version.
const Version = "0.1.0"

// Defaults of the configuration.
const (
	DefaultTokenTTL        = 24 * time.Hour
	DefaultJobImage        = "busybox:1.36"
	DefaultPodSecurity     = "baseline"
	DefaultWaitTimeout     = 2 * time.Minute
	DefaultPricePerNodeDay = 1.0
	// MinTokenTTL is the shortest token the API server issues.
	MinTokenTTL = 10 * time.Minute
)

// Capacity overrides the capacity the plugin computes from the cluster's nodes. Zero
// fields are computed.
type Capacity struct {
	CPUs      int   `json:"cpus"`
	MemoryMB  int64 `json:"memory_mb"`
	StorageGB int64 `json:"storage_gb"`
}

// Config is the plugin's configuration (a provider's JSON object).
type Config struct {
	// Kubeconfig is the path of the provider's kubeconfig (an administrator of the
	// cluster). Empty means in-cluster configuration, when the plugin runs in a pod.
	Kubeconfig string `json:"kubeconfig"`
	// Context is the kubeconfig context to use; empty means its current context.
	Context string `json:"context"`
	// Capacity overrides what the cluster's nodes offer.
	Capacity *Capacity `json:"capacity"`
	// PricePerNodeDay and PricePerCPUDay make an offer's price: nodes × the first plus
	// CPUs × the second, per day, for the whole part.
	PricePerNodeDay *float64 `json:"price_per_node_day"`
	PricePerCPUDay  float64  `json:"price_per_cpu_day"`
	// NodeLabels select the cluster nodes whose allocatable resources count.
	NodeLabels map[string]string `json:"node_labels"`
	// APIEndpoint is the API server address tenants use ("host:port" or a URL), also
	// reported as the part's vim-ref; empty means the kubeconfig's server.
	APIEndpoint string `json:"api_endpoint"`
	// TokenTTL is the lifetime of the tenants' tokens (a Go duration, at least 10m).
	TokenTTL string `json:"token_ttl"`
	// JobImage runs a VDU's commands (sh -c).
	JobImage string `json:"job_image"`
	// PodSecurity is the Pod Security Standard enforced in parts' namespaces
	// (privileged, baseline or restricted); "none" leaves the cluster's default.
	PodSecurity string `json:"pod_security"`
	// WaitTimeout bounds how long Create, Resize and Delete wait for the cluster's
	// controllers (quota status, namespace finalization); a Go duration.
	WaitTimeout string `json:"wait_timeout"`
	// PodCIDRs is the cluster's pod network (IPv4 CIDRs). Given, a part's pods also
	// accept traffic from every address outside it (node-port clients that are not pods:
	// a part's node ports keep their clients' addresses, nodeport.go), while other
	// slices' pods stay out; empty, only from the pods of the slice's parts. Enforced where
	// the cluster's network plugin enforces NetworkPolicies.
	PodCIDRs []string `json:"pod_cidrs"`
}

// settings is the configuration, checked and defaulted.
type settings struct {
	Config
	provider        sdk.Provider
	pricePerNodeDay float64
	tokenTTL        time.Duration
	waitTimeout     time.Duration
}

// Plugin is the Kubernetes VIM and Deployer. Create it with [New]; the necos core
// configures it once through Configure before any other call.
type Plugin struct {
	log hclog.Logger
	now func() time.Time

	mu   sync.RWMutex // guards cfg and kube
	cfg  settings
	kube *cluster

	// grant serializes the capacity check with the write that takes capacity (a new
	// namespace, a larger layout), so concurrent creates never exceed capacity. It holds
	// within one plugin process: one process serves a provider.
	grant sync.Mutex
}

// cluster holds the clients of a configured plugin.
type cluster struct {
	rest   *rest.Config
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	disco  discovery.CachedDiscoveryInterface
	mapper *restmapper.DeferredDiscoveryRESTMapper

	// What goes into tenants' kubeconfigs and the parts' vim-ref.
	server        string
	tlsServerName string
	caData        []byte
	insecure      bool
	endpoint      sdk.Endpoint

	metricsMu      sync.Mutex // guards the discovery answer about metrics.k8s.io
	metricsChecked time.Time
	metricsOK      bool
}

// New returns an unconfigured plugin logging through sdk.Logger.
func New() *Plugin { return NewWithLogger(sdk.Logger(Name)) }

// NewWithLogger returns an unconfigured plugin logging to log.
func NewWithLogger(log hclog.Logger) *Plugin {
	return &Plugin{log: log, now: time.Now}
}

// Info says who the plugin is.
func (p *Plugin) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:        Name,
		Version:     Version,
		Description: "Kubernetes slice parts: a namespace with quota, RBAC and isolation on a provider's cluster",
		Kinds:       []sdk.Kind{sdk.KindVIM, sdk.KindDeployer},
	}, nil
}

// ConfigSchema describes the configuration keys.
func (p *Plugin) ConfigSchema(context.Context) (sdk.ConfigSchema, error) {
	return sdk.ConfigSchema{Fields: []sdk.ConfigField{
		{Name: "kubeconfig", Type: sdk.FieldString, Description: "path of the provider's kubeconfig (a cluster administrator); empty: in-cluster configuration"},
		{Name: "context", Type: sdk.FieldString, Description: "kubeconfig context; empty: the current one"},
		{Name: "capacity", Type: sdk.FieldObject, Description: "{cpus, memory_mb, storage_gb} overriding the nodes' allocatable resources; zero fields are computed"},
		{Name: "price_per_node_day", Type: sdk.FieldNumber, Default: DefaultPricePerNodeDay, Description: "euros per part node (VDU instance) per day"},
		{Name: "price_per_cpu_day", Type: sdk.FieldNumber, Default: 0.0, Description: "euros per CPU per day, added to the node price"},
		{Name: "node_labels", Type: sdk.FieldObject, Description: "label selector (key: value) of the nodes whose allocatable resources count"},
		{Name: "api_endpoint", Type: sdk.FieldString, Description: "API server address for tenants and vim-ref (host:port or URL); empty: the kubeconfig's server"},
		{Name: "token_ttl", Type: sdk.FieldString, Default: DefaultTokenTTL.String(), Description: "lifetime of tenant tokens (Go duration, >= 10m); renewed when a third is left"},
		{Name: "job_image", Type: sdk.FieldString, Default: DefaultJobImage, Description: "image running a VDU's commands (sh -c)"},
		{Name: "pod_security", Type: sdk.FieldString, Default: DefaultPodSecurity, Description: "Pod Security Standard enforced in parts (privileged, baseline, restricted, none)"},
		{Name: "wait_timeout", Type: sdk.FieldString, Default: DefaultWaitTimeout.String(), Description: "how long calls wait for the cluster's controllers (Go duration)"},
		{Name: "pod_cidrs", Type: sdk.FieldList, Description: "the cluster's pod network (IPv4 CIDRs): parts then admit every address outside it (NodePort clients) besides their slice's pods; empty: their slice's pods only"},
	}}, nil
}

// Configure reads the configuration and connects to the cluster.
func (p *Plugin) Configure(ctx context.Context, cfg sdk.Config) error {
	var c Config
	if err := cfg.Decode(&c); err != nil {
		return err
	}
	s, err := checkConfig(c)
	if err != nil {
		return err
	}
	s.provider = cfg.Provider
	if s.provider.Name == "" {
		s.provider.Name = "default"
	}
	restCfg, err := loadRESTConfig(c.Kubeconfig, c.Context)
	if err != nil {
		return err
	}
	k, err := newCluster(restCfg, c.APIEndpoint)
	if err != nil {
		return err
	}
	vctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := k.cs.Discovery().ServerVersionWithContext(vctx)
	if err != nil {
		return sdk.Errorf(sdk.CodeUnavailable, "config: cannot reach the cluster at %s: %v", restCfg.Host, err)
	}
	p.mu.Lock()
	p.cfg, p.kube = s, k
	p.mu.Unlock()
	p.log.Info("configured", "provider", s.provider.Name, "server", restCfg.Host, "kubernetes", v.GitVersion,
		"api_endpoint", fmt.Sprintf("%s:%d", k.endpoint.IPAPI, k.endpoint.PortAPI))
	return nil
}

func checkConfig(c Config) (settings, error) {
	s := settings{Config: c, pricePerNodeDay: DefaultPricePerNodeDay, tokenTTL: DefaultTokenTTL, waitTimeout: DefaultWaitTimeout}
	var problems []string
	if c.PricePerNodeDay != nil {
		s.pricePerNodeDay = *c.PricePerNodeDay
	}
	if s.pricePerNodeDay < 0 {
		problems = append(problems, "price_per_node_day: must be >= 0")
	}
	if c.PricePerCPUDay < 0 {
		problems = append(problems, "price_per_cpu_day: must be >= 0")
	}
	if c.Capacity != nil && (c.Capacity.CPUs < 0 || c.Capacity.MemoryMB < 0 || c.Capacity.StorageGB < 0) {
		problems = append(problems, "capacity: cpus, memory_mb and storage_gb must be >= 0")
	}
	if c.TokenTTL != "" {
		d, err := time.ParseDuration(c.TokenTTL)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("token_ttl: expected a Go duration such as 24h, got %q", c.TokenTTL))
		case d < MinTokenTTL:
			problems = append(problems, fmt.Sprintf("token_ttl: must be at least %s (the API server's minimum), got %s", MinTokenTTL, d))
		default:
			s.tokenTTL = d
		}
	}
	if c.WaitTimeout != "" {
		d, err := time.ParseDuration(c.WaitTimeout)
		if err != nil || d <= 0 {
			problems = append(problems, fmt.Sprintf("wait_timeout: expected a positive Go duration, got %q", c.WaitTimeout))
		} else {
			s.waitTimeout = d
		}
	}
	if s.JobImage == "" {
		s.JobImage = DefaultJobImage
	}
	switch s.PodSecurity {
	case "":
		s.PodSecurity = DefaultPodSecurity
	case "privileged", "baseline", "restricted", "none":
	default:
		problems = append(problems, fmt.Sprintf("pod_security: expected privileged, baseline, restricted or none, got %q", s.PodSecurity))
	}
	for key, v := range c.NodeLabels {
		if errs := append(validation.IsQualifiedName(key), validation.IsValidLabelValue(v)...); len(errs) > 0 {
			problems = append(problems, fmt.Sprintf("node_labels[%s]: %s", key, strings.Join(errs, "; ")))
		}
	}
	for i, c := range c.PodCIDRs {
		if ip, n, err := net.ParseCIDR(c); err != nil || ip.To4() == nil || n.IP.String() != ip.String() {
			problems = append(problems, fmt.Sprintf("pod_cidrs[%d]: expected an IPv4 network such as 10.244.0.0/16, got %q", i, c))
		}
	}
	if c.APIEndpoint != "" {
		if _, _, err := parseEndpoint(c.APIEndpoint); err != nil {
			problems = append(problems, fmt.Sprintf("api_endpoint: %v", err))
		}
	}
	if len(problems) > 0 {
		return s, sdk.Errorf(sdk.CodeInvalidArgument, "config: %s", strings.Join(problems, "; "))
	}
	return s, nil
}

func loadRESTConfig(path, context string) (*rest.Config, error) {
	if path == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeInvalidArgument,
				"config: kubeconfig: required when the plugin does not run in a pod (%v)", err)
		}
		return c, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "config: kubeconfig: %v", err)
	}
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path},
		&clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "config: kubeconfig %s: %v", path, err)
	}
	return c, nil
}

func newCluster(c *rest.Config, apiEndpoint string) (*cluster, error) {
	c = rest.CopyConfig(c)
	// Parts are created concurrently, each with a dozen calls: client-go's default of
	// 5 queries per second would serialize them.
	c.QPS, c.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	disco := memory.NewMemCacheClient(cs.Discovery())
	k := &cluster{rest: c, cs: cs, dyn: dyn, disco: disco, mapper: restmapper.NewDeferredDiscoveryRESTMapper(disco),
		server: c.Host, caData: c.CAData, insecure: c.Insecure, tlsServerName: c.ServerName}
	if len(k.caData) == 0 && c.CAFile != "" {
		if k.caData, err = os.ReadFile(c.CAFile); err != nil {
			return nil, sdk.Errorf(sdk.CodeInvalidArgument, "config: CA file: %v", err)
		}
	}
	origHost, origPort, err := parseEndpoint(c.Host)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "config: kubeconfig server %q: %v", c.Host, err)
	}
	k.endpoint = sdk.Endpoint{IPAPI: origHost, PortAPI: origPort}
	if apiEndpoint != "" {
		host, port, _ := parseEndpoint(apiEndpoint) // checked by checkConfig
		k.endpoint = sdk.Endpoint{IPAPI: host, PortAPI: port}
		k.server = "https://" + net.JoinHostPort(host, strconv.Itoa(port))
		// The serving certificate names the address the provider's kubeconfig uses; the
		// public address may not be in it, so tenants verify against that name.
		if k.tlsServerName == "" && host != origHost {
			k.tlsServerName = origHost
		}
	}
	return k, nil
}

// parseEndpoint splits "https://host:port", "host:port" or "host" (port 443).
func parseEndpoint(s string) (string, int, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", 0, fmt.Errorf("expected host:port or a URL, got %q", s)
	}
	host := u.Hostname()
	if host == "" {
		return "", 0, fmt.Errorf("no host in %q", s)
	}
	port := 443
	if u.Scheme == "http" {
		port = 80
	}
	if ps := u.Port(); ps != "" {
		if port, err = strconv.Atoi(ps); err != nil || port <= 0 || port > 65535 {
			return "", 0, fmt.Errorf("bad port in %q", s)
		}
	}
	return host, port, nil
}

// state returns the configuration and clients, or FailedPrecondition before Configure.
func (p *Plugin) state() (settings, *cluster, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.kube == nil {
		return settings{}, nil, sdk.Errorf(sdk.CodeFailedPrecondition, "%s: not configured", Name)
	}
	return p.cfg, p.kube, nil
}
