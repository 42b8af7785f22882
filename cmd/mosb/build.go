package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/registry/bounds"
)

func newBuildCommand() *cobra.Command {
	f := &fileInputs{}
	var (
		arches    []string
		cacheRepo string
		output    string
		root      string
		driver    string
		limits    bounds.Bounds
		runMounts []string
	)
	cmd := &cobra.Command{
		Use:   "build -f machineosconfig.yaml",
		Short: "Build and push a MachineOSConfig's image without a cluster (for CI)",
		Long: `build validates and assembles exactly as the controller does, builds every architecture with
buildah (emulated under qemu where binfmt is registered), pushes with the push credentials only,
and prints the digested pullspec as its last line. With several architectures, the images are
pushed by digest and an OCI index is pushed to the tag. Exit code 2: invalid input; 1: the build
or the push failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tightenGC()
			if output != "" && output != "yaml" {
				return invalid(pipeline.ReasonInvalidFlag, "-o %q: the only output format is yaml", output)
			}
			f.arches = arches
			if err := checkRegistryBounds(limits); err != nil {
				return err
			}
			plan, err := prepare(f, true)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			progress := cmd.ErrOrStderr()
			mounts, err := parseRunMounts(runMounts)
			if err != nil {
				return err
			}
			res, err := runBuild(ctx, plan, buildSettings{root: root, driver: driver, cacheRepo: cacheRepo, progress: progress, bounds: limits, runMounts: mounts})
			if err != nil {
				return err
			}
			if output == "yaml" {
				return printMachineOSConfig(cmd.OutOrStdout(), f, res.Pullspec)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), res.Pullspec)
			return err
		},
	}
	addInputFlags(cmd, f)
	fl := cmd.Flags()
	fl.StringSliceVar(&arches, "arch", nil, "architectures to build, e.g. amd64,arm64 (default: those the containerFile entries name, else this machine's)")
	fl.StringVar(&cacheRepo, "cache-repo", "", "a repository for intermediate layers shared across builds (buildah --cache-to/--cache-from); the push credentials must reach it")
	fl.StringVarP(&output, "output", "o", "", "yaml: print the MachineOSConfig with status.currentImagePullspec instead of the pullspec")
	fl.StringVar(&root, "root", defaultBuildRoot(), "where image storage and the layer cache live")
	addRegistryBoundFlags(fl, &limits, "for every pull and push of the build")
	fl.StringArrayVar(&runMounts, "run-mount", nil, "DIR:TARGET: every RUN step sees the directory read-only at TARGET, no layer holds it (entitlements: DIR:"+pipeline.EntitlementTarget+", repositories: DIR:"+pipeline.YumReposTarget+"); repeatable")
	fl.StringVar(&driver, "storage-driver", builder.DriverAuto, "containers/storage driver: overlay or vfs (default: overlay, vfs where an overlay mount is impossible, said in the output)")
	return cmd
}

func defaultBuildRoot() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "mosb", "build")
	}
	return filepath.Join(os.TempDir(), "mosb-build")
}

type buildSettings struct {
	root, driver, cacheRepo string
	progress                io.Writer
	bounds                  bounds.Bounds
	runMounts               []builder.Mount
}

// parseRunMounts reads --run-mount DIR:TARGET values.
func parseRunMounts(values []string) ([]builder.Mount, error) {
	var out []builder.Mount
	for _, v := range values {
		source, target, ok := strings.Cut(v, ":")
		if !ok || source == "" || target == "" || strings.Contains(target, ":") {
			return nil, invalid(pipeline.ReasonInvalidFlag, "--run-mount %q: want DIR:TARGET, e.g. ./entitlement:%s", v, pipeline.EntitlementTarget)
		}
		if info, err := os.Stat(source); err != nil || !info.IsDir() {
			return nil, invalid(pipeline.ReasonInvalidFlag, "--run-mount %q: %s is not a directory", v, source)
		}
		if !filepath.IsAbs(target) || filepath.Clean(target) != target || target == "/" {
			return nil, invalid(pipeline.ReasonInvalidFlag, "--run-mount %q: the target must be a clean absolute path other than /", v)
		}
		out = append(out, builder.Mount{Source: source, Target: target})
	}
	return out, nil
}

// runBuild builds a plan in-process and pushes it with the push credentials only.
func runBuild(ctx context.Context, plan *pipeline.Plan, s buildSettings) (*builder.Result, error) {
	engine, err := builder.New(s.root, builder.WithStorageDriver(s.driver), builder.WithProgress(s.progress), builder.WithRegistryBounds(s.bounds))
	if err != nil {
		return nil, err
	}
	defer engine.Close()
	defer keepScratchUnderRoot(engine)()
	fmt.Fprintf(s.progress, "mosb: %s\n", engine.Storage())
	if l := plan.MachineConfigLayer; l != nil {
		fmt.Fprintf(s.progress, "mosb: rendered MachineConfig %s in the image: %s\n", plan.RenderedMachineConfig, l.Summary())
	}
	// The cluster's proxy (--cluster-config) when it has one, else this machine's environment's.
	proxy := plan.Proxy
	if proxy.IsZero() {
		proxy = registry.ProxyFromEnvironment()
	}
	if !proxy.IsZero() {
		fmt.Fprintf(s.progress, "mosb: pulls and RUN steps go through the proxy: %s\n", proxy.Redacted())
	}
	req := builder.Request{Target: plan.Target, Registry: plan.Registry, Run: builder.RunEnvironment{Mounts: s.runMounts, Proxy: proxy}}
	for _, a := range plan.Arches {
		req.Builds = append(req.Builds, a.Build)
		if a.Selection.Source == "none" {
			fmt.Fprintf(s.progress, "mosb: %s is built without user content: no %s or noarch containerFile entry\n", a.Arch, a.Arch)
		}
	}
	if s.cacheRepo != "" {
		if req.Cache, err = cacheFor(s.cacheRepo, plan.PushAuths); err != nil {
			return nil, err
		}
	}
	pusher := registry.NewClient(registry.WithKeychain(plan.PushAuths.Keychain()), registry.WithConfig(plan.Config), registry.WithBounds(s.bounds))
	fmt.Fprintf(s.progress, "mosb: building %s for %s\n", plan.Target, strings.Join(plan.ArchNames(), ", "))
	res, err := engine.Build(ctx, req, pusher)
	if err != nil {
		return nil, newBuildFailure(err)
	}
	for _, a := range res.Arches {
		fmt.Fprintf(s.progress, "mosb: %s built in %s: %s\n", a.Arch, a.BuildDuration.Round(1e7), a.Pullspec)
	}
	fmt.Fprintf(s.progress, "mosb: pushed in %s\n", res.PushDuration.Round(1e7))
	return res, nil
}

// keepScratchUnderRoot sends buildah's own scratch space (it follows $TMPDIR) under the build root
// for the length of a build, unless the user chose a TMPDIR: multi-GB base layers would otherwise
// land in /var/tmp. The returned function restores the environment.
func keepScratchUnderRoot(e *builder.Engine) (restore func()) {
	if _, set := os.LookupEnv("TMPDIR"); set {
		return func() {}
	}
	_ = os.Setenv("TMPDIR", e.TempDir())
	return func() { _ = os.Unsetenv("TMPDIR") }
}

func printMachineOSConfig(w io.Writer, f *fileInputs, pullspec string) error {
	in, err := f.load(false)
	if err != nil {
		return err
	}
	ready := []metav1.Condition{{
		Type: mosbv1.MachineOSConfigReady, Status: metav1.ConditionTrue, Reason: "Built",
		Message: "built and pushed by mosb build", LastTransitionTime: metav1.Now(), ObservedGeneration: in.MachineOSConfig.Generation,
	}}
	var m any
	if f.asV1 != nil {
		v1 := f.asV1.DeepCopy()
		v1.Status.CurrentImagePullSpec = mcfgv1.ImageDigestFormat(pullspec)
		v1.Status.ObservedGeneration = v1.Generation
		v1.Status.Conditions = ready
		m = v1
	} else {
		v1alpha1 := in.MachineOSConfig.DeepCopy()
		v1alpha1.Status.CurrentImagePullspec = mosbv1.ImageDigestFormat(pullspec)
		v1alpha1.Status.ObservedGeneration = v1alpha1.Generation
		v1alpha1.Status.Conditions = ready
		m = v1alpha1
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
