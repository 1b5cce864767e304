package oauth

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	cases := []struct {
		in   []string
		want []Challenge
		err  bool
	}{
		{[]string{`Bearer resource_metadata="http://x/.well-known/oauth-protected-resource/mcp", scope="a b"`},
			[]Challenge{{Scheme: "Bearer", Params: map[string]string{"resource_metadata": "http://x/.well-known/oauth-protected-resource/mcp", "scope": "a b"}}}, false},
		{[]string{`Bearer error="invalid_token", error_description="Missing Authorization header", resource_metadata="http://l:1/custom/metadata/location.json"`},
			[]Challenge{{Scheme: "Bearer", Params: map[string]string{"error": "invalid_token", "error_description": "Missing Authorization header", "resource_metadata": "http://l:1/custom/metadata/location.json"}}}, false},
		// several challenges in one header, DPoP with algs, token param unquoted
		{[]string{`DPoP algs="ES256 PS256", error=use_dpop_nonce, Bearer realm="mcp", scope="x"`},
			[]Challenge{
				{Scheme: "DPoP", Params: map[string]string{"algs": "ES256 PS256", "error": "use_dpop_nonce"}},
				{Scheme: "Bearer", Params: map[string]string{"realm": "mcp", "scope": "x"}}}, false},
		// several headers, escapes inside quoted strings, case-insensitive names
		{[]string{`Basic realm="a \"quoted\" \\ realm"`, `bearer Scope = "s1"`},
			[]Challenge{
				{Scheme: "Basic", Params: map[string]string{"realm": `a "quoted" \ realm`}},
				{Scheme: "bearer", Params: map[string]string{"scope": "s1"}}}, false},
		// comma inside a quoted string does not split
		{[]string{`Bearer error_description="a, b=c", scope="q"`},
			[]Challenge{{Scheme: "Bearer", Params: map[string]string{"error_description": "a, b=c", "scope": "q"}}}, false},
		// token68 then another challenge
		{[]string{`Negotiate abc+/def==, Bearer`},
			[]Challenge{{Scheme: "Negotiate", Token68: "abc+/def==", Params: map[string]string{}}, {Scheme: "Bearer", Params: map[string]string{}}}, false},
		// empty list elements tolerated
		{[]string{` , Bearer ,, `}, []Challenge{{Scheme: "Bearer", Params: map[string]string{}}}, false},
		{[]string{`Bearer scope="unterminated`}, []Challenge{{Scheme: "Bearer", Params: map[string]string{}}}, true},
		{[]string{`Bearer scope="a", scope="b"`}, nil, true},
		{[]string{`Bearer scope="a" junk`}, []Challenge{{Scheme: "Bearer", Params: map[string]string{"scope": "a"}}}, true},
		{[]string{`=oops`}, nil, true},
		{[]string{`Bearer realm="x` + "\x01" + `"`}, []Challenge{{Scheme: "Bearer", Params: map[string]string{}}}, true},
		// an escaped control character is not a quoted-pair (found by fuzzing)
		{[]string{"B e=\"\\\x1fV\""}, []Challenge{{Scheme: "B", Params: map[string]string{}}}, true},
	}
	for _, c := range cases {
		got, err := ParseChallenges(c.in)
		if (err != nil) != c.err {
			t.Errorf("%q: err = %v, want error %v", c.in, err, c.err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %#v\nwant %#v", c.in, got, c.want)
		}
	}
}

func TestChallengeHelpers(t *testing.T) {
	cs, _ := ParseChallenges([]string{`DPoP algs="ES256"`, `Bearer SCOPE="a  b", error="insufficient_scope"`})
	b, ok := Find(cs, "bearer")
	if !ok || !reflect.DeepEqual(b.Scopes(), []string{"a", "b"}) || b.Param("Error") != "insufficient_scope" {
		t.Fatalf("Find/Scopes/Param: %#v %v", b, ok)
	}
	if _, ok := Find(cs, "Basic"); ok {
		t.Fatal("found a scheme that is not there")
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{`Bearer a="b", c=d`, `DPoP algs="ES256", Bearer`, `X abc==`, `Bearer e="\"\\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := ParseChallenges([]string{s})
		for _, c := range cs {
			if c.Scheme == "" {
				t.Fatalf("empty scheme from %q", s)
			}
			for k := range c.Params {
				if k != strings.ToLower(k) || k == "" {
					t.Fatalf("param name %q not lowercased from %q", k, s)
				}
			}
		}
		if err == nil {
			// a well-formed header re-serialised parses to the same challenges
			var parts []string
			for _, c := range cs {
				p := c.Scheme
				if c.Token68 != "" {
					p += " " + c.Token68
				}
				var ps []string
				for k, v := range c.Params {
					ps = append(ps, k+`="`+strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v)+`"`)
				}
				if len(ps) > 0 {
					p += " " + strings.Join(ps, ", ")
				}
				parts = append(parts, p)
			}
			again, err2 := ParseChallenges([]string{strings.Join(parts, ", ")})
			if err2 != nil || len(again) != len(cs) {
				t.Fatalf("round trip of %q: %v %#v vs %#v", s, err2, again, cs)
			}
			for i := range cs {
				if !reflect.DeepEqual(cs[i].Params, again[i].Params) || cs[i].Token68 != again[i].Token68 {
					t.Fatalf("round trip of %q: %#v vs %#v", s, again[i], cs[i])
				}
			}
		}
	})
}

// FuzzMetadata: whatever a server returns as metadata and whatever issuer
// it names, the derived well-known URLs stay on the issuer's origin, a
// path issuer never leads to a root document, and resource matching never
// accepts another origin.
func FuzzMetadata(f *testing.F) {
	f.Add("https://as.example/tenant1", `{"resource":"https://h.example/mcp","authorization_servers":["https://as.example"]}`)
	f.Add("http://127.0.0.1:9/", `{"issuer":"x"}`)
	f.Fuzz(func(t *testing.T, issuer, doc string) {
		var prm ResourceMetadata
		_ = json.Unmarshal([]byte(doc), &prm)
		var sm ServerMetadata
		_ = json.Unmarshal([]byte(doc), &sm)
		urls, err := ServerMetadataURLs(issuer)
		if err == nil {
			iu, _ := url.Parse(issuer)
			for _, u := range urls {
				pu, perr := url.Parse(u)
				if perr != nil || pu.Host != iu.Host || pu.Scheme != iu.Scheme {
					t.Fatalf("%q → %q leaves the issuer's origin", issuer, u)
				}
				if strings.Trim(iu.EscapedPath(), "/") != "" && (pu.Path == "/.well-known/oauth-authorization-server" || pu.Path == "/.well-known/openid-configuration") {
					t.Fatalf("path issuer %q → root document %q", issuer, u)
				}
			}
		}
		if prm.Resource != "" && resourceCovers(prm.Resource, "https://h.example/mcp") {
			ru, err := url.Parse(prm.Resource)
			if err != nil || !strings.EqualFold(ru.Host, "h.example") && !strings.EqualFold(ru.Host, "h.example:443") {
				t.Fatalf("resource %q accepted for https://h.example/mcp", prm.Resource)
			}
		}
	})
}
