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

// CachesSynced is the /readyz check: not ready until the informers that exist have synced. The
// build controller's own watches start a moment later (and only on the leader); its workers wait
// for them to sync before the first reconcile, so no build is started on a partial view either way.
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
