package sechard

import (
	"net/netip"
	"reflect"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Who a client is: the key template resolved for a request, with an IPv6
// address standing for its network, and the warning when the server lets
// clients choose their own address.

// clientKey resolves the key template for this request, with the client
// IP as its client network (see clientNet).
func (c *RateLimit) clientKey(ex *exchange) string {
	switch c.keyPlaceholder {
	case "":
	case clientIPPlaceholder:
		// The placeholder's own value, read without the replacer's walk
		// through every placeholder provider (the default key's cost).
		return c.clientNet(clientIP(ex.r))
	default:
		s, _ := ex.repl.GetString(c.keyPlaceholder)
		return s
	}
	if !c.keyHasClientIP {
		return ex.repl.ReplaceAll(c.Key, "")
	}
	s, _ := ex.repl.ReplaceFunc(c.Key, func(ph string, v any) (any, error) {
		if ph == clientIPPlaceholder {
			if ip, ok := v.(string); ok {
				return c.clientNet(ip), nil
			}
		}
		return v, nil
	})
	return s
}

// clientNet is the client an address stands for: an IPv6 address's
// /IPv6Prefix network, an IPv4 address itself. The common IPv4 case is
// returned as it is, without parsing or allocating.
func (c *RateLimit) clientNet(ip string) string {
	if strings.IndexByte(ip, ':') < 0 {
		return ip
	}
	a, err := netip.ParseAddr(ip)
	switch {
	case err != nil:
		return ip
	case a.Is4In6():
		return a.Unmap().String()
	}
	p, err := a.WithZone("").Prefix(c.IPv6Prefix)
	if err != nil {
		return ip
	}
	var buf [len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")]byte
	return string(p.AppendTo(buf[:0])) // one allocation; p.String() makes two
}

// singlePlaceholder reports whether tpl is exactly one placeholder, such as
// {http.vars.client_ip}, and returns its name.
func singlePlaceholder(tpl string) (string, bool) {
	if len(tpl) < 3 || tpl[0] != '{' || tpl[len(tpl)-1] != '}' {
		return "", false
	}
	inner := tpl[1 : len(tpl)-1]
	if strings.ContainsAny(inner, "{}\\") {
		return "", false
	}
	return inner, true
}

// keyUsesClientIP reports whether a key template contains the client IP,
// which Caddy may take from X-Forwarded-For.
func keyUsesClientIP(key string) bool {
	return strings.Contains(key, "{"+clientIPPlaceholder+"}") || strings.Contains(key, "{client_ip}")
}

// serverTrustsProxies reports whether srv reads client addresses from
// trusted proxies' headers. Caddy zeroes TrustedProxiesRaw once it has
// loaded the source, and keeps the source unexported, hence the reflection.
func serverTrustsProxies(srv *caddyhttp.Server) bool {
	if srv.TrustedProxiesRaw != nil || srv.TrustedProxiesUnix {
		return true
	}
	f := reflect.ValueOf(srv).Elem().FieldByName("trustedProxies")
	return f.IsValid() && f.Kind() == reflect.Interface && !f.IsNil()
}

// warnIfSpoofable logs that clients choose their own key when the server
// trusts proxies without trusted_proxies_strict.
func (c *RateLimit) warnIfSpoofable(srv *caddyhttp.Server) {
	if srv == nil || srv.TrustedProxiesStrict > 0 || !serverTrustsProxies(srv) {
		return
	}
	c.logger.Warn("the rate-limit key uses the client IP and the server trusts proxies without trusted_proxies_strict: "+
		"clients can spoof the left-most X-Forwarded-For value and get a fresh budget per request; "+
		"set trusted_proxies_strict in the server options",
		zap.String("key", c.Key), zap.String("server", srv.Name()))
}

// ipv6Ident is IPv6Prefix where it changes what a budget means: not at the
// default, so budgets kept across reloads (and in Redis) outlive upgrades.
func (c *RateLimit) ipv6Ident() int {
	if c.IPv6Prefix == defaultIPv6Prefix || !keyUsesClientIP(c.Key) {
		return 0
	}
	return c.IPv6Prefix
}
