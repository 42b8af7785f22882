package harness

import (
	"context"
	"time"
)

// Eventually checks cond every interval until it holds, and fails the test when timeout passes
// first, with the last error cond returned: the tests' way to wait, instead of sleeping.
func Eventually(ctx context.Context, t T, interval, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := cond(ctx)
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
		case <-tick.C:
		}
	}
}
