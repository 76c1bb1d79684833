package sechard

import "errors"

var errIdentityNeedsAuth = errors.New("identity lines need auth, which names the identity")

// identityGate spends rate_limit's identity budgets: a gate of its own, run
// after auth has named the identity (see RateLimit.decideIdentity).
type identityGate struct{ limits *RateLimit }

// newIdentityGate is the identity-budget gate of c, or nil when c has no
// identity lines.
func newIdentityGate(c *RateLimit) *identityGate {
	if !c.hasIdentities() {
		return nil
	}
	return &identityGate{limits: c}
}

func (g *identityGate) name() string { return "rate_limit" }

func (g *identityGate) reasons() []string { return nil } // rate_limit's

func (g *identityGate) mode() string {
	if g == nil {
		return ""
	}
	return g.limits.Mode
}

// provision checks what rate_limit's own provision cannot: the identities
// come from auth.
func (g *identityGate) provision(env *provisionEnv) error {
	if env.auth == nil {
		return errIdentityNeedsAuth
	}
	return nil
}

func (g *identityGate) decide(ex *exchange) decision {
	if g == nil {
		return allow
	}
	return g.limits.decideIdentity(ex)
}
