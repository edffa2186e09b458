package pluginhost

import (
	"context"
	"time"

	"github.com/necos/necos/sdk"
)

// The kind clients below route every call through call(), which finds the live process
// (relaunching a dead one) and retries once when the process dies under the call. They
// hold the Instance, not a process, so they stay valid across relaunches.

// VIM returns the instance's VIM client, valid for the instance's life. It fails with
// CodeUnimplemented when the plugin does not serve the VIM kind.
func (in *Instance) VIM() (sdk.VIM, error) {
	if err := in.serves(sdk.KindVIM); err != nil {
		return nil, err
	}
	return vimClient{in}, nil
}

// Deployer returns the instance's Deployer client, valid for the instance's life. It
// fails with CodeUnimplemented when the plugin does not serve the Deployer kind.
func (in *Instance) Deployer() (sdk.Deployer, error) {
	if err := in.serves(sdk.KindDeployer); err != nil {
		return nil, err
	}
	return deployerClient{in}, nil
}

// WAN returns the instance's WAN client, valid for the instance's life. It fails with
// CodeUnimplemented when the plugin does not serve the WAN kind.
func (in *Instance) WAN() (sdk.WAN, error) {
	if err := in.serves(sdk.KindWAN); err != nil {
		return nil, err
	}
	return wanClient{in}, nil
}

// Monitor returns the instance's Monitor client, valid for the instance's life. It fails
// with CodeUnimplemented when the plugin does not serve the Monitor kind.
func (in *Instance) Monitor() (sdk.Monitor, error) {
	if err := in.serves(sdk.KindMonitor); err != nil {
		return nil, err
	}
	return monitorClient{in}, nil
}

func (in *Instance) serves(k sdk.Kind) error {
	if info := in.Info(); !info.Serves(k) {
		return sdk.Errorf(sdk.CodeUnimplemented, "%s does not serve kind %s (serves %v)", in.label, k, info.Kinds)
	}
	return nil
}

// notServed is returned when a relaunched plugin (a re-locked binary) dropped a kind.
func notServed(in *Instance, p *proc, k sdk.Kind) error {
	return sdk.Errorf(sdk.CodeUnimplemented, "%s does not serve kind %s any more (serves %v)", in.label, k, p.info.Kinds)
}

// ---- VIM ----

type vimClient struct{ in *Instance }

func (c vimClient) vim(p *proc) (sdk.VIM, error) {
	if p.vim == nil {
		return nil, notServed(c.in, p, sdk.KindVIM)
	}
	return p.vim, nil
}

func (c vimClient) Offer(ctx context.Context, req sdk.OfferRequest) (sdk.Offer, error) {
	return call(ctx, c.in, "Offer", func(p *proc) (sdk.Offer, error) {
		v, err := c.vim(p)
		if err != nil {
			return sdk.Offer{}, err
		}
		return v.Offer(ctx, req)
	})
}

func (c vimClient) Create(ctx context.Context, req sdk.CreateRequest) (sdk.Part, error) {
	return call(ctx, c.in, "Create", func(p *proc) (sdk.Part, error) {
		v, err := c.vim(p)
		if err != nil {
			return sdk.Part{}, err
		}
		return v.Create(ctx, req)
	})
}

func (c vimClient) Describe(ctx context.Context, req sdk.DescribeRequest) (sdk.Part, error) {
	return call(ctx, c.in, "Describe", func(p *proc) (sdk.Part, error) {
		v, err := c.vim(p)
		if err != nil {
			return sdk.Part{}, err
		}
		return v.Describe(ctx, req)
	})
}

func (c vimClient) Resize(ctx context.Context, req sdk.ResizeRequest) (sdk.Part, error) {
	return call(ctx, c.in, "Resize", func(p *proc) (sdk.Part, error) {
		v, err := c.vim(p)
		if err != nil {
			return sdk.Part{}, err
		}
		return v.Resize(ctx, req)
	})
}

func (c vimClient) Scale(ctx context.Context, req sdk.ScaleRequest) (sdk.Part, error) {
	return call(ctx, c.in, "Scale", func(p *proc) (sdk.Part, error) {
		v, err := c.vim(p)
		if err != nil {
			return sdk.Part{}, err
		}
		return v.Scale(ctx, req)
	})
}

func (c vimClient) Delete(ctx context.Context, req sdk.DeleteRequest) error {
	_, err := call(ctx, c.in, "Delete", func(p *proc) (struct{}, error) {
		v, err := c.vim(p)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, v.Delete(ctx, req)
	})
	return err
}

func (c vimClient) Metrics(ctx context.Context, req sdk.MetricsRequest) ([]sdk.Sample, error) {
	return call(ctx, c.in, "Metrics", func(p *proc) ([]sdk.Sample, error) {
		v, err := c.vim(p)
		if err != nil {
			return nil, err
		}
		return v.Metrics(ctx, req)
	})
}

// ---- Deployer ----

type deployerClient struct{ in *Instance }

func (c deployerClient) dep(p *proc) (sdk.Deployer, error) {
	if p.dep == nil {
		return nil, notServed(c.in, p, sdk.KindDeployer)
	}
	return p.dep, nil
}

func (c deployerClient) Deploy(ctx context.Context, req sdk.DeployRequest) (sdk.Deployment, error) {
	return call(ctx, c.in, "Deploy", func(p *proc) (sdk.Deployment, error) {
		d, err := c.dep(p)
		if err != nil {
			return sdk.Deployment{}, err
		}
		return d.Deploy(ctx, req)
	})
}

func (c deployerClient) Undeploy(ctx context.Context, req sdk.UndeployRequest) error {
	_, err := call(ctx, c.in, "Undeploy", func(p *proc) (struct{}, error) {
		d, err := c.dep(p)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, d.Undeploy(ctx, req)
	})
	return err
}

func (c deployerClient) DeployStatus(ctx context.Context, req sdk.DeployStatusRequest) (sdk.Deployment, error) {
	return call(ctx, c.in, "DeployStatus", func(p *proc) (sdk.Deployment, error) {
		d, err := c.dep(p)
		if err != nil {
			return sdk.Deployment{}, err
		}
		return d.DeployStatus(ctx, req)
	})
}

// ---- WAN ----

type wanClient struct{ in *Instance }

func (c wanClient) wan(p *proc) (sdk.WAN, error) {
	if p.wan == nil {
		return nil, notServed(c.in, p, sdk.KindWAN)
	}
	return p.wan, nil
}

func (c wanClient) OfferLink(ctx context.Context, req sdk.OfferLinkRequest) (sdk.LinkOffer, error) {
	return call(ctx, c.in, "OfferLink", func(p *proc) (sdk.LinkOffer, error) {
		w, err := c.wan(p)
		if err != nil {
			return sdk.LinkOffer{}, err
		}
		return w.OfferLink(ctx, req)
	})
}

func (c wanClient) Connect(ctx context.Context, req sdk.ConnectRequest) (sdk.Link, error) {
	return call(ctx, c.in, "Connect", func(p *proc) (sdk.Link, error) {
		w, err := c.wan(p)
		if err != nil {
			return sdk.Link{}, err
		}
		return w.Connect(ctx, req)
	})
}

func (c wanClient) DescribeLink(ctx context.Context, req sdk.DescribeLinkRequest) (sdk.Link, error) {
	return call(ctx, c.in, "DescribeLink", func(p *proc) (sdk.Link, error) {
		w, err := c.wan(p)
		if err != nil {
			return sdk.Link{}, err
		}
		return w.DescribeLink(ctx, req)
	})
}

func (c wanClient) Disconnect(ctx context.Context, req sdk.DisconnectRequest) error {
	_, err := call(ctx, c.in, "Disconnect", func(p *proc) (struct{}, error) {
		w, err := c.wan(p)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, w.Disconnect(ctx, req)
	})
	return err
}

// The host's client serves SiteReleaser whatever the plugin does: a plugin without it
// answers CodeUnimplemented.
var _ sdk.SiteReleaser = wanClient{}

func (c wanClient) ReleaseSites(ctx context.Context, req sdk.ReleaseSitesRequest) (sdk.SiteRelease, error) {
	return call(ctx, c.in, "ReleaseSites", func(p *proc) (sdk.SiteRelease, error) {
		w, err := c.wan(p)
		if err != nil {
			return sdk.SiteRelease{}, err
		}
		rel, ok := w.(sdk.SiteReleaser)
		if !ok {
			return sdk.SiteRelease{}, sdk.Errorf(sdk.CodeUnimplemented, "%s builds no sites to release", c.in.label)
		}
		return rel.ReleaseSites(ctx, req)
	})
}

// ---- Monitor ----

type monitorClient struct{ in *Instance }

func (c monitorClient) mon(p *proc) (sdk.Monitor, error) {
	if p.mon == nil {
		return nil, notServed(c.in, p, sdk.KindMonitor)
	}
	return p.mon, nil
}

// Write is retried like every other call (see the package doc). Points without a time
// are stamped now, once, so that the retry writes exactly what the first attempt did
// and a point stored twice is the same point.
func (c monitorClient) Write(ctx context.Context, req sdk.WriteRequest) error {
	req.Points = stamp(req.Points, time.Now())
	_, err := call(ctx, c.in, "Write", func(p *proc) (struct{}, error) {
		m, err := c.mon(p)
		if err != nil {
			return struct{}{}, err
		}
		if err := m.Write(ctx, req); err != nil {
			return struct{}{}, err
		}
		c.in.mu.Lock()
		if c.in.unflushedAt == 0 {
			c.in.unflushedAt = p.gen
		}
		c.in.mu.Unlock()
		return struct{}{}, nil
	})
	return err
}

// Flush fails with CodeAborted when the plugin was relaunched since the first Write not
// yet flushed: what the dead process had queued is lost, and only the caller can write
// it again.
func (c monitorClient) Flush(ctx context.Context) error {
	_, err := call(ctx, c.in, "Flush", func(p *proc) (struct{}, error) {
		m, err := c.mon(p)
		if err != nil {
			return struct{}{}, err
		}
		if err := m.Flush(ctx); err != nil {
			return struct{}{}, err
		}
		c.in.mu.Lock()
		since := c.in.unflushedAt
		c.in.unflushedAt = 0
		c.in.mu.Unlock()
		if since != 0 && since != p.gen {
			return struct{}{}, sdk.Errorf(sdk.CodeAborted,
				"the plugin was relaunched after points were written: points queued in the old process may be lost; write them again")
		}
		return struct{}{}, nil
	})
	return err
}

func (c monitorClient) Query(ctx context.Context, q sdk.Query) ([]sdk.Point, error) {
	return call(ctx, c.in, "Query", func(p *proc) ([]sdk.Point, error) {
		m, err := c.mon(p)
		if err != nil {
			return nil, err
		}
		return m.Query(ctx, q)
	})
}

func (c monitorClient) Health(ctx context.Context) error {
	_, err := call(ctx, c.in, "Health", func(p *proc) (struct{}, error) {
		m, err := c.mon(p)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, m.Health(ctx)
	})
	return err
}

// stamp returns points with every zero Time set to now, copying the slice only when it
// has to (the caller's slice is never modified).
func stamp(points []sdk.Point, now time.Time) []sdk.Point {
	for i := range points {
		if points[i].Time.IsZero() {
			out := append([]sdk.Point(nil), points...)
			for j := i; j < len(out); j++ {
				if out[j].Time.IsZero() {
					out[j].Time = now
				}
			}
			return out
		}
	}
	return points
}
