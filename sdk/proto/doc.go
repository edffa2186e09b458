// Package proto holds the plugin API's .proto files (necos/plugin/v1) and, in pluginv1,
// the Go code protoc generates from them (make proto). Plugin authors use package sdk,
// which hides this wire format.
package proto
