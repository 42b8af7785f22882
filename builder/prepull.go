package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.podman.io/common/libimage"
	"go.podman.io/common/pkg/config"
	"go.podman.io/image/v5/types"
	"k8s.io/utils/clock"

	"github.com/mosb-dev/mosb/containerfiles"
	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/registry/bounds"
)

// pullAttempts is how many times an image is pulled before its registry is given up on. Each
// unresponsive attempt waits a bound (a minute by default), so three keep a hung registry's build
// under five minutes.
const pullAttempts = 3

// minPullStall: containers/image reports a transfer's progress once a second, so a shorter
// stall bound would see every transfer as stalled.
const minPullStall = 2 * time.Second

// pullFirst are the images of a Containerfile that the engine pulls itself before buildah
// builds: by name with a registry, so nothing depends on search registries. buildah then finds
// them in storage; anything else (short names, names built from ARGs) buildah pulls through the
// guard.
func pullFirst(containerfile []byte) []string {
	pulls, err := containerfiles.PulledImages(string(containerfile))
	if err != nil {
		return nil
	}
	var out []string
	for _, img := range pulls.Images {
		if _, err := registry.ParsePullspec(img); err == nil {
			out = append(out, img)
		}
	}
	return out
}

// pullWatched pulls name into rt unless it is there already (for arch), watching each layer's
// progress: a layer that moves no byte for the stall bound ends the attempt. Attempts that failed
// in a way that may pass (an unresponsive registry, a network error) are retried with backoff.
func pullWatched(ctx context.Context, rt *libimage.Runtime, name string, opts libimage.CopyOptions, b bounds.Bounds, guard *bounds.Guard, out io.Writer) error {
	b = b.OrDefault()
	noRetry := uint(0) // the retries are ours: containers/image's would multiply them
	opts.MaxRetries = &noRetry
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = 2 * time.Second
	eb.MaxElapsedTime = 0 // the attempts bound it; each is bounded by the registry bounds
	policy := backoff.WithContext(backoff.WithMaxRetries(eb, pullAttempts-1), ctx)
	attempt := 0
	return backoff.Retry(func() error {
		attempt++
		err := pullOnce(ctx, rt, name, opts, max(b.Stall, minPullStall))
		if err == nil {
			return nil
		}
		if guard != nil {
			err = guard.Explain(err)
		}
		err = fmt.Errorf("pulling image %s: %w", name, err)
		if ctx.Err() != nil || !mayPass(err) {
			return backoff.Permanent(err)
		}
		if attempt < pullAttempts {
			fmt.Fprintf(out, "mosb: attempt %d of %d failed, trying again: %v\n", attempt, pullAttempts, err)
		}
		return err
	}, policy)
}

// mayPass says whether another attempt may succeed: the registry did not answer in time, or the
// network failed; not a refusal (credentials, a missing image, TLS trust), which is final.
func mayPass(err error) bool {
	if _, ok := bounds.AsUnresponsive(err); ok {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "connection reset", "unexpected EOF", "broken pipe", "502 Bad Gateway", "503 Service Unavailable", "504 Gateway Timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// pullOnce is one attempt, cancelled when a layer stops moving for stall.
func pullOnce(ctx context.Context, rt *libimage.Runtime, name string, opts libimage.CopyOptions, stall time.Duration) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	progress := make(chan types.ProgressProperties)
	opts.Progress = progress
	watched := make(chan *bounds.UnresponsiveError, 1)
	go func() { watched <- watchLayers(progress, stall, name, cancel, clock.RealClock{}) }()
	_, err := rt.Pull(ctx, name, config.PullPolicyMissing, &libimage.PullOptions{CopyOptions: opts})
	close(progress) // containers/image reports progress from within the copy only
	if stalled := <-watched; stalled != nil {
		return stalled.With(err)
	}
	return err
}

// watchLayers follows the layers in flight until progress is closed, and cancels the pull when
// one has not moved for stall.
func watchLayers(progress <-chan types.ProgressProperties, stall time.Duration, name string, cancel context.CancelCauseFunc, clk clock.WithTicker) *bounds.UnresponsiveError {
	type layer struct {
		offset uint64
		since  time.Time
	}
	inFlight := map[string]*layer{}
	// Fine enough to end the attempt before the guard's own stall bound cuts the connection.
	tick := clk.NewTicker(min(max(stall/8, 100*time.Millisecond), time.Second))
	defer tick.Stop()
	var stalled *bounds.UnresponsiveError
	host := ""
	if ref, err := registry.ParsePullspec(name); err == nil {
		host = ref.Host
	}
	for {
		select {
		case p, ok := <-progress:
			if !ok {
				return stalled
			}
			d := p.Artifact.Digest.String()
			switch p.Event {
			case types.ProgressEventNewArtifact:
				inFlight[d] = &layer{since: clk.Now()}
			case types.ProgressEventRead:
				l := inFlight[d]
				if l == nil || p.Offset <= l.offset {
					continue
				}
				// A gap as long as the bound is a stall even when bytes come again after it:
				// containers/image reconnects a stopped body by itself, and a registry that
				// stops every body after a few kilobytes would otherwise crawl on forever.
				if clk.Since(l.since) >= stall && stalled == nil {
					stalled = stallOf(host, d, name, stall, l.offset) // at least the bound; the message names the bound
					cancel(stalled)
				}
				l.offset, l.since = p.Offset, clk.Now()
			case types.ProgressEventDone, types.ProgressEventSkipped:
				delete(inFlight, d)
			}
		case <-tick.C():
			if stalled != nil {
				continue
			}
			for d, l := range inFlight {
				if clk.Since(l.since) >= stall {
					stalled = stallOf(host, d, name, stall, l.offset)
					cancel(stalled)
					break
				}
			}
		}
	}
}

func stallOf(host, layer, image string, waited time.Duration, offset uint64) *bounds.UnresponsiveError {
	return &bounds.UnresponsiveError{Registry: host, Op: fmt.Sprintf("pulling layer %s of %s", shortDigest(layer), image),
		Phase: bounds.PhaseStall, Waited: waited, Transferred: int64(offset)}
}

func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}
