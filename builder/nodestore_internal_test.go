package builder

import (
	"strings"
	"testing"
	"time"
)

func TestEvictionOrder(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	tests := []struct {
		name   string
		images []storedImage
		grace  time.Duration
		keep   []string
		want   string
	}{
		{name: "least recently used first",
			images: []storedImage{{"b", ago(time.Hour)}, {"a", ago(3 * time.Hour)}, {"c", ago(2 * time.Hour)}},
			grace:  time.Minute, want: "a c b"},
		{name: "never recorded goes first",
			images: []storedImage{{"b", ago(time.Hour)}, {"a", time.Time{}}},
			grace:  time.Minute, want: "a b"},
		{name: "the build's own images stay",
			images: []storedImage{{"a", ago(3 * time.Hour)}, {"b", ago(2 * time.Hour)}},
			grace:  time.Minute, keep: []string{"a"}, want: "b"},
		{name: "recently used images stay",
			images: []storedImage{{"a", ago(3 * time.Hour)}, {"b", ago(5 * time.Minute)}},
			grace:  10 * time.Minute, want: "a"},
		{name: "ties by ID, so the order is stable",
			images: []storedImage{{"b", ago(time.Hour)}, {"a", ago(time.Hour)}},
			grace:  time.Minute, want: "a b"},
		{name: "nothing to evict", grace: time.Minute, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, img := range evictionOrder(tt.images, now, tt.grace, tt.keep) {
				got = append(got, img.ID)
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("order %q, want %q", s, tt.want)
			}
		})
	}
}

func TestStorageChoiceSaysWhy(t *testing.T) {
	s := StorageChoice{Driver: DriverVFS, Fallback: "overlay is not supported over overlayfs"}.String()
	for _, want := range []string{"vfs", "overlay cannot mount here", "not supported over overlayfs"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	if s := (StorageChoice{Driver: DriverOverlay}).String(); strings.Contains(s, "cannot") {
		t.Errorf("overlay with nothing to say: %q", s)
	}
}
