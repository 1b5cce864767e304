//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgate/mcpgate/internal/authserver"
)

// TestBuiltinPostgresLimits: the registration limits of the built-in
// server against a real PostgreSQL, through two replicas of the real
// binary sharing the database. The client cap is counted and inserted in
// one transaction, so parallel registrations spread over both replicas
// store exactly max_clients; a client that never completes a grant expires
// (the binary's unused_client_ttl is at least 1m and its sweep hourly, so
// the test moves the expiry of the stored rows into the past instead of
// waiting) and the store's Sweep deletes it; a client that completed a
// grant is kept without expiry.
func TestBuiltinPostgresLimits(t *testing.T) {
	const maxClients = 5
	dsn := StartPostgres(t)
	up := startEverythingHTTP(t, "streamableHttp")
	dir := t.TempDir()
	users := writeUsers(t, dir)
	// one public URL for both replicas: the issuer and resource are the same
	// (the test talks to each replica directly; only registration and the
	// token endpoint are used, no redirect to the public URL is followed)
	ports := []int{FreePort(t), FreePort(t)}
	public := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	var bases []string
	for i, port := range ports {
		cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
public_url: %s
authorization_server: builtin
builtin:
  store_env: AS_DSN
  users_file: %s
  registration_limits:
    per_address_per_hour: 1000
    per_hour: 1000
    max_clients: %d
    unused_client_ttl: 1m
upstreams:
  - url: %s
    scopes_supported: [mcp:read]
limits:
  requests_per_second: 500
  burst: 1000
`, port, public, users, maxClients, up)
		file := filepath.Join(dir, fmt.Sprintf("gw%d.yaml", i))
		os.WriteFile(file, []byte(cfg), 0o600)
		Start(t, fmt.Sprintf("mcpgate-pglimits-%d", i), []string{Mcpgate(t), "serve", "--config", file},
			[]string{"AS_DSN=" + dsn, "MCPGATE_CONFIG_DIR=" + filepath.Join(dir, fmt.Sprint("cfg", i))}, regexp.MustCompile(`mcpgate serving`))
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		(&Gateway{URL: base}).WaitReady(t)
		bases = append(bases, base)
	}

	ctx := context.Background()
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	exec := func(t *testing.T, sql string, args ...any) int64 {
		t.Helper()
		tag, err := db.Exec(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return tag.RowsAffected()
	}
	count := func(t *testing.T, where string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM mcpgate_authserver WHERE bucket = 'clients' AND `+where, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// the store API on the same database, for the sweep the binary runs hourly
	store, err := authserver.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sweep := func(t *testing.T) int {
		t.Helper()
		n, err := store.Sweep()
		if err != nil {
			t.Fatalf("sweep: %v", err)
		}
		return n
	}
	// expireAll moves every unused client's expiry into the past, as if
	// unused_client_ttl had passed
	expireAll := func(t *testing.T) int64 {
		return exec(t, `UPDATE mcpgate_authserver SET expires = now() - interval '1 second' WHERE bucket = 'clients' AND expires IS NOT NULL`)
	}
	const body = `{"redirect_uris":["http://127.0.0.1/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"client_name":"pg limits"}`
	type answer struct {
		status int
		retry  string
		out    map[string]any
		err    error
	}
	register := func(base string) answer {
		resp, err := http.Post(base+"/register", "application/json", strings.NewReader(body))
		if err != nil {
			return answer{err: err}
		}
		defer resp.Body.Close()
		a := answer{status: resp.StatusCode, retry: resp.Header.Get("Retry-After")}
		json.NewDecoder(resp.Body).Decode(&a.out)
		return a
	}
	mustRegister := func(t *testing.T, base string) string {
		t.Helper()
		a := register(base)
		if a.err != nil || a.status != 201 {
			t.Fatalf("registration: %v %d %v", a.err, a.status, a.out)
		}
		return a.out["client_id"].(string)
	}
	// authorizePage asks for the sign-in page with a registered client; an
	// unknown (expired) client gets an error page and no sign-in form
	authorizePage := func(t *testing.T, base, clientID string) (int, string) {
		t.Helper()
		q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {"http://127.0.0.1/callback"}, "state": {"st"},
			"scope": {"mcp:read"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
			"resource": {public + "/mcp"}}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(base + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	signInForm := func(page string) bool { return strings.Contains(page, `name="password"`) }

	t.Run("cap holds under concurrent registrations on two replicas", func(t *testing.T) {
		const n = 20
		answers := make([]answer, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				answers[i] = register(bases[i%2])
			}()
		}
		close(start)
		wg.Wait()
		ok := 0
		for i, a := range answers {
			switch {
			case a.err != nil:
				t.Errorf("registration %d: %v", i, a.err)
			case a.status == 201:
				ok++
			case a.status == 503 && a.out["error"] == "temporarily_unavailable" && a.retry != "":
				if d, _ := a.out["error_description"].(string); !strings.Contains(d, "registered clients") {
					t.Errorf("registration %d refused without a clear reason: %v", i, a.out)
				}
			default:
				t.Errorf("registration %d: %d %v (want 201 or 503 temporarily_unavailable with Retry-After)", i, a.status, a.out)
			}
		}
		if ok != maxClients {
			t.Errorf("%d of %d parallel registrations stored, want exactly max_clients %d", ok, n, maxClients)
		}
		if rows := count(t, "true"); rows != maxClients {
			t.Errorf("%d client rows in PostgreSQL, want %d", rows, maxClients)
		}
		// every unused client carries an expiry of about unused_client_ttl
		if rows := count(t, "expires BETWEEN now() + interval '30 seconds' AND now() + interval '61 seconds'"); rows != maxClients {
			t.Errorf("%d of %d unused clients expire in about 1m", rows, maxClients)
		}
		// still full: one more on either replica is refused
		for _, base := range bases {
			if a := register(base); a.status != 503 {
				t.Errorf("registration at the cap on %s: %d %v", base, a.status, a.out)
			}
		}
	})

	t.Run("unused client expires and the sweep deletes it", func(t *testing.T) {
		var id string
		if err := db.QueryRow(ctx, `SELECT key FROM mcpgate_authserver WHERE bucket = 'clients' LIMIT 1`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if code, page := authorizePage(t, bases[1], id); !signInForm(page) {
			t.Fatalf("registered client before expiry: %d %.300s", code, page)
		}
		if n := expireAll(t); n != maxClients {
			t.Fatalf("%d clients expired, want %d", n, maxClients)
		}
		for _, base := range bases {
			if code, page := authorizePage(t, base, id); signInForm(page) || code < 400 {
				t.Errorf("expired client at %s: %d %.300s (want an error page)", base, code, page)
			}
		}
		// Get skips the expired rows; they are still on disk until the sweep
		if rows := count(t, "true"); rows != maxClients {
			t.Fatalf("%d client rows before the sweep, want %d", rows, maxClients)
		}
		if n := sweep(t); n < maxClients {
			t.Errorf("sweep deleted %d entries, want at least the %d expired clients", n, maxClients)
		}
		if rows := count(t, "true"); rows != 0 {
			t.Errorf("%d client rows after the sweep, want 0", rows)
		}
		// the cap is free again
		for i := range maxClients {
			mustRegister(t, bases[i%2])
		}
		if a := register(bases[0]); a.status != 503 {
			t.Errorf("registration over the cap after the sweep: %d %v", a.status, a.out)
		}
		// expired clients do not count towards the cap even before the sweep:
		// the registration deletes them in its transaction
		if n := exec(t, `UPDATE mcpgate_authserver SET expires = now() - interval '1 second'
			WHERE bucket = 'clients' AND key IN (SELECT key FROM mcpgate_authserver WHERE bucket = 'clients' LIMIT 2)`); n != 2 {
			t.Fatalf("%d clients expired, want 2", n)
		}
		mustRegister(t, bases[1])
		mustRegister(t, bases[0])
		if a := register(bases[1]); a.status != 503 {
			t.Errorf("registration over the cap: %d %v", a.status, a.out)
		}
		if rows := count(t, "true"); rows != maxClients {
			t.Errorf("%d client rows, want %d (expired ones deleted by the registration)", rows, maxClients)
		}
		if rows := count(t, "expires <= now()"); rows != 0 {
			t.Errorf("%d expired client rows left after the registration", rows)
		}
		expireAll(t)
		sweep(t)
	})

	t.Run("client that completed a grant does not expire", func(t *testing.T) {
		if rows := count(t, "true"); rows != 0 {
			t.Fatalf("%d client rows at the start, want 0", rows)
		}
		used := mustRegister(t, bases[0])
		unused := mustRegister(t, bases[1])
		tok := userTokens(t, bases[0], used) // the resource is the public URL: replica 0
		var raw []byte
		var expires *time.Time
		if err := db.QueryRow(ctx, `SELECT value, expires FROM mcpgate_authserver WHERE bucket = 'clients' AND key = $1`, used).Scan(&raw, &expires); err != nil {
			t.Fatal(err)
		}
		var stored map[string]any
		json.Unmarshal(raw, &stored)
		usedAt := stored["used"]
		if expires != nil || usedAt == nil {
			t.Errorf("client after its first grant: expires %v, used %v (want no expiry, used set)", expires, usedAt)
		}
		if rows := count(t, "key = $1 AND expires IS NOT NULL", unused); rows != 1 {
			t.Errorf("the unused client lost its expiry")
		}
		expireAll(t)
		sweep(t)
		if rows := count(t, "key = $1", used); rows != 1 {
			t.Fatalf("the used client was deleted by the sweep")
		}
		if rows := count(t, "key = $1", unused); rows != 0 {
			t.Errorf("the unused client survived the sweep")
		}
		// the used client still works on the other replica: its refresh token is
		// accepted
		c := &http.Client{}
		resp, out := formPost(t, c, bases[1]+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)},
			"client_id": {used}}, "", "")
		if resp.StatusCode != 200 || !strings.Contains(out, "access_token") {
			t.Errorf("refresh with the used client after the sweep: %d %s", resp.StatusCode, out)
		}
		if code, page := authorizePage(t, bases[0], used); !signInForm(page) {
			t.Errorf("used client after the sweep: %d %.300s", code, page)
		}
		if code, page := authorizePage(t, bases[0], unused); signInForm(page) {
			t.Errorf("swept client still known: %d", code)
		}
	})
}

// TestBuiltinPostgresLimitsStoreParity: the same sequence of store
// operations on the bbolt store and on a real PostgreSQL gives the same
// answers — expiry (Get, List, Take skip an expired entry), the cap
// (a replaced key does not count twice, expired entries do not count and
// are deleted), Sweep across buckets — and the PostgreSQL cap holds for
// parallel inserters on two connection pools (two replicas).
func TestBuiltinPostgresLimitsStoreParity(t *testing.T) {
	dsn := StartPostgres(t)
	ctx := context.Background()
	pg, err := authserver.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	bolt, err := authserver.OpenBolt(filepath.Join(t.TempDir(), "as.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	type capped interface {
		authserver.Store
		PutCapped(bucket, key string, value []byte, ttl time.Duration, max int) (bool, error)
		Sweep() (int, error)
	}
	const short = 300 * time.Millisecond
	run := func(t *testing.T, st capped) []string {
		var log []string
		note := func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		capPut := func(k string, ttl time.Duration) {
			ok, err := st.PutCapped("clients", k, []byte("v-"+k), ttl, 3)
			must(err)
			note("putCapped %s %v", k, ok)
		}
		capPut("a", time.Hour)
		capPut("b", short)
		capPut("c", 0)
		capPut("d", time.Hour) // full
		capPut("a", time.Hour) // replaces, does not count twice
		must(st.Put("codes", "x", []byte("code"), short))
		must(st.Put("flows", "y", []byte("flow"), short))
		must(st.Put("flows", "z", []byte("flow"), time.Hour))
		v, err := st.Get("clients", "b")
		must(err)
		note("get live b %q", v)
		time.Sleep(2 * short)
		for _, bk := range []string{"clients", "codes", "flows"} {
			all, err := st.List(bk)
			must(err)
			keys := make([]string, 0, len(all))
			for k := range all {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			note("list %s %v", bk, keys)
		}
		v, err = st.Get("clients", "b")
		must(err)
		note("get expired b %v", v == nil)
		v, err = st.Take("codes", "x")
		must(err)
		note("take expired x %v", v == nil)
		v, err = st.Take("flows", "z")
		must(err)
		note("take live z %q", v)
		capPut("d", time.Hour) // b expired: room again
		capPut("e", time.Hour)
		n, err := st.Sweep()
		must(err)
		note("sweep %d", n) // flows/y only: b went with putCapped, x with Take
		return log
	}
	want := run(t, bolt)
	got := run(t, pg)
	if !slices.Equal(want, got) {
		t.Errorf("PostgreSQL and bbolt differ:\nbbolt:      %q\npostgresql: %q", want, got)
	}
	if !slices.Contains(want, "sweep 1") || !slices.Contains(want, `putCapped d true`) {
		t.Errorf("unexpected sequence: %q", want)
	}

	// two pools (two replicas), 40 parallel capped inserts, cap 7
	pg2, err := authserver.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg2.Close() })
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := pg
			if i%2 == 1 {
				st = pg2
			}
			ok, err := st.PutCapped("parallel", fmt.Sprint("k", i), []byte("v"), time.Hour, 7)
			if err != nil {
				t.Errorf("putCapped %d: %v", i, err)
			}
			if ok {
				mu.Lock()
				stored++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	all, err := pg.List("parallel")
	if err != nil {
		t.Fatal(err)
	}
	if stored != 7 || len(all) != 7 {
		t.Errorf("parallel capped inserts: %d reported stored, %d rows; want 7 and 7", stored, len(all))
	}
}
