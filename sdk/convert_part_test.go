package sdk

import (
	"reflect"
	"testing"
	"time"

	pb "github.com/necos/necos/sdk/proto/pluginv1"
	"google.golang.org/protobuf/proto"
)

// fullPart has every field of Part and of what it holds set, so that a field the
// conversion drops shows.
func fullPart() Part {
	return Part{
		Ref: PartRef{SliceID: "s1", PartID: "core"}, Name: "core", State: StateReady, Message: "ok",
		Nodes: []Node{
			{Name: "web-1", VDU: "web", ID: "i-1", Type: NodeWorker, State: StateRunning, CPUs: 2, MemoryMB: 512,
				StorageGB: 3, IPs: []string{"10.0.0.1", "fd00::1"}},
			{Name: "web-2", VDU: "web", ID: "i-2", Type: NodeWorker, State: StateRunning, CPUs: 4, MemoryMB: 1024,
				StorageGB: 5, IPs: []string{"10.0.0.2"}},
		},
		VIMRef: Endpoint{IPAPI: "127.0.0.1", PortAPI: 6443, IPSSH: "127.0.0.2", PortSSH: 22},
		Credential: Credential{Kind: CredentialSSHKey, User: "root", Secret: "key", HostKey: "ssh-ed25519 AAAA",
			Expires: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)},
		Bridge:     "br-s1",
		Allocated:  Resources{CPUs: 6, MemoryMB: 1536, StorageGB: 8, Nodes: 2},
		Used:       Resources{CPUs: 1, MemoryMB: 100, StorageGB: 1, Nodes: 2},
		Attributes: map[string]string{"provider": "p1", "location": "EUROPE.SPAIN"},
	}
}

// zeroFields lists the fields of v (a struct, walked into structs and slices) that hold
// their zero value.
func zeroFields(prefix string, v reflect.Value) []string {
	var out []string
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			if v.IsZero() {
				out = append(out, prefix)
			}
			return out
		}
		for i := range v.NumField() {
			out = append(out, zeroFields(prefix+"."+v.Type().Field(i).Name, v.Field(i))...)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			out = append(out, prefix)
		}
		for i := range v.Len() {
			out = append(out, zeroFields(prefix+"[]", v.Index(i))...)
		}
	default:
		if v.IsZero() {
			out = append(out, prefix)
		}
	}
	return out
}

// A part goes over the wire and back unchanged: every field, each node's own.
func TestPartWireRoundTrip(t *testing.T) {
	for name, part := range map[string]Part{"full": fullPart(), "empty": {}} {
		t.Run(name, func(t *testing.T) {
			if name == "full" {
				if zero := zeroFields("Part", reflect.ValueOf(part)); len(zero) > 0 {
					t.Fatalf("the fixture leaves %v unset: the test would not see them dropped", zero)
				}
			}
			raw, err := proto.Marshal(partToPB(part))
			if err != nil {
				t.Fatal(err)
			}
			var w pb.Part
			if err := proto.Unmarshal(raw, &w); err != nil {
				t.Fatal(err)
			}
			if got := partFromPB(&w); !reflect.DeepEqual(got, part) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, part)
			}
		})
	}
}

// Converting a part costs a fixed number of allocations, whatever its number of nodes:
// Describe, the hottest call, converts one each way on every call.
func TestPartConversionAllocations(t *testing.T) {
	part := fullPart()
	part.Credential.Expires = time.Time{} // a timestamp is one more allocation
	w := partToPB(part)
	for _, c := range []struct {
		name string
		f    func()
		want float64
	}{
		// The part and its fixed sub-messages, the node array, the node slice.
		{"partToPB", func() { _ = partToPB(part) }, 3},
		// The node slice.
		{"partFromPB", func() { _ = partFromPB(w) }, 1},
	} {
		if got := testing.AllocsPerRun(100, c.f); got != c.want {
			t.Errorf("%s of a %d-node part: %v allocations, want %v", c.name, len(part.Nodes), got, c.want)
		}
	}
}
