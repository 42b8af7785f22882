package pipeline_test

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/mosb-dev/mosb/pipeline"
)

func servingCert(t *testing.T, c pipeline.WebhookCerts) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(c.ServingCert)
	if block == nil {
		t.Fatal("no serving certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// verifies reports whether the serving certificate of c chains to bundle for host at now.
func verifies(t *testing.T, c pipeline.WebhookCerts, bundle []byte, host string, now time.Time) error {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("empty bundle")
	}
	_, err := servingCert(t, c).Verify(x509.VerifyOptions{Roots: pool, DNSName: host, CurrentTime: now})
	return err
}

// TestWebhookCertsRotateWithoutAGap steps through three CA lifetimes: at every step the serving
// certificate in use chains to the CA bundle published at the step before (what the API server
// may still hold), so no conversion request ever fails on a rotation; serving certificates and
// CAs are renewed on time and the bundle never holds an expired CA.
func TestWebhookCertsRotateWithoutAGap(t *testing.T) {
	const host = "mosb-webhook.mosb-system.svc"
	policy := pipeline.WebhookCertPolicy{CAValidity: 90 * time.Minute, ServingValidity: 30 * time.Minute, Hosts: []string{host, "127.0.0.1"}}
	start := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	certs, changed, err := pipeline.PlanWebhookCerts(start, pipeline.WebhookCerts{}, policy)
	if err != nil || !changed {
		t.Fatalf("first plan: changed %v, %v", changed, err)
	}
	published := certs.CABundle(start)
	if err := verifies(t, certs, published, host, start); err != nil {
		t.Fatalf("the first serving certificate does not verify: %v", err)
	}
	servings, cas := map[string]bool{}, map[string]bool{}
	for now := start; now.Before(start.Add(3 * policy.CAValidity)); now = now.Add(time.Minute) {
		next, changed, err := pipeline.PlanWebhookCerts(now, certs, policy)
		if err != nil {
			t.Fatal(err)
		}
		if !changed && string(next.ServingCert) != string(certs.ServingCert) {
			t.Fatalf("%s: changed certificates reported unchanged", now.Sub(start))
		}
		if err := verifies(t, next, published, host, now); err != nil {
			t.Fatalf("%s: the serving certificate does not verify with the bundle the API server holds: %v", now.Sub(start), err)
		}
		if err := verifies(t, next, next.CABundle(now), "127.0.0.1", now); err != nil {
			t.Fatalf("%s: not valid for the IP address: %v", now.Sub(start), err)
		}
		if left := servingCert(t, next).NotAfter.Sub(now); left < policy.ServingValidity/4 {
			t.Fatalf("%s: the serving certificate has only %s left", now.Sub(start), left)
		}
		servings[string(next.ServingCert)], cas[string(next.CACert)] = true, true
		certs, published = next, next.CABundle(now)
	}
	// 270 minutes: a serving certificate lasts 20 (renewed at two thirds), a CA 60.
	if len(servings) < 12 || len(cas) < 4 {
		t.Errorf("%d serving certificates and %d CAs in three CA lifetimes", len(servings), len(cas))
	}

	again, changed, err := pipeline.PlanWebhookCerts(start.Add(time.Minute), func() pipeline.WebhookCerts {
		c, _, _ := pipeline.PlanWebhookCerts(start, pipeline.WebhookCerts{}, policy)
		return c
	}(), policy)
	if err != nil || changed {
		t.Errorf("a minute later nothing is due: changed %v, %v", changed, err)
	}
	policy.Hosts = []string{"mosb-webhook.other.svc"}
	moved, changed, err := pipeline.PlanWebhookCerts(start.Add(time.Minute), again, policy)
	if err != nil || !changed || string(moved.CACert) != string(again.CACert) || verifies(t, moved, moved.CABundle(start), "mosb-webhook.other.svc", start.Add(time.Minute)) != nil {
		t.Errorf("a new host reissues the serving certificate by the same CA: changed %v, %v", changed, err)
	}
}

func TestWebhookCertsStartOverFromGarbage(t *testing.T) {
	policy := pipeline.WebhookCertPolicy{CAValidity: time.Hour, ServingValidity: 10 * time.Minute, Hosts: []string{"h.example"}}
	now := time.Now()
	certs, changed, err := pipeline.PlanWebhookCerts(now, pipeline.WebhookCertsFromSecretData(map[string][]byte{"ca.crt": []byte("junk"), "tls.key": []byte("junk")}), policy)
	if err != nil || !changed || verifies(t, certs, certs.CABundle(now), "h.example", now) != nil {
		t.Errorf("from an unreadable Secret: changed %v, %v", changed, err)
	}
	if back := pipeline.WebhookCertsFromSecretData(certs.SecretData()); string(back.ServingKey) != string(certs.ServingKey) || string(back.CAKey) != string(certs.CAKey) {
		t.Error("Secret data does not round-trip")
	}
	for _, bad := range []pipeline.WebhookCertPolicy{{}, {CAValidity: time.Hour, ServingValidity: 2 * time.Hour, Hosts: []string{"h"}}, {CAValidity: time.Hour, ServingValidity: time.Minute}} {
		if _, _, err := pipeline.PlanWebhookCerts(now, certs, bad); err == nil {
			t.Errorf("policy %+v accepted", bad)
		}
	}
}

// Short validities (the rotation test's seconds) renew on the same schedule, not every round.
func TestShortLivedWebhookCertsAreNotRenewedAtOnce(t *testing.T) {
	policy := pipeline.WebhookCertPolicy{CAValidity: 30 * time.Second, ServingValidity: 6 * time.Second, Hosts: []string{"127.0.0.1"}}
	now := time.Now()
	certs, _, err := pipeline.PlanWebhookCerts(now, pipeline.WebhookCerts{}, policy)
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, err := pipeline.PlanWebhookCerts(now.Add(time.Second), certs, policy); err != nil || changed {
		t.Errorf("a second later: changed %v, %v", changed, err)
	}
}

// A controller down from before half of its CA's life to after two thirds finds no next CA: it
// makes one and keeps signing with the old CA until the new one has been published.
func TestAMissedHalfLifeStillRotatesWithoutAGap(t *testing.T) {
	policy := pipeline.WebhookCertPolicy{CAValidity: 90 * time.Minute, ServingValidity: 10 * time.Minute, Hosts: []string{"h.example"}}
	start := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	certs, _, err := pipeline.PlanWebhookCerts(start, pipeline.WebhookCerts{}, policy)
	if err != nil {
		t.Fatal(err)
	}
	late := start.Add(65 * time.Minute)
	published := certs.CABundle(late)
	next, _, err := pipeline.PlanWebhookCerts(late, certs, policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.NextCACert) == 0 || string(next.CACert) != string(certs.CACert) {
		t.Fatal("want a next CA made and the current one still signing")
	}
	if err := verifies(t, next, published, "h.example", late); err != nil {
		t.Fatalf("the serving certificate does not verify with what the API server holds: %v", err)
	}
	published = next.CABundle(late)
	after, _, err := pipeline.PlanWebhookCerts(late.Add(time.Minute), next, policy)
	if err != nil || string(after.CACert) != string(next.NextCACert) || verifies(t, after, published, "h.example", late.Add(time.Minute)) != nil {
		t.Fatalf("a round later the next CA signs, trusted by the published bundle: %v", err)
	}
}
