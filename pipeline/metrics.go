package pipeline

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// Metrics are the build controller's Prometheus metrics. The work queue's depth and latency come
// from controller-runtime itself (workqueue_* with name="build").
type Metrics struct {
	builds   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// NewMetrics registers the metrics. inFlight is read at scrape time from the cache, so it is
// right after a restart too.
func NewMetrics(reg prometheus.Registerer, c client.Reader) (*Metrics, error) {
	m := &Metrics{
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mosb_builds_total",
			Help: "MachineOSBuilds that ended, by result (Succeeded, Failed, Interrupted) and reason.",
		}, []string{"result", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mosb_build_duration_seconds",
			Help:    "From the first build pod to the end of a MachineOSBuild, by result.",
			Buckets: prometheus.ExponentialBuckets(5, 2, 11), // 5 s … ~85 min
		}, []string{"result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mosb_build_retries_total",
			Help: "Build attempts that failed transiently and were retried, by reason.",
		}, []string{"reason"}),
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mosb_builds_in_flight",
		Help: "MachineOSBuilds that have not ended.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		list := &mosbv1.MachineOSBuildList{}
		if err := c.List(ctx, list); err != nil {
			return 0
		}
		n := 0
		for i := range list.Items {
			if !Phase(&list.Items[i]).Terminal() {
				n++
			}
		}
		return float64(n)
	})
	for _, col := range []prometheus.Collector{m.builds, m.duration, m.retries, inFlight} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) ended(b *mosbv1.MachineOSBuild, reason string) {
	if m == nil {
		return
	}
	result := string(Phase(b))
	m.builds.WithLabelValues(result, reason).Inc()
	if b.Status.BuildStart != nil && b.Status.BuildEnd != nil {
		m.duration.WithLabelValues(result).Observe(b.Status.BuildEnd.Sub(b.Status.BuildStart.Time).Seconds())
	}
}

func (m *Metrics) retried(reason string) {
	if m != nil {
		m.retries.WithLabelValues(reason).Inc()
	}
}
