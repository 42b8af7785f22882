package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mosb-dev/mosb/api/convert"
	"github.com/mosb-dev/mosb/pipeline"
)

// ConversionWebhook is mosb's conversion webhook served in the test's process, with the
// controller's own certificate keeper, so that a control plane serves both versions of mosb's
// CRDs without a controller.
type ConversionWebhook struct {
	Keeper *pipeline.WebhookCertKeeper
	URL    string
}

// ServeConversion serves the conversion webhook on a loopback port for cp, its certificates in
// Secret mosb-webhook-cert of namespace (created if missing), and returns once the CRDs name it.
// policy zero: a day's serving certificate and a week's CA; otherwise the keeper renews them
// every second as its policy says.
func ServeConversion(t T, cp *ControlPlane, namespace string, policy pipeline.WebhookCertPolicy) *ConversionWebhook {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := cp.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String() + pipeline.ConversionPath
	if policy.CAValidity == 0 {
		policy.CAValidity, policy.ServingValidity = 7*24*time.Hour, 24*time.Hour
	}
	policy.Hosts = []string{"127.0.0.1"}
	keeper := &pipeline.WebhookCertKeeper{Client: cp.Client, Namespace: namespace, URL: url, Policy: policy,
		Clock: clock.RealClock{}, Log: logr.Discard()}
	if err := keeper.Sync(ctx); err != nil {
		t.Fatalf("provisioning the conversion webhook: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle(pipeline.ConversionPath, convert.Handler())
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{GetCertificate: keeper.GetCertificate, MinVersion: tls.VersionTLS12}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	go func() { _ = keeper.Start(ctx) }()
	t.Cleanup(func() { _ = srv.Close() })
	WaitForConversionWebhook(ctx, t, cp.Client, url)
	return &ConversionWebhook{Keeper: keeper, URL: url}
}

// WaitForConversionWebhook waits until mosb's CRDs send conversions to url (any URL when empty):
// envtest installs CRDs without their conversion webhook (it drops the conversion of kinds its
// scheme cannot convert), so until a controller writes it, a v1 object would be stored pruned to
// what v1alpha1 has in common with it instead of being refused.
func WaitForConversionWebhook(ctx context.Context, t T, c client.Client, url string) {
	t.Helper()
	Eventually(ctx, t, 100*time.Millisecond, time.Minute, "mosb's CRDs to name the conversion webhook", func(ctx context.Context) (bool, error) {
		for _, name := range pipeline.ConvertedCRDs {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
				return false, err
			}
			conv := crd.Spec.Conversion
			if conv == nil || conv.Strategy != apiextensionsv1.WebhookConverter || conv.Webhook == nil || conv.Webhook.ClientConfig == nil || conv.Webhook.ClientConfig.URL == nil ||
				(url != "" && *conv.Webhook.ClientConfig.URL != url) {
				return false, errors.New(name + " does not name the webhook yet")
			}
		}
		return true, nil
	})
}
