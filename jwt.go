package sechard

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/sechard/sechard/internal/jwtverify"
)

// JWT configures how bearer tokens (RFC 7519) are verified. Only
// asymmetric signatures are accepted: keys come from PEM files, a JWKS file
// or a JWKS URL, never from the token itself.
type JWT struct {
	// Public keys in PEM files (RSA of 2048 bits or more, ECDSA P-256, P-384,
	// P-521, or Ed25519), each with an optional key ID. A key without a
	// key ID gets its RFC 7638 thumbprint as key ID (the `kid` that
	// `caddy sechard keygen` prints).
	PublicKeys []PublicKey `json:"public_keys,omitempty"`

	// A JWKS (RFC 7517) file with more public keys. Read when the config
	// loads; reload to pick up changes. In it and in the JWKS URL's set,
	// keys sechard cannot use are skipped with a warning; a set with no
	// usable key is an error.
	JWKSFile string `json:"jwks_file,omitempty"`

	// A JWKS URL. Fetched when the config loads (a failed first fetch fails
	// the load, unless other keys are configured), refreshed in the
	// background every `refresh`, and refetched (at most once per 30 s,
	// with a request never waiting more than 2 s) when a token names an
	// unknown `kid`. Each fetch times out after 5 s; a failed refresh keeps
	// the last good key set.
	JWKSURL string `json:"jwks_url,omitempty"`

	// How often the JWKS URL is refreshed. Default: 5m.
	Refresh caddy.Duration `json:"refresh,omitempty"`

	// The required `iss` claim. Not checked when empty.
	Issuer string `json:"issuer,omitempty"`

	// An `aud` value the token must contain. Not checked when empty.
	Audience string `json:"audience,omitempty"`

	// The accepted `alg` values: ES256, ES384, ES512, EdDSA, RS256, RS384,
	// RS512, PS256, PS384, PS512. Default: ES256 EdDSA RS256. `none` and
	// HMAC (HS*) are never accepted: they are config errors. Each
	// algorithm must also match the type of the key that verifies the
	// token.
	Algorithms []string `json:"algorithms,omitempty"`

	// Clock skew allowed on `exp`, `nbf` and `iat`. Default: 30s.
	Leeway *caddy.Duration `json:"leeway,omitempty"`

	// The longest accepted token lifetime, `exp - iat`. Default: 5m.
	MaxTTL caddy.Duration `json:"max_ttl,omitempty"`
}

// PublicKey is a PEM file holding one public key, with an optional key ID.
type PublicKey struct {
	// Path of the PEM file (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE).
	File string `json:"file"`
	// The key ID tokens name in their `kid` header. Default: the key's RFC
	// 7638 thumbprint.
	KID string `json:"kid,omitempty"`
}

const (
	defaultJWKSRefresh = 5 * time.Minute
	defaultLeeway      = 30 * time.Second
	defaultMaxTTL      = 5 * time.Minute
	// maxTokenSize: larger bearer tokens (and API keys) are refused before
	// any decoding.
	maxTokenSize = jwtverify.MaxTokenSize
)

var defaultAlgorithms = []string{"ES256", "EdDSA", "RS256"}

func (j *JWT) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "public_key":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			pk := PublicKey{File: args[0]}
			if len(args) == 2 {
				pk.KID = args[1]
			}
			j.PublicKeys = append(j.PublicKeys, pk)
		case "jwks_file":
			if !d.AllArgs(&j.JWKSFile) {
				return d.ArgErr()
			}
		case "jwks_url":
			if !d.AllArgs(&j.JWKSURL) {
				return d.ArgErr()
			}
		case "issuer":
			if !d.AllArgs(&j.Issuer) {
				return d.ArgErr()
			}
		case "audience":
			if !d.AllArgs(&j.Audience) {
				return d.ArgErr()
			}
		case "algorithms":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if err := jwtverify.CheckAlgorithms(args); err != nil {
				return d.Err(err.Error())
			}
			j.Algorithms = append(j.Algorithms, args...)
		case "refresh", "leeway", "max_ttl":
			var value string
			if !d.AllArgs(&value) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(value)
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			switch opt {
			case "refresh":
				j.Refresh = caddy.Duration(dur)
			case "leeway":
				l := caddy.Duration(dur)
				j.Leeway = &l
			case "max_ttl":
				j.MaxTTL = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized jwt option %q", d.Val())
		}
	}
	return nil
}

// verifier checks JWTs and caches the identities of the tokens it
// accepted. Built once at provision; safe for concurrent use.
type verifier = jwtverify.Verifier[*identity]

// newVerifier builds the jwt block's verifier: the settings are checked
// together, then the keys are loaded (PEM files, the JWKS file, then the
// JWKS URL's first fetch).
func (j *JWT) newVerifier(env *provisionEnv) (*verifier, error) {
	cfg := jwtverify.Config{
		Algorithms: j.Algorithms,
		Leeway:     defaultLeeway,
		MaxTTL:     defaultMaxTTL,
		Issuer:     j.Issuer,
		Audience:   []string{j.Audience},
		Now:        env.now,
	}
	var errs []error
	if j.Leeway != nil {
		if *j.Leeway < 0 {
			errs = append(errs, errors.New("leeway must not be negative"))
		}
		cfg.Leeway = time.Duration(*j.Leeway)
	}
	if j.MaxTTL < 0 {
		errs = append(errs, errors.New("max_ttl must not be negative"))
	}
	if j.MaxTTL > 0 {
		cfg.MaxTTL = time.Duration(j.MaxTTL)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = defaultAlgorithms
	}
	if err := jwtverify.CheckAlgorithms(cfg.Algorithms); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	configured := func(kid string) bool {
		return slices.ContainsFunc(cfg.Keys, func(k *jwtverify.Key) bool { return k.KID == kid })
	}
	for _, pk := range j.PublicKeys {
		key, err := jwtverify.LoadPEMKey(pk.File)
		if err != nil {
			return nil, fmt.Errorf("public_key %s: %v", pk.File, err)
		}
		kid := pk.KID
		if kid == "" {
			kid = jwtverify.Thumbprint(key)
		}
		if configured(kid) {
			return nil, fmt.Errorf("public_key %s: key ID %q configured twice", pk.File, kid)
		}
		cfg.Keys = append(cfg.Keys, &jwtverify.Key{KID: kid, Public: key})
	}
	if j.JWKSFile != "" {
		data, err := os.ReadFile(j.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %v", err)
		}
		keys, skipped, err := jwtverify.ParseJWKS(data)
		jwtverify.LogSkipped(env.logger.Named("auth"), j.JWKSFile, skipped)
		if err != nil {
			return nil, fmt.Errorf("jwks_file %s: %v", j.JWKSFile, err)
		}
		for _, k := range keys {
			if configured(k.KID) {
				return nil, fmt.Errorf("jwks_file %s: key ID %q configured twice", j.JWKSFile, k.KID)
			}
			cfg.Keys = append(cfg.Keys, k)
		}
	}
	var stats *jwksRemote
	if j.JWKSURL != "" {
		refresh := time.Duration(j.Refresh)
		if refresh <= 0 {
			refresh = defaultJWKSRefresh
		}
		stats = newJWKSRemote(env.now)
		cfg.JWKS = &jwtverify.RemoteConfig{
			URL:     j.JWKSURL,
			Refresh: refresh,
			Logger:  env.logger.Named("auth"),
			Fetched: stats.fetched,
		}
	}
	v, err := jwtverify.New(env.Context, cfg, jwtIdentity)
	if err != nil {
		return nil, err
	}
	if stats != nil {
		stats.watch(env.Context)
	}
	return v, nil
}
