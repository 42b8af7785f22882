package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/pipeline"
)

func addInputFlags(cmd *cobra.Command, f *fileInputs) {
	fl := cmd.Flags()
	fl.StringVarP(&f.machineOSConfig, "filename", "f", "", "the MachineOSConfig manifest (required)")
	fl.StringVar(&f.machineConfig, "machineconfig", "", "the pool's rendered MachineConfig manifest, built into /etc/machine-config-daemon/currentconfig")
	fl.StringVar(&f.clusterConfig, "cluster-config", "", "a directory of Image, ImageDigestMirrorSet, ImageTagMirrorSet, ImageContentPolicy and ConfigMap manifests (the trusted CA, machine-config-osimageurl)")
	fl.StringVar(&f.authFile, "authfile", "", "a containers auth file (or Secret manifest) used to pull and to push")
	fl.StringVar(&f.pullSecret, "pull-secret", "", "the base image pull credentials: a Secret manifest or an auth file")
	fl.StringVar(&f.pushSecret, "push-secret", "", "the push credentials: a Secret manifest or an auth file")
	fl.StringVar(&f.namespace, "namespace", "openshift-machine-config-operator", "the namespace the secrets are taken to live in (for messages)")
}

// prepare reads the files and plans the build exactly as the controller would.
func prepare(f *fileInputs, credentialsRequired bool) (*pipeline.Plan, error) {
	in, err := f.load(credentialsRequired)
	if err != nil {
		return nil, err
	}
	plan, err := pipeline.Prepare(in)
	if err != nil {
		var failure *pipeline.Failure
		if errors.As(err, &failure) {
			return nil, fmt.Errorf("%w: %s: %s", errInvalidInput, failure.Reason, failure.Message)
		}
		return nil, err
	}
	return plan, nil
}

func newRenderCommand() *cobra.Command {
	f := &fileInputs{}
	var arch, show, requestDir string
	cmd := &cobra.Command{
		Use:   "render -f machineosconfig.yaml",
		Short: "Print what a build would use, after the validation the controller does",
		Long: `render validates a MachineOSConfig with the files a cluster would hold and prints what the
build would use: the assembled Containerfile of one architecture, or the registries.conf or
policy.json the build pod gets. Invalid input exits 2 with the message a condition would carry.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if arch != "" {
				f.arches = []string{arch}
			}
			if !slices.Contains(renderShows, strings.ToLower(show)) {
				return invalid(pipeline.ReasonInvalidFlag, "--show %q: want one of %s", show, strings.Join(renderShows, ", "))
			}
			plan, err := prepare(f, false)
			if err != nil {
				return err
			}
			if requestDir != "" {
				return writeRequest(cmd.ErrOrStderr(), plan, requestDir)
			}
			if err := renderPlan(cmd.OutOrStdout(), plan, show); err != nil {
				return err
			}
			if strings.EqualFold(show, "identity") {
				// stdout stays the identity alone, for scripts.
				for _, line := range strings.Split(strings.TrimSpace(plan.IdentityExplained()), "\n") {
					fmt.Fprintln(cmd.ErrOrStderr(), "mosb: "+line)
				}
			}
			return nil
		},
	}
	addInputFlags(cmd, f)
	cmd.Flags().StringVar(&arch, "arch", "", "the architecture whose Containerfile to print (default: the first one built)")
	cmd.Flags().StringVar(&show, "show", "containerfile", "what to print: containerfile, registries.conf, policy.json, identity")
	cmd.Flags().StringVar(&requestDir, "request-dir", "", "instead of printing, lay out in this new directory the request volume the architecture's build pod would mount: `mosb worker --request DIR` runs that build here")
	return cmd
}

// writeRequest lays out the build pod's request volume of the plan's first architecture, as the
// controller makes it (pull credentials stay out: the worker reads them from a secret directory).
func writeRequest(stderr io.Writer, plan *pipeline.Plan, dir string) error {
	a := plan.Arches[0]
	if err := buildpod.WriteRequest(dir, plan.BuildRequest(a)); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "mosb: the %s build request is in %s: mosb worker --request %s --push-secret DIR [--pull-secret DIR] builds it\n", a.Arch, dir, dir)
	return nil
}

// renderShows are what --show may print.
var renderShows = []string{"containerfile", "registries.conf", "policy.json", "identity"}

func renderPlan(w io.Writer, plan *pipeline.Plan, show string) error {
	var out []byte
	switch strings.ToLower(show) {
	case "containerfile":
		out = plan.Arches[0].Build.Containerfile
	case "registries.conf":
		out = plan.Registry.RegistriesConf
	case "policy.json":
		out = plan.Registry.PolicyJSON
	case "identity":
		out = []byte(plan.Identity + "\n")
	default:
		return invalid(pipeline.ReasonInvalidFlag, "--show %q: want one of %s", show, strings.Join(renderShows, ", "))
	}
	_, err := w.Write(out)
	return err
}
