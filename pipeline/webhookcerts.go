package pipeline

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// The conversion webhook's certificates. The controller is its own certificate authority: it
// keeps a CA and the serving certificate it signs in a Secret of its namespace, writes the CA
// bundle into the CRDs, and renews both before they expire without a failed request:
//
//   - the serving certificate is renewed when two thirds of its life have passed; the CA stays,
//     so the API server trusts the new one at once;
//   - the next CA is made when half of the current one's life has passed and joins the bundle at
//     once; at two thirds it becomes the signer (the serving certificate is reissued by it), long
//     after the API server has the bundle that trusts it; the old CA stays in the bundle until it
//     expires.
//
// PlanWebhookCerts decides; the webhook-certs runnable (webhookcert_controller.go) reads and
// writes the Secret and the CRDs.

// WebhookCerts is the webhook's PKI as its Secret holds it (PEM).
type WebhookCerts struct {
	CACert, CAKey         []byte
	NextCACert, NextCAKey []byte
	PreviousCACert        []byte
	ServingCert           []byte
	ServingKey            []byte
}

// Keys of the webhook certificate Secret.
const (
	certKeyCA         = "ca.crt"
	certKeyCAKey      = "ca.key"
	certKeyNextCA     = "next-ca.crt"
	certKeyNextCAKey  = "next-ca.key"
	certKeyPreviousCA = "previous-ca.crt"
	certKeyServing    = "tls.crt"
	certKeyServingKey = "tls.key"
)

// WebhookCertsFromSecretData reads a Secret's data (missing keys: empty fields).
func WebhookCertsFromSecretData(data map[string][]byte) WebhookCerts {
	return WebhookCerts{
		CACert: data[certKeyCA], CAKey: data[certKeyCAKey], NextCACert: data[certKeyNextCA], NextCAKey: data[certKeyNextCAKey],
		PreviousCACert: data[certKeyPreviousCA], ServingCert: data[certKeyServing], ServingKey: data[certKeyServingKey],
	}
}

// SecretData is the Secret's data (empty fields left out).
func (c WebhookCerts) SecretData() map[string][]byte {
	out := map[string][]byte{}
	for k, v := range map[string][]byte{
		certKeyCA: c.CACert, certKeyCAKey: c.CAKey, certKeyNextCA: c.NextCACert, certKeyNextCAKey: c.NextCAKey,
		certKeyPreviousCA: c.PreviousCACert, certKeyServing: c.ServingCert, certKeyServingKey: c.ServingKey,
	} {
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

// WebhookCertPolicy is how long certificates live and whom the serving certificate names.
type WebhookCertPolicy struct {
	CAValidity, ServingValidity time.Duration
	// Hosts are the serving certificate's DNS names and IP addresses.
	Hosts []string
}

// CABundle is every CA certificate the API server must trust: the current, the next and the
// previous one, unexpired, in that order.
func (c WebhookCerts) CABundle(now time.Time) []byte {
	var out []byte
	for _, p := range [][]byte{c.CACert, c.NextCACert, c.PreviousCACert} {
		if cert, err := parseCert(p); err == nil && now.Before(cert.NotAfter) {
			out = append(out, p...)
		}
	}
	return out
}

// ServingKeyPair is the serving certificate for a TLS server.
func (c WebhookCerts) ServingKeyPair() (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(c.ServingCert, c.ServingKey)
	if err != nil {
		return nil, err
	}
	return &pair, nil
}

// PlanWebhookCerts returns the certificates to hold at now and whether they differ from cur.
// Unreadable parts of cur are made anew.
func PlanWebhookCerts(now time.Time, cur WebhookCerts, p WebhookCertPolicy) (WebhookCerts, bool, error) {
	if p.CAValidity <= 0 || p.ServingValidity <= 0 || p.ServingValidity > p.CAValidity || len(p.Hosts) == 0 {
		return cur, false, fmt.Errorf("webhook certificates: want 0 < serving validity (%s) <= CA validity (%s) and a host", p.ServingValidity, p.CAValidity)
	}
	next := cur
	ca, caErr := parseKeyPair(cur.CACert, cur.CAKey)
	reissue := false
	switch {
	case caErr != nil || !now.Before(ca.cert.NotAfter):
		// No CA (first start) or an unusable one: start over; nothing can be kept.
		fresh, err := newCA(now, p.CAValidity)
		if err != nil {
			return cur, false, err
		}
		next = WebhookCerts{CACert: fresh.certPEM, CAKey: fresh.keyPEM}
		ca, reissue = fresh, true
	case pastFraction(now, ca.cert, 2, 3) && len(cur.NextCACert) > 0:
		// Promote the next CA (made at half-life, in the bundle since).
		promoted, err := parseKeyPair(cur.NextCACert, cur.NextCAKey)
		if err != nil {
			// Unreadable: make another, which signs once it has been published (a later round).
			upcoming, err := newCA(now, p.CAValidity)
			if err != nil {
				return cur, false, err
			}
			next.NextCACert, next.NextCAKey = upcoming.certPEM, upcoming.keyPEM
			break
		}
		next.PreviousCACert, next.CACert, next.CAKey = cur.CACert, promoted.certPEM, promoted.keyPEM
		next.NextCACert, next.NextCAKey = nil, nil
		ca, reissue = promoted, true
	case pastFraction(now, ca.cert, 1, 2) && len(cur.NextCACert) == 0:
		// Also past two thirds without a next CA (the controller was down): it is made now and
		// signs from a later round, once the API server has had the bundle that trusts it.
		upcoming, err := newCA(now, p.CAValidity)
		if err != nil {
			return cur, false, err
		}
		next.NextCACert, next.NextCAKey = upcoming.certPEM, upcoming.keyPEM
	}
	if prev, err := parseCert(next.PreviousCACert); err != nil || !now.Before(prev.NotAfter) {
		next.PreviousCACert = nil
	}
	serving, err := parseKeyPair(next.ServingCert, next.ServingKey)
	if reissue || err != nil || pastFraction(now, serving.cert, 2, 3) || serving.cert.CheckSignatureFrom(ca.cert) != nil || !sameHosts(serving.cert, p.Hosts) {
		validity := p.ServingValidity
		if left := ca.cert.NotAfter.Sub(now); left < validity {
			validity = left
		}
		cert, key, err := issueServing(now, validity, ca, p.Hosts)
		if err != nil {
			return cur, false, err
		}
		next.ServingCert, next.ServingKey = cert, key
	}
	return next, !equalCerts(cur, next), nil
}

func equalCerts(a, b WebhookCerts) bool {
	da, db := a.SecretData(), b.SecretData()
	if len(da) != len(db) {
		return false
	}
	for k, v := range da {
		if !bytes.Equal(v, db[k]) {
			return false
		}
	}
	return true
}

// pastFraction reports whether num/den of cert's life has passed at now.
func pastFraction(now time.Time, cert *x509.Certificate, num, den int64) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return !now.Before(cert.NotBefore.Add(time.Duration(int64(life) * num / den)))
}

func sameHosts(cert *x509.Certificate, hosts []string) bool {
	var names []string
	names = append(names, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	want := slices.Clone(hosts)
	slices.Sort(names)
	slices.Sort(want)
	return slices.Equal(names, want)
}

type keyPair struct {
	cert            *x509.Certificate
	key             *ecdsa.PrivateKey
	certPEM, keyPEM []byte
}

func parseCert(p []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(p)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPair(certPEM, keyPEM []byte) (*keyPair, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key, certPEM: certPEM, keyPEM: keyPEM}, nil
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// notBefore is a little in the past, as clocks of the API server and the controller differ: a
// minute, or a tenth of a short validity (so that the skew does not eat the life the renewal
// fractions are counted from).
func notBefore(now time.Time, validity time.Duration) time.Time {
	return now.Add(-min(time.Minute, validity/10)).Truncate(time.Second)
}

func newCA(now time.Time, validity time.Duration) (*keyPair, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: fmt.Sprintf("mosb conversion webhook CA %d", now.Unix())},
		NotBefore: notBefore(now, validity), NotAfter: now.Add(validity), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM: keyPEM}, nil
}

func issueServing(now time.Time, validity time.Duration, ca *keyPair, hosts []string) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: notBefore(now, validity), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}
