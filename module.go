package sechard

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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
// headers, paths, CORS, rate limit, auth, then rate_limit's identity
// budgets; the first stage that refuses a request ends it with an error
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

	paths        *pathStage
	logger       *zap.Logger
	stageLoggers map[string]*zap.Logger // by stage name, for refusal entries
	metrics      *handlerMetrics
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
	h.stageLoggers = make(map[string]*zap.Logger)
	for _, stage := range []string{"paths", "cors", "rate_limit", "token_service", "auth"} {
		h.stageLoggers[stage] = h.logger.Named(stage)
	}
	if h.RequestID == nil {
		h.RequestID = new(RequestID)
	}
	if h.SecurityHeaders == nil {
		h.SecurityHeaders = new(SecurityHeaders)
	}
	var err error
	if h.metrics, err = newHandlerMetrics(ctx); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	env := &provisionEnv{Context: ctx, logger: h.logger, now: time.Now, metrics: h.metrics}

	required := append(h.Auth.requiredSecrets(), h.RateLimit.requiredSecrets()...)
	required = append(required, h.TokenService.requiredSecrets()...)
	if h.Auth != nil {
		required = append(required, h.Auth.Revocation.requiredSecrets()...)
	}
	env.secrets, err = h.Secrets.resolve(env, required)
	if err != nil {
		return err
	}
	if err := h.RequestID.provision(env); err != nil {
		return fmt.Errorf("provisioning request_id: %w", err)
	}
	env.requestIDHeader = h.RequestID.headerName()
	if err := h.SecurityHeaders.provision(env); err != nil {
		return fmt.Errorf("provisioning security_headers: %w", err)
	}
	if h.paths, err = newPathStage(env, h.Paths); err != nil {
		return fmt.Errorf("provisioning paths: %w", err)
	}
	if err := h.CORS.provision(env); err != nil {
		return fmt.Errorf("provisioning cors: %w", err)
	}
	if err := h.RateLimit.provision(env); err != nil {
		return fmt.Errorf("provisioning rate_limit: %w", err)
	}
	if err := h.Auth.provision(env); err != nil {
		return fmt.Errorf("provisioning auth: %w", err)
	}
	if h.RateLimit.hasIdentities() && h.Auth == nil {
		return errors.New("provisioning rate_limit: identity lines need auth, which names the identity")
	}
	if err := h.TokenService.provision(env, h.Auth); err != nil {
		return fmt.Errorf("provisioning token_service: %w", err)
	}
	return nil
}

// Validate checks the configuration for contradictions that Provision did
// not already reject.
func (h *Handler) Validate() error {
	for _, m := range []string{h.CORS.mode(), h.RateLimit.mode(), h.Auth.mode()} {
		if m != "" && m != modeEnforce && m != modeReport {
			return fmt.Errorf("mode must be %q or %q, got %q", modeEnforce, modeReport, m)
		}
	}
	return nil
}

// Cleanup releases what the stages hold across reloads (rate-limit state,
// Redis clients, background refreshers).
func (h *Handler) Cleanup() error {
	return errors.Join(h.RateLimit.cleanup(), h.Auth.cleanup())
}

// ServeHTTP runs the stages in the contract's order. Each stage returns a
// decision; conclude turns a refusal into the response.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ex := &exchange{r: r, repl: r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)}

	h.RequestID.assign(ex)                // 1. SEC-06: before anything can log or respond
	ex.w = h.SecurityHeaders.apply(w, ex) // 2. SEC-07: on every response that leaves through here

	if done, err := h.conclude(ex, "paths", modeEnforce, h.paths.decide(ex)); done {
		return err // 3. before any stage matches a path pattern
	}
	if done, err := h.conclude(ex, "cors", h.CORS.mode(), h.CORS.decide(ex)); done {
		return err // 4. SEC-04
	}
	if done, err := h.conclude(ex, "rate_limit", h.RateLimit.mode(), h.RateLimit.decide(ex)); done {
		return err // 5. SEC-09: before auth, so credential floods never reach the verifier
	}
	if done, err := h.conclude(ex, "token_service", modeEnforce, h.TokenService.decide(ex)); done {
		return err // 6. runbook phase 1: clients trade a key or certificate for a JWT
	}
	if done, err := h.conclude(ex, "auth", h.Auth.mode(), h.Auth.decide(ex)); done {
		return err // 7. SEC-10
	}
	if done, err := h.conclude(ex, "rate_limit", h.RateLimit.mode(), h.RateLimit.decideIdentity(ex)); done {
		return err // 7b. SEC-09: the budget of the identity auth accepted
	}
	return next.ServeHTTP(ex.w, ex.r)
}

// exchange is what the stages of one request share. Stages may replace r
// (e.g. auth passes on a request with identity headers). It is allocated
// per request and must never be pooled or reused: response header values
// are strings over rl's bytes (see rlField) and live as long as it does.
type exchange struct {
	w         http.ResponseWriter
	r         *http.Request
	repl      *caddy.Replacer
	requestID string
	cors      *corsActual // the CORS headers set for an allowed origin
	identity  string      // the identity auth accepted ("" for none, or a public path)
	rl        rlFields    // the rate-limit header values
}

// decision is what a stage says about a request: go on (the zero value),
// answer it here (a CORS preflight), or refuse it with a status.
type decision struct {
	// Status is 0 to let the request go on; otherwise the response status.
	Status int
	// Answer is true when sechard writes this response itself (Status,
	// Header and Body), with no error returned: an allowed CORS preflight,
	// or the token service's responses, whose RFC 6749 bodies clients read.
	// Answers are applied in every mode.
	Answer bool
	// Body is written with an Answer.
	Body []byte
	// Reason is a short, low-cardinality name for a refusal, such as
	// "rate_limited" or "auth_invalid"; it goes into logs and metrics.
	Reason string
	// Detail says more for logs and the error value; never a secret.
	Detail string
	// Header holds headers sent only with this answer or refusal (e.g.
	// Retry-After, WWW-Authenticate). Headers for every response are set by
	// the stage directly.
	Header http.Header
	// Logged is true when the stage already wrote this decision to its own
	// log (auth's audit entry), so conclude does not log it twice.
	Logged bool
}

// allow is the decision to let a request go on.
var allow = decision{}

const (
	modeEnforce = "enforce"
	modeReport  = "report"
)

// conclude applies a stage's decision. It reports done when the request must
// not go further, with the error to return from ServeHTTP.
func (h *Handler) conclude(ex *exchange, stage, mode string, d decision) (done bool, err error) {
	if d.Status == 0 {
		return false, nil
	}
	h.metrics.rejection(mode, &d)
	enforced := mode != modeReport || d.Answer
	if !d.Logged {
		logRefusal(h.stageLoggers[stage], stage, ex.requestID, d, enforced)
	}
	if !enforced {
		// Report mode: decided exactly as in enforcement, logged, not
		// applied: nothing is added to the response.
		return false, nil
	}
	hdr := ex.w.Header()
	for k, v := range d.Header {
		hdr[k] = v
	}
	if d.Answer {
		ex.w.WriteHeader(d.Status)
		if len(d.Body) > 0 {
			ex.w.Write(d.Body)
		}
		return true, nil
	}
	msg := d.Reason
	if d.Detail != "" {
		msg += ": " + d.Detail
	}
	return true, caddyhttp.Error(d.Status, errors.New(msg))
}

// logRefusal records a refusal: at debug when enforced (Caddy's error log
// has the response too), at warn when report mode did not apply it. Both
// carry the same fields, so the two modes can be compared line for line.
func logRefusal(logger *zap.Logger, stage, requestID string, d decision, enforced bool) {
	if d.Answer || logger == nil {
		return
	}
	lvl, msg := zapcore.DebugLevel, "refused request"
	if !enforced {
		lvl, msg = zapcore.WarnLevel, "would refuse request"
	}
	if c := logger.Check(lvl, msg); c != nil {
		c.Write(zap.String("stage", stage), zap.String("reason", d.Reason), zap.String("detail", d.Detail),
			zap.Int("status", d.Status), zap.String("request_id", requestID), zap.Bool("enforced", enforced))
	}
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

	requestIDHeader string // canonical request-ID header, set once request_id is provisioned
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
