package main

// Health, phase, conditions and the whole desired status: a port of dorgu/domain/health.py (assess) and of
// the controller's desired_status and _unchanged (controllers/applicationpersona.py).

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	healthHealthy   = "Healthy"
	healthDegraded  = "Degraded"
	healthUnhealthy = "Unhealthy"
	healthUnknown   = "Unknown"

	phasePending  = "Pending"
	phaseActive   = "Active"
	phaseDegraded = "Degraded"
	phaseFailed   = "Failed"

	conditionReady     = "Ready"
	conditionValidated = "Validated"

	noDeploymentHealth = "No matching Deployment found"
)

// managedConditions are the condition types this field manager owns (BaselineLearned is dorgu's, written
// only with Prometheus; it is carried over unchanged). Others are left out of the apply, as dorgu does.
var managedConditions = map[string]bool{conditionReady: true, conditionValidated: true, "BaselineLearned": true}

// healthRank orders health from best to worst for several Deployments.
var healthRank = map[string]int{healthHealthy: 0, healthDegraded: 1, healthUnknown: 2, healthUnhealthy: 3}

// statusTime is now as metav1.Time stores it: UTC, whole seconds.
func statusTime(now time.Time) metav1.Time {
	return metav1.NewTime(time.Unix(now.Unix(), 0).UTC())
}

// deploymentHealth is (status, message) of one Deployment, first match wins.
func deploymentHealth(d *appsv1.Deployment) (string, string) {
	available, progressing := false, false
	for _, c := range d.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case appsv1.DeploymentAvailable:
			available = true
		case appsv1.DeploymentProgressing:
			progressing = true
		}
	}
	ready, total := d.Status.ReadyReplicas, d.Status.Replicas
	counts := fmt.Sprintf("%d/%d replicas ready", ready, total)
	switch {
	case available && ready == total:
		return healthHealthy, counts
	case available && ready > 0:
		return healthDegraded, counts
	case progressing:
		return healthUnknown, "Deployment is progressing"
	}
	return healthUnhealthy, counts
}

// aggregateHealth is the worst status over the Deployments (sorted by name); with several, the message
// lists each as "<name>: <message>" joined with "; ".
func aggregateHealth(ds []*appsv1.Deployment) (string, string) {
	if len(ds) == 1 {
		return deploymentHealth(ds[0])
	}
	worst := healthHealthy
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		s, m := deploymentHealth(d)
		if healthRank[s] > healthRank[worst] {
			worst = s
		}
		parts = append(parts, d.Name+": "+m)
	}
	return worst, strings.Join(parts, "; ")
}

func derivePhase(health string, hasErrors bool) string {
	switch {
	case health == healthHealthy && !hasErrors:
		return phaseActive
	case hasErrors:
		return phaseDegraded
	case health == healthUnhealthy:
		return phaseFailed
	}
	return phaseDegraded
}

func condition(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message}
}

// desiredStatus is everything this manager owns, complete (a field left out of an apply would be deleted).
func desiredStatus(spec *PersonaSpec, generation int64, ds []*appsv1.Deployment, old *PersonaStatus, now metav1.Time) *PersonaStatus {
	gen := generation
	st := &PersonaStatus{ObservedGeneration: &gen, LastUpdated: &now}
	var want [2]metav1.Condition
	if len(ds) == 0 {
		// Pending path: no Deployment matches; status.deployments stays as it was (so it is re-sent).
		st.Phase = phasePending
		st.Health = &HealthStatus{Status: healthUnknown, LastCheck: &now, Message: noDeploymentHealth}
		passed := true
		st.Validation = &ValidationStatus{Passed: &passed, LastChecked: &now}
		if old.Deployments != nil && old.Deployments.Current != nil {
			st.Deployments = &DeploymentTracking{Current: old.Deployments.Current}
		}
		want[0] = condition(conditionReady, metav1.ConditionFalse, "NoDeployment",
			fmt.Sprintf("No Deployment with label %s=%s", nameLabel, spec.Name))
		want[1] = condition(conditionValidated, metav1.ConditionTrue, "Skipped", "No Deployment to validate")
	} else {
		issues := validate(spec, ds)
		errors := errorCount(issues)
		health, message := aggregateHealth(ds)
		st.Phase = derivePhase(health, errors > 0)
		st.Health = &HealthStatus{Status: health, LastCheck: &now, Message: message}
		passed := errors == 0
		st.Validation = &ValidationStatus{Passed: &passed, LastChecked: &now, Issues: issues}
		st.Deployments = &DeploymentTracking{}
		if cs := ds[0].Spec.Template.Spec.Containers; len(cs) > 0 && cs[0].Image != "" {
			image := cs[0].Image
			st.Deployments.Current = &image
		}
		if st.Phase == phaseActive {
			want[0] = condition(conditionReady, metav1.ConditionTrue, "Active", "Deployment is healthy and passes all validations")
		} else {
			want[0] = condition(conditionReady, metav1.ConditionFalse, "Issues", "Phase: "+st.Phase)
		}
		if errors > 0 {
			want[1] = condition(conditionValidated, metav1.ConditionFalse, "ValidationFailed",
				fmt.Sprintf("%d validation error(s) found", errors))
		} else {
			want[1] = condition(conditionValidated, metav1.ConditionTrue, "Passed", "All validations passed")
		}
	}
	// meta.SetStatusCondition: a new type is appended; an existing one is refreshed and its
	// lastTransitionTime moves only when its status changes. The old list is copied, never modified.
	conds := make([]metav1.Condition, 0, len(old.Conditions)+2)
	for _, c := range old.Conditions {
		if managedConditions[c.Type] {
			conds = append(conds, c)
		}
	}
	for _, c := range want {
		c.ObservedGeneration = gen
		c.LastTransitionTime = now
		apimeta.SetStatusCondition(&conds, c)
	}
	st.Conditions = conds
	return st
}

// conditionKey is a condition without its time.
type conditionKey struct {
	typ, status, reason, message string
	generation                   int64
}

// substance is a status without timestamps: two statuses of equal substance differ only in time.
type substance struct {
	observedGeneration *int64
	phase              string
	deployments        *DeploymentTracking
	health             *HealthStatus
	validation         *ValidationStatus
	conditions         []conditionKey
}

func substanceOf(s *PersonaStatus) substance {
	out := substance{observedGeneration: s.ObservedGeneration, phase: s.Phase, deployments: s.Deployments}
	if s.Health != nil {
		h := *s.Health
		h.LastCheck = nil
		out.health = &h
	}
	if s.Validation != nil {
		v := *s.Validation
		v.LastChecked = nil
		if len(v.Issues) == 0 {
			v.Issues = nil
		}
		out.validation = &v
	}
	for _, c := range s.Conditions {
		if managedConditions[c.Type] {
			out.conditions = append(out.conditions, conditionKey{c.Type, string(c.Status), c.Reason, c.Message, c.ObservedGeneration})
		}
	}
	sort.Slice(out.conditions, func(i, j int) bool {
		a, b := out.conditions[i], out.conditions[j]
		if a.typ != b.typ {
			return a.typ < b.typ
		}
		if a.status != b.status {
			return a.status < b.status
		}
		if a.reason != b.reason {
			return a.reason < b.reason
		}
		return a.message < b.message
	})
	return out
}

// unchanged: writing next would change nothing but timestamps, and no heartbeat is due (the last
// validation.lastChecked is younger than the heartbeat interval).
func unchanged(old, next *PersonaStatus, now metav1.Time, heartbeat time.Duration) bool {
	if old.Validation == nil || old.Validation.LastChecked == nil {
		return false
	}
	if now.Time.Sub(old.Validation.LastChecked.Time) >= heartbeat {
		return false
	}
	return reflect.DeepEqual(substanceOf(old), substanceOf(next))
}
