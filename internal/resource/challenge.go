package resource

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// MetadataURL is the path-aware RFC 9728 metadata URL of this resource.
func (v *Verifier) MetadataURL() string { return v.prmURL }

// Metadata is the RFC 9728 protected resource metadata document.
func (v *Verifier) Metadata() []byte { return v.meta }

func (v *Verifier) buildMetadata() []byte {
	doc := map[string]any{
		"resource":                 v.o.Resource,
		"authorization_servers":    v.issuerIDs(),
		"bearer_methods_supported": []string{"header"},
	}
	var scopes []string
	for _, s := range v.o.ScopesSupported {
		if s != "offline_access" {
			scopes = append(scopes, s)
		}
	}
	if len(scopes) > 0 {
		doc["scopes_supported"] = scopes
	}
	if v.o.ResourceName != "" {
		doc["resource_name"] = v.o.ResourceName
	}
	if v.o.ResourceDocumentation != "" {
		doc["resource_documentation"] = v.o.ResourceDocumentation
	}
	if v.dpop != nil {
		doc["dpop_signing_alg_values_supported"] = v.dpop.Algorithms()
		doc["dpop_bound_access_tokens_required"] = v.o.DPoP == "required"
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return b
}

func (v *Verifier) issuerIDs() []string {
	out := make([]string, 0, len(v.order))
	for _, k := range v.order {
		out = append(out, k.cfg.Issuer)
	}
	return out
}

// Challenge returns the WWW-Authenticate values for err (RFC 6750 §3,
// RFC 9728 §5.1, RFC 9449 §7.1): a Bearer challenge with resource_metadata
// and scope (plus error and description when a token was presented), and a
// DPoP challenge with algs when DPoP is accepted. The scope parameter names
// the Error's Scopes when they are set (non-nil; empty omits the
// parameter): the caller, which knows the request, chooses the minimal set
// (2026-07-28 authorization §Scope Selection Strategy). Without them it
// names scopes_supported.
func (v *Verifier) Challenge(err error) []string {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "the access token was refused"}
	}
	scopes := v.o.ScopesSupported
	if e.Scopes != nil || e.Code == "insufficient_scope" {
		scopes = e.Scopes
	}
	var b strings.Builder
	b.WriteString("Bearer ")
	param(&b, "resource_metadata", v.prmURL, false)
	if len(scopes) > 0 {
		param(&b, "scope", strings.Join(scopes, " "), true)
	}
	if e.Code != "" && !e.dpopErr {
		param(&b, "error", e.Code, true)
		if e.Description != "" {
			param(&b, "error_description", e.Description, true)
		}
	}
	out := []string{b.String()}
	if v.dpop != nil && e.Code != "insufficient_scope" {
		var d strings.Builder
		d.WriteString("DPoP ")
		param(&d, "algs", strings.Join(v.dpop.Algorithms(), " "), false)
		if e.dpopErr && e.Code != "" {
			param(&d, "error", e.Code, true)
			if e.Description != "" {
				param(&d, "error_description", e.Description, true)
			}
		}
		out = append(out, d.String())
	}
	return out
}

// param appends name="value" with RFC 9110 quoted-string escaping; control
// characters are dropped.
func param(b *strings.Builder, name, value string, comma bool) {
	if comma {
		b.WriteString(", ")
	}
	b.WriteString(name)
	b.WriteString(`="`)
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// HasScopes returns the scopes of need that granted does not cover,
// honouring the hierarchy transitively (a broad scope implies narrower ones).
func HasScopes(granted, need []string, hierarchy map[string][]string) (missing []string) {
	have := map[string]bool{}
	stack := append([]string(nil), granted...)
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if have[s] {
			continue
		}
		have[s] = true
		stack = append(stack, hierarchy[s]...)
	}
	for _, s := range need {
		if !have[s] {
			missing = append(missing, s)
		}
	}
	return missing
}
