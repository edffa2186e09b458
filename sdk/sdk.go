// Package sdk is what a necos plugin author imports.
//
// A plugin is a separate executable that the necos core launches and talks to over gRPC
// (HashiCorp go-plugin, mutual TLS). It implements [Plugin] (who it is, how it is
// configured) and one or more kinds: [VIM] (compute slice parts), [Deployer] (services
// on parts), [WAN] (links between parts) and [Monitor] (metric storage). Its main is:
//
//	func main() { sdk.Serve(myplugin.New()) }
//
// The wire format (package necos.plugin.v1) stays behind this package: plugin authors and
// the core both use the plain Go types defined here.
package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// APIVersion1 is the first version of the plugin API. Within it only additive changes are
// made, announced as [Info.Capabilities].
const APIVersion1 = "v1"

// SupportedAPIVersions lists the API versions this build of the SDK speaks.
var SupportedAPIVersions = []string{APIVersion1}

// Kind is a role a plugin can play.
type Kind string

// The plugin kinds.
const (
	// KindVIM provisions DC slice parts (compute) at a provider.
	KindVIM Kind = "vim"
	// KindDeployer puts tenant services onto DC slice parts.
	KindDeployer Kind = "deployer"
	// KindWAN builds links (net slice parts) between DC slice parts.
	KindWAN Kind = "wan"
	// KindMonitor stores and reads metrics.
	KindMonitor Kind = "monitor"
)

// Info describes a plugin.
type Info struct {
	// Name is the plugin's name, e.g. "vim-xen".
	Name string
	// Version is the plugin's own version.
	Version string
	// Description is one line for humans.
	Description string
	// Kinds are the kinds the plugin serves. [Serve] fills it from the interfaces the
	// plugin implements when left empty.
	Kinds []Kind
	// APIVersions are the plugin API versions the plugin speaks; empty means
	// [SupportedAPIVersions].
	APIVersions []string
	// Capabilities are optional features the plugin offers within its API version.
	Capabilities []string
}

// Serves reports whether the plugin serves kind k.
func (i Info) Serves(k Kind) bool {
	for _, have := range i.Kinds {
		if have == k {
			return true
		}
	}
	return false
}

// Provider identifies the resource provider a plugin instance works for.
type Provider struct {
	// Name is the provider's name in the catalogue.
	Name string
	// Location is where the provider is, e.g. "EUROPE.SPAIN".
	Location string
}

// Config is what [Plugin.Configure] receives.
type Config struct {
	// APIVersion is the version negotiated between the core and the plugin.
	APIVersion string
	// Provider is the provider this plugin instance serves.
	Provider Provider
	// JSON is the provider's plugin configuration, a JSON object (possibly empty).
	JSON []byte
}

// Decode decodes the configuration into v, refusing fields v does not have.
func (c Config) Decode(v any) error {
	if len(bytes.TrimSpace(c.JSON)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(c.JSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeInvalidArgument, "config: %v", err)
	}
	return nil
}

// Field types of a [ConfigField].
const (
	FieldString = "string"
	FieldInt    = "int"
	FieldNumber = "number"
	FieldBool   = "bool"
	FieldList   = "list"
	FieldObject = "object"
)

// ConfigField describes one key of a plugin's configuration.
type ConfigField struct {
	// Name is the key.
	Name string
	// Type is one of FieldString, FieldInt, FieldNumber, FieldBool, FieldList, FieldObject.
	Type string
	// Required keys must be present.
	Required bool
	// Default is the value used when the key is absent (nil when none).
	Default any
	// Description says what the key does.
	Description string
}

// ConfigSchema describes the configuration a plugin accepts.
type ConfigSchema struct {
	// Fields are the accepted keys.
	Fields []ConfigField
}

// Validate checks a JSON configuration object against the schema: unknown keys, missing
// required keys and wrong types are reported together, each naming its key.
func (s ConfigSchema) Validate(raw []byte) error {
	obj := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &obj); err != nil {
			return Errorf(CodeInvalidArgument, "config: not a JSON object: %v", err)
		}
	}
	known := map[string]ConfigField{}
	for _, f := range s.Fields {
		known[f.Name] = f
	}
	var problems []string
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := known[k]
		if !ok {
			names := make([]string, 0, len(s.Fields))
			for _, f := range s.Fields {
				names = append(names, f.Name)
			}
			sort.Strings(names)
			problems = append(problems, fmt.Sprintf("%s: unknown key (accepted: %s)", k, strings.Join(names, ", ")))
			continue
		}
		if msg := typeProblem(f.Type, obj[k]); msg != "" {
			problems = append(problems, fmt.Sprintf("%s: %s", k, msg))
		}
	}
	for _, f := range s.Fields {
		if _, ok := obj[f.Name]; f.Required && !ok {
			problems = append(problems, fmt.Sprintf("%s: required", f.Name))
		}
	}
	if len(problems) > 0 {
		return Errorf(CodeInvalidArgument, "config: %s", strings.Join(problems, "; "))
	}
	return nil
}

func typeProblem(typ string, v any) string {
	if v == nil {
		return ""
	}
	switch typ {
	case FieldString:
		if _, ok := v.(string); !ok {
			return "expected a string"
		}
	case FieldInt:
		n, ok := v.(float64)
		if !ok || n != float64(int64(n)) {
			return "expected an integer"
		}
	case FieldNumber:
		if _, ok := v.(float64); !ok {
			return "expected a number"
		}
	case FieldBool:
		if _, ok := v.(bool); !ok {
			return "expected true or false"
		}
	case FieldList:
		if _, ok := v.([]any); !ok {
			return "expected a list"
		}
	case FieldObject:
		if _, ok := v.(map[string]any); !ok {
			return "expected an object"
		}
	}
	return ""
}

// Plugin is the base contract every plugin implements, whatever its kinds.
type Plugin interface {
	// Info says who the plugin is. It is called before Configure.
	Info(ctx context.Context) (Info, error)
	// ConfigSchema describes the configuration Configure accepts.
	ConfigSchema(ctx context.Context) (ConfigSchema, error)
	// Configure hands the plugin its provider's configuration. It is called once per
	// process, before any kind's call.
	Configure(ctx context.Context, cfg Config) error
}

// NegotiateAPIVersion returns the highest API version both sides speak, or an error
// naming both lists.
func NegotiateAPIVersion(ours, theirs []string) (string, error) {
	best, bestN := "", -1
	for _, a := range ours {
		for _, b := range theirs {
			if a == b {
				if n := versionNumber(a); n > bestN {
					best, bestN = a, n
				}
			}
		}
	}
	if best == "" {
		return "", Errorf(CodeFailedPrecondition, "no common plugin API version: host speaks %s, plugin speaks %s",
			listOrNone(ours), listOrNone(theirs))
	}
	return best, nil
}

func listOrNone(v []string) string {
	if len(v) == 0 {
		return "none"
	}
	return strings.Join(v, ", ")
}

// versionNumber orders "v1" < "v2" < "v10"; unparsable versions sort first.
func versionNumber(v string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(v, "v"))
	if err != nil {
		return 0
	}
	return n
}
