package authserver

import (
	"html/template"
	"net/http"
)

var pages = template.Must(template.New("layout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}} · mcpgate</title>
<style>
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--fg:#1b1f2a;--muted:#5b6273;--accent:#2f5bd3;--border:#d8dbe2;--err:#b3261e}
@media (prefers-color-scheme:dark){:root{--bg:#14161b;--card:#1d2027;--fg:#e8eaf0;--muted:#a0a6b4;--accent:#7d9cff;--border:#343945;--err:#ff8a80}}
*{box-sizing:border-box}body{margin:0;min-height:100vh;display:grid;place-items:center;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{width:min(26rem,92vw);background:var(--card);border:1px solid var(--border);border-radius:14px;padding:2rem 2rem 1.5rem;box-shadow:0 6px 24px #0000001a}
.brand{font-size:.85rem;letter-spacing:.08em;text-transform:uppercase;color:var(--muted);margin:0 0 .75rem}
h1{font-size:1.35rem;margin:0 0 1rem}label{display:block;font-weight:600;margin:.9rem 0 .3rem}
input[type=text],input[type=password]{width:100%;padding:.65rem .75rem;border:1px solid var(--border);border-radius:8px;background:transparent;color:inherit;font:inherit}
input:focus-visible,button:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.actions{display:flex;gap:.75rem;margin-top:1.4rem}
button{flex:1;padding:.7rem 1rem;border-radius:8px;border:1px solid var(--accent);font:inherit;font-weight:600;cursor:pointer}
button.primary{background:var(--accent);color:#fff}button.secondary{background:transparent;color:var(--accent)}
.error{color:var(--err);font-weight:600;margin:.5rem 0 0}dl{margin:0}dt{color:var(--muted);font-size:.85rem;margin-top:.7rem}dd{margin:0;font-weight:600;word-break:break-word}
ul.scopes{margin:.3rem 0 0;padding-left:1.2rem}.note{color:var(--muted);font-size:.85rem;margin-top:1.2rem}
.returns{font-size:1.05rem;font-weight:700;border:1px solid var(--border);border-radius:8px;padding:.5rem .75rem;margin:.4rem 0 .8rem;word-break:break-all}
.warn{border:2px solid var(--err);border-radius:8px;padding:.6rem .75rem;margin:.6rem 0 .8rem}.warn strong{color:var(--err)}
</style></head>
<body><main aria-labelledby="title">
<p class="brand">mcpgate</p>
{{template "body" .}}
</main></body></html>
{{define "client"}}{{if .Unverified}}<div class="warn" role="note"><strong>Unverified application</strong> — {{.Unverified}}</div>{{end}}
{{if .RedirectHost}}<p>After you continue, you are sent to:</p><p class="returns"><bdi>{{.RedirectHost}}</bdi></p>{{end}}{{end}}
{{define "login"}}<h1 id="title">Sign in</h1>
<p>Sign in to let <strong><bdi>{{.ClientName}}</bdi></strong> use your MCP servers.</p>
{{template "client" .}}
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="prompt" value="login"><input type="hidden" name="flow" value="{{.Flow}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="login">User name</label><input id="login" name="login" type="text" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<div class="actions"><button class="primary" type="submit">Sign in</button></div>
</form>{{end}}
{{define "consent"}}<h1 id="title">Allow access?</h1>
<p><strong><bdi>{{.ClientName}}</bdi></strong> asks to act for <strong><bdi>{{.User}}</bdi></strong>.</p>
{{template "client" .}}
<dl><dt>Application</dt><dd><bdi>{{.ClientName}}</bdi>{{if .ClientID}} (<bdi>{{.ClientID}}</bdi>){{end}}</dd>
<dt>MCP server</dt><dd><bdi>{{.Resource}}</bdi></dd>
<dt>Permissions</dt><dd>{{if .Scopes}}<ul class="scopes">{{range .Scopes}}<li><bdi>{{.}}</bdi></li>{{end}}</ul>{{else}}basic access{{end}}</dd></dl>
<form method="post" action="{{.Action}}">
<input type="hidden" name="prompt" value="consent"><input type="hidden" name="flow" value="{{.Flow}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<div class="actions"><button class="primary" type="submit">Allow</button><button class="secondary" type="submit" name="deny" value="1">Deny</button></div>
</form>
<p class="note">Only allow applications you trust. You can revoke access by signing out of the application.</p>{{end}}
{{define "error"}}<h1 id="title">{{.Title}}</h1><p class="error" role="alert"><bdi>{{.Error}}</bdi></p>
<p class="note">Close this window and start again from the application.</p>{{end}}
`))

type pageData struct {
	Title, Error, Action, Flow, CSRF         string
	ClientName, ClientID, User, RedirectHost string
	Resource                                 string
	Scopes                                   []string
	// Unverified, when set, is why the application's name cannot be
	// trusted (shown as a warning on the login and consent pages).
	Unverified string
	// Accounts are the rows of the connected accounts page (accounts.go),
	// already passed through display.
	Accounts []AccountRow
}

// shown returns d with every displayed string passed through display:
// whatever a client, a user or an upstream supplied, one helper decides
// how it appears.
func (d pageData) shown() pageData {
	d.Error, d.Unverified = displayN(d.Error, 600), displayN(d.Unverified, 600)
	for _, p := range []*string{&d.Title, &d.ClientName, &d.ClientID, &d.User, &d.RedirectHost, &d.Resource} {
		*p = display(*p)
	}
	sc := make([]string, len(d.Scopes))
	for i, x := range d.Scopes {
		sc[i] = display(x)
	}
	d.Scopes = sc
	return d
}

// render writes a page with the security headers every page carries:
// nothing external, no framing, no caching, no referrer.
func render(w http.ResponseWriter, status int, name string, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	t, err := pages.Clone()
	if err == nil {
		_, err = t.New("body").Parse(`{{template "` + name + `" .}}`)
	}
	if err == nil {
		_ = t.ExecuteTemplate(w, "layout", d.shown())
	}
}

func errorPage(w http.ResponseWriter, status int, title, msg string) {
	render(w, status, "error", pageData{Title: title, Error: msg})
}
