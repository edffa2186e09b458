package proto_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/necos/necos/sdk/plugintest"
)

// The committed Go code must be what `make proto` generates from the .proto files with
// the protoc plugins pinned in go.mod.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		plugintest.NeedBackend(t, "protoc (Debian protobuf-compiler and libprotobuf-dev)")
	}
	tmp := t.TempDir()
	build := exec.Command("go", "build", "-o", tmp+"/",
		"google.golang.org/protobuf/cmd/protoc-gen-go", "google.golang.org/grpc/cmd/protoc-gen-go-grpc")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build protoc plugins: %v\n%s", err, out)
	}
	protos, _ := filepath.Glob("necos/plugin/v1/*.proto")
	if len(protos) == 0 {
		t.Fatal("no .proto files")
	}
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-I", ".",
		"--plugin=protoc-gen-go=" + filepath.Join(tmp, "protoc-gen-go"),
		"--plugin=protoc-gen-go-grpc=" + filepath.Join(tmp, "protoc-gen-go-grpc"),
		"--go_out=" + out, "--go_opt=module=github.com/necos/necos/sdk/proto",
		"--go-grpc_out=" + out, "--go-grpc_opt=module=github.com/necos/necos/sdk/proto"}, protos...)
	if b, err := exec.Command("protoc", args...).CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	generated, _ := filepath.Glob(filepath.Join(out, "pluginv1", "*.go"))
	committed, _ := filepath.Glob("pluginv1/*.go")
	if len(generated) != len(committed) {
		t.Fatalf("protoc generates %d files, %d are committed: run make proto", len(generated), len(committed))
	}
	for _, g := range generated {
		want, _ := os.ReadFile(g)
		got, err := os.ReadFile(filepath.Join("pluginv1", filepath.Base(g)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("pluginv1/%s differs from what protoc generates: run make proto and commit", filepath.Base(g))
		}
	}
}
