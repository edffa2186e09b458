# necos — build, test and generate. See README.md.
SHELL := /bin/bash
GO ?= go
BIN := bin
PLUGIN_DIR := $(BIN)/plugins
PLUGINS := $(notdir $(wildcard plugins/*))
PROTO_SRC := $(wildcard sdk/proto/necos/plugin/v1/*.proto)

.PHONY: all build plugins lock proto proto-check ui ui-check test run lint bench clean images demo

all: build

# Binaries in bin/, plugins in bin/plugins, locked (plugins.lock records their SHA-256:
# necosd refuses to run a plugin binary that is not in it).
build: plugins
	$(GO) build -o $(BIN)/ ./cmd/...
	$(BIN)/necosctl plugins lock --dir $(PLUGIN_DIR)

plugins:
	@mkdir -p $(PLUGIN_DIR)
	@for p in $(PLUGINS); do \
	  echo "build plugin $$p"; \
	  $(GO) build -o $(PLUGIN_DIR)/necos-plugin-$$p ./plugins/$$p || exit 1; \
	done

$(BIN)/tools/protoc-gen-go $(BIN)/tools/protoc-gen-go-grpc: go.mod
	@mkdir -p $(BIN)/tools
	$(GO) build -o $(BIN)/tools/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc

# Regenerates the plugin API's Go code (needs Debian's protobuf-compiler and libprotobuf-dev).
proto: $(BIN)/tools/protoc-gen-go $(BIN)/tools/protoc-gen-go-grpc
	protoc -I sdk/proto \
	  --plugin=protoc-gen-go=$(BIN)/tools/protoc-gen-go \
	  --plugin=protoc-gen-go-grpc=$(BIN)/tools/protoc-gen-go-grpc \
	  --go_out=. --go_opt=module=github.com/necos/necos \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/necos/necos \
	  $(PROTO_SRC)

# Fails when the committed generated code differs from what `make proto` produces.
proto-check: proto
	@git diff --exit-code -- sdk/proto/pluginv1 || { echo "generated code is stale: run make proto and commit"; exit 1; }

# The container images the Kubernetes nodes run (scripts/images.sh): prints the archive.
images:
	./scripts/images.sh

# Rebuilds the dashboard (ui/web -> ui/dist, committed and embedded by package ui).
ui:
	./scripts/ui.sh build

# Fails when the committed dashboard build differs from a build of its sources.
ui-check:
	./scripts/ui.sh check

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed: $$out"; exit 1; }
	$(GO) vet ./...

test:
	./scripts/test.sh

run:
	./scripts/run.sh

# The MUSTS demo (docs/demo.md): against the running necosd, or one it starts. DEMO_ARGS
# go to `necosctl demo` (e.g. make demo DEMO_ARGS=--keep).
demo: build
	./scripts/demo.sh $(DEMO_ARGS)

# Benchmarks (see README): plugin call latency, slice creation through necosd, elasticity.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./core/pluginhost/

clean:
	rm -rf $(BIN)
