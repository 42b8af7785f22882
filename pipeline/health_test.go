package pipeline

import (
	"context"
	"net/http/httptest"
	"testing"
)

type stubCache struct{ synced chan struct{} }

func (s stubCache) WaitForCacheSync(ctx context.Context) bool {
	select {
	case <-s.synced:
		return true
	case <-ctx.Done():
		return false
	}
}

func TestCachesSyncedIsFalseUntilTheCachesSync(t *testing.T) {
	c := stubCache{synced: make(chan struct{})}
	check := CachesSynced(c)
	req := httptest.NewRequest("GET", "/readyz", nil)
	if err := check(req); err == nil {
		t.Fatal("ready before the caches synced")
	}
	close(c.synced)
	if err := check(req); err != nil {
		t.Fatalf("not ready after the caches synced: %v", err)
	}
}
