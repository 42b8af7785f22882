package pipeline

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
			Help: "MachineOSBuilds that ended, by MachineOSConfig, result (Succeeded, Failed, Interrupted) and reason.",
		}, []string{"machineosconfig", "result", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mosb_build_duration_seconds",
			Help:    "From the first build pod to the end of a MachineOSBuild, by result.",
			Buckets: prometheus.ExponentialBuckets(5, 2, 11), // 5 s … ~85 min
		}, []string{"result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mosb_build_retries_total",
			Help: "Build attempts that failed transiently and were retried, by MachineOSConfig and reason.",
		}, []string{"machineosconfig", "reason"}),
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
	for _, col := range []prometheus.Collector{m.builds, m.duration, m.retries, inFlight, &machineOSConfigCollector{c: c}} {
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
	m.builds.WithLabelValues(b.Spec.MachineOSConfig.Name, result, reason).Inc()
	if b.Status.BuildStart != nil && b.Status.BuildEnd != nil {
		m.duration.WithLabelValues(result).Observe(b.Status.BuildEnd.Sub(b.Status.BuildStart.Time).Seconds())
	}
}

func (m *Metrics) retried(b *mosbv1.MachineOSBuild, reason string) {
	if m != nil {
		m.retries.WithLabelValues(b.Spec.MachineOSConfig.Name, reason).Inc()
	}
}

// machineOSConfigCollector reports each MachineOSConfig's state at scrape time, from the cache:
// what alerts need per pool, right after a controller restart too.
type machineOSConfigCollector struct {
	c client.Reader
}

var (
	moscReadyDesc = prometheus.NewDesc("mosb_machineosconfig_ready",
		"1 when the MachineOSConfig's current image is built from its current inputs (condition Ready), else 0.",
		[]string{"machineosconfig"}, nil)
	moscDegradedDesc = prometheus.NewDesc("mosb_machineosconfig_degraded",
		"1 when the MachineOSConfig is Degraded (its input is refused or its build failed), with the condition's reason; else 0.",
		[]string{"machineosconfig", "reason"}, nil)
	moscLastSuccessDesc = prometheus.NewDesc("mosb_machineosconfig_last_successful_build_timestamp_seconds",
		"When the newest Succeeded MachineOSBuild of the MachineOSConfig ended (absent while none is kept).",
		[]string{"machineosconfig"}, nil)
)

func (*machineOSConfigCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- moscReadyDesc
	ch <- moscDegradedDesc
	ch <- moscLastSuccessDesc
}

func (col *machineOSConfigCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	moscs := &mosbv1.MachineOSConfigList{}
	builds := &mosbv1.MachineOSBuildList{}
	if err := col.c.List(ctx, moscs); err != nil {
		return
	}
	if err := col.c.List(ctx, builds); err != nil {
		return
	}
	for _, st := range machineOSConfigStates(moscs.Items, builds.Items) {
		ch <- prometheus.MustNewConstMetric(moscReadyDesc, prometheus.GaugeValue, boolGauge(st.ready), st.name)
		ch <- prometheus.MustNewConstMetric(moscDegradedDesc, prometheus.GaugeValue, boolGauge(st.degradedReason != ""), st.name, st.degradedReason)
		if !st.lastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(moscLastSuccessDesc, prometheus.GaugeValue, float64(st.lastSuccess.Unix()), st.name)
		}
	}
}

// machineOSConfigState is what the per-MachineOSConfig gauges report.
type machineOSConfigState struct {
	name           string
	ready          bool
	degradedReason string    // empty: not Degraded
	lastSuccess    time.Time // zero: no Succeeded build kept
}

func machineOSConfigStates(moscs []mosbv1.MachineOSConfig, builds []mosbv1.MachineOSBuild) []machineOSConfigState {
	lastSuccess := map[string]time.Time{}
	for i := range builds {
		b := &builds[i]
		if Phase(b) != PhaseSucceeded || b.Status.BuildEnd == nil {
			continue
		}
		name := b.Spec.MachineOSConfig.Name
		if end := b.Status.BuildEnd.Time; end.After(lastSuccess[name]) {
			lastSuccess[name] = end
		}
	}
	states := make([]machineOSConfigState, 0, len(moscs))
	for i := range moscs {
		m := &moscs[i]
		st := machineOSConfigState{
			name:        m.Name,
			ready:       meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady),
			lastSuccess: lastSuccess[m.Name],
		}
		if c := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigDegraded); c != nil && c.Status == metav1.ConditionTrue {
			st.degradedReason = c.Reason
			if st.degradedReason == "" {
				st.degradedReason = "Unknown"
			}
		}
		states = append(states, st)
	}
	return states
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
