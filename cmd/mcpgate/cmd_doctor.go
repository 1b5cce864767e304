package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/termsafe"
)

// runDoctor walks the discovery chain without logging in and prints every
// step, what the authorization server supports, and each problem with
// its fix. It exits 1 when a problem blocks login.
func runDoctor(ctx context.Context, args []string, e *env) int {
	fs, f := newClientFlagSet("doctor", e)
	serverURL, code, ok := parseWithURL(fs, args, true)
	if !ok {
		return code
	}
	s, err := f.setup(serverURL, e, false)
	if err != nil {
		return fail(e, "doctor", err)
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	out := e.stdout
	var problems []string
	f2 := termsafe.Field
	fmt.Fprintf(out, "MCP server      %s\n", f2(serverURL))
	ch, status, err := probeChallenge(ctx, s, serverURL)
	if err != nil {
		fmt.Fprintf(out, "\nProblem: %s\n", f2(err.Error()))
		return 1
	}
	switch status {
	case 401:
		fmt.Fprintf(out, "unauthenticated 401, challenge: %s", f2(ch.Scheme))
		for _, k := range sortedKeys(ch.Params) {
			fmt.Fprintf(out, " %s=%q", f2(k), ch.Params[k])
		}
		fmt.Fprintln(out)
		if ch.Param("resource_metadata") == "" {
			problems = append(problems, "the 401 challenge has no resource_metadata parameter (RFC 9728 §5.1); clients fall back to well-known URLs — the server operator should add it")
		}
	default:
		fmt.Fprintf(out, "unauthenticated request answered HTTP %d (no login needed?)\n", status)
	}
	d, derr := s.engine.Discover(ctx, serverURL, ch, f.issuer)
	fmt.Fprintln(out, "\nDiscovery:")
	if d != nil {
		for _, p := range d.Tried {
			st := "-"
			if p.Status != 0 {
				st = fmt.Sprint(p.Status)
			}
			fmt.Fprintf(out, "  %-4s %s  %s\n", st, f2(p.URL), f2(p.Result))
		}
	}
	if derr != nil {
		problems = append(problems, derr.Error())
		printProblems(e, problems)
		return 1
	}
	if d.PRM != nil {
		fmt.Fprintf(out, "\nProtected resource metadata (%s)\n", f2(d.PRM.Source))
		row(out, "resource", d.PRM.Resource)
		row(out, "authorization servers", strings.Join(d.PRM.AuthorizationServers, ", "))
		row(out, "scopes", orDash(strings.Join(d.PRM.ScopesSupported, " ")))
		if d.PRM.DPoPBoundRequired {
			row(out, "DPoP-bound tokens", "required")
		}
	} else {
		fmt.Fprintln(out, "\nNo protected resource metadata: a 2025-03-26 server (legacy discovery).")
	}
	as := d.AS
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(out, "\nAuthorization server %s (%s)\n", f2(as.Issuer), f2(orDash(as.Source)))
	row(out, "PKCE S256", yes(slices.Contains(as.CodeChallengeMethods, "S256")))
	par := yes(as.PAREndpoint != "")
	if as.RequirePAR {
		par = "required"
	}
	row(out, "PAR (RFC 9126)", par)
	row(out, "DPoP (RFC 9449)", orDash(strings.Join(as.DPoPSigningAlgs, " ")))
	row(out, "client ID metadata docs", yes(as.CIMDSupported))
	row(out, "dynamic registration", yes(as.RegistrationEndpoint != ""))
	row(out, "iss parameter (RFC 9207)", yes(as.ISSParameterSupported))
	row(out, "device grant", yes(as.DeviceAuthorizationEndpoint != ""))
	row(out, "revocation", yes(as.RevocationEndpoint != ""))
	row(out, "token endpoint auth", orDash(strings.Join(as.TokenEndpointAuthMethods, " ")))
	row(out, "scopes", orDash(strings.Join(as.ScopesSupported, " ")))
	if !as.Legacy && !slices.Contains(as.CodeChallengeMethods, "S256") {
		problems = append(problems, "the authorization server does not advertise PKCE S256 (code_challenge_methods_supported): MCP clients must refuse it; if it does support PKCE, ask the IdP operator to publish code_challenge_methods_supported")
	}
	if as.RegistrationEndpoint == "" && !as.CIMDSupported && f.clientID == "" {
		problems = append(problems, "no dynamic registration and no Client ID Metadata Documents: register a client by hand at the IdP and pass --client-id (and --client-secret-file for a confidential client)")
	}
	if !as.ISSParameterSupported {
		problems = append(problems, "the authorization server does not advertise RFC 9207 iss responses; mix-up protection then relies on per-issuer redirect state (works, but ask the IdP to enable it)")
	}
	if f.clientMetadataURL != "" && !as.CIMDSupported {
		problems = append(problems, "--client-metadata-url is set but the authorization server does not support Client ID Metadata Documents; it will not be used")
	}
	if !f.noResource && d.PRM != nil && strings.Contains(as.Issuer, "login.microsoftonline.com") {
		problems = append(problems, "Microsoft Entra rejects RFC 8707 resource parameters: pass --no-resource")
	}
	printProblems(e, problems)
	for _, p := range problems {
		if strings.Contains(p, "PKCE") || strings.Contains(p, "register a client by hand") {
			return 1
		}
	}
	return 0
}

// row prints one aligned "label value" line; value (server metadata) is
// escaped so that it stays on that line (termsafe.Field).
func row(w io.Writer, label, value string) {
	fmt.Fprintf(w, "  %-26s %s\n", label, termsafe.Field(value))
}

func printProblems(e *env, problems []string) {
	if len(problems) == 0 {
		fmt.Fprintln(e.stdout, "\nNo problems found.")
		return
	}
	fmt.Fprintln(e.stdout, "\nProblems:")
	for _, p := range problems {
		fmt.Fprintf(e.stdout, "  - %s\n", termsafe.Field(p))
	}
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
