package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// TestAlertRules checks deploy/monitoring's PrometheusRule with promtool (Debian's prometheus
// package, which `make deps` installs): the rules are valid, each alert fires and stays quiet where
// prometheusrule_test.yaml says, and every metric and label they use is one the controller exports.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: `make deps` installs it (Debian package prometheus)")
	}
	dir := filepath.Join(harness.RepoRoot(), "deploy", "monitoring")
	raw, err := os.ReadFile(filepath.Join(dir, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil || rule.Kind != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml is not a PrometheusRule: %v", err)
	}
	// promtool reads plain rule files: the PrometheusRule's spec is one.
	var whole map[string]any
	if err := yaml.Unmarshal(raw, &whole); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(whole["spec"])
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "rules.yaml"), spec, 0o600); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(dir, "prometheusrule_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "tests.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "tests.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// Every alert has a firing case in the tests.
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !regexp.MustCompile(`alertname: `+r.Alert+`\s+exp_alerts:\s+- exp_labels`).Match(tests) {
				t.Errorf("alert %s has no firing case in prometheusrule_test.yaml", r.Alert)
			}
		}
	}

	exported := exportedMetrics(t)
	selector := regexp.MustCompile(`\b(mosb_[a-z_]+)(\{([^}]*)\})?`)
	matcherLabel := regexp.MustCompile(`([a-z_]+)\s*(=|!=|=~|!~)`)
	byClause := regexp.MustCompile(`by \(([^)]*)\)`)
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			used := map[string]bool{}
			for _, m := range selector.FindAllStringSubmatch(r.Expr, -1) {
				labels, ok := exported[m[1]]
				if !ok {
					t.Errorf("%s uses %s, which the controller does not export", r.Alert, m[1])
					continue
				}
				for _, l := range matcherLabel.FindAllStringSubmatch(m[3], -1) {
					if !labels[l[1]] {
						t.Errorf("%s selects %s on label %s, which it does not have", r.Alert, m[1], l[1])
					}
				}
				for l := range labels {
					used[l] = true
				}
			}
			for _, by := range byClause.FindAllStringSubmatch(r.Expr, -1) {
				for _, l := range strings.Split(by[1], ",") {
					if l = strings.TrimSpace(l); !used[l] {
						t.Errorf("%s aggregates by %s, a label none of its metrics has", r.Alert, l)
					}
				}
			}
		}
	}
}

// exportedMetrics are the controller's metric names with their labels, from the descriptions its
// collectors give.
func exportedMetrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	rec := &describingRegisterer{metrics: map[string]map[string]bool{}}
	if _, err := pipeline.NewMetrics(rec, nil); err != nil {
		t.Fatal(err)
	}
	if len(rec.metrics) == 0 {
		t.Fatal("the controller registered no metrics")
	}
	return rec.metrics
}

// describingRegisterer records what collectors describe instead of registering them.
type describingRegisterer struct {
	metrics map[string]map[string]bool
}

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

func (r *describingRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		s := d.String()
		name := descName.FindStringSubmatch(s)
		if name == nil {
			continue
		}
		labels := map[string]bool{}
		if l := descLabels.FindStringSubmatch(s); l != nil {
			for _, x := range strings.Split(l[1], ",") {
				if x = strings.TrimSpace(x); x != "" {
					labels[x] = true
				}
			}
		}
		r.metrics[name[1]] = labels
	}
	return nil
}

func (r *describingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *describingRegisterer) Unregister(prometheus.Collector) bool { return true }
