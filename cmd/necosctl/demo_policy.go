package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// policyTuning is what --cpu-threshold and --cooldown change in a service document
// before the demo deploys it: the CPU policies of the parts the demo loads. The examples
// keep the original demo's 80 % and 60 s; a machine that cannot drive a guest or a pod to
// 80 % (two cores without KVM, where a TCG guest's vCPU gets a fifth to a third of the
// host) shows the elastic actions on the same real metric at a threshold it reaches.
type policyTuning struct {
	// threshold is the CPU policies' value, in percent; 0 keeps the document's.
	threshold float64
	// cooldown is their reactivate-elasticity timer; 0 keeps the document's.
	cooldown time.Duration
}

func (t policyTuning) none() bool { return t.threshold == 0 && t.cooldown == 0 }

// tunePolicies sets the threshold and cooldown of the elasticity policies over
// PERCENT_CPU_UTILIZATION (operator > or >=) of the named parts of a NECOS service
// document, and says which policies it changed from what. It fails when one of the
// parts has no such policy: the demo would otherwise wait for an action that nothing
// asked for.
func tunePolicies(doc []byte, t policyTuning, parts ...string) ([]byte, string, error) {
	if t.none() {
		return doc, "", nil
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, "", fmt.Errorf("service document: %w", err)
	}
	want := map[string]bool{}
	for _, p := range parts {
		want[p] = true
	}
	seen := map[string]bool{}
	var changed []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			if part := mapValue(n, "dc-slice-part"); part != nil {
				if name := mapValue(part, "name"); name != nil && want[name.Value] {
					for _, p := range cpuPolicies(part) {
						seen[name.Value] = true
						changed = append(changed, tunePolicy(name.Value, p, t))
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	var missing []string
	for _, p := range parts {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return nil, "", fmt.Errorf("service document: no elasticity policy on PERCENT_CPU_UTILIZATION with operator > for part %s, so --cpu-threshold/--cooldown have nothing to set",
			strings.Join(missing, ", "))
	}
	out, err := yaml.Marshal(&root)
	if err != nil {
		return nil, "", fmt.Errorf("service document: %w", err)
	}
	return out, strings.Join(changed, "; "), nil
}

// cpuPolicies returns the `policy` mappings of a part (under its elasticity list) that
// fire on high CPU.
func cpuPolicies(part *yaml.Node) []*yaml.Node {
	list := mapValue(part, "elasticity")
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil
	}
	var out []*yaml.Node
	for _, item := range list.Content {
		p := mapValue(item, "policy")
		if p == nil {
			continue
		}
		op, mc := mapValue(p, "operator"), mapValue(p, "metric-collector")
		if op == nil || (op.Value != ">" && op.Value != ">=") || mc == nil {
			continue
		}
		if m := mapValue(mc, "metric-name"); m == nil || m.Value != "PERCENT_CPU_UTILIZATION" {
			continue
		}
		out = append(out, p)
	}
	return out
}

// tunePolicy sets one policy's value and reactivate-elasticity timer, and describes the
// change.
func tunePolicy(part string, p *yaml.Node, t policyTuning) string {
	name := part
	if n := mapValue(p, "name"); n != nil {
		name = n.Value
	}
	var what []string
	if t.threshold > 0 {
		v := setScalar(p, "value", strconv.FormatFloat(t.threshold, 'f', -1, 64), "!!float")
		what = append(what, fmt.Sprintf("CPU > %s %% (the service's: %s %%)", strconv.FormatFloat(t.threshold, 'f', -1, 64), v))
	}
	if t.cooldown > 0 {
		post := mapValue(p, "post-deployment")
		if post == nil {
			post = addMapping(p, "post-deployment")
		}
		timers := mapValue(post, "timers")
		if timers == nil {
			timers = addMapping(post, "timers")
		}
		secs := strconv.Itoa(int(t.cooldown.Round(time.Second).Seconds()))
		v := setScalar(timers, "reactivate-elasticity", secs, "!!int")
		if v == "" {
			v = "none"
		} else {
			v += " s"
		}
		what = append(what, fmt.Sprintf("cooldown %s s (the service's: %s)", secs, v))
	}
	return fmt.Sprintf("%s/%s: %s", part, name, strings.Join(what, ", "))
}

// setScalar sets key of a mapping to a scalar (adding it when absent) and returns the
// value it had ("" when none).
func setScalar(m *yaml.Node, key, value, tag string) string {
	if v := mapValue(m, key); v != nil {
		old := v.Value
		*v = yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value, Style: v.Style &^ (yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle)}
		return old
	}
	m.Content = append(m.Content,
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
		&yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value})
	return ""
}

// addMapping adds an empty mapping under key and returns it.
func addMapping(m *yaml.Node, key string) *yaml.Node {
	v := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
	return v
}
