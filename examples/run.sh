#!/usr/bin/env bash
# Builds Caddy with sechard and serves Caddyfile.example on localhost:8080,
# with demo credentials made on the spot in .demo/ (git-ignored, mode 0700):
# a random shared API key and an ES256 signing key pair. Nothing secret is
# committed; delete .demo/ to start over.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=.demo
mkdir -p "$demo/secrets"
chmod 700 "$demo" "$demo/secrets"
echo "building caddy with sechard..." >&2
go build -o "$demo/caddy" ./cmd/caddy

if [ ! -s "$demo/secrets/BI_API_KEY" ]; then
	(umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$demo/secrets/BI_API_KEY")
fi
if [ ! -f "$demo/auth.pem" ]; then
	"$demo/caddy" sechard keygen --alg ES256 --out "$demo/auth.pem" >"$demo/jwks.json"
fi
if [ ! -f "$demo/secrets/TOKEN_SIGNING_KEY" ]; then
	# The token service's signing key: a secret (SEC-03) like the API key.
	"$demo/caddy" sechard keygen --alg ES256 --out "$demo/secrets/TOKEN_SIGNING_KEY" >/dev/null
fi

key=$(cat "$demo/secrets/BI_API_KEY")
mint="$demo/caddy sechard token --key $demo/auth.pem --sub service-bi --scopes nl-query:read --ttl 5m"
token=$($mint)

cat >&2 <<MSG

sechard example on http://localhost:8080 (admin API on localhost:2019). Try:

  curl -i http://localhost:8080/healthz                                   # public: request ID + security headers
  curl -i http://localhost:8080/nl-query/q                                # 401, WWW-Authenticate
  curl -i -H 'X-API-Key: $key' http://localhost:8080/nl-query/q
  curl -i -H 'Authorization: Bearer $token' http://localhost:8080/nl-query/q
  curl -i -H 'Authorization: Bearer $token' http://localhost:8080/schema/tables    # 403 insufficient_scope
  curl -i -X OPTIONS -H 'Origin: https://app.example.com' -H 'Access-Control-Request-Method: POST' http://localhost:8080/nl-query/q
  curl -i --path-as-is http://localhost:8080/nl-query/..%2Fhealthz          # 400: an ambiguous path never reaches a stage
  # phase 1: trade the key for a 5-minute JWT (OAuth 2.0 client credentials), then use it
  tok=\$(curl -s -u 'BI_API_KEY:$key' -d grant_type=client_credentials -d scope=nl-query:read http://localhost:8080/oauth2/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -i -H "Authorization: Bearer \$tok" http://localhost:8080/nl-query/q
  curl -s http://localhost:8080/.well-known/oauth-authorization-server
  for i in \$(seq 8); do curl -s -o /dev/null -w '%{http_code} ' -H 'X-API-Key: $key' http://localhost:8080/nl-query/q; done; echo

The token lives 5 minutes; mint another with:
  $mint

MSG

export SECRETS_DIR="$PWD/$demo/secrets" JWT_PUBLIC_KEY="$PWD/$demo/auth.pub.pem"
exec "$demo/caddy" run --config Caddyfile.example
