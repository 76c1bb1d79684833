package sechard

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/sechard/sechard/internal/jwtverify"
)

// ClientCert maps a client certificate that Caddy's TLS stack verified
// (`tls { client_auth { mode require_and_verify | verify_if_given; trust_pool ... } }`)
// to an identity and its scopes: the runbook's mTLS alternative for
// service-to-service calls. A certificate Caddy did not verify
// (modes `request` and `require`, leaf-only verifiers, or a certificate
// forwarded in a header by a proxy) is never read.
type ClientCert struct {
	// Who the certificate must name. One of:
	//
	// - a SPIFFE ID, `spiffe://<trust domain>/<path>`, matched exactly
	//   against the certificate's URI SANs (the form SPIFFE/SPIRE, Istio
	//   and cert-manager's CSI driver issue);
	// - `cn:<common name>`, matched exactly (case-sensitive) against the
	//   certificate's Subject CN;
	// - `dns:<name>`, matched against the certificate's DNS SANs (DNS
	//   names compare case-insensitively; write it in lower case; no
	//   wildcards).
	//
	// The identity string, exactly as written, becomes the subject
	// (X-Auth-Subject, `{http.auth.user.id}`, audit `subject`). CN and DNS
	// names are only as unique as the CAs in the trust pool make them: any
	// CA Caddy trusts for client certificates can issue any of them.
	Identity string `json:"identity"`

	// The scopes the certificate grants, matched exactly by `require`. No
	// scopes: authenticated, with no particular scope (never full access).
	Scopes []string `json:"scopes,omitempty"`
}

// Identity prefixes of ClientCert.Identity.
const (
	certPrefixSPIFFE = "spiffe://"
	certPrefixCN     = "cn:"
	certPrefixDNS    = "dns:"

	// maxSPIFFEIDLen is the SPIFFE ID specification's bound (SPIFFE-ID §2.3).
	maxSPIFFEIDLen = 2048
)

var (
	errCertUnmapped = &credError{"auth_invalid", "client certificate not mapped"}
	errCertExpired  = &credError{"auth_invalid", "client certificate expired"}
	errCertRevoked  = &credError{"auth_invalid", "client certificate revoked"}
)

// spiffeKey is a SPIFFE ID split as net/url parses a URI SAN, so a
// certificate's URIs are looked up without building their strings.
type spiffeKey struct{ trustDomain, path string }

// certMapping is one compiled client_cert line.
type certMapping struct {
	order int // the line's position: when a certificate matches several, the first line wins
	id    *identity
}

// certIdentities is the compiled client_cert configuration: one map per
// kind of name, built at provision, read-only afterwards.
type certIdentities struct {
	spiffe map[spiffeKey]certMapping
	cn     map[string]certMapping
	dns    map[string]certMapping
}

// checkCertIdentity validates a client_cert identity. The error names what
// is wrong without repeating the prefix rules in every caller.
func checkCertIdentity(s string) error {
	switch {
	case s == "":
		return errors.New("empty identity; want spiffe://..., cn:NAME or dns:NAME")
	case strings.HasPrefix(s, certPrefixSPIFFE):
		_, err := parseSPIFFEID(s)
		return err
	case strings.HasPrefix(s, certPrefixCN):
		cn := s[len(certPrefixCN):]
		if cn == "" {
			return errors.New("cn: needs a common name")
		}
		for _, c := range []byte(cn) {
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("%q: control character in common name", s)
			}
		}
		return nil
	case strings.HasPrefix(s, certPrefixDNS):
		return checkDNSName(s[len(certPrefixDNS):])
	default:
		return fmt.Errorf("%q: identity must start with spiffe://, cn: or dns:", s)
	}
}

// parseSPIFFEID checks a SPIFFE ID against the SPIFFE-ID specification
// (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md §2):
// lower-case trust domain of [a-z0-9.-_], path segments of
// [a-zA-Z0-9.-_] that are neither empty nor "." or "..", no trailing
// slash, no port, user info, query or fragment, at most 2048 bytes. A
// trust domain alone (no path) names no workload and is refused, so that
// nobody mistakes it for "every workload of the trust domain".
func parseSPIFFEID(s string) (spiffeKey, error) {
	if len(s) > maxSPIFFEIDLen {
		return spiffeKey{}, fmt.Errorf("SPIFFE ID longer than %d bytes", maxSPIFFEIDLen)
	}
	rest := s[len(certPrefixSPIFFE):]
	td, path, _ := strings.Cut(rest, "/")
	if td == "" {
		return spiffeKey{}, fmt.Errorf("%q: SPIFFE ID has no trust domain", s)
	}
	for _, c := range []byte(td) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return spiffeKey{}, fmt.Errorf("%q: trust domain may hold only a-z 0-9 . - _ (lower case; no port or user info)", s)
		}
	}
	if path == "" {
		return spiffeKey{}, fmt.Errorf("%q: SPIFFE ID needs a workload path (spiffe://%s/...); a trust domain alone is not matched", s, td)
	}
	for seg := range strings.SplitSeq(path, "/") {
		switch seg {
		case "":
			return spiffeKey{}, fmt.Errorf("%q: empty path segment (or trailing slash) in SPIFFE ID", s)
		case ".", "..":
			return spiffeKey{}, fmt.Errorf("%q: relative path segment in SPIFFE ID", s)
		}
		for _, c := range []byte(seg) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return spiffeKey{}, fmt.Errorf("%q: SPIFFE ID path may hold only a-z A-Z 0-9 . - _ (no query, fragment or %%-escapes)", s)
			}
		}
	}
	return spiffeKey{trustDomain: td, path: "/" + path}, nil
}

// checkDNSName accepts a lower-case DNS name as a certificate's DNS SAN
// holds it: labels of [a-z0-9-_] of 1 to 63 bytes, at most 253 bytes, no
// trailing dot, no wildcard.
func checkDNSName(name string) error {
	if name == "" {
		return errors.New("dns: needs a name")
	}
	if len(name) > 253 {
		return fmt.Errorf("dns:%s: name longer than 253 bytes", name)
	}
	if strings.Contains(name, "*") {
		return fmt.Errorf("dns:%s: wildcards are not matched; map each service's own name", name)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("dns:%s: empty or over-long label (no trailing dot)", name)
		}
		for _, c := range []byte(label) {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				return fmt.Errorf("dns:%s: write DNS names in lower case (they are compared case-insensitively)", name)
			default:
				return fmt.Errorf("dns:%s: invalid character %q in DNS name", name, c)
			}
		}
	}
	return nil
}

// newCertIdentities compiles the client_cert lines. Identities are
// validated again here, for JSON configs that never went through the
// Caddyfile parser.
func newCertIdentities(certs []ClientCert) (*certIdentities, error) {
	if len(certs) == 0 {
		return nil, nil
	}
	ci := &certIdentities{
		spiffe: make(map[spiffeKey]certMapping),
		cn:     make(map[string]certMapping),
		dns:    make(map[string]certMapping),
	}
	seen := make(map[string]bool, len(certs))
	for i, c := range certs {
		if err := checkCertIdentity(c.Identity); err != nil {
			return nil, err
		}
		if seen[c.Identity] {
			return nil, fmt.Errorf("%s mapped twice", c.Identity)
		}
		seen[c.Identity] = true
		id := &identity{method: "mtls", subject: c.Identity, scopes: jwtverify.NormalizeScopes(append([]string(nil), c.Scopes...))}
		id.seal()
		m := certMapping{order: i, id: id}
		switch {
		case strings.HasPrefix(c.Identity, certPrefixSPIFFE):
			k, _ := parseSPIFFEID(c.Identity)
			ci.spiffe[k] = m
		case strings.HasPrefix(c.Identity, certPrefixCN):
			ci.cn[c.Identity[len(certPrefixCN):]] = m
		default:
			ci.dns[c.Identity[len(certPrefixDNS):]] = m
		}
	}
	return ci, nil
}

// verifiedLeaf returns the client certificate Caddy's TLS stack verified
// against its trust pool, or nil. Only VerifiedChains counts:
// PeerCertificates alone (client_auth modes `request` and `require`) is
// whatever the client sent.
func verifiedLeaf(cs *tls.ConnectionState) *x509.Certificate {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}

// match finds the client_cert line naming leaf: its URI SANs (SPIFFE IDs),
// DNS SANs and Subject CN, each a map lookup with no allocation. When
// several lines name the certificate, the first configured line wins.
func (ci *certIdentities) match(leaf *x509.Certificate) *identity {
	best := certMapping{order: -1}
	take := func(m certMapping, ok bool) {
		if ok && (best.order < 0 || m.order < best.order) {
			best = m
		}
	}
	if len(ci.spiffe) > 0 {
		for _, u := range leaf.URIs {
			// Exactly the configured string: no port (the configured
			// trust domain has no colon), user info, query, fragment,
			// opaque form or escaped path (RawPath is set only when the
			// SAN's path was not already in canonical form).
			if u.Scheme != "spiffe" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
				u.Fragment != "" || u.RawPath != "" {
				continue
			}
			m, ok := ci.spiffe[spiffeKey{u.Host, u.Path}]
			take(m, ok)
		}
	}
	if len(ci.dns) > 0 {
		for _, name := range leaf.DNSNames {
			// ToLower returns name itself (no allocation) when it is
			// already lower-case ASCII.
			m, ok := ci.dns[strings.ToLower(name)]
			take(m, ok)
		}
	}
	if len(ci.cn) > 0 && leaf.Subject.CommonName != "" {
		m, ok := ci.cn[leaf.Subject.CommonName]
		take(m, ok)
	}
	return best.id
}

// describeCert names an unmapped certificate in client_cert syntax for the
// audit log (its first URI SAN, DNS SAN, or CN), so an operator can copy it
// into a client_cert line. Only on the refusal path: it allocates.
func describeCert(leaf *x509.Certificate) string {
	switch {
	case len(leaf.URIs) > 0:
		return leaf.URIs[0].String()
	case len(leaf.DNSNames) > 0:
		return certPrefixDNS + leaf.DNSNames[0]
	default:
		return certPrefixCN + leaf.Subject.CommonName
	}
}

// authenticateCert turns the request's verified client certificate into
// an identity. With no verified certificate (or no client_cert lines) it
// returns nil, nil. A verified certificate that grants nothing (unmapped,
// expired since the handshake, revoked) returns cerr, and id naming it for
// the audit log; the caller lets lower-precedence credentials decide then,
// and reports cerr only when there are none.
func (a *Auth) authenticateCert(cs *tls.ConnectionState) (id *identity, cerr *credError) {
	if a.certs == nil {
		return nil, nil
	}
	leaf := verifiedLeaf(cs)
	if leaf == nil {
		return nil, nil
	}
	id = a.certs.match(leaf)
	if id == nil {
		return &identity{method: "mtls", subject: describeCert(leaf)}, errCertUnmapped
	}
	// The handshake checked validity then; a keep-alive connection can
	// outlive the certificate (SPIFFE SVIDs live about an hour).
	if a.now().After(leaf.NotAfter) {
		return id, errCertExpired
	}
	// `sub:<identity> [<unix time>]` revocations apply to certificates
	// too, with the certificate's NotBefore as its issue time: Caddy
	// checks no CRL or OCSP for client certificates.
	if a.Revocation.revoked("", id.subject, leaf.NotBefore) {
		return id, errCertRevoked
	}
	return id, nil
}
