package pluginhost

import (
	"context"

	"github.com/necos/necos/sdk"
)

// The host's VIM client serves MetricsBatcher whatever the plugin does: the SDK's own
// client measures part by part for a plugin built before MetricsBatch existed.
var _ sdk.MetricsBatcher = vimClient{}

// MetricsBatch is routed like every other call: relaunch a dead plugin, retry once when
// it dies under the call (measuring is idempotent).
func (c vimClient) MetricsBatch(ctx context.Context, req sdk.MetricsBatchRequest) ([]sdk.PartMetrics, error) {
	return call(ctx, c.in, "MetricsBatch", func(p *proc) ([]sdk.PartMetrics, error) {
		v, err := c.vim(p)
		if err != nil {
			return nil, err
		}
		return sdk.MetricsBatch(ctx, v, req.Parts)
	})
}
