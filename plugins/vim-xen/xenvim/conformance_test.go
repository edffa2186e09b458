package xenvim_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/necos/necos/plugins/vim-xen/xenvim"
	"github.com/necos/necos/sdk"
	"github.com/necos/necos/sdk/plugintest"
)

// testCapacity is what the conformance runs configure: room for the suite's five
// racing parts of 2 CPUs each.
var testCapacity = xenvim.Capacity{CPUs: 10, MemoryMB: 8192, StorageGB: 100}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testConfig is a configuration on uri with a subnet and vim-ref endpoints.
func testConfig(t testing.TB, uri string) []byte {
	t.Helper()
	b, err := json.Marshal(xenvim.Config{
		URI:             uri,
		Capacity:        testCapacity,
		PricePerNodeDay: 2.5,
		Subnet:          "10.77.0.0/24",
		SSH:             &xenvim.SSHConfig{IP: "127.0.0.1", Port: 22},
		KeyDir:          t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vimOptions is how the suite drives this plugin: parts on a per-slice bridge (the test
// driver accepts any bridge name).
func vimOptions() plugintest.VIMOptions {
	return plugintest.VIMOptions{
		Capacity: sdk.Resources{CPUs: testCapacity.CPUs, MemoryMB: testCapacity.MemoryMB, StorageGB: testCapacity.StorageGB},
		Spec: func(p sdk.PartSpec) sdk.PartSpec {
			p.Bridge = "br-conformance"
			return p
		},
		SlicePrefix: "xen-" + randomSuffix(),
	}
}

func TestConformanceInProcess(t *testing.T) {
	// Each test gets its own provider: the test driver's state is shared by the whole
	// test process, and the plugin only counts its own provider's domains.
	provider := sdk.Provider{Name: "conformance-" + randomSuffix(), Location: "EUROPE.TEST"}
	c := plugintest.InProcess(t, xenvim.New(plugintest.TestLogger(t)), provider, testConfig(t, "test:///default"))
	plugintest.RunVIM(t, c, vimOptions())
}
