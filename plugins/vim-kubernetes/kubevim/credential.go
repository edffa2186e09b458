package kubevim

import (
	"context"
	"fmt"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/necos/necos/sdk"
)

// A tenant reaches its part as the namespace's necos-tenant ServiceAccount, with a token
// from the TokenRequest API: it expires after token_ttl and nothing long-lived exists to
// leak. The current token is kept in a Secret of the namespace, so that every call (and
// every plugin process) hands out the same kubeconfig until it is renewed: Create and
// Describe mint a new token when less than a third of the lifetime is left. An older
// token keeps working until its own expiry; deleting the part ends them all (the
// ServiceAccount goes with the namespace).

// needsRenewal reports whether a token issued at issued and expiring at expires should
// be replaced at now: when less than a third of its lifetime is left. The lifetime is
// the token's own (the API server may cap it below token_ttl), or ttl when the issue
// time is unknown.
func needsRenewal(issued, expires, now time.Time, ttl time.Duration) bool {
	if expires.IsZero() {
		return true
	}
	life := ttl
	if !issued.IsZero() && expires.After(issued) {
		life = expires.Sub(issued)
	}
	return !now.Add(life / 3).Before(expires)
}

// credential returns the tenant's kubeconfig for namespace ns, minting a token first
// when the stored one is missing or near its expiry.
func (p *Plugin) credential(ctx context.Context, s settings, k *cluster, ns string) (sdk.Credential, error) {
	user := fmt.Sprintf("system:serviceaccount:%s:%s", ns, tenantName)
	token, issued, expires := "", time.Time{}, time.Time{}
	sec, err := k.cs.CoreV1().Secrets(ns).Get(ctx, tokenSecret, metav1.GetOptions{})
	switch {
	case err == nil:
		token = string(sec.Data["token"])
		issued, _ = time.Parse(time.RFC3339, sec.Annotations[annIssued])
		expires, _ = time.Parse(time.RFC3339, sec.Annotations[annExpires])
	case !apierrors.IsNotFound(err):
		return sdk.Credential{}, apiError(err, "read tenant token")
	}
	if token == "" || needsRenewal(issued, expires, p.now(), s.tokenTTL) {
		secs := int64(s.tokenTTL / time.Second)
		tr, err := k.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, tenantName,
			&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
		if err != nil {
			return sdk.Credential{}, apiError(err, "request tenant token")
		}
		token, issued, expires = tr.Status.Token, p.now(), tr.Status.ExpirationTimestamp.Time
		if _, err := k.cs.CoreV1().Secrets(ns).Apply(ctx, corev1ac.Secret(tokenSecret, ns).
			WithLabels(map[string]string{labelManagedBy: managedBy}).
			WithAnnotations(map[string]string{annIssued: issued.UTC().Format(time.RFC3339),
				annExpires: expires.UTC().Format(time.RFC3339)}).
			WithType("Opaque").WithData(map[string][]byte{"token": []byte(token)}), applyOpts); err != nil {
			return sdk.Credential{}, apiError(err, "store tenant token")
		}
		p.log.Debug("tenant token issued", "namespace", ns, "expires", expires.UTC().Format(time.RFC3339))
	}
	kc, err := tenantKubeconfig(k, s.provider.Name, ns, token)
	if err != nil {
		return sdk.Credential{}, err
	}
	return sdk.Credential{Kind: sdk.CredentialKubeconfig, User: user, Secret: string(kc), Expires: expires}, nil
}

// tenantKubeconfig is a kubeconfig for the tenant: the public API endpoint, the cluster's
// CA, the token, and the part's namespace as the context's default.
func tenantKubeconfig(k *cluster, provider, ns, token string) ([]byte, error) {
	name := "necos-" + dnsLabel(provider)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: k.server, CertificateAuthorityData: k.caData,
		TLSServerName: k.tlsServerName, InsecureSkipTLSVerify: k.insecure && len(k.caData) == 0}
	cfg.AuthInfos[ns] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[ns] = &clientcmdapi.Context{Cluster: name, AuthInfo: ns, Namespace: ns}
	cfg.CurrentContext = ns
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("write tenant kubeconfig: %w", err)
	}
	return b, nil
}
