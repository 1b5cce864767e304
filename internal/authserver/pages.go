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
</style></head>
<body><main aria-labelledby="title">
<p class="brand">mcpgate</p>
{{template "body" .}}
</main></body></html>
{{define "login"}}<h1 id="title">Sign in</h1>
<p>Sign in to let <strong>{{.ClientName}}</strong> use your MCP servers.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="prompt" value="login"><input type="hidden" name="flow" value="{{.Flow}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="login">User name</label><input id="login" name="login" type="text" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<div class="actions"><button class="primary" type="submit">Sign in</button></div>
</form>{{end}}
{{define "consent"}}<h1 id="title">Allow access?</h1>
<p><strong>{{.ClientName}}</strong> asks to act for <strong>{{.User}}</strong>.</p>
<dl><dt>Application</dt><dd>{{.ClientName}}{{if .ClientID}} ({{.ClientID}}){{end}}</dd>
<dt>Returns to</dt><dd>{{.RedirectHost}}</dd>
<dt>MCP server</dt><dd>{{.Resource}}</dd>
<dt>Permissions</dt><dd>{{if .Scopes}}<ul class="scopes">{{range .Scopes}}<li>{{.}}</li>{{end}}</ul>{{else}}basic access{{end}}</dd></dl>
<form method="post" action="{{.Action}}">
<input type="hidden" name="prompt" value="consent"><input type="hidden" name="flow" value="{{.Flow}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<div class="actions"><button class="primary" type="submit">Allow</button><button class="secondary" type="submit" name="deny" value="1">Deny</button></div>
</form>
<p class="note">Only allow applications you trust. You can revoke access by signing out of the application.</p>{{end}}
{{define "error"}}<h1 id="title">{{.Title}}</h1><p class="error" role="alert">{{.Error}}</p>
<p class="note">Close this window and start again from the application.</p>{{end}}
`))

type pageData struct {
	Title, Error, Action, Flow, CSRF         string
	ClientName, ClientID, User, RedirectHost string
	Resource                                 string
	Scopes                                   []string
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
		_ = t.ExecuteTemplate(w, "layout", d)
	}
}

func errorPage(w http.ResponseWriter, status int, title, msg string) {
	render(w, status, "error", pageData{Title: title, Error: msg})
}
