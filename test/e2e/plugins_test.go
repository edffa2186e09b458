package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/necos/necos/api/v1"
)

// necosd started with broken plugins (one missing, one changed after it was locked)
// beside a working one: the log names every failed provider with its reason, GET
// /v1/plugins and `necosctl plugins list` list them as refused with their error, the
// working provider's plugin runs, and /readyz says not ready, naming them.
func TestBrokenPluginsAtStartUp(t *testing.T) {
	uri := libvirtURI(t)
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(bin, "plugins", "necos-plugin-vim-xen"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vim-xen", "tampered"} {
		if err := os.WriteFile(filepath.Join(dir, "necos-plugin-"+name), raw, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(filepath.Join(bin, "necosctl"), "plugins", "lock", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("lock: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "necos-plugin-tampered"), append(raw, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	provider := func(name, plugin string) string {
		return `  - name: ` + name + `
    location: EUROPE.TEST
    dc: {vim: xen-vim, plugin: ` + plugin + `, config: {uri: "` + uri + `", capacity: {cpus: 8, memory_mb: 8192, storage_gb: 100}, subnet: 10.10.9.0/24}}
`
	}
	cat := "providers:\n" + provider("GOOD", "vim-xen") + provider("CHANGED", "tampered") + provider("MISSING", "ghost")
	d := startLiveDaemon(t, cat, "--plugin-dir", dir)

	// Start-up tries every plugin; wait until it has.
	var r response
	deadline := time.Now().Add(30 * time.Second)
	for {
		r = d.do("", "GET", "/readyz", "", nil)
		if r.Status == 503 && strings.Contains(string(r.Body), "CHANGED") && strings.Contains(string(r.Body), "MISSING") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz with two broken plugins: HTTP %d %s; want 503 naming both", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("/readyz: %s", r.Body)

	var l v1.PluginList
	r = d.do("demo", "GET", "/v1/plugins", "", nil)
	d.expect(r, 200, "list plugins")
	r.json(t, &l)
	states := map[string]v1.Plugin{}
	for _, p := range l.Plugins {
		states[p.Provider] = p
	}
	if p := states["GOOD"]; p.State != "running" {
		t.Errorf("the working plugin: %+v, want running", p)
	}
	for prov, why := range map[string]string{"CHANGED": "SHA-256", "MISSING": "ghost"} {
		p := states[prov]
		if p.State != "refused" || !strings.Contains(p.LastError, why) {
			t.Errorf("plugin of %s: state %q error %q, want refused saying %q", prov, p.State, p.LastError, why)
		}
		if strings.Contains(p.LastError, dir) {
			t.Errorf("plugin of %s: the error shows necosd's plugin directory: %s", prov, p.LastError)
		}
	}
	out, err := d.necosctl("demo", "plugins", "list")
	if err != nil {
		t.Fatalf("necosctl plugins list: %v\n%s", err, out)
	}
	for _, want := range []string{"CHANGED", "MISSING", "refused", "SHA-256", "necosctl plugins lock --dir bin/plugins ghost tampered", "make build"} {
		if !strings.Contains(out, want) {
			t.Errorf("necosctl plugins list does not show %q:\n%s", want, out)
		}
	}
	logs := d.log.String()
	for _, prov := range []string{"CHANGED", "MISSING"} {
		if !strings.Contains(logs, "provider plugin did not start") || !strings.Contains(logs, "provider="+prov) {
			t.Errorf("the log does not name failed provider %s:\n%s", prov, tail(logs, 30))
		}
	}
}
