package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/registry"
)

func newWorkerCommand() *cobra.Command {
	var s workerSettings
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Build and push one architecture inside a build pod (started by the controller)",
		Long: `worker is what a build pod runs. It reads the build request (Containerfile, context files,
registries.conf, policy.json, CAs, target) from the request volume, the pull and push credentials
from their secret volumes, builds with buildah, pushes the image by digest with the push
credentials only, and writes the result as JSON to the termination log and as the last line of
stdout. Exit code 2: the request or a secret is malformed; 1: the build or the push failed (the
error is the last line of stderr, which kubelet keeps as the termination message).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tightenGC()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if s.prepareStore {
				return prepareNodeStore(ctx, s, cmd.ErrOrStderr())
			}
			tail := &tailWriter{w: cmd.ErrOrStderr(), max: 2048}
			err := runWorker(ctx, s, cmd.OutOrStdout(), tail)
			if err != nil {
				reportFailure(s.terminationLog, err, tail.String(), cmd.ErrOrStderr())
				// Were the termination log unwritable, kubelet keeps the log tail: one line.
				return oneLine{err}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&s.requestDir, "request", buildpod.RequestDir, "the mounted request ConfigMap")
	fl.StringVar(&s.pullSecretDir, "pull-secret", buildpod.PullSecretDir, "the mounted pull secret (empty: pull anonymously)")
	fl.StringVar(&s.pushSecretDir, "push-secret", buildpod.PushSecretDir, "the mounted push secret")
	fl.StringVar(&s.root, "root", buildpod.StorageRoot, "where image storage and scratch space live (an emptyDir)")
	fl.StringVar(&s.driver, "storage-driver", builder.DriverAuto, "containers/storage driver: overlay or vfs (default: overlay, vfs where an overlay mount is impossible)")
	fl.StringVar(&s.terminationLog, "termination-log", buildpod.TerminationLog, "where the result JSON is written (the container's terminationMessagePath)")
	fl.StringVar(&s.store, "store", "", "the node image store: base images are read from it (read-only), or put there with --prepare-store")
	fl.BoolVar(&s.prepareStore, "prepare-store", false, "only put the request's base images into the --store (a build pod's init container), evicting what was used least recently beyond --store-budget")
	fl.Int64Var(&s.storeBudget, "store-budget", 0, "with --prepare-store: the most bytes of layers the store keeps (0: no limit)")
	fl.StringVar(&s.runMountsDir, "run-mounts", buildpod.RunMountsDir, "where the request's run mounts are: <dir>/<index>, each seen read-only by every RUN step at its target")
	fl.StringVar(&s.storeReport, "store-report", buildpod.StoreReportPath, "where --prepare-store says which images the store holds for this build, and the build reads it")
	return cmd
}

type workerSettings struct {
	requestDir, pullSecretDir, pushSecretDir string
	root, driver, terminationLog             string
	store, storeReport, runMountsDir         string
	prepareStore                             bool
	storeBudget                              int64
}

// prepareNodeStore puts the request's base images into the node image store. The store only saves
// time: whatever goes wrong here is said and the build pulls the base itself (exit 0), except a
// malformed request, which the build would refuse too.
func prepareNodeStore(ctx context.Context, s workerSettings, stderr io.Writer) error {
	if s.store == "" {
		return invalid(pipeline.ReasonInvalidFlag, "--prepare-store needs --store")
	}
	req, err := buildpod.ReadRequest(s.requestDir)
	if err != nil {
		return invalid(buildpod.ReasonInvalidRequest, "%v", err)
	}
	rc := req.Registry
	if s.pullSecretDir != "" {
		pullAuths, err := readSecretDir(s.pullSecretDir)
		if err != nil {
			return err
		}
		if rc.PullAuth, err = pullAuths.AuthFile(); err != nil {
			return err
		}
	}
	// The pull credentials are written for containers/image under scratch, in the pod's emptyDir,
	// never in the store, and go when this ends.
	scratch, err := os.MkdirTemp(s.root, "store-")
	if err != nil {
		if err := os.MkdirAll(s.root, 0o700); err != nil {
			return err
		}
		if scratch, err = os.MkdirTemp(s.root, "store-"); err != nil {
			return err
		}
	}
	defer os.RemoveAll(scratch)
	store := builder.ImageStore{Dir: s.store, Budget: s.storeBudget, Bounds: req.RegistryBounds}
	report, err := store.Prepare(ctx, scratch, req.Prefetch, req.Build.Arch, rc, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mosb: WARNING: the node image store %s was not prepared, the build pulls its base itself: %v\n", s.store, oneLine{err})
		return nil
	}
	if err := builder.WriteStoreReport(s.storeReport, report); err != nil {
		fmt.Fprintf(stderr, "mosb: WARNING: cannot hand the node image store's report to the build: %v\n", err)
	}
	fmt.Fprintf(stderr, "mosb: node image store %s: %d image(s) there already, %d pulled, %d evicted; %d bytes\n",
		s.store, len(report.Present), len(report.Pulled), len(report.Evicted), report.Size)
	return nil
}

// workerInput is what the worker builds from: the request, and the credentials kept apart.
type workerInput struct {
	req       buildpod.Request
	pushAuths registry.Auths
	pushCfg   *registry.Config
}

// runWorker builds one architecture and reports it. Errors marked errInvalidInput are a
// malformed request or secret (exit 2); any other is a failed build or push (exit 1).
func runWorker(ctx context.Context, s workerSettings, stdout, stderr io.Writer) error {
	in, err := readWorkerInput(s)
	if err != nil {
		return err
	}
	// buildah and containers/image put large temporary files in TMPDIR: in a pod it is in the
	// emptyDir, which kubelet creates empty.
	if dir := os.Getenv("TMPDIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating TMPDIR: %w", err)
		}
	}
	opts := []builder.Option{builder.WithStorageDriver(s.driver), builder.WithProgress(stderr), builder.WithRegistryBounds(in.req.RegistryBounds)}
	if s.store != "" {
		store := builder.ImageStore{Dir: s.store}
		opts = append(opts, builder.WithImageStore(store.GraphRoot()))
		report, err := builder.ReadStoreReport(s.storeReport)
		if err != nil {
			fmt.Fprintf(stderr, "mosb: WARNING: %v\n", err)
		}
		if report != nil {
			defer store.Hold(report.IDs)()
		}
	}
	engine, err := builder.New(s.root, opts...)
	if err != nil {
		return err
	}
	defer engine.Close()
	// Outside a pod (no TMPDIR), buildah's scratch space goes under the root too.
	defer keepScratchUnderRoot(engine)()
	storage := engine.Storage()
	fmt.Fprintf(stderr, "mosb worker: %s\n", storage)

	req := builder.Request{
		Builds:   []buildpod.ArchBuild{in.req.Build},
		Target:   in.req.Target,
		Registry: in.req.Registry,
		Untagged: in.req.Untagged,
		// The proxy comes from the pod's environment (its proxy Secret), never from the request.
		Run: builder.RunEnvironment{Proxy: registry.ProxyFromEnvironment()},
	}
	for i, m := range in.req.RunMounts {
		req.Run.Mounts = append(req.Run.Mounts, builder.Mount{Source: filepath.Join(s.runMountsDir, strconv.Itoa(i)), Target: m.Target})
	}
	if in.req.CacheRepo != "" {
		if req.Cache, err = cacheFor(in.req.CacheRepo, in.pushAuths); err != nil {
			return err
		}
	}
	// The push credentials go to the publisher and nowhere else: the build's pulls and RUN steps
	// see the pull secret only (and a cache repository's own entry, when one is set).
	pusher := registry.NewClient(registry.WithKeychain(in.pushAuths.Keychain()), registry.WithConfig(in.pushCfg), registry.WithBounds(in.req.RegistryBounds))
	mode := "tagged"
	if in.req.Untagged {
		mode = "by digest only"
	}
	fmt.Fprintf(stderr, "mosb worker: building %s for %s, pushed %s\n", in.req.Target, in.req.Build.Arch, mode)
	res, err := engine.Build(ctx, req, pusher)
	if err != nil {
		return err
	}
	if len(res.Arches) != 1 {
		return fmt.Errorf("the build returned %d architectures, want 1", len(res.Arches))
	}
	a := res.Arches[0]
	fmt.Fprintf(stderr, "mosb worker: %s built in %s, pushed in %s: %s\n", a.Arch, a.BuildDuration.Round(1e7), res.PushDuration.Round(1e7), a.Pullspec)
	out, err := buildpod.Result{
		Arch: a.Arch, Pullspec: a.Pullspec, Digest: a.Digest, Platform: a.Platform,
		StorageDriver: storage.Driver, Storage: storageNote(storage),
	}.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.terminationLog, out, 0o644); err != nil {
		return fmt.Errorf("the image is pushed (%s) but the result cannot be written: %w", a.Pullspec, err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}

// readWorkerInput reads and checks everything mounted before any work starts.
// reportFailure writes why the build failed to the termination log, so the controller can tell a
// refused push from a registry that was briefly down, with the end of the build log for people.
func reportFailure(path string, err error, logTail string, stderr io.Writer) {
	reason, retryable := builder.ClassifyError(err)
	if errors.Is(err, errInvalidInput) {
		reason, retryable = buildpod.ReasonInvalidRequest, false
	}
	msg := builder.Describe(reason, err)
	if t := strings.TrimSpace(logTail); t != "" {
		msg += "\n--- end of the build log ---\n" + t
	}
	out, mErr := buildpod.Failure{Reason: reason, Retryable: retryable, Message: msg}.Marshal()
	if mErr == nil {
		mErr = os.WriteFile(path, out, 0o644)
	}
	if mErr != nil {
		fmt.Fprintf(stderr, "mosb worker: cannot write the failure to %s: %v\n", path, mErr)
	}
}

// tailWriter passes writes through and keeps the last max bytes, starting at a line.
type tailWriter struct {
	w   io.Writer
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
		if i := bytes.IndexByte(t.buf, '\n'); i >= 0 {
			t.buf = t.buf[i+1:]
		}
	}
	return t.w.Write(p)
}

func (t *tailWriter) String() string { return string(t.buf) }

func readWorkerInput(s workerSettings) (workerInput, error) {
	var in workerInput
	var err error
	if in.req, err = buildpod.ReadRequest(s.requestDir); err != nil {
		return in, invalid(buildpod.ReasonInvalidRequest, "%v", err)
	}
	if in.pushCfg, err = in.req.Registry.PushConfig(); err != nil {
		return in, invalid(buildpod.ReasonInvalidRequest, "%v", err)
	}
	if s.pushSecretDir == "" {
		return in, invalid(pipeline.ReasonSecretNotFound, "--push-secret is required: the image cannot be pushed without credentials")
	}
	if in.pushAuths, err = readSecretDir(s.pushSecretDir); err != nil {
		return in, err
	}
	if s.pullSecretDir != "" {
		pullAuths, err := readSecretDir(s.pullSecretDir)
		if err != nil {
			return in, err
		}
		if in.req.Registry.PullAuth, err = pullAuths.AuthFile(); err != nil {
			return in, err
		}
	}
	return in, nil
}

// readSecretDir reads a mounted registry secret: .dockerconfigjson (kubernetes.io/dockerconfigjson)
// or .dockercfg (kubernetes.io/dockercfg). Errors never quote the data: it holds credentials.
func readSecretDir(dir string) (registry.Auths, error) {
	for _, f := range []struct {
		key   string
		parse func(string, []byte) (registry.Auths, error)
	}{{".dockerconfigjson", registry.ParseDockerConfigJSON}, {".dockercfg", registry.ParseDockercfg}} {
		raw, err := os.ReadFile(filepath.Join(dir, f.key))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return registry.Auths{}, invalid(pipeline.ReasonSecretNotFound, "reading the secret mounted at %s: %v", dir, err)
		}
		auths, err := f.parse(dir, raw)
		if err != nil {
			return registry.Auths{}, invalid(pipeline.ReasonInvalidSecret, "%v", err)
		}
		return auths, nil
	}
	return registry.Auths{}, invalid(pipeline.ReasonInvalidSecret, "the secret mounted at %s has neither .dockerconfigjson nor .dockercfg: it must be of type kubernetes.io/dockerconfigjson (or kubernetes.io/dockercfg)", dir)
}

// cacheFor gives buildah the push secret's credential for the cache repository alone (scoped to
// that repository), since --cache-to pushes layers there; the rest of the push secret stays with
// the publisher.
func cacheFor(repo string, push registry.Auths) (*builder.Cache, error) {
	c := &builder.Cache{Repo: repo}
	cred, ok := push.Lookup(repo)
	if !ok {
		return c, nil
	}
	scoped, err := registry.NewAuths(map[string]registry.Credential{repo: cred})
	if err != nil {
		return nil, invalid(buildpod.ReasonInvalidRequest, "cache repository %q is not host[:port]/repository", repo)
	}
	if c.Auth, err = scoped.AuthFile(); err != nil {
		return nil, err
	}
	return c, nil
}

// oneLine keeps an error on one line (buildah's errors can span several) and its kind for the exit code.
type oneLine struct{ err error }

func (e oneLine) Error() string {
	return strings.Join(strings.Fields(strings.ReplaceAll(e.err.Error(), "\n", " | ")), " ")
}

func (e oneLine) Unwrap() error { return e.err }

// storageNote is what the MachineOSBuild says about a build's storage when it is not as it should
// be: vfs instead of overlay, or the node image store unused. Short: the termination message
// keeps 4 KiB.
func storageNote(c builder.StorageChoice) string {
	var note string
	switch {
	case c.Fallback != "":
		note = "built with vfs storage, overlay cannot mount here: " + c.Fallback
	case c.ImageStoreUnused != "":
		note = "the node image store was not used: " + c.ImageStoreUnused
	}
	if len(note) > 1024 {
		note = note[:1024] + "…"
	}
	return note
}
