package validate

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v4/pkg/chart/loader"
)

var update = flag.Bool("update", false, "rewrite deploy/manifests/mcpgate.yaml from the chart's defaults")

const (
	chartDir     = "../mcpgate"
	manifestFile = "../../manifests/mcpgate.yaml"
	docsFile     = "../../../docs/deployment.md"
)

// TestCombinations renders every documented combination. The line
// "conformance helm-values: N passed, M failed" puts the per-combination
// counts into make test's summary (scripts/testsummary reads it), which
// counts top-level tests only.
//
// Each combination's config.yaml is also kept in testdata/configs (-update
// rewrites them; a stale one fails), where e2e/container_test.go
// (TestChartConfigs) loads every one with the gateway's own configuration
// loader: this module cannot import the gateway's internal packages.
func TestCombinations(t *testing.T) {
	pass, fail := 0, 0
	for _, c := range Combinations {
		if t.Run(c.Name, func(t *testing.T) {
			objs, err := Render(chartDir, c.Values)
			if err != nil {
				t.Fatal(err)
			}
			checkObjects(t, objs)
			checkGolden(t, filepath.Join("testdata", "configs", c.Name+".yaml"), configOf(objs))
		}) {
			pass++
		} else {
			fail++
		}
	}
	t.Logf("conformance helm-values: %d passed, %d failed", pass, fail)
}

func TestRefusedValues(t *testing.T) {
	pass, fail := 0, 0
	for _, c := range Refused {
		if t.Run(c.Name, func(t *testing.T) {
			_, err := Render(chartDir, c.Values)
			if err == nil || !strings.Contains(err.Error(), c.Want) {
				t.Fatalf("render: %v; want an error containing %q", err, c.Want)
			}
		}) {
			pass++
		} else {
			fail++
		}
	}
	t.Logf("conformance helm-refused-values: %d passed, %d failed", pass, fail)
}

// TestStrictDecodeRejects: the decoder the combinations rely on refuses
// what a wrong template would produce.
func TestStrictDecodeRejects(t *testing.T) {
	cases := map[string]string{
		"unknown top-level field of a Deployment": `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicass: 3
  selector: {matchLabels: {a: b}}
  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}
`,
		"unknown field deep in a container": `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          securityContext: {readOnlyRootFileSystem: true}
`,
		"duplicate field": `apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  type: ClusterIP
  type: NodePort
`,
		"field of the wrong type": `apiVersion: v1
kind: ConfigMap
metadata: {name: x}
data: [a, b]
`,
		"kind the chart does not emit": `apiVersion: v1
kind: Secret
metadata: {name: x}
stringData: {password: hunter2}
`,
		"unknown field of a ServiceMonitor": `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  endpoints: [{port: metrics, intervall: 30s}]
`,
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte(doc)); err == nil {
				t.Fatalf("decoded without error:\n%s", doc)
			}
		})
	}
	if _, err := Decode([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n")); err != nil {
		t.Fatalf("a valid ConfigMap was refused: %v", err)
	}
}

// TestManifestsUpToDate: deploy/manifests/mcpgate.yaml is the chart
// rendered with its defaults (`make manifests` rewrites it).
func TestManifestsUpToDate(t *testing.T) {
	objs, err := Render(chartDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("# Rendered from deploy/helm/mcpgate with its default values (release \"mcpgate\", namespace\n"+
		"# \"mcpgate\") by `make manifests`; make test fails when it is stale. Edit the chart, not this file.\n"), Manifest(objs)...)
	if *update {
		if err := os.WriteFile(manifestFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatalf("%v: run `make manifests`", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `make manifests` and commit it", manifestFile)
	}
	for _, doc := range splitDocuments(string(got)) {
		if _, err := Decode([]byte(doc)); err != nil {
			t.Errorf("committed manifest: %v", err)
		}
	}
}

// TestDocsListEveryCombination: the table in docs/deployment.md names
// exactly the combinations rendered here.
func TestDocsListEveryCombination(t *testing.T) {
	b, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = true
	}
	for _, c := range Combinations {
		if !documented[c.Name] {
			t.Errorf("combination %q is not in the table of %s", c.Name, filepath.Base(docsFile))
		}
		delete(documented, c.Name)
	}
	for n := range documented {
		t.Errorf("%s documents combination %q that is not rendered (Combinations)", filepath.Base(docsFile), n)
	}
}

// checkObjects asserts what every combination must hold beyond decoding:
// the security settings, probes, drain, and that the objects refer to
// each other correctly.
func checkObjects(t *testing.T, objs []Object) {
	t.Helper()
	var dep *appsv1.Deployment
	byKind := map[string][]Object{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
		if d, ok := o.Typed.(*appsv1.Deployment); ok {
			dep = d
		}
	}
	if dep == nil || len(byKind["Deployment"]) != 1 || len(byKind["Service"]) != 1 || len(byKind["ConfigMap"]) != 1 {
		t.Fatalf("want one Deployment, Service and ConfigMap, got %v", kindsOf(objs))
	}
	pod := dep.Spec.Template
	checkPodSecurity(t, pod.Spec)
	checkProbesAndDrain(t, pod.Spec)
	checkNoSecretValues(t, pod.Spec, byKind["ConfigMap"][0].Typed.(*corev1.ConfigMap))
	podLabels := labels.Set(pod.Labels)
	svc := byKind["Service"][0].Typed.(*corev1.Service)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	for _, o := range byKind["PodDisruptionBudget"] {
		selects(t, "PodDisruptionBudget", o.Typed.(*policyv1.PodDisruptionBudget).Spec.Selector, podLabels)
	}
	for _, o := range byKind["NetworkPolicy"] {
		np := o.Typed.(*networkingv1.NetworkPolicy)
		selects(t, "NetworkPolicy", &np.Spec.PodSelector, podLabels)
	}
	for _, o := range byKind["HorizontalPodAutoscaler"] {
		h := o.Typed.(*autoscalingv2.HorizontalPodAutoscaler)
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != dep.Name {
			t.Errorf("HPA scales %v, want Deployment %s", h.Spec.ScaleTargetRef, dep.Name)
		}
		if dep.Spec.Replicas != nil {
			t.Error("with the HPA the Deployment must not set replicas (each upgrade would reset the scale)")
		}
	}
	if len(byKind["HorizontalPodAutoscaler"]) == 0 && dep.Spec.Replicas == nil {
		t.Error("without the HPA the Deployment must set replicas")
	}
	for _, o := range byKind["ServiceMonitor"] {
		sm := o.Typed.(*serviceMonitor)
		selects(t, "ServiceMonitor", &sm.Spec.Selector, labels.Set(svcLabels(objs)))
	}
	cm := byKind["ConfigMap"][0].Typed.(*corev1.ConfigMap)
	var cfg map[string]any
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &cfg); err != nil || len(cfg) == 0 {
		t.Errorf("ConfigMap config.yaml is not a YAML map: %v\n%s", err, cm.Data["config.yaml"])
	}
}

func configOf(objs []Object) []byte {
	for _, o := range objs {
		if cm, ok := o.Typed.(*corev1.ConfigMap); ok {
			return []byte(cm.Data["config.yaml"])
		}
	}
	return nil
}

func checkGolden(t *testing.T, file string, want []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s is missing or stale (%v): run `make manifests` and commit it", file, err)
	}
}

func kindsOf(objs []Object) []string {
	var k []string
	for _, o := range objs {
		k = append(k, o.Kind+"/"+o.Name)
	}
	return k
}

func svcLabels(objs []Object) map[string]string {
	for _, o := range objs {
		if s, ok := o.Typed.(*corev1.Service); ok {
			return s.Labels
		}
	}
	return nil
}

func selects(t *testing.T, what string, sel *metav1.LabelSelector, set labels.Set) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(set) {
		t.Errorf("%s selector %v does not select %v (%v)", what, sel, set, err)
	}
}

func checkPodSecurity(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, a non-zero runAsUser and seccomp RuntimeDefault", psc)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token; the gateway never calls the Kubernetes API")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem, no privilege escalation, drop ALL", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = true
	}
	for _, p := range []string{"/etc/mcpgate", "/tmp", "/var/lib/mcpgate"} {
		if !mounts[p] {
			t.Errorf("no volume at %s (the image writes or reads there with a read-only root)", p)
		}
	}
}

func checkProbesAndDrain(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	c := spec.Containers[0]
	for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "http" {
			t.Errorf("probe for %s: %+v", name, p)
		}
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Exec != nil {
		t.Errorf("preStop %+v: want the kubelet's sleep action (the image has no shell to exec)", c.Lifecycle)
	} else if g := spec.TerminationGracePeriodSeconds; g == nil || *g <= c.Lifecycle.PreStop.Sleep.Seconds+10 {
		t.Errorf("terminationGracePeriodSeconds %v leaves no time to drain after the %ds preStop sleep", g, c.Lifecycle.PreStop.Sleep.Seconds)
	}
}

// checkNoSecretValues: secrets reach the pod only as secretKeyRef, and the
// configuration carries none inline.
func checkNoSecretValues(t *testing.T, spec corev1.PodSpec, cm *corev1.ConfigMap) {
	t.Helper()
	secretish := regexp.MustCompile(`(?i)(SECRET|PASSWORD|TOKEN|DSN|KEY)`)
	for _, e := range spec.Containers[0].Env {
		if secretish.MatchString(e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("env %s is not a secretKeyRef", e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && (e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == "") {
			t.Errorf("env %s: secretKeyRef without name or key", e.Name)
		}
	}
	inline := regexp.MustCompile(`(?m)^\s*(client_secret|secret|password|value|dsn):`)
	if m := inline.FindString(cm.Data["config.yaml"]); m != "" {
		t.Errorf("config.yaml carries an inline secret key %q; use the *_env form", strings.TrimSpace(m))
	}
}

// TestKubeVersion: the chart admits the version it is rendered for and
// refuses one without the preStop sleep action.
func TestKubeVersion(t *testing.T) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := compatible(chrt, KubeVersion); err != nil {
		t.Fatal(err)
	}
	if err := compatible(chrt, "v1.29.9"); err == nil {
		t.Fatal("kubeVersion admits 1.29, which has no preStop sleep action")
	}
}
