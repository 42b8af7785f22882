package pipeline

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// SyncWaiter is the part of a controller-runtime cache readiness needs.
type SyncWaiter interface {
	WaitForCacheSync(ctx context.Context) bool
}

// CachesSynced is the /readyz check: not ready until every informer has synced, because a
// reconcile on a partial view could start a build that already exists.
func CachesSynced(c SyncWaiter) func(*http.Request) error {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("caches have not synced yet")
		}
		return nil
	}
}
