//go:build e2e

package e2e

// The container image (issue 14 item 2): the repository's Dockerfile is
// built from source with Debian's buildah (vfs storage, chroot isolation:
// no daemon, no user namespaces), then the image is inspected and run.
//
// The build stage's base image (GO_IMAGE, the official golang image by
// default) cannot be pulled here: no image registry is reachable. The test
// assembles a local one from the host's own Go toolchain (GOROOT, CA
// certificates, /bin/sh for RUN) and passes it as GO_IMAGE, so every
// instruction of the shipped Dockerfile runs, modules included: the build
// stage gets GOPROXY/GOFLAGS from `go env` like the host.

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/config"
)

// buildah runs buildah on vfs storage (works without overlay or fuse) and
// returns its standard output.
func buildah(t testing.TB, args ...string) string {
	t.Helper()
	out, err := buildahErr(args...)
	if err != nil {
		t.Fatalf("buildah %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func buildahErr(args ...string) (string, error) {
	cmd := exec.Command("buildah", append([]string{"--storage-driver", "vfs"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%v\n%s%s", err, stdout.String(), lastLines(stderr.String(), 40))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// needBuildah skips when buildah cannot run here, saying why. scripts/deps.sh
// installs it, so in CI it runs.
func needBuildah(t *testing.T) {
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah is not installed (scripts/deps.sh installs Debian's buildah): the container image is not built")
	}
	if _, err := buildahErr("info"); err != nil {
		t.Skipf("buildah cannot run on this machine (vfs storage): %v", err)
	}
}

// goImage returns a local image holding the host's Go toolchain, assembled
// once per Go version: the build stage's GO_IMAGE.
func goImage(t *testing.T) string {
	name := "localhost/mcpgate-build-go:" + strings.TrimPrefix(runtime.Version(), "go")
	if _, err := buildahErr("inspect", "--type", "image", name); err == nil {
		return name
	}
	goroot := strings.TrimSpace(goEnv(t, "GOROOT"))
	c := buildah(t, "from", "scratch")
	defer buildahErr("rm", c)
	buildah(t, "copy", "--quiet", c, goroot, "/usr/local/go")
	buildah(t, "copy", "--quiet", c, "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt")
	// RUN needs /bin/sh: dash and the libraries ldd names for it.
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	buildah(t, "copy", "--quiet", c, sh, "/bin/sh")
	ldd, err := exec.Command("ldd", sh).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", sh, err)
	}
	for _, lib := range regexp.MustCompile(`(/\S+\.so[.\d]*)`).FindAllString(string(ldd), -1) {
		buildah(t, "copy", "--quiet", c, lib, lib)
	}
	empty := t.TempDir()
	buildah(t, "copy", "--quiet", "--chmod", "1777", c, empty, "/tmp")
	buildah(t, "config", "--env", "PATH=/usr/local/go/bin:/bin", c)
	buildah(t, "commit", "--quiet", c, name)
	return name
}

func goEnv(t *testing.T, key string) string {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return strings.TrimSpace(string(out))
}

// imageConfig is the part of `buildah inspect --type image` the test reads.
type imageConfig struct {
	OCIv1 struct {
		Config struct {
			User       string
			Entrypoint []string
			Env        []string
			Labels     map[string]string
			Volumes    map[string]struct{}
		} `json:"config"`
	}
}

func TestContainerImage(t *testing.T) {
	needBuildah(t)
	repo := filepath.Dir(Dir(t))
	tag := fmt.Sprintf("localhost/mcpgate-e2e:%d", time.Now().UnixNano())
	want := map[string]string{
		"org.opencontainers.image.version":  "e2e-" + strconv.Itoa(os.Getpid()),
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.created":  time.Now().UTC().Format(time.RFC3339),
	}
	args := []string{"bud", "--isolation", "chroot", "--layers=false", "--quiet", "-t", tag,
		"--build-arg", "GO_IMAGE=" + goImage(t),
		"--build-arg", "VERSION=" + want["org.opencontainers.image.version"],
		"--build-arg", "COMMIT=" + want["org.opencontainers.image.revision"],
		"--build-arg", "CREATED=" + want["org.opencontainers.image.created"]}
	for _, k := range []string{"GOPROXY", "GOFLAGS", "GOPRIVATE", "GONOSUMDB"} {
		args = append(args, "--build-arg", k+"="+goEnv(t, k))
	}
	start := time.Now()
	buildah(t, append(args, repo)...)
	t.Logf("image built from source in %s", time.Since(start).Round(time.Second))
	t.Cleanup(func() { _, _ = buildahErr("rmi", "-f", tag) })

	t.Run("config", func(t *testing.T) { checkImageConfig(t, tag, want) })
	root, ctr := mountImage(t, tag)
	t.Run("contents", func(t *testing.T) { checkImageContents(t, root) })
	t.Run("version", func(t *testing.T) {
		out := buildah(t, "run", "--isolation", "chroot", ctr, "--", "/usr/local/bin/mcpgate", "version")
		for _, k := range []string{"org.opencontainers.image.version", "org.opencontainers.image.revision"} {
			if !strings.Contains(out, want[k]) {
				t.Errorf("mcpgate version printed %q, want it to name %s %q", out, k, want[k])
			}
		}
	})
	t.Run("serve", func(t *testing.T) { checkServe(t, root, ctr) })
	t.Run("chart", func(t *testing.T) { checkChartPod(t, ctr) })
}

func checkImageConfig(t *testing.T, tag string, want map[string]string) {
	var ic imageConfig
	if err := json.Unmarshal([]byte(buildah(t, "inspect", "--type", "image", tag)), &ic); err != nil {
		t.Fatal(err)
	}
	c := ic.OCIv1.Config
	uid, gid, ok := strings.Cut(c.User, ":")
	if u, err := strconv.Atoi(uid); !ok || err != nil || u == 0 || gid == "0" {
		t.Errorf("image user %q: want a numeric non-root uid:gid (Kubernetes runAsNonRoot checks it)", c.User)
	}
	for k, v := range want {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	for _, k := range []string{"org.opencontainers.image.source", "org.opencontainers.image.licenses"} {
		if c.Labels[k] == "" {
			t.Errorf("label %s is missing", k)
		}
	}
	for _, v := range []string{"/tmp", "/var/lib/mcpgate"} {
		if _, ok := c.Volumes[v]; !ok {
			t.Errorf("volume %s not declared (the image writes there; a read-only root needs it mounted): %v", v, c.Volumes)
		}
	}
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/usr/local/bin/mcpgate" {
		t.Errorf("entrypoint %v, want [/usr/local/bin/mcpgate] (exec form, no shell)", c.Entrypoint)
	}
}

// mountImage makes a working container of the image and mounts its root.
func mountImage(t *testing.T, tag string) (root, ctr string) {
	ctr = buildah(t, "from", "--quiet", "--pull-never", tag)
	t.Cleanup(func() { _, _ = buildahErr("rm", ctr) })
	return buildah(t, "mount", ctr), ctr
}

// checkImageContents: the image holds exactly the binary, the CA bundle and
// the two writable directories — no shell, nothing to exec but mcpgate —
// and the binary is static (no ELF interpreter).
func checkImageContents(t *testing.T, root string) {
	got := listTree(t, root)
	want := []string{
		"etc/", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
		"tmp/ 65532", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/mcpgate",
		"var/", "var/lib/", "var/lib/mcpgate/ 65532",
	}
	var files []string
	for _, e := range got {
		files = append(files, e.name)
	}
	if strings.Join(files, "\n") != strings.Join(want, "\n") {
		t.Errorf("image contents:\n%s\nwant exactly:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}
	if _, err := os.Lstat(filepath.Join(root, "bin/sh")); err == nil {
		t.Error("/bin/sh exists in the final image")
	}
	f, err := elf.Open(filepath.Join(root, "usr/local/bin/mcpgate"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("mcpgate in the image is dynamically linked (PT_INTERP): CGO_ENABLED=0 was lost")
		}
	}
}

type treeEntry struct {
	name  string // relative path, "/" after directories, " <uid>" when not root-owned
	state string // mode, size and mtime: what a write would change
}

func listTree(t *testing.T, root string) []treeEntry {
	var out []treeEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			rel += "/"
		}
		if uid := fileUID(fi); uid != 0 {
			rel += " " + strconv.Itoa(uid)
		}
		out = append(out, treeEntry{rel, fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// checkServe runs `mcpgate serve` in the image with the configuration
// mounted read-only, /tmp and /var/lib/mcpgate on tmpfs (what the chart
// mounts), and the built-in authorization server (it writes its store to
// /var/lib/mcpgate). buildah run has no --read-only; instead the image's
// root file system is listed before and after and must be unchanged: the
// process wrote nothing outside its declared volumes.
func checkServe(t *testing.T, root, ctr string) {
	port := FreePort(t)
	upstream := listenOn(t, FreePort(t)) // reachable upstream: /readyz can be 200
	t.Cleanup(func() { upstream.Close() })
	go func() { _ = http.Serve(upstream, http.NotFoundHandler()) }()
	cfgDir := t.TempDir()
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
authorization_server: builtin
upstreams:
  - name: demo
    url: http://%s/mcp
log:
  format: json
`, port, upstream.Addr())
	if err := os.WriteFile(filepath.Join(cfgDir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	run := []string{"run", "--isolation", "chroot", "-v", cfgDir + ":/etc/mcpgate:ro",
		"--mount", "type=tmpfs,destination=/tmp", "--mount", "type=tmpfs,destination=/var/lib/mcpgate", ctr, "--"}
	// A first run with the same mounts lets buildah make its mount points
	// (/etc/mcpgate, /run/.containerenv, /dev, …); what changes after it is
	// the gateway's doing.
	buildah(t, append(run, "/usr/local/bin/mcpgate", "version")...)
	before := listTree(t, root)
	Start(t, "container", append([]string{"buildah", "--storage-driver", "vfs"},
		append(run, "/usr/local/bin/mcpgate", "serve", "--config", "/etc/mcpgate/config.yaml")...), nil, nil)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	WaitHTTP(t, base+"/healthz")
	// The built-in issuer's keys are fetched from the gateway's own
	// listener, retried until it is up: ready follows shortly after alive.
	waitReady(t, base+"/readyz")
	for path, want := range map[string]string{"/healthz": `"ok"`, "/readyz": `"ready":true`,
		"/.well-known/oauth-authorization-server": `"issuer":"` + base + `"`} {
		status, body := mustGet(t, base+path)
		if status != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s in the container: %d %s, want 200 with %s", path, status, body, want)
		}
	}
	after := listTree(t, root)
	if fmt.Sprint(runtimeless(before)) != fmt.Sprint(runtimeless(after)) {
		t.Errorf("the image's root file system changed while serving (a read-only root would refuse it):\nbefore %v\nafter  %v", before, after)
	}
}

// waitReady polls u until it answers 200, for at most 60 s.
func waitReady(t *testing.T, u string) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body := mustGet(t, u)
		if status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 60s: %d %s", u, status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runtimeless drops /run, where buildah itself keeps .containerenv while a
// container runs.
func runtimeless(es []treeEntry) []treeEntry {
	var out []treeEntry
	for _, e := range es {
		if !strings.HasPrefix(e.name, "run/") {
			out = append(out, e)
		}
	}
	return out
}

func mustGet(t *testing.T, u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b)
}

func fileUID(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// checkChartPod runs the image the way the Helm chart's pod does: the
// arguments of the Deployment in deploy/manifests/mcpgate.yaml and the
// config.yaml of its ConfigMap, so a key the chart writes that the gateway
// refuses fails here. Only the example hosts are swapped for loopback ones
// (nothing leaves the machine) and the listen flags are appended to pick
// free loopback ports (the last flag wins).
func checkChartPod(t *testing.T, ctr string) {
	cfg, args := chartPod(t)
	port, metricsPort := FreePort(t), FreePort(t)
	upstream := listenOn(t, FreePort(t))
	t.Cleanup(func() { upstream.Close() })
	go func() { _ = http.Serve(upstream, http.NotFoundHandler()) }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg = strings.NewReplacer("https://mcp.example.com", base, "https://idp.example.com", "http://127.0.0.1:1",
		"http://mcp-server.mcp.svc.cluster.local:9000", "http://"+upstream.Addr().String()).Replace(cfg)
	if strings.Contains(cfg, "example.com") || strings.Contains(cfg, "svc.cluster.local") {
		t.Fatalf("the chart's default config names a host this test does not swap for loopback:\n%s", cfg)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args = append(args, fmt.Sprintf("--listen=127.0.0.1:%d", port), fmt.Sprintf("--metrics-listen=127.0.0.1:%d", metricsPort))
	Start(t, "chart pod", append([]string{"buildah", "--storage-driver", "vfs", "run", "--isolation", "chroot",
		"-v", dir + ":/etc/mcpgate:ro", "--mount", "type=tmpfs,destination=/tmp",
		"--mount", "type=tmpfs,destination=/var/lib/mcpgate", ctr, "--", "/usr/local/bin/mcpgate"}, args...), nil, nil)
	WaitHTTP(t, base+"/healthz")
	// The issuer is a closed loopback port: alive, not ready — as a pod
	// whose IdP is down must be (it leaves the Service, it is not killed).
	if status, body := mustGet(t, base+"/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, `"example"`) {
		t.Errorf("/readyz with the issuer down: %d %s, want 503 naming the upstream", status, body)
	}
	WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
}

// chartPod reads the ConfigMap's config.yaml and the container args from
// the committed manifests.
func chartPod(t *testing.T) (cfg string, args []string) {
	f, err := os.Open(filepath.Join(filepath.Dir(Dir(t)), "deploy", "manifests", "mcpgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	for {
		var obj struct {
			Kind string
			Data map[string]string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct{ Args []string }
					}
				}
			}
		}
		if err := dec.Decode(&obj); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch obj.Kind {
		case "ConfigMap":
			cfg = obj.Data["config.yaml"]
		case "Deployment":
			args = obj.Spec.Template.Spec.Containers[0].Args
		}
	}
	if cfg == "" || len(args) == 0 || args[0] != "serve" {
		t.Fatalf("deploy/manifests/mcpgate.yaml: no ConfigMap config.yaml or Deployment args (got %q, %v)", cfg, args)
	}
	return cfg, args
}

// TestChartConfigs loads the config.yaml of every values combination the
// chart is validated with (deploy/helm/validate/testdata/configs, kept up
// to date by that module's tests) with the gateway's own loader and the
// listen flags the chart's pod passes: a key the chart writes that the
// gateway refuses fails here, without a cluster or a container.
func TestChartConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(filepath.Dir(Dir(t)), "deploy", "helm", "validate", "testdata", "configs", "*.yaml"))
	if err != nil || len(files) < 10 {
		t.Fatalf("want the rendered configs of every chart combination, found %d (%v): run `make manifests`", len(files), err)
	}
	// The one variable the chart's pod sets that the loader reads: the
	// advertised URL, from the pod IP (status.podIP) when replicas forward.
	load := func(file string) error {
		podEnv := map[string]string{}
		if b, _ := os.ReadFile(file); strings.Contains(string(b), "secret_env: MCPGATE_HOP_KEY") {
			podEnv[config.EnvAdvertiseURL] = "http://10.0.0.7:8080"
		}
		_, err := config.LoadGateway(config.ServeFlags{ConfigFile: file, Listen: "0.0.0.0:8080", MetricsListen: "0.0.0.0:9090"},
			func(k string) string { return podEnv[k] })
		return err
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			if err := load(f); err != nil {
				t.Fatalf("the gateway refuses the chart's config.yaml: %v", err)
			}
		})
	}
	// The loader is strict: the same check fails on a misspelt key.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	b, _ := os.ReadFile(files[0])
	if err := os.WriteFile(bad, append(b, []byte("polcy: {}\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := load(bad); err == nil {
		t.Fatal("a config with an unknown key loaded without error")
	}
}
