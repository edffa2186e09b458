package providers

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/necos/necos/core/pluginhost"
	"github.com/necos/necos/sdk"
	"golang.org/x/sync/errgroup"
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

// StartAll launches every instance of the catalogue in parallel, so that a broken
// plugin or configuration shows at start-up rather than at the first slice.
func (r *Registry) StartAll(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for i := range r.cat.Providers {
		p := &r.cat.Providers[i]
		if p.DC != nil {
			g.Go(func() error { _, err := r.instance(ctx, p, RoleDC, p.DC.PluginRef); return err })
			if p.DC.Deployer != nil {
				g.Go(func() error { _, err := r.instance(ctx, p, RoleDeployer, *p.DC.Deployer); return err })
			}
		}
		if p.WAN != nil {
			g.Go(func() error { _, err := r.instance(ctx, p, RoleWAN, p.WAN.PluginRef); return err })
		}
	}
	if r.cat.Monitor != nil {
		g.Go(func() error { _, err := r.Monitor(ctx); return err })
	}
	return g.Wait()
}
