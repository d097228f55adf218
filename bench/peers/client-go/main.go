// Command client-go-peer is a benchmark peer of `dorgu operator --components applicationpersona`: the same
// observable work (the 11 persona rules, status with health, validation, conditions, Events) written the way
// an experienced client-go user writes an operator. `dorgu bench --peers client-go` runs it on the same
// control plane and workload as dorgu; bench/peers/README.md describes it.
//
// Settings that matter for a fair comparison:
//   - no client-side throttling: rest.Config QPS and Burst are 1e6 (client-go's defaults, 5 and 10, would
//     make the peer wait on its own token bucket; dorgu's client has none);
//   - shared informers limited to one namespace: a dynamic one for ApplicationPersonas, a typed one for
//     Deployments, with an index of the Deployments by app label and of the personas by spec.name;
//   - a rate-limited workqueue (workqueue.DefaultControllerRateLimiter) and --workers workers (16);
//   - the status written with a server-side apply of /status through the dynamic client, the closest
//     idiom to dorgu's request (same field manager, force);
//   - Events through record.NewBroadcaster and the Events sink (client-go's correlator, as dorgu's recorder).
//
// No leader election: the bench runs exactly one peer at a time, so a Lease would only add requests.
// The peer logs errors only and exits 0 on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// eventComponent is the Events' source component, as dorgu's controller reports it.
const eventComponent = "applicationpersona"

type options struct {
	kubeconfig         string
	context            string
	namespace          string
	workers            int
	heartbeatInterval  float64
	revalidateInterval float64
	metricsBindAddress string
	protobuf           bool
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("client-go-peer", flag.ContinueOnError)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config or in-cluster)")
	fs.StringVar(&o.context, "context", "", "kubeconfig context (default: the current one)")
	fs.StringVar(&o.namespace, "namespace", "", "the one namespace whose personas and Deployments are watched (required)")
	fs.IntVar(&o.workers, "workers", 16, "concurrent reconciles")
	fs.Float64Var(&o.heartbeatInterval, "heartbeat-interval", 15, "seconds: rewrite an unchanged status at most this often")
	fs.Float64Var(&o.revalidateInterval, "revalidate-interval", 7.5, "seconds: re-validate every persona this often, jittered ±10 %")
	fs.StringVar(&o.metricsBindAddress, "metrics-bind-address", "", "accepted for the bench's command line; ignored (no metrics are served)")
	fs.BoolVar(&o.protobuf, "protobuf", false, "talk protobuf to the API server for Deployments and Events (personas are JSON either way)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.namespace == "":
		return nil, errors.New("--namespace is required")
	case o.workers < 1:
		return nil, fmt.Errorf("--workers must be at least 1, not %d", o.workers)
	case !(o.heartbeatInterval > 0):
		return nil, fmt.Errorf("--heartbeat-interval must be a positive number of seconds, not %g", o.heartbeatInterval)
	case !(o.revalidateInterval > 0):
		return nil, fmt.Errorf("--revalidate-interval must be a positive number of seconds, not %g", o.revalidateInterval)
	}
	return o, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func restConfig(o *options) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		rules, &clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return nil, err
	}
	// No client-side throttling (client-go's default is QPS 5, Burst 10).
	cfg.QPS = 1e6
	cfg.Burst = 1e6
	cfg.UserAgent = "dorgu-bench-client-go-peer"
	return cfg, nil
}

func main() {
	code := run(os.Args[1:])
	klog.Flush()
	os.Exit(code)
}

func run(args []string) int {
	o, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "client-go-peer: %v\n", err)
		return 2
	}
	cfg, err := restConfig(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "client-go-peer: kubeconfig: %v\n", err)
		return 1
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "client-go-peer: %v\n", err)
		return 1
	}
	kubeCfg := rest.CopyConfig(cfg)
	if o.protobuf {
		kubeCfg.ContentType = "application/vnd.kubernetes.protobuf"
		kubeCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	}
	kube, err := kubernetes.NewForConfig(kubeCfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "client-go-peer: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	host, _ := os.Hostname()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: eventComponent, Host: host})

	dynFactory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, o.namespace, nil)
	personas := dynFactory.ForResource(personasGVR).Informer()
	kubeFactory := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(o.namespace))
	deployments := kubeFactory.Apps().V1().Deployments().Informer()

	ctrl, err := NewController(Settings{
		Workers:            o.workers,
		HeartbeatInterval:  seconds(o.heartbeatInterval),
		RevalidateInterval: seconds(o.revalidateInterval),
	}, dyn, personas, deployments, recorder)
	if err != nil {
		fmt.Fprintf(os.Stderr, "client-go-peer: %v\n", err)
		return 1
	}
	dynFactory.Start(ctx.Done())
	kubeFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), personas.HasSynced, deployments.HasSynced) {
		if ctx.Err() != nil {
			return 0 // stopped before the caches synced
		}
		fmt.Fprintln(os.Stderr, "client-go-peer: the caches did not sync")
		return 1
	}
	ctrl.Run(ctx)
	return 0
}
