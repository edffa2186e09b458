package kubevim

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/necos/necos/sdk"
)

// Labels and annotations the plugin puts on what it makes. A part is found again from
// the labels alone (provider + key); the annotations hold everything else it needs after
// a restart: the exact ids and the VDU layout.
const (
	labelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "necos"
	labelProvider  = "necos.io/provider"
	// labelKey is a hash of the part's ref: refs may hold characters labels cannot.
	labelKey   = "necos.io/part-key"
	labelSlice = "necos.io/slice"
	// labelSliceKey is a hash of the slice's id, the same on every part of the slice
	// whatever provider made it: what a part's NetworkPolicy admits the slice's other
	// parts by (labelSlice is sanitized, so two ids could share it).
	labelSliceKey = "necos.io/slice-key"
	labelPart     = "necos.io/part"
	labelTenant   = "necos.io/tenant"
	labelService  = "necos.io/service"
	labelNode     = "necos.io/node"
	labelPodSec   = "pod-security.kubernetes.io/enforce"

	annSliceID   = "necos.io/slice-id"
	annPartID    = "necos.io/part-id"
	annPartName  = "necos.io/part-name"
	annPartType  = "necos.io/part-type"
	annTenant    = "necos.io/tenant"
	annLocation  = "necos.io/location"
	annBridge    = "necos.io/bridge"
	annLayout    = "necos.io/layout"
	annServiceID = "necos.io/service-id"
	annExpires   = "necos.io/expires"
	annIssued    = "necos.io/issued"
	annScript    = "necos.io/script-sha256"
)

// Names of the objects inside a part's namespace.
const (
	quotaName      = "necos-quota"
	limitRangeName = "necos-defaults"
	tenantName     = "necos-tenant" // ServiceAccount, Role and RoleBinding
	netPolName     = "necos-isolation"
	tokenSecret    = "necos-tenant-token"
)

// fieldManager owns every field the plugin applies (server-side apply).
const fieldManager = "necos"

const maxNameLen = validation.DNS1123LabelMaxLength // 63

// partKey identifies a part in a label value: a hash of its ref, the same for every
// process and restart.
func partKey(ref sdk.PartRef) string {
	return hashHex(ref.SliceID+"\x00"+ref.PartID, 40)
}

// sliceKey identifies a slice in a label value (labelSliceKey).
func sliceKey(sliceID string) string {
	return hashHex(sliceID, 40)
}

func hashHex(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// dnsLabel turns s into something a DNS-1123 label may contain: lower case letters,
// digits and single dashes, with no dash at either end.
func dnsLabel(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(b.String(), "-")
}

// truncateName shortens name to max characters, ending with a dash and the first eight
// characters of key, so that truncated names stay distinct.
func truncateName(name, key string, max int) string {
	if len(name) <= max {
		return name
	}
	return withHash(name, key, max)
}

// withHash returns name cut so that "-" + key[:8] fits in max, with that suffix.
func withHash(name, key string, max int) string {
	suffix := "-" + key[:8]
	head := strings.TrimRight(name[:min(len(name), max-len(suffix))], "-")
	return head + suffix
}

// namespaceNames returns the namespace name of a part and the fallback used when that
// name is taken by another part (two refs can sanitize to the same name).
func namespaceNames(ref sdk.PartRef) (primary, fallback string) {
	key := partKey(ref)
	parts := []string{"necos"}
	for _, s := range []string{dnsLabel(ref.SliceID), dnsLabel(ref.PartID)} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	name := strings.Join(parts, "-")
	return truncateName(name, key, maxNameLen), withHash(name, key, maxNameLen)
}

// labelValue returns s when it is a valid label value, else a sanitized form (labels
// other than the key are for people and selectors, never for finding a part).
func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	v := b.String()
	if len(v) > validation.LabelValueMaxLength {
		v = withHash(v, hashHex(s, 8), validation.LabelValueMaxLength)
	}
	v = strings.Trim(v, "-_.")
	if v == "" {
		return hashHex(s, 8)
	}
	return v
}

// serviceLabel is the value of labelService for a service id: the id itself when it is
// a valid label value, else a hash, so that two services never share a label.
func serviceLabel(id string) string {
	if len(validation.IsValidLabelValue(id)) == 0 {
		return id
	}
	return "svc-" + hashHex(id, 32)
}
