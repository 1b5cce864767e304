// Package validate renders the mcpgate Helm chart offline (Helm's own chart
// loader and template engine, no cluster) and decodes every object strictly
// into the Kubernetes API types: an unknown or duplicated field, an unknown
// kind or a template error fails. It is a module of its own so that Helm and
// k8s.io/api stay out of the gateway's dependencies (docs/architecture.md).
package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v4/pkg/chart"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/engine"
)

// Release is the release name and namespace every render uses; the
// committed manifests are rendered with them.
var Release = common.ReleaseOptions{Name: "mcpgate", Namespace: "mcpgate", IsInstall: true, Revision: 1}

// KubeVersion is the Kubernetes version the chart is rendered for: the
// oldest its kubeVersion constraint admits (preStop's sleep action is 1.30).
const KubeVersion = "v1.30.0"

// Object is one rendered manifest: its source template, its raw YAML and
// the typed object it decoded into.
type Object struct {
	Template string
	Kind     string
	Name     string
	YAML     []byte
	Typed    any
}

// Render renders the chart in dir with values (nil: the chart's defaults)
// and returns its objects in template order, or the first error.
func Render(dir string, values map[string]any) ([]Object, error) {
	chrt, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	kv, err := common.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, err
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	if err := compatible(chrt, KubeVersion); err != nil {
		return nil, err
	}
	vals, err := util.ToRenderValues(chrt, values, Release, caps)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Engine{Strict: true}.Render(chrt, vals)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		if path.Ext(n) == ".yaml" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []Object
	for _, n := range names {
		for _, doc := range splitDocuments(files[n]) {
			o, err := Decode([]byte(doc))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			o.Template = n
			out = append(out, o)
		}
	}
	return out, nil
}

// compatible applies the chart's kubeVersion constraint as `helm install`
// does.
func compatible(chrt chart.Charter, ver string) error {
	c, ok := chrt.(*chartv2.Chart)
	if !ok {
		return fmt.Errorf("chart is %T, want a v2 chart", chrt)
	}
	if c.Metadata.KubeVersion == "" {
		return nil
	}
	cons, err := semver.NewConstraint(c.Metadata.KubeVersion)
	if err != nil {
		return fmt.Errorf("Chart.yaml kubeVersion %q: %w", c.Metadata.KubeVersion, err)
	}
	if !cons.Check(semver.MustParse(ver)) {
		return fmt.Errorf("chart requires kubeVersion %s, rendering for %s", c.Metadata.KubeVersion, ver)
	}
	return nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// splitDocuments splits a rendered template into its non-empty YAML
// documents (a disabled template renders to nothing).
func splitDocuments(s string) []string {
	var out []string
	for _, d := range docSep.Split(s, -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			out = append(out, strings.TrimSpace(d)+"\n")
		}
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// kinds are the only objects the chart may emit, each with its API type.
var kinds = map[schema.GroupVersionKind]func() runtime.Object{
	appsv1.SchemeGroupVersion.WithKind("Deployment"):                     func() runtime.Object { return &appsv1.Deployment{} },
	corev1.SchemeGroupVersion.WithKind("Service"):                        func() runtime.Object { return &corev1.Service{} },
	corev1.SchemeGroupVersion.WithKind("ConfigMap"):                      func() runtime.Object { return &corev1.ConfigMap{} },
	corev1.SchemeGroupVersion.WithKind("ServiceAccount"):                 func() runtime.Object { return &corev1.ServiceAccount{} },
	policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"):          func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
	autoscalingv2.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"): func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
	networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"):            func() runtime.Object { return &networkingv1.NetworkPolicy{} },
	networkingv1.SchemeGroupVersion.WithKind("Ingress"):                  func() runtime.Object { return &networkingv1.Ingress{} },
}

var strict = func() *kjson.Serializer {
	s := runtime.NewScheme()
	for gvk, f := range kinds {
		s.AddKnownTypeWithName(gvk, f())
	}
	for _, gv := range []schema.GroupVersion{appsv1.SchemeGroupVersion, corev1.SchemeGroupVersion, policyv1.SchemeGroupVersion,
		autoscalingv2.SchemeGroupVersion, networkingv1.SchemeGroupVersion} {
		metav1.AddToGroupVersion(s, gv)
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Yaml: true, Strict: true})
}()

// Decode decodes one YAML manifest strictly: into its k8s.io/api type, or
// for a ServiceMonitor into serviceMonitor. Unknown fields, duplicate
// fields and kinds the chart does not emit are errors.
func Decode(doc []byte) (Object, error) {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return Object{}, fmt.Errorf("not YAML: %w", err)
	}
	o := Object{Kind: head.Kind, Name: head.Metadata.Name, YAML: doc}
	gvk := schema.FromAPIVersionAndKind(head.APIVersion, head.Kind)
	if gvk == serviceMonitorGVK {
		sm, err := decodeServiceMonitor(doc)
		o.Typed = sm
		return o, err
	}
	if _, ok := kinds[gvk]; !ok {
		return o, fmt.Errorf("%s %s: a kind the chart does not emit (validate.kinds lists those it may)", head.APIVersion, head.Kind)
	}
	obj, _, err := strict.Decode(doc, &gvk, nil)
	if err != nil {
		return o, fmt.Errorf("%s %q: %w", head.Kind, head.Metadata.Name, err)
	}
	o.Typed = obj
	return o, nil
}

// serviceMonitorGVK is the Prometheus Operator's ServiceMonitor, which is
// not in k8s.io/api.
var serviceMonitorGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}

// serviceMonitor is a minimal typed ServiceMonitor: the fields of the
// monitoring.coreos.com/v1 CRD schema (prometheus-operator) that the chart
// may emit, with the CRD's names and types. Decoding refuses every other
// field, so a typo or a field the chart does not mean to set fails; a field
// of the real CRD the chart starts to use must be added here.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool   `json:"honorLabels,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func decodeServiceMonitor(doc []byte) (*serviceMonitor, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var sm serviceMonitor
	if err := dec.Decode(&sm); err != nil {
		return nil, fmt.Errorf("ServiceMonitor %q: strict decoding error: %w", sm.Metadata.Name, err)
	}
	if len(sm.Spec.Endpoints) == 0 {
		return nil, fmt.Errorf("ServiceMonitor %q: spec.endpoints is required by the CRD", sm.Metadata.Name)
	}
	return &sm, nil
}

// Manifest joins objects into one multi-document YAML stream, each
// preceded by the template it came from (as `helm template` prints it).
func Manifest(objs []Object) []byte {
	var b bytes.Buffer
	for _, o := range objs {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s", o.Template, o.YAML)
	}
	return b.Bytes()
}
