package api

import (
	"net/http"

	v1 "github.com/necos/necos/api/v1"
)

// providers is GET /v1/providers: the federation's catalogue, without the plugins'
// configurations (they hold the providers' secrets).
func (h *Handler) providers(w http.ResponseWriter, r *http.Request) {
	out := v1.ProviderList{Providers: []v1.Provider{}}
	if cat := h.engine.Catalogue(); cat != nil {
		for _, p := range cat.Providers {
			out.Providers = append(out.Providers, providerView(p))
		}
	}
	WriteJSON(w, http.StatusOK, out)
}

// plugins is GET /v1/plugins: the plugin instances running for the providers.
func (h *Handler) plugins(w http.ResponseWriter, r *http.Request) {
	out := v1.PluginList{Plugins: []v1.Plugin{}}
	if h.opts.Plugins != nil {
		for _, s := range h.opts.Plugins.Instances() {
			out.Plugins = append(out.Plugins, pluginView(s))
		}
	}
	WriteJSON(w, http.StatusOK, out)
}
