package sechard

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("sechard", parseCaddyfile)
	// sechard goes first (after tracing only), so every response a site
	// writes, including handle_errors, proxied and file responses, passes
	// through it; users need no `order` global option.
	httpcaddyfile.RegisterDirectiveOrder("sechard", httpcaddyfile.After, "tracing")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	sechard {
//		secrets {
//			require <NAME...>
//			dir     <path>
//		}
//		request_id {
//			header         <name>
//			max_length     <1..64>
//			generate       uuid4|uuid7
//			accept_inbound on|off
//		}
//		paths reject|normalize|allow
//		security_headers {
//			content_security_policy             <policy>
//			content_security_policy_report_only <policy>
//			frame_options                       DENY|SAMEORIGIN
//			referrer_policy                     <policy>
//			hsts                                <value>|off
//			set                                 <field> <value>
//			remove                              <field...>
//			off
//		}
//		cors {
//			origins        <origin...>
//			methods        <method...>
//			allow_headers  <field...>
//			expose_headers <field...>
//			credentials
//			max_age        <duration>
//			strict
//			mode           enforce|report
//		}
//		rate_limit {
//			key            <template>
//			rate           <N>/<duration> [burst <B>]
//			route          <path-pattern> <N>/<duration> [burst <B>]
//			total          <N>/<duration> [burst <B>]
//			identity       <name>|* <N>/<duration> [burst <B>]
//			store          memory|redis <url> [password_secret <NAME>]
//			on_store_error local|allow|deny
//			store_timeout  <duration>
//			max_keys       <N>
//			mode           enforce|report
//		}
//		auth {
//			phase          dual|jwt_rollout|jwt_only
//			api_key        <SECRET_NAME> [<scope...>]
//			api_key_header <field>
//			deprecated     <RFC 3339 time>
//			sunset         <RFC 3339 time>
//			jwt {
//				public_key <pem-file> [<kid>]
//				jwks_file  <path>
//				jwks_url   <url>
//				refresh    <duration>
//				issuer     <iss>
//				audience   <aud>
//				algorithms <alg...>
//				leeway     <duration>
//				max_ttl    <duration>
//			}
//			require     [<path-pattern>] <scope...>
//			public      <path-pattern...>
//			client_cert <identity> <scope...>
//			mode        enforce|report
//			audit_allows log|access_log|off
//			revocation {
//				file      <path>
//				refresh   <duration>
//				redis     <url> [password_secret <NAME>]
//				cache_ttl <duration>
//			}
//		}
//		token_service {
//			path        <path>
//			issuer      <url>
//			audience    <aud...>
//			signing_key <SECRET_NAME...>
//			ttl         <duration>
//		}
//	}
//
// A bare `sechard` turns on request IDs and security headers with their
// defaults; the other stages are on only when their block is present.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for d.NextBlock(0) {
		if seen[d.Val()] {
			return d.Errf("sechard: %s given more than once; put all of its options in one block", d.Val())
		}
		seen[d.Val()] = true
		var err error
		switch d.Val() {
		case "secrets":
			h.Secrets = new(Secrets)
			err = h.Secrets.unmarshalCaddyfile(d)
		case "request_id":
			h.RequestID = new(RequestID)
			err = h.RequestID.unmarshalCaddyfile(d)
		case "paths":
			h.Paths, err = unmarshalPathsCaddyfile(d)
		case "security_headers":
			h.SecurityHeaders = new(SecurityHeaders)
			err = h.SecurityHeaders.unmarshalCaddyfile(d)
		case "cors":
			h.CORS = new(CORS)
			err = h.CORS.unmarshalCaddyfile(d)
		case "rate_limit":
			h.RateLimit = new(RateLimit)
			err = h.RateLimit.unmarshalCaddyfile(d)
		case "auth":
			h.Auth = new(Auth)
			err = h.Auth.unmarshalCaddyfile(d)
		case "token_service":
			h.TokenService = new(TokenService)
			err = h.TokenService.unmarshalCaddyfile(d)
		default:
			return d.Errf("unrecognized sechard subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
