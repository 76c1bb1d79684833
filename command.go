package sechard

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/sechard/sechard/internal/jwtverify"
	"github.com/sechard/sechard/internal/revocation"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "sechard",
		Usage: "keygen|token|revoke [flags]",
		Short: "sechard operator commands: signing keys, tokens, revocations",
		Long: `
Operator commands for sechard's auth stage, so a signing key, a token and a
revocation need no outside service.

  caddy sechard keygen --alg ES256 --out key.pem
      writes key.pem (private, mode 0600) and key.pub.pem, prints a JWKS

  caddy sechard token --key key.pem --sub service-bi --scopes nl-query:read,schema:read --ttl 5m
      prints a signed JWT with iat, exp, jti, sub and scopes

  caddy sechard revoke --jti <jti> --exp <unix>     (or --token <JWT>)
  caddy sechard revoke --sub <subject> [--before <unix>]
      adds a revocation through the running Caddy's admin API
`,
		CobraFunc: func(cmd *cobra.Command) {
			keygen := &cobra.Command{
				Use:   "keygen --alg ES256|EdDSA|RS256 --out <key.pem>",
				Short: "Generates a JWT signing key pair and prints its JWKS",
				Long: `
Generates a signing key and writes it as PKCS#8 PEM to --out (mode 0600), and
its public key as PKIX PEM next to it (key.pem -> key.pub.pem). Existing
files are never overwritten.

Prints a JWKS holding the public key, with "kid" set to the key's RFC 7638
thumbprint (the default kid of 'caddy sechard token'). Serve it as a
jwks_file/jwks_url, or give key.pub.pem to the auth stage's public_key.

--alg ES256 (ECDSA P-256, default), EdDSA (Ed25519) or RS256 (RSA 2048).
`,
				RunE: caddycmd.WrapCommandFuncForCobra(cmdKeygen),
			}
			keygen.Flags().String("alg", "ES256", "Signing algorithm: ES256, EdDSA or RS256")
			keygen.Flags().StringP("out", "o", "key.pem", "Where to write the private key")
			cmd.AddCommand(keygen)

			token := &cobra.Command{
				Use:   "token --key <key.pem> --sub <subject> [--scopes a,b] [--ttl 5m] [--iss I] [--aud A] [--kid K]",
				Short: "Mints a signed JWT",
				Long: `
Prints a JWT signed with the private key in --key (as written by keygen:
PKCS#8 PEM; SEC1 EC and PKCS#1 RSA keys are read too). The algorithm follows
the key: ES256, EdDSA or RS256.

The claims are sub, scopes (a JSON array), iat (now), exp (now + --ttl), a
random 128-bit jti, and iss and aud when given. The header's kid is --kid, or
the key's RFC 7638 thumbprint. Keep --ttl within the auth stage's max_ttl
(default 5m).
`,
				RunE: caddycmd.WrapCommandFuncForCobra(cmdToken),
			}
			token.Flags().String("key", "", "Private key PEM file (required)")
			token.Flags().String("sub", "", "Subject (required)")
			token.Flags().String("scopes", "", "Comma-separated scopes")
			token.Flags().Duration("ttl", 5*time.Minute, "Lifetime of the token")
			token.Flags().String("iss", "", "Issuer")
			token.Flags().String("aud", "", "Audience")
			token.Flags().String("kid", "", "Key ID (default: the key's RFC 7638 thumbprint)")
			cmd.AddCommand(token)

			revoke := &cobra.Command{
				Use:   "revoke (--jti <jti> --exp <unix> | --token <JWT> | --sub <subject> [--before <unix>]) [--address <admin>]",
				Short: "Revokes a token or a subject's tokens on a running Caddy",
				Long: `
Posts a revocation to the running Caddy's admin API (POST /sechard/revocations).
With a Redis in the revocation config it reaches the whole fleet within
cache_ttl; without one it applies to this Caddy process only.

--jti and --exp revoke one token (exp is its exp claim, unix seconds, so the
revocation expires with it). --token takes both from a token you hold (its
signature is not checked). --sub revokes a subject's tokens issued before
--before (unix seconds; default: every token issued until now, this second
included): the compromised-client case.

The admin address is --address, else the admin address in --config, else
Caddy's default (localhost:2019, or $CADDY_ADMIN), as for 'caddy stop'.
`,
				RunE: caddycmd.WrapCommandFuncForCobra(cmdRevoke),
			}
			revoke.Flags().String("jti", "", "The token's jti")
			revoke.Flags().Int64("exp", 0, "The token's exp (unix seconds)")
			revoke.Flags().String("token", "", "A JWT to revoke (jti and exp are read from it)")
			revoke.Flags().String("sub", "", "A subject whose tokens to revoke")
			revoke.Flags().Int64("before", 0, "Revoke the subject's tokens issued before this time (unix seconds; default: every token issued until now)")
			revoke.Flags().String("address", "", "The address of the admin API, if not the default")
			revoke.Flags().StringP("config", "c", "", "Configuration file to read the admin address from, if --address is not used")
			revoke.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (when --config is used)")
			cmd.AddCommand(revoke)
		},
	})
}

func cmdKeygen(fl caddycmd.Flags) (int, error) {
	alg, out := fl.String("alg"), fl.String("out")
	if out == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--out is required")
	}
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--alg must be ES256, EdDSA or RS256, not %q", alg)
	}
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("generating key: %v", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	jwk, err := publicJWK(priv.Public())
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	pubOut := publicKeyPath(out)
	if err := writeNewFile(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if err := writeNewFile(pubOut, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	jwks, _ := json.MarshalIndent(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk}}, "", "  ")
	fmt.Fprintf(os.Stderr, "wrote %s (private, 0600) and %s (public); kid %s\n", out, pubOut, jwk.KID)
	fmt.Println(string(jwks))
	return caddy.ExitCodeSuccess, nil
}

// publicKeyPath names the public key file beside the private one:
// key.pem -> key.pub.pem.
func publicKeyPath(priv string) string {
	return strings.TrimSuffix(priv, ".pem") + ".pub.pem"
}

// writeNewFile writes data to a file that must not exist yet, so keygen never
// overwrites a key in use.
func writeNewFile(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// publicJWK returns the JWK of a keygen key (ES256, EdDSA or RS256) with
// its alg, use sig, and its RFC 7638 thumbprint as kid.
func publicJWK(pub crypto.PublicKey) (jwkset.JWKMarshal, error) {
	var alg jwkset.ALG
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return jwkset.JWKMarshal{}, errors.New("only P-256 EC keys are supported (ES256)")
		}
		alg = jwkset.AlgES256
	case ed25519.PublicKey:
		alg = jwkset.AlgEdDSA
	case *rsa.PublicKey:
		alg = jwkset.AlgRS256
	default:
		return jwkset.JWKMarshal{}, fmt.Errorf("unsupported key type %T", pub)
	}
	jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		ALG: alg, KID: jwtverify.Thumbprint(pub), USE: jwkset.UseSig,
	}})
	if err != nil {
		return jwkset.JWKMarshal{}, err
	}
	return jwk.Marshal(), nil
}

// mintedClaims are the claims `caddy sechard token` signs.
type mintedClaims struct {
	Scopes []string `json:"scopes"`
	jwt.RegisteredClaims
}

func cmdToken(fl caddycmd.Flags) (int, error) {
	keyFile, sub := fl.String("key"), fl.String("sub")
	if keyFile == "" || sub == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--key and --sub are required")
	}
	ttl := fl.Duration("ttl")
	if ttl <= 0 {
		return caddy.ExitCodeFailedStartup, errors.New("--ttl must be positive")
	}
	priv, err := readPrivateKey(keyFile)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	var method jwt.SigningMethod
	switch priv.(type) {
	case *ecdsa.PrivateKey:
		method = jwt.SigningMethodES256
	case ed25519.PrivateKey:
		method = jwt.SigningMethodEdDSA
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	}
	kid := fl.String("kid")
	if kid == "" {
		kid = jwtverify.Thumbprint(priv.Public())
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	scopes := []string{}
	for s := range strings.SplitSeq(fl.String("scopes"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopes = append(scopes, s)
		}
	}
	now := time.Now().Truncate(time.Second)
	claims := mintedClaims{
		Scopes: scopes,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			Issuer:    fl.String("iss"),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        base64.RawURLEncoding.EncodeToString(jti),
		},
	}
	if aud := fl.String("aud"); aud != "" {
		claims.Audience = jwt.ClaimStrings{aud}
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	signed, err := tok.SignedString(priv)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("signing: %v", err)
	}
	fmt.Println(signed)
	return caddy.ExitCodeSuccess, nil
}

// readPrivateKey reads a PKCS#8, SEC1 (EC) or PKCS#1 (RSA) PEM private key.
func readPrivateKey(name string) (crypto.Signer, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s: only P-256 EC keys are supported (ES256)", name)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%s: RSA keys must have at least 2048 bits", name)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%s: unsupported key type %T", name, key)
}

func cmdRevoke(fl caddycmd.Flags) (int, error) {
	exp, _ := fl.GetInt64("exp")
	req := revocation.Request{JTI: fl.String("jti"), Exp: exp, Sub: fl.String("sub")}
	if fl.Changed("before") {
		before, _ := fl.GetInt64("before")
		req.Before = &before
	}
	if t := fl.String("token"); t != "" {
		if req.JTI != "" || req.Sub != "" {
			return caddy.ExitCodeFailedStartup, errors.New("--token replaces --jti/--exp; --sub is a separate revocation")
		}
		jti, exp, err := unverifiedJTI(t)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		req.JTI, req.Exp = jti, exp
	}
	switch {
	case req.JTI != "" && req.Sub != "":
		return caddy.ExitCodeFailedStartup, errors.New("give --jti (with --exp) or --sub, not both")
	case req.JTI != "" && req.Exp <= 0:
		return caddy.ExitCodeFailedStartup, errors.New("--exp (the token's exp claim, unix seconds) is required with --jti")
	case req.JTI == "" && req.Sub == "":
		return caddy.ExitCodeFailedStartup, errors.New("give --jti and --exp, --token, or --sub")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("couldn't determine admin API address: %v", err)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodPost, "/sechard/revocations", nil, bytes.NewReader(body))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	os.Stdout.Write(out)
	return caddy.ExitCodeSuccess, nil
}

// unverifiedJTI reads jti and exp from a token without checking its
// signature: the operator holds the token and wants it dead.
func unverifiedJTI(token string) (string, int64, error) {
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(strings.TrimSpace(token), &claims); err != nil {
		return "", 0, fmt.Errorf("reading --token: %v", err)
	}
	if claims.ID == "" || claims.ExpiresAt == nil {
		return "", 0, errors.New("--token has no jti or no exp; revoke its subject with --sub instead")
	}
	return claims.ID, claims.ExpiresAt.Unix(), nil
}
