package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/mosb-dev/mosb/api/convert"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/registry/bounds"
)

type controllerOptions struct {
	kubeconfig         string
	namespace          string
	builderImage       string
	buildTimeout       time.Duration
	registryTimeout    time.Duration
	registryBounds     bounds.Bounds
	hostNetwork        bool
	buildSA            string
	metricsAddr        string
	probeAddr          string
	leaderElect        bool
	leaderElectionNS   string
	maxRetries         int
	succeededHistory   int
	failedHistory      int
	imagePullGrace     time.Duration
	qps                float32
	burst              int
	workers            int
	pinImages          bool
	pruneImages        bool
	rebuildOnAnyChange bool
	runMounts          pipeline.RunMountNames
	webhookPort        int
	webhookService     string
	webhookURL         string
	webhookValidity    time.Duration
	webhookCAValidity  time.Duration
	allowEmulation     bool
	buildRequests      string
	buildLimits        string
	nodeStore          string
	nodeStoreBudget    string
}

func newControllerCommand() *cobra.Command {
	o := controllerOptions{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Watch MachineOSConfigs and keep their images built",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runController(cmd, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG, then ~/.kube/config)")
	fl.StringVar(&o.namespace, "namespace", "openshift-machine-config-operator", "the build namespace: secrets, machine-config-osimageurl, build pods")
	fl.StringVar(&o.builderImage, "builder-image", "", "the mosb image build pods run (default: in a pod with POD_NAME and POD_NAMESPACE set, the image of its container \"controller\")")
	fl.DurationVar(&o.buildTimeout, "build-timeout", time.Hour, "the longest a build pod may run (activeDeadlineSeconds)")
	fl.DurationVar(&o.registryTimeout, "registry-timeout", pipeline.DefaultRegistryTimeout, "the longest one of the controller's own registry operations (checking an image, pushing an index) may take, retries included")
	addRegistryBoundFlags(fl, &o.registryBounds, "for the controller's own registry calls and its build pods' pulls and pushes")
	fl.StringVar(&o.buildSA, "build-service-account", "", "the ServiceAccount build pods run as (no token mounted; empty: the namespace's default). On OpenShift, the one allowed to use the mosb-build SCC: the Job controller, not mosb, creates the pods")
	fl.BoolVar(&o.hostNetwork, "host-network", false, "run build pods on the node's network (single-node dev clusters without a pod network)")
	fl.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "where /metrics is served; 0 disables it")
	fl.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "where /healthz and /readyz are served; 0 disables them")
	fl.BoolVar(&o.leaderElect, "leader-elect", false, "take a Lease before acting, so only one replica builds")
	fl.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "the Lease's namespace (default: --namespace)")
	fl.IntVar(&o.maxRetries, "max-retries", 3, "how many times a build that failed transiently (pod deleted or evicted, registry unreachable) is tried again")
	fl.IntVar(&o.succeededHistory, "succeeded-history", 3, "how many succeeded MachineOSBuilds to keep per MachineOSConfig (besides the current one)")
	fl.IntVar(&o.failedHistory, "failed-history", 3, "how many failed or interrupted MachineOSBuilds to keep per MachineOSConfig")
	fl.Float32Var(&o.qps, "kube-api-qps", 50, "requests per second to the API server (client-go's default of 5 makes every status write wait)")
	fl.IntVar(&o.burst, "kube-api-burst", 100, "burst of requests to the API server")
	fl.IntVar(&o.workers, "workers", 4, "MachineOSConfigs reconciled at once")
	fl.IntVar(&o.webhookPort, "webhook-port", 9443, "where the CRDs' conversion webhook (v1 <-> v1alpha1) is served over TLS; 0: not served (v1 requests then fail)")
	fl.StringVar(&o.webhookService, "webhook-service", "mosb-webhook", "the Service in --namespace that sends the API server's conversion requests to --webhook-port (its port 443)")
	fl.StringVar(&o.webhookURL, "webhook-url", "", "https://host:port"+pipeline.ConversionPath+": the API server reaches the webhook here instead of through --webhook-service (a controller outside the cluster)")
	fl.DurationVar(&o.webhookValidity, "webhook-cert-validity", 30*24*time.Hour, "how long a serving certificate of the conversion webhook lasts; renewed at two thirds")
	fl.DurationVar(&o.webhookCAValidity, "webhook-ca-validity", 365*24*time.Hour, "how long the conversion webhook's CA lasts; the next one is trusted from half its life and signs from two thirds")
	defaults := pipeline.DefaultRunMountNames()
	fl.StringVar(&o.runMounts.EntitlementSecret, "entitlement-secret", defaults.EntitlementSecret, "a Secret of the build namespace whose files every RUN step sees at "+pipeline.EntitlementTarget+" (RHEL entitlements), never in a layer; empty: none")
	fl.StringVar(&o.runMounts.YumReposConfigMap, "yum-repos-configmap", defaults.YumReposConfigMap, "a ConfigMap of the build namespace whose files every RUN step sees at "+pipeline.YumReposTarget+", never in a layer; empty: none")
	fl.StringVar(&o.runMounts.RPMGPGConfigMap, "rpm-gpg-configmap", defaults.RPMGPGConfigMap, "a ConfigMap of the build namespace whose files every RUN step sees at "+pipeline.RPMGPGTarget+", never in a layer; empty: none")
	fl.BoolVar(&o.rebuildOnAnyChange, "rebuild-on-any-machineconfig-change", false, "build a new image for every new rendered MachineConfig of a pool (image-mode clusters, where nothing writes files on the node); by default only a change of osImageURL, kernelType, extensions or kernelArguments builds one, as the Machine Config Operator does (annotation mosb.dev/rebuild-on-any-machineconfig-change overrides it per MachineOSConfig)")
	fl.BoolVar(&o.pruneImages, "prune-images", true, "delete from the registry the images of MachineOSBuilds that go (history limits, MachineOSConfig deleted) with the push credentials, unless a MachineOSConfig, another MachineOSBuild, a PinnedImageSet or a node (machineconfiguration.openshift.io/currentImage, desiredImage) still refers to them")
	fl.BoolVar(&o.pinImages, "pin-images", false, "after each successful build, pin the new image and its base in the PinnedImageSet mosb-<pool>, referenced from the pool (the annotation mosb.dev/pin-images: \"true\"/\"false\" on a MachineOSConfig opts in or out)")
	fl.BoolVar(&o.allowEmulation, "allow-emulation", false, "when no schedulable node has a build's architecture, run its build pod on a node labelled emulation.mosb.dev/<arch>=true (one that runs that architecture under qemu binfmt); without it such a pod waits for a node")
	fl.StringVar(&o.buildRequests, "build-requests", pipeline.DefaultBuildRequests, "build pods' resource requests, cpu=…,memory=…,ephemeral-storage=… (the annotation "+pipeline.AnnotationBuildRequests+" on a MachineOSConfig overrides them key by key); without ephemeral-storage here or in --build-limits it is sized from the base image")
	fl.StringVar(&o.nodeStore, "node-store", "/var/lib/mosb/store", "the directory on each node where build pods keep the base images they share (an overlay image store; a base already there is neither pulled nor extracted again); empty: none, every build pulls its base")
	fl.StringVar(&o.nodeStoreBudget, "node-store-budget", "40Gi", "how much the node store may hold before the images used least recently are evicted (a quantity; 0: no limit)")
	fl.StringVar(&o.buildLimits, "build-limits", pipeline.DefaultBuildLimits, "build pods' resource limits, same syntax (annotation "+pipeline.AnnotationBuildLimits+"); empty: none")
	fl.DurationVar(&o.imagePullGrace, "builder-image-pull-grace", 5*time.Minute, "how long a build pod may fail to pull the builder image before the build fails with BuilderImageUnavailable")
	return cmd
}

func runController(cmd *cobra.Command, o controllerOptions) error {
	// Refused at start-up, before anything else: every build would get them.
	if o.maxRetries < 0 || o.succeededHistory < 0 || o.failedHistory < 0 || o.workers < 1 {
		return invalid(pipeline.ReasonInvalidFlag, "--max-retries, --succeeded-history and --failed-history must not be negative, --workers at least 1")
	}
	if err := checkRegistryBounds(o.registryBounds); err != nil {
		return err
	}
	if o.registryTimeout <= 0 {
		return invalid(pipeline.ReasonInvalidFlag, "--registry-timeout %s: want a positive duration, such as 30s", o.registryTimeout)
	}
	if o.webhookPort != 0 {
		if _, _, err := webhookEndpoint(o); err != nil {
			return err
		}
	}
	nodeStore, err := parseNodeStore(o.nodeStore, o.nodeStoreBudget)
	if err != nil {
		return err
	}
	resources, err := pipeline.ParseBuildResources(o.buildRequests, o.buildLimits)
	if err != nil {
		return invalid(pipeline.ReasonInvalidBuildResources, "%v", err)
	}
	ownPod, err := builderImageSource(o.builderImage, os.Getenv)
	if err != nil {
		return err
	}
	ctrl.SetLogger(klog.NewKlogr())
	loading := clientcmd.NewDefaultClientConfigLoadingRules()
	loading.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading the cluster configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = o.qps, o.burst
	scheme, err := newScheme()
	if err != nil {
		return err
	}
	leaderNS := o.leaderElectionNS
	if leaderNS == "" {
		leaderNS = o.namespace
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	certs, webhookServer, err := conversionWebhook(ctx, cfg, scheme, o)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		WebhookServer:           webhookServer,
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "mosb-controller",
		LeaderElectionNamespace: leaderNS,
		// Leaving running builds to the next leader is the point: nothing to release on exit.
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// Secrets, Jobs and pods only of the build namespace: mosb reads no others.
			&corev1.Secret{}:    {Namespaces: map[string]cache.Config{o.namespace: {}}},
			&batchv1.Job{}:      {Namespaces: map[string]cache.Config{o.namespace: {}}},
			&corev1.Pod{}:       {Namespaces: map[string]cache.Config{o.namespace: {}}},
			&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{o.namespace: {}, pipeline.TrustedCANamespace: {}}},
		}},
	})
	if err != nil {
		return err
	}
	metrics, err := pipeline.NewMetrics(ctrlmetrics.Registry, mgr.GetClient())
	if err != nil {
		return err
	}
	if certs != nil {
		mgr.GetWebhookServer().Register(pipeline.ConversionPath, convert.Handler())
		if err := mgr.Add(certs); err != nil {
			return err
		}
	}
	log := ctrl.Log.WithName("setup")
	builderImage := o.builderImage
	if builderImage != "" {
		log.Info("builder image", "image", builderImage, "from", "--builder-image")
	} else {
		// The manager's API reader goes straight to the API server: the cache is not started.
		pod, err := readOwnPod(ctx, mgr.GetAPIReader(), ownPod, ownPodBackoff)
		if err != nil {
			return err
		}
		image, container, err := builderImageFromPod(pod)
		if err != nil {
			return fmt.Errorf("%w; set --builder-image", err)
		}
		builderImage = image
		log.Info("builder image", "image", builderImage, "from", "the controller's own pod", "pod", ownPod.String(), "container", container)
	}
	r := &pipeline.BuildReconciler{
		Client:                          mgr.GetClient(),
		APIReader:                       mgr.GetAPIReader(),
		Metrics:                         metrics,
		MaxRetries:                      o.maxRetries,
		SucceededHistory:                o.succeededHistory,
		PruneImages:                     o.pruneImages,
		RebuildOnAnyMachineConfigChange: o.rebuildOnAnyChange,
		RunMountNames:                   o.runMounts,
		FailedHistory:                   o.failedHistory,
		ImagePullGrace:                  o.imagePullGrace,
		Workers:                         o.workers,
		Namespace:                       o.namespace,
		BuilderImage:                    builderImage,
		BuildTimeout:                    o.buildTimeout,
		RegistryTimeout:                 o.registryTimeout,
		RegistryBounds:                  o.registryBounds,
		DefaultArch:                     runtime.GOARCH,
		BuilderVersion:                  builderVersion(),
		HostNetwork:                     o.hostNetwork,
		BuildServiceAccount:             o.buildSA,
		AllowEmulation:                  o.allowEmulation,
		BuildResources:                  resources,
		NodeStore:                       nodeStore,
	}
	log.Info("build pod resources", "requests", o.buildRequests, "limits", o.buildLimits, "annotations", pipeline.AnnotationBuildRequests+", "+pipeline.AnnotationBuildLimits)
	if o.allowEmulation {
		log.Info("emulation allowed: a build with no schedulable node of its architecture runs on a node labelled " + pipeline.EmulationLabelPrefix + "<arch>=true")
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	if err := (&pipeline.PoolStatusReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&pipeline.PinnedImagesReconciler{Client: mgr.GetClient(), PinAll: o.pinImages}).SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("caches", pipeline.CachesSynced(mgr.GetCache())); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// conversionWebhook provisions the conversion webhook's certificates (before the manager starts:
// its TLS server needs one) and returns their keeper and the webhook server; nil, nil when
// --webhook-port is 0.
func conversionWebhook(ctx context.Context, cfg *rest.Config, scheme *k8sruntime.Scheme, o controllerOptions) (*pipeline.WebhookCertKeeper, webhook.Server, error) {
	if o.webhookPort == 0 {
		return nil, nil, nil
	}
	service, hosts, err := webhookEndpoint(o)
	if err != nil {
		return nil, nil, err
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, err
	}
	keeper := &pipeline.WebhookCertKeeper{
		Client: direct, Namespace: o.namespace, Service: service, URL: o.webhookURL, Clock: clock.RealClock{},
		Policy: pipeline.WebhookCertPolicy{CAValidity: o.webhookCAValidity, ServingValidity: o.webhookValidity, Hosts: hosts},
		Log:    ctrl.Log.WithName("webhook-certs"),
	}
	// The first certificate, before anything serves: retried while the API server is out of reach.
	if err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := keeper.Sync(ctx); err != nil {
			keeper.Log.Error(err, "provisioning the conversion webhook's certificate")
			return false, nil
		}
		return true, nil
	}); err != nil {
		return nil, nil, fmt.Errorf("no certificate for the conversion webhook within a minute: %w", err)
	}
	server := webhook.NewServer(webhook.Options{Port: o.webhookPort, TLSOpts: []func(*tls.Config){
		func(c *tls.Config) { c.GetCertificate = keeper.GetCertificate },
	}})
	return keeper, server, nil
}

// webhookEndpoint checks the webhook flags and returns where the API server reaches the webhook
// (the Service, unless --webhook-url) and the names its certificate must carry.
func webhookEndpoint(o controllerOptions) (*apiextensionsv1.ServiceReference, []string, error) {
	if o.webhookPort < 0 || o.webhookPort > 65535 || o.webhookValidity <= 0 || o.webhookCAValidity < o.webhookValidity {
		return nil, nil, invalid(pipeline.ReasonInvalidFlag, "--webhook-port %d, --webhook-cert-validity %s, --webhook-ca-validity %s: want a port (0: none) and 0 < cert validity <= CA validity",
			o.webhookPort, o.webhookValidity, o.webhookCAValidity)
	}
	path, port := pipeline.ConversionPath, int32(443)
	service := &apiextensionsv1.ServiceReference{Namespace: o.namespace, Name: o.webhookService, Path: &path, Port: &port}
	hosts, err := pipeline.WebhookHosts(service, o.webhookURL)
	if err != nil {
		return nil, nil, invalid(pipeline.ReasonInvalidFlag, "%v", err)
	}
	return service, hosts, nil
}

// parseNodeStore reads --node-store and --node-store-budget; nil: no node store.
func parseNodeStore(dir, budget string) (*buildpod.NodeStore, error) {
	if dir == "" {
		return nil, nil
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
		return nil, invalid(pipeline.ReasonInvalidFlag, "--node-store %q: an absolute, clean directory on the nodes other than /, or empty for none", dir)
	}
	q, err := resource.ParseQuantity(budget)
	if err != nil || q.Sign() < 0 {
		return nil, invalid(pipeline.ReasonInvalidFlag, "--node-store-budget %q: a size such as 40Gi (0: no limit)", budget)
	}
	return &buildpod.NodeStore{HostPath: dir, Budget: q.Value()}, nil
}
