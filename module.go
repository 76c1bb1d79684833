package sechard

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/sechard/sechard/internal/secrets"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler hardens an API at the edge: it assigns request IDs (SEC-06), sets
// security response headers (SEC-07), enforces a CORS allowlist (SEC-04),
// limits request rates per route (SEC-09), resolves required secrets at
// startup (SEC-03) and authenticates clients with API keys, JWTs or mTLS
// identities (SEC-10).
//
// With no configuration at all, request IDs and security headers are on with
// their defaults. CORS, rate limiting, secrets and auth are on only when
// their object is present.
//
// The stages run on every request in this order: request ID, security
// headers, paths, CORS, rate limit, token service, auth, then rate_limit's
// identity budgets; the first stage that refuses a request ends it with an error
// status (so `handle_errors` can shape the body), with the request ID,
// security headers and CORS headers already set.
type Handler struct {
	// Secrets that must be present when the config loads (SEC-03). Secrets
	// named by `auth` API keys are required automatically.
	Secrets *Secrets `json:"secrets,omitempty"`

	// How request IDs are accepted and generated (SEC-06). On by default.
	RequestID *RequestID `json:"request_id,omitempty"`

	// Security response headers (SEC-07). On by default.
	SecurityHeaders *SecurityHeaders `json:"security_headers,omitempty"`

	// What to do with an ambiguous request path: one whose raw form holds
	// an encoded `/` or `\`, a `\`, an encoded control byte, a `.` or `..`
	// segment (plain or encoded) or an empty segment, and so may be read
	// one way by the path patterns of `auth` and `rate_limit` and another
	// by the upstream. `reject` (default) answers 400; `normalize` rewrites
	// the request to the decoded, cleaned path, which every stage and the
	// upstream then see; `allow` passes it on as sent (only for APIs that
	// really use `%2F`: path patterns may then be walked past).
	Paths string `json:"paths,omitempty"`

	// The CORS allowlist (SEC-04). Off unless present.
	CORS *CORS `json:"cors,omitempty"`

	// Per-client, per-route rate limits (SEC-09). Off unless present.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// Authentication and per-endpoint scopes (SEC-10). Off unless present.
	Auth *Auth `json:"auth,omitempty"`

	// An OAuth 2.0 client-credentials token endpoint that trades `auth`'s
	// API keys and client certificates for short-lived JWTs, which `auth`
	// then accepts (runbook phase 1). Off unless present; needs `auth`.
	TokenService *TokenService `json:"token_service,omitempty"`

	paths           *pathStage
	identityBudgets *identityGate // rate_limit's identity lines, spent after auth
	logger          *zap.Logger
	audit           *zap.Logger            // http.handlers.sechard.audit
	stageLoggers    map[string]*zap.Logger // by gate name, for refusal entries
	metrics         *handlerMetrics
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.sechard",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves secrets and compiles every stage, so that ServeHTTP only
// reads what was built here.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.audit = h.logger.Named("audit")
	if h.RequestID == nil {
		h.RequestID = new(RequestID)
	}
	if h.SecurityHeaders == nil {
		h.SecurityHeaders = new(SecurityHeaders)
	}
	h.paths = &pathStage{action: h.Paths}
	h.identityBudgets = newIdentityGate(h.RateLimit)
	var err error
	if h.metrics, err = newHandlerMetrics(ctx); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	env := &provisionEnv{Context: ctx, logger: h.logger, now: time.Now, metrics: h.metrics, auth: h.Auth}

	var required []string
	for _, g := range h.gates() {
		if s, ok := g.(secretUser); ok {
			required = append(required, s.requiredSecrets()...)
		}
	}
	if env.secrets, err = h.Secrets.resolve(env, required); err != nil {
		return err
	}
	if err := h.RequestID.provision(env); err != nil {
		return fmt.Errorf("provisioning request_id: %w", err)
	}
	env.requestIDHeader = h.RequestID.headerName()
	if err := h.SecurityHeaders.provision(env); err != nil {
		return fmt.Errorf("provisioning security_headers: %w", err)
	}
	h.stageLoggers = make(map[string]*zap.Logger)
	for _, g := range h.gates() {
		if err := g.provision(env); err != nil {
			return fmt.Errorf("provisioning %s: %w", g.name(), err)
		}
		h.stageLoggers[g.name()] = h.logger.Named(g.name())
	}
	return nil
}

// rejectionReasons are the reasons every kind of gate can give, configured
// or not: each server exports the same series, so one dashboard fits all.
var rejectionReasons = func() []string {
	var all []string
	for _, g := range []gate{(*pathStage)(nil), (*CORS)(nil), (*RateLimit)(nil), (*Auth)(nil), (*TokenService)(nil), (*identityGate)(nil)} {
		all = append(all, g.reasons()...)
	}
	return all
}()

// gates lists the configured gates in the order they are provisioned: the
// order of ServeHTTP, except that token_service comes after auth, whose
// clients it serves.
func (h *Handler) gates() []gate {
	gs := []gate{h.paths}
	gs = appendGate(gs, h.CORS)
	gs = appendGate(gs, h.RateLimit)
	gs = appendGate(gs, h.Auth)
	gs = appendGate(gs, h.TokenService)
	gs = appendGate(gs, h.identityBudgets)
	return gs
}

// appendGate appends g unless it is a nil pointer (not configured).
func appendGate[G interface {
	gate
	comparable
}](gs []gate, g G) []gate {
	var none G
	if g == none {
		return gs
	}
	return append(gs, g)
}

// Validate checks the configuration for contradictions that Provision did
// not already reject.
func (h *Handler) Validate() error {
	var errs []error
	for _, g := range h.gates() {
		if err := checkMode(g.mode()); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", g.name(), err))
		}
	}
	return errors.Join(errs...)
}

// Cleanup releases what the gates hold across reloads (rate-limit state,
// Redis clients, background refreshers).
func (h *Handler) Cleanup() error {
	var errs []error
	for _, g := range h.gates() {
		if c, ok := g.(cleaner); ok {
			errs = append(errs, c.cleanup())
		}
	}
	return errors.Join(errs...)
}

// ServeHTTP runs the stages in the contract's order. Each gate returns a
// decision; conclude turns it into a log entry, a metric and, when the
// request must not go on, the response.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ex := h.newExchange(r)

	h.RequestID.assign(ex)                // 1. SEC-06: before anything can log or respond
	ex.w = h.SecurityHeaders.apply(w, ex) // 2. SEC-07: on every response that leaves through here

	if done, err := h.conclude(ex, h.paths, h.paths.decide(ex)); done {
		return err // 3. before any stage matches a path pattern
	}
	if done, err := h.conclude(ex, h.CORS, h.CORS.decide(ex)); done {
		return err // 4. SEC-04
	}
	if done, err := h.conclude(ex, h.RateLimit, h.RateLimit.decide(ex)); done {
		return err // 5. SEC-09: before auth, so credential floods never reach the verifier
	}
	if done, err := h.conclude(ex, h.TokenService, h.TokenService.decide(ex)); done {
		return err // 6. runbook phase 1: clients trade a key or certificate for a JWT
	}
	if done, err := h.conclude(ex, h.Auth, h.Auth.decide(ex)); done {
		return err // 7. SEC-10
	}
	if done, err := h.conclude(ex, h.identityBudgets, h.identityBudgets.decide(ex)); done {
		return err // 8. SEC-09: the budget of the identity auth accepted
	}
	return next.ServeHTTP(ex.w, ex.r)
}

// exchange is what the stages of one request share. Stages may replace r
// (e.g. auth passes on a request with identity headers). It is allocated
// per request and must never be pooled or reused: response header values
// are slices of sw's and the scratch's arrays, or strings over the
// scratch's bytes (see rlField), and live as long as it does.
type exchange struct {
	w         http.ResponseWriter
	r         *http.Request
	repl      *caddy.Replacer
	requestID string
	identity  string                // the identity auth accepted ("" for none, or a public path)
	s         *gateScratch          // see scratch
	sw        securityHeadersWriter // the writer the rest of the chain writes to
	idVals    [1]string             // a generated request ID's request-header slice
}

// gateScratch is where the gates keep what outlives their decision: the
// CORS header values, the RateLimit fields' bytes, auth's audit record
// (so that recording it allocates nothing). It shares the exchange's
// allocation when a gate that uses it is on (see newExchange), so a request
// that only gets an ID and the security headers does not carry its 500-odd
// bytes; scratch allocates one for an exchange built without it.
type gateScratch struct {
	corsHeaders corsActual
	rl          rlFields
	audit       authAudit
}

func (ex *exchange) scratch() *gateScratch {
	if ex.s == nil {
		ex.s = new(gateScratch)
	}
	return ex.s
}

// newExchange allocates r's exchange, with its gateScratch in the same
// allocation when a gate that writes into one is on, and without it (about
// 600 bytes less) when only the request ID and the security headers are.
func (h *Handler) newExchange(r *http.Request) *exchange {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if h.CORS == nil && h.RateLimit == nil && h.Auth == nil { // the gates that write into it
		return &exchange{r: r, repl: repl}
	}
	both := &struct {
		exchange
		s gateScratch
	}{exchange: exchange{r: r, repl: repl}}
	both.exchange.s = &both.s
	return &both.exchange
}

// clientIP is the client address Caddy computed for r (honouring the
// server's trusted_proxies), for logs and events.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

// provisionEnv carries what stages need while they are provisioned.
type provisionEnv struct {
	caddy.Context
	logger  *zap.Logger      // the module's logger; stages name their own child
	secrets secrets.Values   // resolved secrets (SEC-03)
	now     func() time.Time // the clock; tests replace it
	metrics *handlerMetrics  // the handler's metrics and events; nil records nothing
	auth    *Auth            // the auth gate (nil if none): the token service's clients, the identity budgets' source

	requestIDHeader string // canonical request-ID header, set once request_id is provisioned
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
