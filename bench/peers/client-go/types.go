package main

// The parts of dorgu.io/v1 ApplicationPersona this operator reads (spec) and owns (status), as Go structs for
// the unstructured objects of the dynamic informer (runtime.DefaultUnstructuredConverter) and for the
// server-side apply body (encoding/json). Field names and omission rules are those of deploy/crds and of
// dorgu/domain/types.py: an absent value stays absent, a present false (validation.passed) is written.

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const (
	group      = "dorgu.io"
	version    = "v1"
	apiVersion = group + "/" + version
	kind       = "ApplicationPersona"
	plural     = "applicationpersonas"

	// nameLabel names the application a workload belongs to; appLabel is the older fallback.
	nameLabel = "app.kubernetes.io/name"
	appLabel  = "app"
)

// PersonaSpec is the part of spec the rules read.
type PersonaSpec struct {
	Name      string           `json:"name"`
	Type      string           `json:"type"`
	Resources *ResourceSpec    `json:"resources,omitempty"`
	Scaling   *ScalingSpec     `json:"scaling,omitempty"`
	Health    *HealthSpec      `json:"health,omitempty"`
	Policies  *PersonaPolicies `json:"policies,omitempty"`
}

// ResourceSpec is spec.resources (only the limits are compared; its presence enables R-3).
type ResourceSpec struct {
	Limits *ResourceQuantities `json:"limits,omitempty"`
}

// ResourceQuantities holds int-or-string quantities; the CRD does not validate them.
type ResourceQuantities struct {
	CPU    *intstr.IntOrString `json:"cpu,omitempty"`
	Memory *intstr.IntOrString `json:"memory,omitempty"`
}

// ScalingSpec is spec.scaling.
type ScalingSpec struct {
	MinReplicas *int64 `json:"minReplicas,omitempty"`
	MaxReplicas *int64 `json:"maxReplicas,omitempty"`
}

// HealthSpec is spec.health.
type HealthSpec struct {
	LivenessPath  string `json:"livenessPath,omitempty"`
	ReadinessPath string `json:"readinessPath,omitempty"`
}

// PersonaPolicies is spec.policies.
type PersonaPolicies struct {
	Security *SecurityPolicy `json:"security,omitempty"`
}

// SecurityPolicy is spec.policies.security; unset fields read as the CRD's defaults.
type SecurityPolicy struct {
	RunAsNonRoot             *bool `json:"runAsNonRoot,omitempty"`
	ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem,omitempty"`
	AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation,omitempty"`
}

// PersonaStatus is what this operator owns of status (field manager dorgu-applicationpersona). Every apply
// carries all of it: under server-side apply a field the manager owned and leaves out is deleted.
type PersonaStatus struct {
	ObservedGeneration *int64              `json:"observedGeneration,omitempty"`
	Phase              string              `json:"phase,omitempty"`
	LastUpdated        *metav1.Time        `json:"lastUpdated,omitempty"`
	Deployments        *DeploymentTracking `json:"deployments,omitempty"`
	Health             *HealthStatus       `json:"health,omitempty"`
	Validation         *ValidationStatus   `json:"validation,omitempty"`
	Conditions         []metav1.Condition  `json:"conditions,omitempty"`
}

// DeploymentTracking is status.deployments (this operator writes current only).
type DeploymentTracking struct {
	Current *string `json:"current,omitempty"`
}

// HealthStatus is status.health.
type HealthStatus struct {
	Status    string       `json:"status,omitempty"`
	LastCheck *metav1.Time `json:"lastCheck,omitempty"`
	Message   string       `json:"message,omitempty"`
}

// ValidationStatus is status.validation; passed is a pointer so that false is written.
type ValidationStatus struct {
	Passed      *bool             `json:"passed,omitempty"`
	LastChecked *metav1.Time      `json:"lastChecked,omitempty"`
	Issues      []ValidationIssue `json:"issues,omitempty"`
}

// ValidationIssue is one entry of status.validation.issues.
type ValidationIssue struct {
	Severity   string `json:"severity"`
	Message    string `json:"message"`
	Deployment string `json:"deployment,omitempty"`
	Field      string `json:"field,omitempty"`
	Suggestion string `json:"suggestion,omitempty"`
}

// applyBody is the server-side apply request body for the status subresource.
type applyBody struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Metadata   applyMeta     `json:"metadata"`
	Status     PersonaStatus `json:"status"`
}

type applyMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}
