package harness

import (
	"context"
	"time"
)

// callGrace is how long a check that is under way when the timeout passes may still take: its
// answer, not "context deadline exceeded", is what the failure should report.
const callGrace = 15 * time.Second

// Eventually checks cond every interval until it holds, and fails the test when timeout passes
// first, with the last error cond returned: the tests' way to wait, instead of sleeping. A cond
// that is still waiting may return an error saying what it sees; that is the report on timeout.
func Eventually(ctx context.Context, t T, interval, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	callCtx, cancel := context.WithDeadline(ctx, deadline.Add(callGrace))
	defer cancel()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := cond(callCtx)
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-tick.C:
		}
	}
}
