package main

// The 11 persona rules, a port of dorgu/domain/rules.py with the same severities and field, message and
// suggestion strings. Order, for each Deployment (in name order): the persona-limit parse errors, then
// per container; S-1, S-2 once; H-1 or H-2, then H-3 per container; P-1 once, then P-2, P-3
// per container. Only spec.template.spec.containers are checked.

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const (
	severityError   = "error"
	severityWarning = "warning"
	severityInfo    = "info"
)

// deploymentAppName is the persona spec.name a Deployment belongs to: its app.kubernetes.io/name label when
// non-empty, else its app label when non-empty, else "" (the specific label wins).
func deploymentAppName(d *appsv1.Deployment) string {
	if v := d.Labels[nameLabel]; v != "" {
		return v
	}
	return d.Labels[appLabel]
}

// matchingDeployments keeps the Deployments that belong to the persona named name, sorted by name.
func matchingDeployments(name string, candidates []interface{}) []*appsv1.Deployment {
	if name == "" {
		return nil
	}
	out := make([]*appsv1.Deployment, 0, len(candidates))
	for _, c := range candidates {
		if d, ok := c.(*appsv1.Deployment); ok && deploymentAppName(d) == name {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// personaLimit is a persona limit that is set: raw as written, quantity nil when it does not parse.
type personaLimit struct {
	raw      string
	quantity *resource.Quantity
}

// quantityNumber is the documented grammar's number part; resource.ParseQuantity would read a lone sign, a
// lone "." or a bare suffix ("Ki") as zero, where dorgu reports them as invalid.
var quantityNumber = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)`)

func readLimit(v *intstr.IntOrString) *personaLimit {
	if v == nil {
		return nil
	}
	var raw string
	if v.Type == intstr.Int {
		raw = strconv.Itoa(int(v.IntVal))
	} else {
		raw = v.StrVal
	}
	if raw == "" {
		return nil // an empty persona limit disables its rule
	}
	l := &personaLimit{raw: raw}
	if quantityNumber.MatchString(raw) {
		if q, err := resource.ParseQuantity(raw); err == nil {
			l.quantity = &q
		}
	}
	return l
}

// canonical prints a quantity in apimachinery's canonical form (what dorgu's quantity.canonical() mirrors),
// never the input text that Quantity.String() may echo.
func canonical(q *resource.Quantity) string {
	number, suffix := q.CanonicalizeBytes(make([]byte, 0, 18))
	return string(number) + string(suffix)
}

// collector accumulates one Deployment's issues.
type collector struct {
	deployment string
	issues     []ValidationIssue
}

func (c *collector) add(severity, field, message, suggestion string) {
	c.issues = append(c.issues, ValidationIssue{
		Severity: severity, Field: field, Message: message, Suggestion: suggestion, Deployment: c.deployment,
	})
}

// validate runs every rule on the given Deployments (already matched and sorted by name).
func validate(spec *PersonaSpec, deployments []*appsv1.Deployment) []ValidationIssue {
	var cpu, memory *personaLimit
	if spec.Resources != nil && spec.Resources.Limits != nil {
		cpu, memory = readLimit(spec.Resources.Limits.CPU), readLimit(spec.Resources.Limits.Memory)
	}
	var out []ValidationIssue
	for _, d := range deployments {
		c := &collector{deployment: d.Name}
		validateOne(c, spec, cpu, memory, d)
		out = append(out, c.issues...)
	}
	return out
}

func validateOne(out *collector, spec *PersonaSpec, cpu, memory *personaLimit, d *appsv1.Deployment) {
	containers := d.Spec.Template.Spec.Containers

	// Resources, preceded by the persona-limit parse errors.
	if spec.Resources != nil {
		if cpu != nil && cpu.quantity == nil {
			out.add(severityError, "spec.resources.limits.cpu",
				fmt.Sprintf("Persona CPU limit (%s) is not a valid Kubernetes quantity", cpu.raw),
				"Set spec.resources.limits.cpu to a Kubernetes quantity such as 500m or 2")
		}
		if memory != nil && memory.quantity == nil {
			out.add(severityError, "spec.resources.limits.memory",
				fmt.Sprintf("Persona memory limit (%s) is not a valid Kubernetes quantity", memory.raw),
				"Set spec.resources.limits.memory to a Kubernetes quantity such as 512Mi or 1Gi")
		}
		for i := range containers {
			resourceRules(out, cpu, memory, &containers[i])
		}
	}

	// Replicas (S-1, S-2): once per Deployment; an unset spec.replicas means 1.
	if s := spec.Scaling; s != nil {
		replicas := int64(1)
		if d.Spec.Replicas != nil {
			replicas = int64(*d.Spec.Replicas)
		}
		if s.MinReplicas != nil && replicas < *s.MinReplicas {
			out.add(severityError, "spec.replicas",
				fmt.Sprintf("Deployment replicas (%d) below persona minimum (%d)", replicas, *s.MinReplicas),
				fmt.Sprintf("Set replicas to at least %d", *s.MinReplicas))
		}
		if s.MaxReplicas != nil && replicas > *s.MaxReplicas {
			out.add(severityWarning, "spec.replicas",
				fmt.Sprintf("Deployment replicas (%d) above persona maximum (%d)", replicas, *s.MaxReplicas),
				fmt.Sprintf("Set replicas to at most %d", *s.MaxReplicas))
		}
	}

	// Probes (H-1 or H-2, then H-3), per container.
	if h := spec.Health; h != nil {
		for i := range containers {
			probeRules(out, h.LivenessPath, h.ReadinessPath, &containers[i])
		}
	}

	// Security (P-1 once, then P-2, P-3 per container); unset fields read as the CRD defaults.
	if spec.Policies != nil && spec.Policies.Security != nil {
		sec := spec.Policies.Security
		runAsNonRoot := sec.RunAsNonRoot == nil || *sec.RunAsNonRoot                              // default true
		readOnlyRoot := sec.ReadOnlyRootFilesystem == nil || *sec.ReadOnlyRootFilesystem          // default true
		forbidEscalation := sec.AllowPrivilegeEscalation == nil || !*sec.AllowPrivilegeEscalation // default false
		if runAsNonRoot {
			// P-1: only the pod-level field counts; unset is "not true".
			pc := d.Spec.Template.Spec.SecurityContext
			if pc == nil || pc.RunAsNonRoot == nil || !*pc.RunAsNonRoot {
				out.add(severityError, "spec.template.spec.securityContext.runAsNonRoot",
					"Persona requires runAsNonRoot but Deployment does not enforce it",
					"Set spec.template.spec.securityContext.runAsNonRoot: true")
			}
		}
		for i := range containers {
			c := &containers[i]
			sc := c.SecurityContext
			// P-2: the container must set readOnlyRootFilesystem: true (unset fails).
			if readOnlyRoot && (sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem) {
				out.add(severityWarning, fmt.Sprintf("containers[%s].securityContext.readOnlyRootFilesystem", c.Name),
					"Persona requires readOnlyRootFilesystem but container does not set it",
					"Set readOnlyRootFilesystem: true on the container security context")
			}
			// P-3: only an explicit allowPrivilegeEscalation: true fails (unset passes).
			if forbidEscalation && sc != nil && sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation {
				out.add(severityError, fmt.Sprintf("containers[%s].securityContext.allowPrivilegeEscalation", c.Name),
					"Persona forbids privilege escalation but container allows it",
					"Set allowPrivilegeEscalation: false")
			}
		}
	}
}

func resourceRules(out *collector, cpu, memory *personaLimit, c *corev1.Container) {
	// a set, non-zero container limit greater than the persona limit.
	for _, r := range []struct {
		persona *personaLimit
		key     corev1.ResourceName
		what    string
	}{{cpu, corev1.ResourceCPU, "CPU"}, {memory, corev1.ResourceMemory, "memory"}} {
		if r.persona == nil || r.persona.quantity == nil {
			continue
		}
		actual, ok := c.Resources.Limits[r.key]
		if ok && !actual.IsZero() && actual.Cmp(*r.persona.quantity) > 0 {
			out.add(severityWarning, fmt.Sprintf("containers[%s].resources.limits.%s", c.Name, r.key),
				fmt.Sprintf("Container %s limit (%s) exceeds persona limit (%s)",
					r.what, canonical(&actual), canonical(r.persona.quantity)),
				fmt.Sprintf("Set %s limit to at most %s", r.what, r.persona.raw))
		}
	}
	// neither a CPU nor a memory request (zero counts as unset).
	if unsetOrZero(c.Resources.Requests, corev1.ResourceCPU) && unsetOrZero(c.Resources.Requests, corev1.ResourceMemory) {
		out.add(severityWarning, fmt.Sprintf("containers[%s].resources.requests", c.Name),
			"No resource requests set on container",
			"Set resource requests for predictable scheduling")
	}
}

func unsetOrZero(values corev1.ResourceList, key corev1.ResourceName) bool {
	q, ok := values[key]
	return !ok || q.IsZero()
}

func probeRules(out *collector, livenessPath, readinessPath string, c *corev1.Container) {
	if livenessPath != "" {
		p := c.LivenessProbe
		if p == nil || p.HTTPGet == nil {
			// H-1: no liveness probe, or one that is not an HTTP GET.
			out.add(severityWarning, fmt.Sprintf("containers[%s].livenessProbe", c.Name),
				"Persona specifies livenessPath but container has no HTTP liveness probe",
				fmt.Sprintf("Add a liveness probe at %s", livenessPath))
		} else if p.HTTPGet.Path != livenessPath {
			// H-2: an HTTP liveness probe on another path (exact string comparison).
			out.add(severityInfo, fmt.Sprintf("containers[%s].livenessProbe.httpGet.path", c.Name),
				fmt.Sprintf("Liveness path (%s) differs from persona (%s)", p.HTTPGet.Path, livenessPath),
				fmt.Sprintf("Consider aligning to persona path: %s", livenessPath))
		}
	}
	if readinessPath != "" && c.ReadinessProbe == nil {
		// H-3: no readiness probe at all (any probe type passes; the path is not compared).
		out.add(severityWarning, fmt.Sprintf("containers[%s].readinessProbe", c.Name),
			"Persona specifies readinessPath but container has no readiness probe",
			fmt.Sprintf("Add a readiness probe at %s", readinessPath))
	}
}

// errorCount is the number of error issues (validation.passed is errorCount == 0).
func errorCount(issues []ValidationIssue) int {
	n := 0
	for _, i := range issues {
		if i.Severity == severityError {
			n++
		}
	}
	return n
}
