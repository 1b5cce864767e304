package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mcpgate/mcpgate/internal/mcp"
	"github.com/mcpgate/mcpgate/internal/mcpclient"
	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/termsafe"
)

func init() {
	commands["login"] = command{"log in to a protected MCP server and store the credential", runLogin}
	commands["logout"] = command{"revoke and delete the stored credential of a server (or --all)", runLogout}
	commands["status"] = command{"list stored credentials (no secrets)", runStatus}
	commands["call"] = command{"one-shot MCP client: list tools or call one, logging in when needed", runCall}
	commands["doctor"] = command{"walk a server's OAuth discovery chain and explain what is wrong", runDoctor}
	commands["client-metadata"] = command{"print a Client ID Metadata Document ready to host", runClientMetadata}
}

// fail prints err as one line: its text may quote a server (error
// descriptions, issuers), so newlines in it are escaped (termsafe.Field).
func fail(e *env, cmd string, err error) int {
	fmt.Fprintf(e.stderr, "mcpgate %s: %s\n", cmd, termsafe.Field(err.Error()))
	return 1
}

// probeChallenge sends an unauthenticated MCP request and returns the
// challenge of a 401 (zero when the server did not ask for credentials).
func probeChallenge(ctx context.Context, s *clientSetup, serverURL string) (oauth.Challenge, int, error) {
	body := []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcpgate","version":"` + version + `"}}}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, serverURL, bytes.NewReader(body))
	if err != nil {
		return oauth.Challenge{}, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range s.headers {
		req.Header[k] = v
	}
	resp, err := s.mcpHTTP.Do(req)
	if err != nil {
		return oauth.Challenge{}, 0, fmt.Errorf("cannot reach %s: %w", serverURL, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	cs, perr := oauth.ParseChallenges(resp.Header.Values("WWW-Authenticate"))
	ch, ok := oauth.Find(cs, "DPoP")
	if b, okb := oauth.Find(cs, "Bearer"); okb && (!ok || ch.Param("resource_metadata") == "") {
		ch = b
	}
	if resp.StatusCode == http.StatusUnauthorized && perr != nil && len(cs) == 0 {
		return ch, resp.StatusCode, fmt.Errorf("the server's WWW-Authenticate header is malformed: %v", perr)
	}
	return ch, resp.StatusCode, nil
}

func runLogin(ctx context.Context, args []string, e *env) int {
	fs, f := newClientFlagSet("login", e)
	serverURL, code, ok := parseWithURL(fs, args, true)
	if !ok {
		return code
	}
	f.force = true
	s, err := f.setup(serverURL, e, true)
	if err != nil {
		return fail(e, "login", err)
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	ch, _, err := probeChallenge(ctx, s, serverURL)
	if err != nil {
		return fail(e, "login", err)
	}
	if err := s.session.Login(ctx, ch, nil); err != nil {
		return fail(e, "login", err)
	}
	rec := s.session.Record()
	fmt.Fprintf(e.stdout, "Logged in to %s\n", termsafe.Field(serverURL))
	printRecord(e.stdout, rec, s.store.Name())
	return 0
}

// printRecord prints a credential as key/value rows. Every value may come
// from a server (subject, issuer, client id, scopes, token type), so each
// goes through termsafe.Field: a newline in one cannot add a row.
func printRecord(w io.Writer, rec *oauth.Record, store string) {
	f := termsafe.Field
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "  subject\t%s\n", f(orDash(rec.Subject)))
	fmt.Fprintf(tw, "  issuer\t%s\n", f(rec.Issuer))
	fmt.Fprintf(tw, "  client\t%s (%s, %s)\n", f(rec.Client.ID), f(rec.Client.Kind), f(rec.Client.AuthMethod))
	fmt.Fprintf(tw, "  resource\t%s\n", f(rec.Resource))
	fmt.Fprintf(tw, "  scopes\t%s\n", f(orDash(strings.Join(rec.Token.Scopes, " "))))
	fmt.Fprintf(tw, "  token\t%s%s\n", f(rec.Token.TokenType), map[bool]string{true: ", refreshable", false: ""}[rec.Token.RefreshToken != ""])
	if rec.Token.Expiry.IsZero() {
		fmt.Fprintf(tw, "  expires\tunknown\n")
	} else {
		fmt.Fprintf(tw, "  expires\t%s (in %s)\n", rec.Token.Expiry.Format(time.RFC3339), time.Until(rec.Token.Expiry).Round(time.Second))
	}
	fmt.Fprintf(tw, "  store\t%s\n", store)
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runLogout(ctx context.Context, args []string, e *env) int {
	fs, f := newClientFlagSet("logout", e)
	all := fs.Bool("all", false, "log out of every server in the profile")
	serverURL, code, ok := parseWithURL(fs, args, false)
	if !ok {
		return code
	}
	if serverURL == "" && !*all {
		fmt.Fprintln(e.stderr, "mcpgate logout: give a server URL or --all")
		return 2
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	servers := []string{serverURL}
	if *all {
		s, err := f.setup("", e, false)
		if err != nil {
			return fail(e, "logout", err)
		}
		recs, err := storedRecords(s, f.profile)
		if err != nil {
			return fail(e, "logout", err)
		}
		servers = servers[:0]
		for _, r := range recs {
			servers = append(servers, r.Server)
		}
	}
	status := 0
	for _, u := range servers {
		s, err := f.setup(u, e, false)
		if err != nil {
			return fail(e, "logout", err)
		}
		revoked, err := s.session.Logout(ctx)
		switch {
		case err != nil:
			fmt.Fprintf(e.stderr, "mcpgate logout: %s: %s (the local credential was deleted)\n", termsafe.Field(u), termsafe.Field(err.Error()))
			status = 1
		case revoked:
			fmt.Fprintf(e.stdout, "Logged out of %s (tokens revoked at the authorization server)\n", termsafe.Field(u))
		default:
			fmt.Fprintf(e.stdout, "Logged out of %s\n", termsafe.Field(u))
		}
	}
	return status
}

func storedRecords(s *clientSetup, profile string) ([]*oauth.Record, error) {
	keys, err := s.store.List("server|" + profile + "|")
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	var out []*oauth.Record
	for _, k := range keys {
		ptr, err := s.store.Get(k)
		if err != nil || ptr == nil {
			continue
		}
		raw, err := s.store.Get(string(ptr))
		if err != nil || raw == nil {
			continue
		}
		var r oauth.Record
		if json.Unmarshal(raw, &r) == nil {
			out = append(out, &r)
		}
	}
	return out, nil
}

func runStatus(_ context.Context, args []string, e *env) int {
	fs, f := newClientFlagSet("status", e)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, code, ok := parseWithURL(fs, args, false); !ok {
		return code
	}
	s, err := f.setup("", e, false)
	if err != nil {
		return fail(e, "status", err)
	}
	recs, err := storedRecords(s, f.profile)
	if err != nil {
		return fail(e, "status", err)
	}
	if *asJSON {
		type entry struct {
			Server    string    `json:"server"`
			Profile   string    `json:"profile"`
			Issuer    string    `json:"issuer"`
			ClientID  string    `json:"client_id"`
			Resource  string    `json:"resource"`
			Subject   string    `json:"subject,omitempty"`
			Scopes    []string  `json:"scopes"`
			TokenType string    `json:"token_type"`
			Refresh   bool      `json:"refreshable"`
			Expiry    time.Time `json:"expiry,omitzero"`
			Expired   bool      `json:"expired"`
			Store     string    `json:"store"`
		}
		out := []entry{}
		for _, r := range recs {
			out = append(out, entry{r.Server, r.Profile, r.Issuer, r.Client.ID, r.Resource, r.Subject, r.Token.Scopes,
				r.Token.TokenType, r.Token.RefreshToken != "", r.Token.Expiry, r.Token.Expired(time.Now(), 0), s.store.Name()})
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return 0
	}
	if len(recs) == 0 {
		fmt.Fprintf(e.stdout, "No stored credentials (profile %s, store %s).\n", f.profile, s.store.Name())
		return 0
	}
	for _, r := range recs {
		fmt.Fprintln(e.stdout, termsafe.Field(r.Server))
		printRecord(e.stdout, r, s.store.Name())
	}
	return 0
}

func runCall(ctx context.Context, args []string, e *env) int {
	fs, f := newClientFlagSet("call", e)
	tool := fs.String("tool", "", "call this tool (default: list the tools)")
	toolArgs := fs.String("args", "{}", "tool arguments as a JSON object")
	method := fs.String("method", "", "send this JSON-RPC method instead (with --params)")
	params := fs.String("params", "{}", "params of --method as a JSON object")
	noLogin := fs.Bool("no-login", false, "fail instead of starting a login when no usable credential is stored")
	serverURL, code, ok := parseWithURL(fs, args, true)
	if !ok {
		return code
	}
	var argv map[string]any
	if err := json.Unmarshal([]byte(*toolArgs), &argv); err != nil {
		fmt.Fprintf(e.stderr, "mcpgate call: --args is not a JSON object: %v\n", err)
		return 2
	}
	var pv map[string]any
	if err := json.Unmarshal([]byte(*params), &pv); err != nil {
		fmt.Fprintf(e.stderr, "mcpgate call: --params is not a JSON object: %v\n", err)
		return 2
	}
	s, err := f.setup(serverURL, e, !*noLogin)
	if err != nil {
		return fail(e, "call", err)
	}
	ctx, cancel := withTimeout(ctx, f.timeout)
	defer cancel()
	c := s.mcpClient(serverURL, f.protocolVersion)
	if err := c.Connect(ctx); err != nil {
		return fail(e, "call", explain(err))
	}
	defer func() {
		cctx, cc := context.WithTimeout(context.Background(), 2*time.Second)
		defer cc()
		c.Close(cctx)
	}()
	var res json.RawMessage
	switch {
	case *method != "":
		res, err = c.Call(ctx, *method, pv)
	case *tool != "":
		if _, lerr := c.Call(ctx, "tools/list", map[string]any{}); lerr != nil && (c.Era() == mcp.EraStateless) {
			// the header schema cache is best effort
			s.log.Debug("tools/list before the call failed", "err", lerr)
		}
		res, err = c.Call(ctx, "tools/call", map[string]any{"name": *tool, "arguments": argv})
	default:
		res, err = c.Call(ctx, "tools/list", map[string]any{})
	}
	if showURLElicitations(e.stderr, err, res) {
		return 1
	}
	if err != nil {
		return fail(e, "call", explain(err))
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, res, "", "  ") != nil {
		pretty.Write(res)
	}
	fmt.Fprintln(e.stdout, pretty.String())
	var r struct {
		IsError bool `json:"isError"`
	}
	if *tool != "" && json.Unmarshal(res, &r) == nil && r.IsError {
		fmt.Fprintf(e.stderr, "mcpgate call: the tool %s reported an error (see the result above)\n", *tool)
		return 1
	}
	return 0
}

// explain adds what to do to common failures.
func explain(err error) error {
	var he *mcpclient.HTTPError
	switch {
	case errors.Is(err, oauth.ErrLoginRequired), errors.Is(err, mcpclient.ErrLoginRequired):
		return err
	case errors.Is(err, mcpclient.ErrTooManyAttempts):
		return fmt.Errorf("%w (try mcpgate login again, or check --scope)", err)
	case errors.As(err, &he) && he.Status == http.StatusUnauthorized:
		return fmt.Errorf("%w (the server refused the credential; try mcpgate login)", err)
	case errors.As(err, &he) && he.Status == http.StatusForbidden:
		return fmt.Errorf("%w (the credential lacks a permission; try --scope, or ask the server operator)", err)
	}
	return err
}

func runClientMetadata(_ context.Context, args []string, e *env) int {
	fs := flag.NewFlagSet("client-metadata", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	docURL := fs.String("url", "", "the https `URL` the document will be hosted at (it becomes the client_id)")
	var redirects multiFlag
	fs.Var(&redirects, "redirect-uri", "redirect URI to list (repeatable; default the loopback callbacks)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(redirects) == 0 {
		redirects = multiFlag{"http://127.0.0.1/callback", "http://localhost/callback"}
	}
	doc, err := oauth.ClientMetadataDocument(*docURL, redirects)
	if err != nil {
		return fail(e, "client-metadata", err)
	}
	fmt.Fprintln(e.stdout, string(doc))
	return 0
}
