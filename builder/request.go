package builder

import (
	"time"
)

// Epoch is the creation time of every image mosb builds and the clamp for every file time in the
// layers it adds: without it two builds of the same inputs would differ by their timestamps.
var Epoch = time.Unix(0, 0).UTC()
