package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/necos/necos/core/store"
)

// TestSecretsStayWithTheirOwner: a part's private key reaches its owning tenant's GET
// (JSON and NECOS) and nothing else: not another tenant, not the slice list, not its
// events, not necosd's log (at debug level), and not a byte of the data directory,
// where the embedded store keeps it sealed; the store itself answers no client without
// the certificate under the data directory.
func TestSecretsStayWithTheirOwner(t *testing.T) {
	d := startDaemon(t, xenCatalogue(t, nil, ""))
	r := d.do("demo", "POST", "/v1/slices?wait=true", "text/x-yaml", exampleUnlinked(t, "touristic-cdn-xen.yaml"))
	d.expect(r, 201, "create")
	id := listSlices(t, d, "demo")[0].ID
	s := getSlice(t, d, "demo", id)
	var secrets []string
	for _, p := range s.Parts {
		if p.Credential == nil || !strings.Contains(p.Credential.Secret, "PRIVATE KEY") {
			t.Fatalf("part %s: the owner's GET has no private key: %+v", p.Name, p.Credential)
		}
		// The key's body, without its armour: what must appear nowhere else.
		lines := strings.Split(strings.TrimSpace(p.Credential.Secret), "\n")
		secrets = append(secrets, lines[1])
	}
	necos := d.do("demo", "GET", "/v1/slices/"+id+"?format=necos", "", nil)
	d.expect(necos, 200, "get in the NECOS format")
	for _, sec := range secrets {
		if !bytes.Contains(necos.Body, []byte(sec)) {
			t.Errorf("the NECOS view lacks a part's private key")
		}
	}
	d.expect(d.do("other", "GET", "/v1/slices/"+id, "", nil), 404, "another tenant's GET")
	seen := map[string][]byte{
		"the list":   d.do("demo", "GET", "/v1/slices", "", nil).Body,
		"the events": d.do("demo", "GET", "/v1/slices/"+id+"/events", "", nil).Body,
	}
	for what, body := range seen {
		for _, sec := range secrets {
			if bytes.Contains(body, []byte(sec)) {
				t.Errorf("%s carries a private key", what)
			}
		}
	}
	d.expect(d.do("demo", "DELETE", "/v1/slices/"+id+"?wait=true", "", nil), 204, "delete")
	d.stop()
	for _, sec := range secrets {
		if strings.Contains(d.log.String(), sec) {
			t.Errorf("necosd's log carries a private key")
		}
		_ = filepath.WalkDir(filepath.Join(d.dir, "data"), func(path string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(sec)) {
					t.Errorf("%s holds a private key in plain text", path)
				}
			}
			return nil
		})
	}
	a, err := store.Embedded(filepath.Join(d.dir, "data", "store"))
	if err != nil || !strings.HasPrefix(a.Endpoint, "https://127.0.0.1:") {
		t.Errorf("embedded store access: %+v %v", a, err)
	}
}
