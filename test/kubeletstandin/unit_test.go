package kubeletstandin

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for in, want := range map[string]string{
		"plain":          "plain",
		"$(A)-$(B)":      "1-two",
		"$(MISSING)":     "$(MISSING)",
		"$$(A)":          "$(A)",
		"$$$$":           "$$",
		"echo $$":        "echo $",
		"$HOME $(A":      "$HOME $(A",
		"trailing $":     "trailing $",
		"$()":            "$()",
		"x$(A)y$(B)z$$w": "x1ytwoz$w",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTailLog(t *testing.T) {
	dir := t.TempDir()
	var sb strings.Builder
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&sb, "line %d\n", i)
	}
	p := filepath.Join(dir, "log")
	if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := tailLog(p, 80, 2048)
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 80 || lines[0] != "line 21" || lines[79] != "line 100" {
		t.Errorf("tail has %d lines %q…%q", len(lines), lines[0], lines[len(lines)-1])
	}
	long := strings.Repeat("x", 5000) + "\nend"
	if err := os.WriteFile(p, []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := tailLog(p, 80, 2048); len(got) != 2048 || !strings.HasSuffix(got, "x\nend") {
		t.Errorf("byte cap: got %d bytes ending %q", len(got), got[len(got)-5:])
	}
	if got := tailLog(filepath.Join(dir, "missing"), 80, 2048); got != "" {
		t.Errorf("missing log: %q", got)
	}
}

func TestFitError(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"kubernetes.io/arch": "amd64", "size": "4"}}}
	tainted := node.DeepCopy()
	tainted.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "builds", Effect: corev1.TaintEffectNoSchedule}}
	req := func(key string, op corev1.NodeSelectorOperator, vals ...string) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: vals}}}}}}}
	}
	for _, tc := range []struct {
		name string
		node *corev1.Node
		spec corev1.PodSpec
		fits bool
	}{
		{"no constraints", node, corev1.PodSpec{}, true},
		{"selector matches", node, corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/arch": "amd64"}}, true},
		{"selector differs", node, corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/arch": "arm64"}}, false},
		{"selector label missing", node, corev1.PodSpec{NodeSelector: map[string]string{"zone": "a"}}, false},
		{"affinity In", node, corev1.PodSpec{Affinity: req("kubernetes.io/arch", corev1.NodeSelectorOpIn, "arm64", "amd64")}, true},
		{"affinity NotIn", node, corev1.PodSpec{Affinity: req("kubernetes.io/arch", corev1.NodeSelectorOpNotIn, "amd64")}, false},
		{"affinity Gt", node, corev1.PodSpec{Affinity: req("size", corev1.NodeSelectorOpGt, "3")}, true},
		{"affinity Lt", node, corev1.PodSpec{Affinity: req("size", corev1.NodeSelectorOpLt, "3")}, false},
		{"affinity DoesNotExist", node, corev1.PodSpec{Affinity: req("gpu", corev1.NodeSelectorOpDoesNotExist)}, true},
		{"untolerated taint", tainted, corev1.PodSpec{}, false},
		{"tolerated taint", tainted, corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "builds"}}}, true},
		{"wrong value", tainted, corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Value: "other"}}}, false},
		{"tolerate everything", tainted, corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}, true},
		{"other effect", tainted, corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}}, false},
	} {
		why := fitError(&corev1.Pod{Spec: tc.spec}, tc.node)
		if (why == "") != tc.fits {
			t.Errorf("%s: fitError = %q, want fits=%v", tc.name, why, tc.fits)
		}
	}
}

// TestFitErrorCordoned: a node with spec.unschedulable fits only pods tolerating the
// node.kubernetes.io/unschedulable:NoSchedule taint, and says so in kube-scheduler's words.
func TestFitErrorCordoned(t *testing.T) {
	cordoned := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Spec: corev1.NodeSpec{Unschedulable: true}}
	deleting := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", DeletionTimestamp: &metav1.Time{}}}
	for _, tc := range []struct {
		name string
		node *corev1.Node
		tols []corev1.Toleration
		want string
	}{
		{"no toleration", cordoned, nil, "were unschedulable"},
		{"tolerates the cordon", cordoned, []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, ""},
		{"tolerates the key, any effect", cordoned, []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists}}, ""},
		{"tolerates everything", cordoned, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, ""},
		{"tolerates another effect", cordoned, []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, "were unschedulable"},
		{"tolerates another key", cordoned, []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}, "were unschedulable"},
		{"being deleted", deleting, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, "were being deleted"},
	} {
		if got := fitError(&corev1.Pod{Spec: corev1.PodSpec{Tolerations: tc.tols}}, tc.node); got != tc.want {
			t.Errorf("%s: fitError = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestSchedulingChanged: only what the scheduler decides on makes a node event retry the pending pods.
func TestSchedulingChanged(t *testing.T) {
	base := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "1"}}}
	for _, tc := range []struct {
		name   string
		change func(*corev1.Node)
		want   bool
	}{
		{"status only", func(n *corev1.Node) { n.Status.Phase = corev1.NodeRunning; n.ResourceVersion = "2" }, false},
		{"label added", func(n *corev1.Node) { n.Labels["b"] = "2" }, true},
		{"label value", func(n *corev1.Node) { n.Labels["a"] = "2" }, true},
		{"taint", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}
		}, true},
		{"cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }, true},
		{"being deleted", func(n *corev1.Node) { n.DeletionTimestamp = &metav1.Time{} }, true},
	} {
		cur := base.DeepCopy()
		tc.change(cur)
		if got := schedulingChanged(base, cur); got != tc.want {
			t.Errorf("%s: schedulingChanged = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPlanMounts(t *testing.T) {
	host := t.TempDir() // stands for the host's filesystem
	stage := t.TempDir()
	vol := t.TempDir() // a volume's directory
	file := filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(host, "etc", "ssl"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(host, "etc"), filepath.Join(host, "etc-link")); err != nil {
		t.Fatal(err)
	}
	shadows, binds, err := planMounts([]mountWant{
		{what: "inside", target: filepath.Join(host, "etc", "new", "sub"), source: file},
		{what: "new", target: filepath.Join(host, "etc", "new"), source: vol, dir: true, readOnly: true},
		{what: "existing", target: filepath.Join(host, "etc", "ssl"), source: vol, dir: true},
		{what: "via symlink", target: filepath.Join(host, "etc-link", "other"), source: file},
		{what: "workingDir", target: filepath.Join(host, "etc", "work"), dir: true},
	}, stage)
	if err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(host, "etc")
	if len(shadows) != 1 || shadows[0].Dir != etc {
		t.Fatalf("shadows = %+v, want one of %s", shadows, etc)
	}
	creates := map[string]bool{}
	for _, c := range shadows[0].Create {
		creates[c.Path] = c.Dir
	}
	if len(creates) != 3 || creates["new"] != true || creates["other"] != false || creates["work"] != true {
		t.Errorf("shadow creates %+v, want new/ other work/", shadows[0].Create)
	}
	if fi, err := os.Stat(shadows[0].Stage); err != nil || !fi.IsDir() || !strings.HasPrefix(shadows[0].Stage, stage) {
		t.Errorf("stage %s not made under %s: %v", shadows[0].Stage, stage, err)
	}
	want := []bindSpec{
		{Source: vol, Target: filepath.Join(etc, "new"), ReadOnly: true},
		{Source: vol, Target: filepath.Join(etc, "ssl")},
		{Source: file, Target: filepath.Join(etc, "other")},
		{Source: file, Target: filepath.Join(etc, "new", "sub")},
	}
	if fmt.Sprint(binds) != fmt.Sprint(want) {
		t.Errorf("binds = %+v\nwant    %+v", binds, want)
	}
	// The mount point inside the volume was made in the volume; nothing new on the "host".
	if fi, err := os.Stat(filepath.Join(vol, "sub")); err != nil || fi.IsDir() {
		t.Errorf("mount point for the file inside the volume: %v %v", fi, err)
	}
	for _, p := range []string{"new", "other", "work"} {
		if _, err := os.Lstat(filepath.Join(etc, p)); !os.IsNotExist(err) {
			t.Errorf("%s was created on the host: %v", p, err)
		}
	}

	for name, wants := range map[string][]mountWant{
		"top level":   {{what: "w", target: "/mosb-standin-nonexistent-top/x", source: vol, dir: true}},
		"root":        {{what: "w", target: "/", source: vol, dir: true}},
		"relative":    {{what: "w", target: "etc/x", source: vol, dir: true}},
		"dir on file": {{what: "w", target: file, source: vol, dir: true}},
		"in a file":   {{what: "f", target: filepath.Join(host, "etc", "f"), source: file}, {what: "w", target: filepath.Join(host, "etc", "f", "x"), source: vol, dir: true}},
	} {
		if _, _, err := planMounts(wants, stage); err == nil {
			t.Errorf("%s: planMounts accepted %+v", name, wants)
		}
	}
}

func TestMakeInsideRefusesSymlinks(t *testing.T) {
	vol := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(vol, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := makeInside(vol, "escape/x", true); err == nil {
		t.Error("makeInside followed a symlink out of the volume")
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); !os.IsNotExist(err) {
		t.Errorf("created outside the volume: %v", err)
	}
	if err := makeInside(vol, "../x", true); err == nil {
		t.Error("makeInside accepted ../x")
	}
}

func TestContainerIdentity(t *testing.T) {
	u, g, fs := int64(1000), int64(1001), int64(2000)
	yes := true
	pod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: &u, SupplementalGroups: []int64{3000}, FSGroup: &fs}}}
	c := &corev1.Container{Name: "c", SecurityContext: &corev1.SecurityContext{RunAsGroup: &g}}
	id, err := containerIdentity(pod, c)
	if err != nil || *id.uid != 1000 || *id.gid != 1001 || fmt.Sprint(id.groups) != "[2000 3000]" {
		t.Errorf("identity %+v %v", id, err)
	}
	root := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes}}}
	if _, err := containerIdentity(root, &corev1.Container{Name: "c"}); err == nil {
		t.Error("runAsNonRoot without runAsUser was accepted")
	}
}
