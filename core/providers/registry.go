package providers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/sdk"
	"golang.org/x/sync/singleflight"
)

// Registry runs one plugin instance per provider role of a catalogue, started on first
// use (or all at once by StartAll), and hands out the kind clients the engine calls.
type Registry struct {
	cat  *Catalogue
	host *pluginhost.Host
	log  hclog.Logger

	group singleflight.Group
	mu    sync.Mutex
	insts map[string]*pluginhost.Instance
	// started is set once StartAll has tried every instance.
	started atomic.Bool
}

// NewRegistry returns a registry for the catalogue's providers, run by host.
func NewRegistry(cat *Catalogue, host *pluginhost.Host, logger hclog.Logger) *Registry {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Registry{cat: cat, host: host, log: logger, insts: map[string]*pluginhost.Instance{}}
}

// Catalogue returns the registry's catalogue.
func (r *Registry) Catalogue() *Catalogue { return r.cat }

// Host returns the plugin host.
func (r *Registry) Host() *pluginhost.Host { return r.host }

// instanceName names the instance serving a provider role: the provider's name for its
// DC role, "<provider>.<role>" for the others.
func instanceName(provider, role string) string {
	if role == RoleDC {
		return provider
	}
	if role == RoleMonitor {
		return "monitor"
	}
	return provider + "." + role
}

func (r *Registry) instance(ctx context.Context, provider *Provider, role string, ref PluginRef) (*pluginhost.Instance, error) {
	name := instanceName(provider.Name, role)
	r.mu.Lock()
	in, ok := r.insts[name]
	r.mu.Unlock()
	if ok {
		return in, nil
	}
	v, err, _ := r.group.Do(name, func() (any, error) {
		r.mu.Lock()
		if in, ok := r.insts[name]; ok {
			r.mu.Unlock()
			return in, nil
		}
		r.mu.Unlock()
		cfg, err := ref.ConfigJSON()
		if err != nil {
			return nil, fmt.Errorf("provider %s: %s config: %w", provider.Name, role, err)
		}
		in, err := r.host.Start(ctx, pluginhost.InstanceConfig{
			Name:     name,
			Plugin:   ref.Plugin,
			Provider: sdk.Provider{Name: provider.Name, Location: provider.Location},
			Config:   cfg,
			Dir:      r.cat.Dir,
		})
		if err != nil {
			return nil, fmt.Errorf("provider %s: start %s plugin %s: %w", provider.Name, role, ref.Plugin, err)
		}
		r.mu.Lock()
		r.insts[name] = in
		r.mu.Unlock()
		return in, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*pluginhost.Instance), nil
}

func (r *Registry) provider(name string) (*Provider, error) {
	p, ok := r.cat.Provider(name)
	if !ok {
		return nil, fmt.Errorf("unknown provider %q", name)
	}
	return p, nil
}

// VIM returns the VIM client of a provider's DC role.
func (r *Registry) VIM(ctx context.Context, provider string) (sdk.VIM, error) {
	p, err := r.provider(provider)
	if err != nil {
		return nil, err
	}
	if p.DC == nil {
		return nil, fmt.Errorf("provider %s offers no DC parts", provider)
	}
	in, err := r.instance(ctx, p, RoleDC, p.DC.PluginRef)
	if err != nil {
		return nil, err
	}
	return in.VIM()
}

// WAN returns the WAN client of a provider's WAN role.
func (r *Registry) WAN(ctx context.Context, provider string) (sdk.WAN, error) {
	p, err := r.provider(provider)
	if err != nil {
		return nil, err
	}
	if p.WAN == nil {
		return nil, fmt.Errorf("provider %s offers no WAN links", provider)
	}
	in, err := r.instance(ctx, p, RoleWAN, p.WAN.PluginRef)
	if err != nil {
		return nil, err
	}
	return in.WAN()
}

// Deployer returns the deployer for a provider's parts: its own deployer plugin when the
// catalogue names one, else its VIM plugin when that serves the Deployer kind.
func (r *Registry) Deployer(ctx context.Context, provider string) (sdk.Deployer, error) {
	p, err := r.provider(provider)
	if err != nil {
		return nil, err
	}
	if p.DC == nil {
		return nil, fmt.Errorf("provider %s offers no DC parts", provider)
	}
	if p.DC.Deployer != nil {
		in, err := r.instance(ctx, p, RoleDeployer, *p.DC.Deployer)
		if err != nil {
			return nil, err
		}
		return in.Deployer()
	}
	in, err := r.instance(ctx, p, RoleDC, p.DC.PluginRef)
	if err != nil {
		return nil, err
	}
	d, err := in.Deployer()
	if err != nil {
		return nil, fmt.Errorf("provider %s: no deployer: its VIM plugin %s does not deploy services and the catalogue names no dc.deployer: %w",
			provider, p.DC.Plugin, err)
	}
	return d, nil
}

// ErrNoMonitor: the catalogue names no monitor plugin, so there is nothing to store,
// read or evaluate (the collector, the metrics API and the elasticity engine say so).
var ErrNoMonitor = errors.New("no monitor plugin in the catalogue")

// Monitor returns the monitoring plugin's client, or nil when the catalogue has none.
func (r *Registry) Monitor(ctx context.Context) (sdk.Monitor, error) {
	if r.cat.Monitor == nil {
		return nil, nil
	}
	in, err := r.instance(ctx, &Provider{Name: "monitor"}, RoleMonitor, *r.cat.Monitor)
	if err != nil {
		return nil, err
	}
	return in.Monitor()
}

// StartFailure is one provider role whose plugin did not start.
type StartFailure struct {
	Provider string
	Role     string
	Plugin   string
	Err      error
}

// StartError lists every provider role whose plugin did not start.
type StartError struct {
	Failures []StartFailure
}

func (e *StartError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = f.Err.Error()
	}
	return fmt.Sprintf("%d provider plugins did not start: %s", len(e.Failures), strings.Join(parts, "; "))
}

// StartAll launches every instance of the catalogue in parallel, so that a broken
// plugin or configuration shows at start-up rather than at the first slice. A plugin
// that fails to start stops no other: every instance is tried, and the error, a
// *StartError, names each provider role that failed with its reason (those are retried
// at their first use).
func (r *Registry) StartAll(ctx context.Context) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []StartFailure
	)
	start := func(p *Provider, role string, ref PluginRef) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.instance(ctx, p, role, ref); err != nil {
				mu.Lock()
				failures = append(failures, StartFailure{Provider: p.Name, Role: role, Plugin: ref.Plugin, Err: err})
				mu.Unlock()
			}
		}()
	}
	for i := range r.cat.Providers {
		p := &r.cat.Providers[i]
		if p.DC != nil {
			start(p, RoleDC, p.DC.PluginRef)
			if p.DC.Deployer != nil {
				start(p, RoleDeployer, *p.DC.Deployer)
			}
		}
		if p.WAN != nil {
			start(p, RoleWAN, p.WAN.PluginRef)
		}
	}
	if r.cat.Monitor != nil {
		start(&Provider{Name: "monitor"}, RoleMonitor, *r.cat.Monitor)
	}
	wg.Wait()
	r.started.Store(true)
	if len(failures) == 0 {
		return nil
	}
	sort.Slice(failures, func(i, j int) bool {
		return instanceName(failures[i].Provider, failures[i].Role) < instanceName(failures[j].Provider, failures[j].Role)
	})
	return &StartError{Failures: failures}
}

// Ready reports whether every provider's plugins serve: nil once StartAll has run and
// no instance is refused or failing to relaunch; else an error naming each instance
// that is not, with its reason. A plugin that merely exited is relaunched at its next
// call and does not count.
func (r *Registry) Ready() error {
	if !r.started.Load() {
		return errors.New("provider plugins: still starting")
	}
	var bad []string
	for _, s := range r.host.Instances() {
		switch s.State {
		case pluginhost.StateRefused, pluginhost.StateFailed:
			bad = append(bad, fmt.Sprintf("%s (provider %s, plugin %s) %s: %s", s.Name, s.Provider, s.Plugin, s.State, s.LastError))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("provider plugins not serving: %s", strings.Join(bad, "; "))
	}
	return nil
}
