package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/policy"
	"github.com/mcpgate/mcpgate/internal/resource"
)

// Decision labels: the decision of a request in metrics, the debug log and
// (for denials) the audit log's reason. decError is the label of a request
// refused before any check decided it (a wrong path, method or media type,
// a body that is not JSON-RPC), and of one the upstream answered with an
// error the gateway did not decide.
const (
	decError           = "error"
	decEdge            = "edge"
	decPreflight       = "preflight"
	decProtocol        = "protocol"
	decBody            = "body"
	decUnauthenticated = "unauthenticated"
	decRateLimited     = "rate_limited"
	decBusy            = "busy"
	decDeny            = "deny"
	decSession         = "session"
	decSessionLimit    = "session_limit"
	decAllow           = "allow"
)

// failure is a refusal: its HTTP status and JSON-RPC error and, when the
// audit log records it, its audit records.
type failure struct {
	status int
	code   int
	msg    string
	data   any
	// id is the id the error answers when it is not the exchange's first
	// request (x.rpcID): a batch member's, or null for a notification.
	id json.RawMessage
	// audit are written, in order, before the answer: the denial, then a
	// scope challenge (forbidden).
	audit []*auditRecord
}

// refuse is the one refusal path: it answers the request with f instead
// of forwarding it — the decision label dec, f's audit records, then the
// JSON-RPC error with the request's id. Headers the refusal carries
// (Retry-After, WWW-Authenticate, DPoP-Nonce) are set before.
func (x *exchange) refuse(dec string, f *failure) {
	x.dec = dec
	for _, rec := range f.audit {
		x.m.g.audit.write(rec)
	}
	id := f.id
	if id == nil {
		id = x.rpcID
	}
	mcp.WriteError(x.w, f.status, id, f.code, f.msg, f.data)
}

// denied adds to f the audit record of a denial: what was refused (method,
// name), why, with f's status.
func (x *exchange) denied(f *failure, method, name, reason string) *failure {
	f.audit = append(f.audit, x.record(method, name, "deny", reason, f.status))
	return f
}

// ownID is the id of e for its own error answer: null for a notification,
// never another request's.
func ownID(e *mcp.Envelope) json.RawMessage {
	if e.ID == nil {
		return json.RawMessage("null")
	}
	return e.ID
}

// unauthenticated refuses a request whose credentials failed: 401 (400 or
// 403 as the verifier says) with the challenges, counted and audited.
func (x *exchange) unauthenticated(err error) {
	v := x.m.verifier.Load()
	var re *resource.Error
	status, code, desc := http.StatusUnauthorized, "", "authentication required"
	if errors.As(err, &re) {
		status, code = re.Status, re.Code
		if re.Description != "" {
			desc = re.Description
		}
		if re.Nonce != "" {
			x.w.Header().Set("DPoP-Nonce", re.Nonce)
		}
	}
	reason := code
	if reason == "" {
		reason = "no_token"
	}
	x.m.g.metrics.AuthFailures.WithLabelValues(x.m.name, reason).Inc()
	for _, c := range v.Challenge(x.challengeError(err)) {
		x.w.Header().Add("WWW-Authenticate", c)
	}
	rpc := mcp.CodeFor(x.era(), mcp.CodeUnauthorized)
	if status == http.StatusForbidden {
		rpc = mcp.CodeFor(x.era(), mcp.CodeForbidden)
	} else if status == http.StatusBadRequest {
		rpc = mcp.CodeInvalidRequest
	}
	x.refuse(decUnauthenticated, x.denied(&failure{status: status, code: rpc, msg: desc}, "", "", reason))
}

// replayRefused answers a proof RecordProof refused: a subject at its share
// of the replay store gets 429 (only it is refused), a full store 503, a
// replayed proof 401.
func (x *exchange) replayRefused(err error) {
	retry := strconv.Itoa(int(replayRetryAfter / time.Second))
	switch {
	case errors.Is(err, dpop.ErrReplayShareFull):
		x.w.Header().Set("Retry-After", retry)
		x.refuse(decRateLimited, x.denied(&failure{status: http.StatusTooManyRequests, code: mcp.CodeRateLimited,
			msg: "too many DPoP proofs from this subject are still within their replay window: retry after " + retry + "s (limits.dpop_replay_per_subject)"},
			"", "", "dpop_replay_share_full"))
	case errors.Is(err, dpop.ErrReplayFull):
		x.w.Header().Set("Retry-After", retry)
		x.refuse(decBusy, x.denied(&failure{status: http.StatusServiceUnavailable, code: mcp.CodeInternalError,
			msg: "the DPoP replay store is full: retry after " + retry + "s (limits.dpop_replay_entries)"},
			"", "", "dpop_replay_full"))
	case errors.Is(err, dpop.ErrReplayUnavailable):
		x.stateUnavailable("dpop_replay_unavailable")
	default:
		x.unauthenticated(err)
	}
}

// stateUnavailable answers a request whose security check needs the
// shared state when Redis did not answer: 503, -50300, Retry-After; never
// accepted (docs/security.md "Shared state").
func (x *exchange) stateUnavailable(reason string) {
	x.w.Header().Set("Retry-After", strconv.Itoa(int(stateRetryAfter/time.Second)))
	x.refuse(decBusy, x.denied(&failure{status: http.StatusServiceUnavailable, code: mcp.CodeUnavailable,
		msg: "shared state (Redis) unavailable: the request could not be checked; retry after " + strconv.Itoa(int(stateRetryAfter/time.Second)) + "s"},
		"", "", reason))
}

// stateRetryAfter is the Retry-After of a refusal for unreachable shared
// state: Redis restarts or fails over within seconds.
const stateRetryAfter = 5 * time.Second

// replayRetryAfter is the Retry-After of a refusal for a full replay share
// or store: entries expire continuously, so a short wait frees some.
const replayRetryAfter = 30 * time.Second

// forbid refuses e, which the policy decision d denies, audited as a
// denial of method and name.
func (x *exchange) forbid(d policy.Decision, e *mcp.Envelope, method, name string) {
	f := x.denied(&failure{status: http.StatusForbidden}, method, name, d.Reason)
	x.refuse(decDeny, x.forbidden(d, e, f))
}

// deny refuses e, which d denies, when the caller has audited the denial
// itself (tasks.go records the task and its tool).
func (x *exchange) deny(d policy.Decision, e *mcp.Envelope) {
	x.refuse(decDeny, x.forbidden(d, e, &failure{status: http.StatusForbidden}))
}

// forbidden completes f as the 403 of e: when scopes would help, with one
// insufficient_scope challenge naming all the operation needs (and the
// extra scopes of challenge_scopes), recorded as an elevation request.
func (x *exchange) forbidden(d policy.Decision, e *mcp.Envelope, f *failure) *failure {
	v := x.m.verifier.Load()
	if missing := missingScopes(x.p.Scopes, d.NeedScopes, x.m.cfg.ScopeHierarchy); len(missing) > 0 {
		scopes := d.NeedScopes
		if s := x.m.challenges.Load(); s != nil {
			scopes = s.stepUp(d.NeedScopes)
		}
		x.w.Header().Set("WWW-Authenticate", v.Challenge(&resource.Error{
			Status: http.StatusForbidden, Code: "insufficient_scope",
			Description: "this operation needs scope " + strings.Join(d.NeedScopes, " "), Scopes: scopes,
		})[0])
		f.audit = append(f.audit, x.challenged(e.Method, e.Name, scopes, missingScopes(x.p.Scopes, scopes, x.m.cfg.ScopeHierarchy)))
	}
	f.code, f.msg, f.id = mcp.CodeFor(x.era(), mcp.CodeForbidden), "forbidden: "+d.Reason, e.ID
	return f
}

func missingScopes(granted, need []string, hierarchy map[string][]string) []string {
	return resource.HasScopes(granted, need, hierarchy)
}
