package spec

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Cost holds the tenant's cost limits (in a request) or the price charged (in a created
// slice): cost.dc-model per DC slice part and cost.net-model per net slice part.
type Cost struct {
	DC  *CostModel `json:"dc-model,omitempty"`
	Net *CostModel `json:"net-model,omitempty"`
}

// CostModel is a NECOS cost: {model: COST_PER_PHYSICAL_MACHINE_PER_DAY, value-euros: "<=10"}.
//
// value-euros is a number, optionally after a comparison operator; "<=10" is parsed
// into Op "<=" and Euros 10. A plain number has an empty Op: in a request it is a limit
// read as "<=", in a created slice it is the price charged.
type CostModel struct {
	// Model names what is priced, e.g. COST_PER_PHYSICAL_MACHINE_PER_DAY or
	// COST_PER_LINK_PER_DAY.
	Model string `json:"model,omitempty"`
	// Op is "", "<", "<=", ">", ">=" or "=".
	Op    string  `json:"op,omitempty"`
	Euros float64 `json:"euros"`
	// Written is value-euros as the tenant wrote it when that differs from Value
	// ("<= 10 €", "10 EUR"), so that the slice renders it back as written.
	Written string `json:"written,omitempty"`
}

// Cost model names the original used.
const (
	CostPerMachinePerDay = "COST_PER_PHYSICAL_MACHINE_PER_DAY"
	CostPerLinkPerDay    = "COST_PER_LINK_PER_DAY"
)

// Allows reports whether price satisfies the cost, an empty Op meaning "<=".
func (c CostModel) Allows(price float64) bool {
	switch c.Op {
	case "<":
		return price < c.Euros
	case ">":
		return price > c.Euros
	case ">=":
		return price >= c.Euros
	case "=":
		return price == c.Euros
	default:
		return price <= c.Euros
	}
}

// Value returns value-euros as written in the format: "<=10", or "10" without Op.
func (c CostModel) Value() string {
	return c.Op + strconv.FormatFloat(c.Euros, 'f', -1, 64)
}

// ParseCostValue parses a value-euros expression: a non-negative number, optionally
// after <, <=, >, >=, = or == and before a currency (€, EUR, euro, euros), spaces
// allowed, e.g. "<=10", "< 12.5", "7", "<= 10 €", "10 EUR". A decimal comma ("10,5")
// is taken as a point.
func ParseCostValue(s string) (op string, euros float64, err error) {
	t := strings.TrimSpace(s)
	lower := strings.ToLower(t)
	for _, cur := range []string{"€", "euros", "euro", "eur"} {
		if strings.HasSuffix(lower, cur) {
			t, lower = strings.TrimSpace(t[:len(t)-len(cur)]), strings.TrimSpace(lower[:len(lower)-len(cur)])
			break
		}
	}
	if strings.Count(t, ",") == 1 && !strings.Contains(t, ".") {
		t = strings.Replace(t, ",", ".", 1)
	}
	for _, o := range []string{"<=", ">=", "==", "<", ">", "="} {
		if strings.HasPrefix(t, o) {
			op, t = o, strings.TrimSpace(t[len(o):])
			break
		}
	}
	if op == "==" {
		op = "="
	}
	v, perr := strconv.ParseFloat(t, 64)
	if perr != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || strings.ContainsAny(t, "xXpP_") {
		return "", 0, fmt.Errorf("must be a number of euros >= 0, optionally after <, <=, >, >= or = (e.g. \"<=10\"), got %s", quote(s))
	}
	return op, v, nil
}

// costModel reads {model, value-euros}.
func (d *decoder) costModel(n *yaml.Node, path string) *CostModel {
	if isNull(n) {
		return nil
	}
	o := d.mapping(n, path)
	if o.empty {
		return nil
	}
	c := &CostModel{Model: o.str("model")}
	v := o.node("value-euros")
	switch {
	case isNull(v):
		d.p.add(o.at("value-euros"), "required: a number of euros, optionally after <, <=, >, >= or = (e.g. \"<=10\")")
	case v.Kind == yaml.ScalarNode && (v.ShortTag() == "!!int" || v.ShortTag() == "!!float"):
		if f, ok := d.number(v, o.at("value-euros")); ok {
			if f < 0 {
				d.p.add(o.at("value-euros"), "must be >= 0, got %s", v.Value)
			}
			c.Euros = f
		}
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str":
		op, e, err := ParseCostValue(v.Value)
		if err != nil {
			d.p.add(o.at("value-euros"), "%v", err)
		}
		c.Op, c.Euros = op, e
		if err == nil && v.Value != c.Value() {
			c.Written = v.Value
		}
	default:
		d.p.add(o.at("value-euros"), "must be a number or a string like \"<=10\", got %s", kindOf(v))
	}
	o.rest()
	return c
}
