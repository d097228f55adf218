package main

// The controller: informers, indexes, the workqueue and its workers, one reconcile per persona key. The same
// observable work as dorgu's ApplicationPersona controller (controllers/applicationpersona.py):
//
//   - Triggers: persona adds and deletes, persona updates whose generation changed (so the status writes of
//     this operator do not wake it), every Deployment event mapped to personas through the indexes (old and
//     new labels on an update), and a re-validation after revalidateInterval ±10 % once a reconcile succeeds.
//   - Status: one server-side apply of the /status subresource per change, field manager
//     dorgu-applicationpersona, force; skipped when nothing but timestamps would change and no heartbeat is
//     due.
//   - No write from a stale cache: until the persona cache shows the resourceVersion the last status write
//     returned, that write (not the cached status) is the persona's current status for this controller.
//   - Events: ValidationFailed when validation starts failing, ValidationPassed when it recovers,
//     PhaseChanged when the phase changes (not for a persona's first status: no change from nothing).

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

const (
	fieldManager = "dorgu-applicationpersona"
	// bySpecName indexes personas by "<namespace>/<spec.name>"; byAppLabel indexes Deployments by
	// "<namespace>/<label value>" for both app-name labels (dorgu's _persona_index and _deployment_index).
	bySpecName = "spec-name"
	byAppLabel = "app-label"
	// writtenMemory is how long a status write is remembered while the cache has not shown it.
	writtenMemory = 120 * time.Second
)

var personasGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: plural}

// Settings are the controller's knobs (the command-line flags).
type Settings struct {
	Workers            int
	HeartbeatInterval  time.Duration
	RevalidateInterval time.Duration
}

// written is a status this controller wrote that the persona cache may not show yet.
type written struct {
	resourceVersion string
	status          *PersonaStatus
	at              time.Time
}

// Controller reconciles ApplicationPersonas of one namespace.
type Controller struct {
	s           Settings
	dynamic     dynamic.Interface
	personas    cache.SharedIndexInformer
	deployments cache.SharedIndexInformer
	queue       workqueue.RateLimitingInterface
	recorder    record.EventRecorder

	mu      sync.Mutex
	written map[string]written
}

func personaIndex(obj interface{}) ([]string, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, nil
	}
	name, _, _ := unstructured.NestedString(u.Object, "spec", "name")
	return []string{u.GetNamespace() + "/" + name}, nil
}

func deploymentIndex(obj interface{}) ([]string, error) {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return nil, nil
	}
	var out []string
	a, b := d.Labels[nameLabel], d.Labels[appLabel]
	if a != "" {
		out = append(out, d.Namespace+"/"+a)
	}
	if b != "" && b != a {
		out = append(out, d.Namespace+"/"+b)
	}
	return out, nil
}

// NewController wires the handlers and indexes onto the two informers (before they are started).
func NewController(s Settings, dyn dynamic.Interface, personas, deployments cache.SharedIndexInformer, recorder record.EventRecorder) (*Controller, error) {
	c := &Controller{
		s:           s,
		dynamic:     dyn,
		personas:    personas,
		deployments: deployments,
		queue:       workqueue.NewNamedRateLimitingQueue(workqueue.DefaultControllerRateLimiter(), "applicationpersona"),
		recorder:    recorder,
		written:     map[string]written{},
	}
	if err := personas.AddIndexers(cache.Indexers{bySpecName: personaIndex}); err != nil {
		return nil, err
	}
	if err := deployments.AddIndexers(cache.Indexers{byAppLabel: deploymentIndex}); err != nil {
		return nil, err
	}
	personas.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(oldObj, newObj interface{}) {
			o, n := oldObj.(*unstructured.Unstructured), newObj.(*unstructured.Unstructured)
			c.sawUpdate(n)
			if o.GetGeneration() != n.GetGeneration() {
				c.enqueue(n)
			}
		},
		DeleteFunc: func(obj interface{}) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.mu.Lock()
				delete(c.written, key)
				c.mu.Unlock()
				c.queue.Add(key)
			}
		},
	})
	deployments.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueOwners,
		UpdateFunc: func(oldObj, newObj interface{}) {
			c.enqueueOwners(oldObj)
			c.enqueueOwners(newObj)
		},
		DeleteFunc: c.enqueueOwners,
	})
	return c, nil
}

func (c *Controller) enqueue(obj interface{}) {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key)
}

// enqueueOwners enqueues the personas a Deployment belongs to, by its app-name labels.
func (c *Controller) enqueueOwners(obj interface{}) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	values, _ := deploymentIndex(obj)
	for _, v := range values {
		ps, err := c.personas.GetIndexer().ByIndex(bySpecName, v)
		if err != nil {
			utilruntime.HandleError(err)
			continue
		}
		for _, p := range ps {
			c.enqueue(p)
		}
	}
}

// sawUpdate: the cache now shows our write (events arrive in order, so anything later also carries it).
func (c *Controller) sawUpdate(n *unstructured.Unstructured) {
	key := n.GetNamespace() + "/" + n.GetName()
	c.mu.Lock()
	if w, ok := c.written[key]; ok && w.resourceVersion == n.GetResourceVersion() {
		delete(c.written, key)
	}
	c.mu.Unlock()
}

// currentStatus is the persona's status as this controller last knew it: its own unseen write, else the
// cache's.
func (c *Controller) currentStatus(key string, u *unstructured.Unstructured) *PersonaStatus {
	c.mu.Lock()
	w, ok := c.written[key]
	if ok {
		if w.resourceVersion != u.GetResourceVersion() && time.Since(w.at) < writtenMemory {
			c.mu.Unlock()
			return w.status
		}
		delete(c.written, key)
	}
	c.mu.Unlock()
	st := &PersonaStatus{}
	if raw, found := u.Object["status"].(map[string]interface{}); found {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, st); err != nil {
			utilruntime.HandleError(fmt.Errorf("%s: cannot read status: %w", key, err))
			return &PersonaStatus{}
		}
	}
	return st
}

// Run starts the workers and blocks until ctx is done; the informers must have synced.
func (c *Controller) Run(ctx context.Context) {
	defer utilruntime.HandleCrash()
	var wg sync.WaitGroup
	for i := 0; i < c.s.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait.UntilWithContext(ctx, c.runWorker, time.Second)
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

func (c *Controller) runWorker(ctx context.Context) {
	for c.processNextWorkItem(ctx) {
	}
}

func (c *Controller) processNextWorkItem(ctx context.Context) bool {
	item, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(item)
	key := item.(string)
	requeueAfter, err := c.reconcile(ctx, key)
	if err != nil {
		if ctx.Err() == nil {
			utilruntime.HandleError(fmt.Errorf("reconciling %s: %w", key, err))
			c.queue.AddRateLimited(key)
		}
		return true
	}
	c.queue.Forget(key)
	if requeueAfter > 0 {
		c.queue.AddAfter(key, requeueAfter)
	}
	return true
}

// requeue is the re-validation delay, jittered ±10 %.
func (c *Controller) requeue() time.Duration {
	jitter := 1 + (rand.Float64()-0.5)*0.2
	return time.Duration(float64(c.s.RevalidateInterval) * jitter)
}

func (c *Controller) reconcile(ctx context.Context, key string) (time.Duration, error) {
	obj, exists, err := c.personas.GetIndexer().GetByKey(key)
	if err != nil {
		return 0, err
	}
	if !exists {
		return 0, nil // deleted: nothing to clean up (no finalizers)
	}
	u := obj.(*unstructured.Unstructured)
	spec := &PersonaSpec{}
	if raw, ok := u.Object["spec"].(map[string]interface{}); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, spec); err != nil {
			klog.Errorf("%s: cannot read spec: %v", key, err)
			return 0, nil // a persona that cannot be decoded is left alone until it changes
		}
	}
	candidates, err := c.deployments.GetIndexer().ByIndex(byAppLabel, u.GetNamespace()+"/"+spec.Name)
	if err != nil {
		return 0, err
	}
	ds := matchingDeployments(spec.Name, candidates)
	now := statusTime(time.Now())
	old := c.currentStatus(key, u)
	next := desiredStatus(spec, u.GetGeneration(), ds, old, now)
	if unchanged(old, next, now, c.s.HeartbeatInterval) {
		return c.requeue(), nil
	}
	body, err := json.Marshal(applyBody{
		APIVersion: apiVersion, Kind: kind,
		Metadata: applyMeta{Name: u.GetName(), Namespace: u.GetNamespace()},
		Status:   *next,
	})
	if err != nil {
		return 0, err
	}
	force := true
	answer, err := c.dynamic.Resource(personasGVR).Namespace(u.GetNamespace()).Patch(
		ctx, u.GetName(), types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: fieldManager, Force: &force}, "status")
	if err != nil {
		return 0, err
	}
	if rv := answer.GetResourceVersion(); rv != "" && rv != u.GetResourceVersion() {
		c.mu.Lock()
		c.written[key] = written{resourceVersion: rv, status: next, at: time.Now()}
		c.mu.Unlock()
	}
	c.emitEvents(u, old, next)
	return c.requeue(), nil
}

func (c *Controller) emitEvents(u *unstructured.Unstructured, old, next *PersonaStatus) {
	ref := &corev1.ObjectReference{
		APIVersion: apiVersion, Kind: kind, Namespace: u.GetNamespace(), Name: u.GetName(),
		UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
	}
	var was, now *bool
	if old.Validation != nil {
		was = old.Validation.Passed
	}
	if next.Validation != nil {
		now = next.Validation.Passed
	}
	if (was == nil || *was) && now != nil && !*now {
		c.recorder.Event(ref, corev1.EventTypeWarning, "ValidationFailed",
			fmt.Sprintf("%d validation error(s) found", errorCount(next.Validation.Issues)))
	} else if was != nil && !*was && now != nil && *now {
		c.recorder.Event(ref, corev1.EventTypeNormal, "ValidationPassed", "All validations passed")
	}
	if old.Phase != "" && old.Phase != next.Phase {
		typ := corev1.EventTypeWarning
		if next.Phase == phaseActive || next.Phase == phasePending {
			typ = corev1.EventTypeNormal
		}
		c.recorder.Event(ref, typ, "PhaseChanged", fmt.Sprintf("Phase changed from %s to %s", old.Phase, next.Phase))
	}
}
