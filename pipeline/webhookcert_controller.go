package pipeline

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The conversion webhook as the controller serves it.
const (
	// ConversionPath is where the conversion webhook is served.
	ConversionPath = "/convert"
	// WebhookCertSecret holds the webhook's CA and serving certificate (in the build namespace).
	WebhookCertSecret = "mosb-webhook-cert"
)

// ConvertedCRDs are the CRDs the conversion webhook serves.
var ConvertedCRDs = []string{"machineosconfigs.machineconfiguration.openshift.io", "machineosbuilds.machineconfiguration.openshift.io"}

// WebhookCertKeeper keeps the conversion webhook's certificates (see PlanWebhookCerts) and serves the
// current one to the webhook's TLS server. Every replica runs it: the Secret's resourceVersion
// decides which write wins, and the others read the winner's on their next round.
type WebhookCertKeeper struct {
	// Client reads and writes directly (no cache): the Secret and the CRDs.
	Client    client.Client
	Namespace string
	Policy    WebhookCertPolicy
	// Service is where the CRDs send conversion requests, or URL when set (a controller outside
	// the cluster, tests).
	Service *apiextensionsv1.ServiceReference
	URL     string
	Clock   clock.WithTicker
	Log     logr.Logger

	current atomic.Pointer[tls.Certificate]
}

// WebhookHosts are the serving certificate's names for a Service (its DNS names) or a URL (its host).
func WebhookHosts(service *apiextensionsv1.ServiceReference, rawURL string) ([]string, error) {
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return nil, fmt.Errorf("--webhook-url %q: want https://host[:port]/path", rawURL)
		}
		return []string{u.Hostname()}, nil
	}
	if service == nil || service.Name == "" || service.Namespace == "" {
		return nil, errors.New("the conversion webhook needs a Service or a URL")
	}
	base := service.Name + "." + service.Namespace
	return []string{base + ".svc", service.Name, base, base + ".svc.cluster.local"}, nil
}

// GetCertificate is the webhook TLS server's certificate source.
func (k *WebhookCertKeeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := k.current.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("the conversion webhook has no certificate yet")
}

// Interval is how often Start renews: often enough to act well before two thirds of a serving
// certificate's life.
func (k *WebhookCertKeeper) Interval() time.Duration {
	return min(max(k.Policy.ServingValidity/20, time.Second), 10*time.Minute)
}

// Start keeps the certificates current until ctx ends (a manager Runnable on every replica).
func (k *WebhookCertKeeper) Start(ctx context.Context) error {
	t := k.Clock.NewTicker(k.Interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			if err := k.Sync(ctx); err != nil {
				k.Log.Error(err, "keeping the conversion webhook's certificates; trying again", "in", k.Interval())
			}
		}
	}
}

// NeedLeaderElection: every replica serves the webhook and needs the certificate.
func (k *WebhookCertKeeper) NeedLeaderElection() bool { return false }

// Sync reads the Secret, renews what is due, writes the Secret and the CRDs' conversion
// configuration (the CA bundle first), then serves the Secret's serving certificate.
func (k *WebhookCertKeeper) Sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := k.Clock.Now()
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: k.Namespace, Name: WebhookCertSecret}
	err := k.Client.Get(ctx, key, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading Secret %s: %w", key, err)
	}
	certs, changed, err := PlanWebhookCerts(now, WebhookCertsFromSecretData(secret.Data), k.Policy)
	if err != nil {
		return err
	}
	if changed {
		secret.Name, secret.Namespace, secret.Type, secret.Data = key.Name, key.Namespace, corev1.SecretTypeOpaque, certs.SecretData()
		if exists {
			err = k.Client.Update(ctx, secret)
		} else {
			err = k.Client.Create(ctx, secret)
		}
		if err != nil {
			// Another replica wrote first (conflict, already exists): take its next round.
			return fmt.Errorf("writing Secret %s: %w", key, err)
		}
		k.Log.Info("conversion webhook certificates renewed", "secret", key.String())
	}
	if err := k.publish(ctx, certs.CABundle(now)); err != nil {
		return err
	}
	pair, err := certs.ServingKeyPair()
	if err != nil {
		return fmt.Errorf("the serving certificate in Secret %s: %w", key, err)
	}
	k.current.Store(pair)
	return nil
}

// publish writes the CA bundle and the webhook's address into each CRD's conversion settings.
func (k *WebhookCertKeeper) publish(ctx context.Context, bundle []byte) error {
	want := &apiextensionsv1.WebhookClientConfig{CABundle: bundle}
	if k.URL != "" {
		u := k.URL
		want.URL = &u
	} else {
		want.Service = k.Service.DeepCopy()
	}
	for _, name := range ConvertedCRDs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := k.Client.Get(ctx, types.NamespacedName{Name: name}, crd); err != nil {
			return fmt.Errorf("reading CRD %s: %w", name, err)
		}
		conv := crd.Spec.Conversion
		if conv != nil && conv.Strategy == apiextensionsv1.WebhookConverter && conv.Webhook != nil && sameClientConfig(conv.Webhook.ClientConfig, want) {
			continue
		}
		patched := crd.DeepCopy()
		patched.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{
			Strategy: apiextensionsv1.WebhookConverter,
			Webhook:  &apiextensionsv1.WebhookConversion{ClientConfig: want.DeepCopy(), ConversionReviewVersions: []string{"v1"}},
		}
		if err := k.Client.Patch(ctx, patched, client.MergeFromWithOptions(crd, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("writing the conversion webhook into CRD %s: %w", name, err)
		}
		k.Log.Info("conversion webhook configured", "crd", name, "cas", bytes.Count(bundle, []byte("BEGIN CERTIFICATE")))
	}
	return nil
}

func sameClientConfig(a, b *apiextensionsv1.WebhookClientConfig) bool {
	if a == nil || b == nil || !bytes.Equal(a.CABundle, b.CABundle) {
		return false
	}
	if (a.URL == nil) != (b.URL == nil) || (a.URL != nil && *a.URL != *b.URL) {
		return false
	}
	if (a.Service == nil) != (b.Service == nil) {
		return false
	}
	if a.Service == nil {
		return true
	}
	as, bs := *a.Service, *b.Service
	return as.Name == bs.Name && as.Namespace == bs.Namespace && ptrEq(as.Path, bs.Path) && ptrEq(as.Port, bs.Port)
}

func ptrEq[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
